#!/usr/bin/env bash
# Creates the certificates, keys and CRL the example configurations name, in ./pki next to them, with
# strongSwan's `pki` tool as a strongSwan operator would (Debian package strongswan-pki).
#
#   examples/make-pki.sh            # writes examples/pki/ (an existing pki/ is replaced)
#   examples/make-pki.sh DIR        # writes DIR/pki/ instead (for a copy of the examples)
#
# Two CAs: the VPN CA (ECDSA P-384, 1 year) issuing the gateways' device certificates (90 days) and a CRL (7
# days), and a separate SIEM CA for the RFC 5425 mutual-TLS audit sink. Private keys are written 0600, as
# `ikeguard check` requires. These are throwaway lab credentials: never use them in production.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="${1:-$here}/pki"
command -v pki >/dev/null || { echo "make-pki.sh: strongSwan's pki tool is missing (apt install strongswan-pki)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
chmod 700 "$out"
cd "$out"
umask 077

# strongSwan's pki loads its tpm plugin and complains on machines without a TPM daemon; only that is filtered.
pki() { command pki "$@" 2> >(grep -v -e 'libtss2-tcti-tabrmd' -e "plugin 'tpm'" >&2); }

key() { pki --gen --type ecdsa --size 384 --outform pem > "$1.key"; }

# issue NAME CA DN DAYS SAN... : a device certificate for NAME signed by CA (no EKU: RFC 4945 §5.1.3.12)
issue() {
    local name=$1 ca=$2 dn=$3 days=$4; shift 4
    local sans=()
    for san in "$@"; do sans+=(--san "$san"); done
    key "$name"
    pki --pub --in "$name.key" | pki --issue --cacert "$ca.pem" --cakey "$ca.key" --dn "$dn" "${sans[@]}" \
        --lifetime "$days" --digest sha384 --outform pem > "$name.pem"
}

# issue_tls NAME CA DN FLAG: a TLS certificate for the audit sink (serverAuth or clientAuth)
issue_tls() {
    local name=$1 ca=$2 dn=$3 flag=$4; shift 4
    key "$name"
    pki --pub --in "$name.key" | pki --issue --cacert "$ca.pem" --cakey "$ca.key" --dn "$dn" "$@" \
        --flag "$flag" --lifetime 90 --digest sha384 --outform pem > "$name.pem"
}

key ca
pki --self --ca --in ca.key --dn "C=US, O=Example Processor, CN=Example Processor VPN CA" \
    --lifetime 365 --digest sha384 --outform pem > ca.pem
key siem-ca
pki --self --ca --in siem-ca.key --dn "C=US, O=Example Processor, CN=Example Processor SIEM CA" \
    --lifetime 365 --digest sha384 --outform pem > siem-ca.pem

# processor-gateway.toml + merchant-a.toml (template connection, peer inventory, revocation)
issue gw ca "C=US, O=Example Processor, CN=gw.processor.example" 90 gw.processor.example
issue merchant-a ca "C=US, O=Merchant A, CN=merchant-a.merchants.processor.example" 90 \
    merchant-a.merchants.processor.example
issue merchant-b ca "C=US, O=Merchant B, CN=merchant-b.merchants.processor.example" 90 \
    merchant-b.merchants.processor.example
# site-to-site pair (site-east.toml, site-west.toml)
issue east ca "C=US, O=Example Processor, CN=east.sites.processor.example" 90 east.sites.processor.example
issue west ca "C=US, O=Example Processor, CN=west.sites.processor.example" 90 west.sites.processor.example

# The CRL every example's [authorities] names; it revokes a retired merchant device.
issue retired ca "C=US, O=Merchant C, CN=merchant-c.merchants.processor.example" 90 \
    merchant-c.merchants.processor.example
pki --signcrl --cacert ca.pem --cakey ca.key --lifetime 7 --digest sha384 \
    --cert retired.pem --reason key-compromise --outform pem > vpn.crl
rm retired.key

# Mutual-TLS audit sink credentials (one client certificate per gateway, the SIEM's server certificate).
for gw in gw merchant-a east west; do
    issue_tls "$gw-siem" siem-ca "C=US, O=Example Processor, CN=$gw audit client" clientAuth
done
issue_tls siem siem-ca "C=US, O=Example Processor, CN=siem.processor.example" serverAuth --san 127.0.0.1

chmod 644 ./*.pem vpn.crl
echo "make-pki.sh: wrote $(ls | wc -l) files to $out"
