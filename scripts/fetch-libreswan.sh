#!/usr/bin/env bash
# Unpack Debian's libreswan (pluto, whack, addconn) into a private cache directory, for interop tests.
# Debian's libreswan package Conflicts with strongSwan (strongswan-libcharon, strongswan-starter), so it is
# never installed: only its runtime libraries are (normal packages, no conflict), the .deb is fetched with
# `apt-get download` and extracted with `dpkg-deb -x` (docs/interop.md, "libreswan").
# Cached: a second run is a no-op. Prints the extracted root (containing usr/libexec/ipsec/pluto) on stdout.
#
#   scripts/fetch-libreswan.sh
#   IKG_CACHE=/some/dir scripts/fetch-libreswan.sh
set -euo pipefail

cache=${IKG_CACHE:-/var/cache/ikeguard-test}
log() { echo "fetch-libreswan: $*" >&2; }
# Runtime libraries of /usr/libexec/ipsec/pluto and the NSS tools (certutil, pk12util) for its database.
runtime=(libnss3-tools libnss3 libnspr4 libcurl3-nss libevent-core-2.1-7 libevent-pthreads-2.1-7 libldns3
         libunbound8 libcap-ng0 libaudit1 libldap-2.5-0)

version=$(apt-cache policy libreswan 2>/dev/null | sed -n 's/^  Candidate: //p')
if [[ -z "$version" || "$version" == "(none)" ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq
        version=$(apt-cache policy libreswan 2>/dev/null | sed -n 's/^  Candidate: //p')
    fi
fi
[[ -n "$version" && "$version" != "(none)" ]] || { log "no libreswan package known to apt"; exit 1; }
root="$cache/libreswan-${version//[:+~]/_}"

missing=()
for pkg in "${runtime[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if [[ -x "$root/usr/libexec/ipsec/pluto" && -f "$root/.complete" && ${#missing[@]} -eq 0 ]]; then
    echo "$root"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    log "needs root to install ${missing[*]:-nothing} and to write $cache"
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    }
fi
if [[ ! -f "$root/.complete" ]]; then
    tmp=$(mktemp -d "$cache/.libreswan-XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "$cache/.libreswan-XXXXXX"; })
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -qq "libreswan=$version" >/dev/null 2>&1) || {
        apt-get update -qq
        (cd "$tmp" && apt-get download -qq "libreswan=$version" >/dev/null)
    }
    mkdir -p "$tmp/root"
    dpkg-deb -x "$tmp"/libreswan_*.deb "$tmp/root"
    [[ -x "$tmp/root/usr/libexec/ipsec/pluto" ]] || { log "the package has no usr/libexec/ipsec/pluto"; exit 1; }
    rm -rf "$root"
    mv "$tmp/root" "$root"
    echo "libreswan $version" >"$root/.complete"
    log "extracted libreswan $version into $root"
fi
echo "$root"
