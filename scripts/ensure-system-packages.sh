#!/usr/bin/env bash
# Install the Debian packages listed in packaging/system-packages.txt, only those missing.
# apt-get update runs first, and only when something must be installed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
list="$here/packaging/system-packages.txt"
missing=()
while read -r pkg _; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done < "$list"
if ((${#missing[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-system-packages: missing ${missing[*]}; not root, so not installing (tests that need them are skipped)" >&2
    exit 0
fi
echo "ensure-system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts daemons on install; the tests start their own instances in namespaces.
for unit in strongswan-starter strongswan rsyslog ipsec; do
    systemctl stop "$unit" >/dev/null 2>&1 || true
done
