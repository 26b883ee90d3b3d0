#!/usr/bin/env bash
# Build strongSwan's load-tester (Debian does not ship it) from Debian's own source package, into a private
# prefix that never clashes with the system charon (own plugin dir, own piddir). Cached: a second run with the
# same version is a no-op. Used by bench/bench_ike_setup.py; see docs/interop.md.
#
#   scripts/build-load-tester.sh            # prints the prefix on stdout (last line)
#   IKG_CACHE=/some/dir scripts/build-load-tester.sh
#
# Only charon + the plugins the initiator needs are configured (--disable-defaults), so the build is small.
# Needs root for apt (deb-src entry, build dependencies); everything else goes to $IKG_CACHE.
set -euo pipefail

cache=${IKG_CACHE:-/var/cache/ikeguard-test}
version=$(dpkg-query -W -f='${Version}' libstrongswan 2>/dev/null || true)
upstream=${version%%-*}
[[ -n "$upstream" ]] || upstream=5.9.8
prefix="$cache/load-tester-$upstream"
stamp="$prefix/.built"
recipe=2  # bump when the configure line changes: older caches are rebuilt
log() { echo "build-load-tester: $*" >&2; }

if grep -qs "recipe=$recipe" "$stamp" && [[ -x "$prefix/libexec/ipsec/charon" && -f "$prefix/lib/ipsec/plugins/libstrongswan-load-tester.so" ]]; then
    echo "$prefix"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    log "needs root (apt-get for deb-src and build dependencies)"
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive

# 1. a deb-src entry, derived from the machine's deb entries, when there is none
if ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    src=/etc/apt/sources.list.d/ikeguard-deb-src.sources
    log "adding deb-src entries ($src)"
    : >"$src"
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ "$f" == "$src" ]] && continue
        # deb822 stanzas with Types: deb -> the same stanza with Types: deb-src (distribution mirrors only)
        awk 'BEGIN{RS=""; ORS="\n\n"} /Types:[ \t]*deb/ && /debian|ubuntu/ {sub(/Types:[ \t]*deb/, "Types: deb-src"); print}' "$f" >>"$src"
    done
    if [[ -f /etc/apt/sources.list ]]; then
        sed -n 's/^deb \(.*\(debian\|ubuntu\).*\)/deb-src \1/p' /etc/apt/sources.list >/etc/apt/sources.list.d/ikeguard-deb-src.list
    fi
    apt-get update -qq
fi

# 2. build dependencies (only what the minimal configure below needs)
need=()
for pkg in build-essential pkg-config bison flex gperf libssl-dev libgmp-dev dpkg-dev; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || need+=("$pkg")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || {
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    }
fi

# 3. the source package: the installed revision first, then any other revision of the same upstream version
work="$cache/src"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
got=
candidates=("$version")
while read -r v; do candidates+=("$v"); done < <(apt-cache showsrc strongswan 2>/dev/null | sed -n 's/^Version: //p' | grep "^$upstream" || true)
for v in "${candidates[@]}"; do
    [[ -n "$v" ]] || continue
    log "apt-get source strongswan=$v"
    if apt-get source -qq --download-only "strongswan=$v" >/dev/null 2>&1 \
        || apt-get source -qq --download-only "strongswan=$v" >/dev/null 2>&1; then
        got=$v
        break
    fi
    rm -f ./*.dsc ./*.tar.* ./*.diff.*
done
[[ -n "$got" ]] || { log "could not download the strongswan $upstream source package"; exit 1; }
dpkg-source -x --skip-patches ./*.dsc tree >/dev/null 2>&1 || dpkg-source -x ./*.dsc tree >/dev/null
cd tree
# Debian's patches (quilt) so the code matches the installed revision
if [[ -f debian/patches/series ]] && ! [[ -d .pc ]]; then
    while read -r p _; do
        [[ -z "$p" || "$p" == \#* ]] && continue
        patch -p1 -s -N <"debian/patches/$p" || log "patch $p did not apply (continuing)"
    done <debian/patches/series
fi

# 4. configure + build: charon with the plugins the load-test initiator loads
log "configuring into $prefix"
rm -rf "$prefix"
./configure -q --prefix="$prefix" --sysconfdir="$prefix/etc" --with-piddir="$prefix/run" \
    --disable-defaults --enable-ikev2 --enable-charon --enable-load-tester --enable-openssl --enable-random --enable-nonce \
    --enable-pem --enable-pkcs1 --enable-pkcs8 --enable-x509 --enable-pubkey --enable-constraints \
    --enable-gmp --enable-sha1 --enable-sha2 --enable-hmac --enable-kdf --enable-aes --enable-gcm \
    --enable-kernel-netlink --enable-socket-default --enable-vici --enable-swanctl \
    --disable-systemd --disable-scripts --disable-static >/dev/null
log "building (make -j2)"
make -s -j2 >/dev/null 2>"$cache/build-load-tester.err" || { tail -30 "$cache/build-load-tester.err" >&2; exit 1; }
make -s install >/dev/null 2>>"$cache/build-load-tester.err"
mkdir -p "$prefix/run"
echo "strongswan $got recipe=$recipe" >"$stamp"
cd "$cache"
rm -rf "$work"
log "done: $prefix (strongswan source $got)"
echo "$prefix"
