#!/usr/bin/env bash
# Build the strongSwan 6.1 test peer: a Debian 13 (trixie) chroot made by debootstrap, with strongSwan from
# Debian unstable (6.0.1 in trixie has no ML-KEM; 6.1 with OpenSSL 3.5 lists ML_KEM_512/768/1024).
# Used by tests/harness/strongswan61.py, which runs the chroot's charon-systemd (kernel-libipsec) inside a
# network namespace and drives it with the chroot's swanctl (docs/interop.md, "strongSwan 6.1").
#
# Cached outside the repository; a second run is a no-op. flock(1) keeps two test processes from building
# at once (the second waits, then finds the tree complete). Prints the chroot root on stdout.
# The mirror is the one this machine's apt uses. Debian unstable's Release file may be past its Valid-Until
# date on a mirror snapshot, hence -o Acquire::Check-Valid-Until=false for that suite only.
#
#   scripts/build-strongswan61.sh
#   IKG_CACHE=/some/dir scripts/build-strongswan61.sh
set -euo pipefail

cache=${IKG_CACHE:-/var/cache/ikeguard-tests}
root="$cache/strongswan61"
recipe=4  # bump when the package list or the chroot layout changes
log() { echo "build-strongswan61: $*" >&2; }
packages=(charon-systemd strongswan-swanctl libstrongswan libstrongswan-standard-plugins
          libstrongswan-extra-plugins libcharon-extra-plugins openssl iproute2 iputils-ping)

complete() { grep -qs "recipe=$recipe" "$root/.complete" && [[ -x "$root/usr/sbin/charon-systemd" ]] &&
             [[ -x "$root/opt/libreswan/usr/libexec/ipsec/pluto" ]]; }
if complete; then echo "$root"; exit 0; fi
[[ $(id -u) -eq 0 ]] || { log "needs root (debootstrap, chroot) to build $root"; exit 2; }
mkdir -p "$cache"
exec 9>"$cache/.strongswan61.lock"
flock 9
if complete; then echo "$root"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get install -y -qq debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap >/dev/null; }
fi

# The machine's Debian mirror (deb822 .sources or one-line sources.list); the archive, not the security one.
mirror=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p';
           cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
           sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p') |
         tr ' ' '\n' | grep -v -- '-security' | grep -m1 '/debian/\?$' || true)
[[ -n "$mirror" ]] || { log "no Debian mirror in /etc/apt sources"; exit 1; }
mirror=${mirror%/}

tmp="$cache/.strongswan61-build"
umount_all() {
    for m in proc dev/pts dev; do mountpoint -q "$tmp/$m" 2>/dev/null && umount -l "$tmp/$m" || true; done
}
trap 'umount_all; rm -rf --one-file-system "$tmp"' EXIT
umount_all
rm -rf --one-file-system "$tmp"
log "debootstrap trixie from $mirror into $tmp (about a minute)"
debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    trixie "$tmp" "$mirror" >"$cache/.strongswan61-debootstrap.log" 2>&1 || {
    log "debootstrap failed:"; tail -20 "$cache/.strongswan61-debootstrap.log" >&2; exit 1; }

cat >"$tmp/etc/apt/sources.list" <<EOF
deb $mirror trixie main
deb $mirror unstable main
EOF
cat >"$tmp/etc/apt/preferences.d/unstable" <<EOF
Package: *
Pin: release a=unstable
Pin-Priority: 100
EOF
# No daemon may start inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 755 "$tmp/usr/sbin/policy-rc.d"
mount -t proc proc "$tmp/proc"
in_chroot() { chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
log "installing strongSwan from unstable: ${packages[*]}"
in_chroot apt-get -qq -o Acquire::Check-Valid-Until=false update >&2
in_chroot apt-get install -y -qq --no-install-recommends -t unstable "${packages[@]}" \
    >"$cache/.strongswan61-apt.log" 2>&1 || {
    log "apt-get install failed:"; tail -20 "$cache/.strongswan61-apt.log" >&2; exit 1; }
# libreswan 5.2 (trixie) for the PPK tests: it Conflicts with strongSwan's libcharon, so it is unpacked into
# /opt/libreswan (tests/harness/libreswan52.py bind-mounts its usr/libexec/ipsec), with its runtime libraries.
mkdir -p "$tmp/opt/libreswan-deb"
(cd "$tmp/opt/libreswan-deb" && in_chroot sh -c 'cd /opt/libreswan-deb && apt-get download -qq libreswan/trixie' \
    >>"$cache/.strongswan61-apt.log" 2>&1) || { log "apt-get download libreswan failed"; exit 1; }
deps=$(dpkg-deb -f "$tmp"/opt/libreswan-deb/libreswan_*.deb Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g' |
       grep -v -E '^$|^(iptables|host|dns-root-data|iproute2|iproute)$')  # tools pluto does not need here
in_chroot apt-get install -y -qq --no-install-recommends $deps >>"$cache/.strongswan61-apt.log" 2>&1 || {
    log "installing libreswan's libraries failed:"; tail -20 "$cache/.strongswan61-apt.log" >&2; exit 1; }
dpkg-deb -x "$tmp"/opt/libreswan-deb/libreswan_*.deb "$tmp/opt/libreswan"
rm -rf "$tmp/opt/libreswan-deb"
[[ -x "$tmp/opt/libreswan/usr/libexec/ipsec/pluto" ]] || { log "no pluto in the libreswan package"; exit 1; }
version=$(in_chroot dpkg-query -W -f='${Version}' charon-systemd)
[[ "$version" == 6.1* || "$version" > "6.1" ]] || { log "unstable gave strongSwan $version, not 6.1"; exit 1; }
in_chroot apt-get clean
umount_all
rm -f "$tmp/usr/sbin/policy-rc.d"
# charon must not pick up the package's own config: the harness passes STRONGSWAN_CONF/SWANCTL_DIR.
echo "strongswan $version recipe=$recipe" >"$tmp/.complete"
rm -rf --one-file-system "$root"
mv "$tmp" "$root"
trap - EXIT
log "done: $root (strongSwan $version)"
echo "$root"
