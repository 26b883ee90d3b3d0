"""The demo's payment-processor scenario: sites, a throwaway PKI and the three gateway configurations.

Pure generation (no namespaces, no processes): `build_scenario(now)` returns, per gateway, the TOML text and
the files it names (certificates, keys, CRL, peer inventory), ready for
`GatewayProcess(config=..., files=...)`. The configs follow examples/processor-gateway.toml and
merchant-a.toml (profile pci-dss-4, template connection `merchants` + peer inventory, AES-GCM-256 + ECP-384 +
SHA-384 with PFS, userspace data plane), so the demo runs what the documentation shows.

PKI: a VPN CA issuing ECDSA P-384 device certificates valid for at most 24 h (PCI DSS 4.0.1 4.2.1 "trusted
keys and certificates"), a CRL that the processor's ``[authorities]`` names and that lists one retired
merchant device, and a separate SIEM CA for the RFC 5425 mutual-TLS audit sink every gateway forwards its
trail to.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import CertificateAuthority, IssuedCertificate, KeyKind

__all__ = [
    "CERT_LIFETIME",
    "ESP_PROPOSAL",
    "IKE_PROPOSAL",
    "MERCHANT_A",
    "MERCHANT_B",
    "MERCHANT_C",
    "PROCESSOR",
    "SIEM_ADDRESS",
    "SIEM_PORT",
    "SITES",
    "GatewayFiles",
    "Scenario",
    "SiemFiles",
    "Site",
    "build_scenario",
]

IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"  # the group makes every CREATE_CHILD_SA rekey use PFS (RFC 7296 §1.3.1)
CERT_LIFETIME = dt.timedelta(hours=24)
PROFILE = "pci-dss-4"
AUTHORITY = "processor-vpn"
CONNECTION_PROCESSOR = "merchants"  # the processor's template connection
CONNECTION_MERCHANT = "processor"  # each merchant's connection to the processor
CHILD = "card-data"
CLAIM_CHILD = "claim-merchant-a"  # merchant B's deliberate attempt on merchant A's subnet
SIEM_ADDRESS = ipaddress.IPv4Address("192.0.2.100")
SIEM_PORT = 6514  # RFC 5425 §4.1
_PREFIX_LEN = 24


@dataclass(frozen=True)
class Site:
    """One site: its namespace role, identity, outer address and protected subnet (first address on lo)."""

    name: str  # "processor", "merchant-a", "merchant-b"
    role: str  # namespace role (NetnsLab: [a-z0-9]{1,12})
    identity: str  # FQDN identity, also the certificate's dNSName SAN
    address: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network
    ticket: str = ""

    @property
    def subnet_address(self) -> ipaddress.IPv4Address:
        """The host address inside the protected subnet that pings come from or go to."""
        return self.subnet.network_address + 1

    @property
    def interface(self) -> str:
        """Outer address with prefix (``192.0.2.1/24``)."""
        return f"{self.address}/{_PREFIX_LEN}"


PROCESSOR = Site(
    "processor",
    "proc",
    "gw.processor.example",
    ipaddress.IPv4Address("192.0.2.1"),
    ipaddress.IPv4Network("10.10.0.0/24"),
)
MERCHANT_A = Site(
    "merchant-a",
    "mera",
    "merchant-a.merchants.processor.example",
    ipaddress.IPv4Address("192.0.2.11"),
    ipaddress.IPv4Network("10.20.1.0/24"),
    "CHG-1042",
)
MERCHANT_B = Site(
    "merchant-b",
    "merb",
    "merchant-b.merchants.processor.example",
    ipaddress.IPv4Address("192.0.2.12"),
    ipaddress.IPv4Network("10.20.2.0/24"),
    "CHG-1043",
)
# Merchant C reported its device stolen: the CA revoked the certificate at once (it is on the current CRL);
# the change that removes C from the inventory is still pending, so only revocation keeps the device out.
MERCHANT_C = Site(
    "merchant-c",
    "merc",
    "merchant-c.merchants.processor.example",
    ipaddress.IPv4Address("192.0.2.13"),
    ipaddress.IPv4Network("10.20.3.0/24"),
    "CHG-1077 (device reported stolen; removal pending)",
)
SITES = (PROCESSOR, MERCHANT_A, MERCHANT_B, MERCHANT_C)
REMOTE_ID_PATTERN = "*.merchants.processor.example"  # `*` = exactly one DNS label (docs/reference.md)


@dataclass
class GatewayFiles:
    """One gateway: config TOML text plus the files it names (paths relative to its work directory)."""

    site: Site
    config: str
    files: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The site name (also the gateway's work directory name)."""
        return self.site.name

    def write(self, workdir: Path) -> Path:
        """Write ``gateway.toml`` and its files under `workdir` (keys 0600); returns the config path."""
        workdir.mkdir(parents=True, exist_ok=True)
        for rel, data in self.files.items():
            path = workdir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_file(path, data, 0o600 if rel.endswith(".key") else 0o644)
        config = workdir / "gateway.toml"
        _write_file(config, self.config.encode(), 0o644)
        return config


def _write_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass
class SiemFiles:
    """The demo SIEM receiver's TLS server certificate/key and the CA its clients are checked against."""

    cert: bytes
    key: bytes = field(repr=False)
    client_ca: bytes = b""


@dataclass
class Scenario:
    """Everything generated for one demo run."""

    processor: GatewayFiles
    merchant_a: GatewayFiles
    merchant_b: GatewayFiles
    retired: GatewayFiles  # merchant C, whose device certificate the CRL revokes
    siem: SiemFiles
    ca_subject: str
    revoked_serial: int
    not_after: dt.datetime

    @property
    def gateways(self) -> tuple[GatewayFiles, GatewayFiles, GatewayFiles]:
        """Processor first (it must listen before the merchants initiate)."""
        return (self.processor, self.merchant_a, self.merchant_b)


def _pem_cert(issued: IssuedCertificate) -> bytes:
    return issued.cert_pem()


def _ca_pem(ca: CertificateAuthority) -> bytes:
    return ca.cert.public_bytes(serialization.Encoding.PEM)


def _common_head(site: Site) -> str:
    return f"""\
# {site.name}: generated by `ikeguard demo` (throwaway PKI, certificates valid for 24 h).

[gateway]
profile = "{PROFILE}"
on_violation = "refuse"
state_dir = "state"
dataplane = "userspace"
listen = ["{site.address}"]

[audit]
retention_days = 365
online_days = 90

# PCI DSS 4.0.1 10.3.3: the trail is forwarded to the demo SIEM over RFC 5425 mutual TLS.
[[audit.sinks]]
type = "syslog-tls"
address = "{SIEM_ADDRESS}:{SIEM_PORT}"
ca = "pki/siem-ca.pem"
cert = "pki/siem-client.pem"
key = "pki/siem-client.key"

[authorities.{AUTHORITY}]
cacert = "pki/ca.pem"
crls = ["pki/vpn.crl"]
"""


def _connection_common(name: str, site: Site) -> str:
    return f"""
[connections.{name}]
local_addrs = ["{site.address}"]
remote_addrs = {{remote_addrs}}
proposals = ["{IKE_PROPOSAL}"]
rekey_time = "12h"
reauth_time = "24h"
rand_time = "30m"
dpd_delay = "30s"
mobike = true
fragmentation = true

[connections.{name}.local]
auth = "pubkey"
id = "{site.identity}"
certs = ["pki/device.pem"]
key = "pki/device.key"
"""


def _child(
    conn: str,
    child: str,
    local_ts: str,
    remote_ts: str,
    start_action: str,
    dpd_action: str,
    close_action: str,
) -> str:
    return f"""
[connections.{conn}.children.{child}]
local_ts = [{local_ts}]
remote_ts = [{remote_ts}]
esp_proposals = ["{ESP_PROPOSAL}"]
rekey_time = "1h"
life_time = "2h"
rand_time = "5m"
life_bytes = "64G"
mode = "tunnel"
start_action = "{start_action}"
dpd_action = "{dpd_action}"
close_action = "{close_action}"
"""


def processor_config() -> str:
    """The processor: one template connection for every merchant, selectors from the peer inventory."""
    conn = CONNECTION_PROCESSOR
    text = _common_head(PROCESSOR)
    text += _connection_common(conn, PROCESSOR).replace("{remote_addrs}", '["%any"]')
    text = text.replace("fragmentation = true\n", 'fragmentation = true\nunique = "replace"\n', 1)
    text += f"""
[connections.{conn}.remote]
auth = "pubkey"
id = "{REMOTE_ID_PATTERN}"
cacerts = ["{AUTHORITY}"]
revocation = "strict"
peers = "merchants.toml"
"""
    text += _child(conn, CHILD, f'"{PROCESSOR.subnet}"', '"%peer"', "none", "clear", "none")
    return text


def inventory() -> str:
    """merchants.toml: each merchant identity bound to its own subnet (what `%peer` means for it)."""
    out = '# Peer inventory of connection "merchants": each merchant gets only its own subnet.\n'
    for site in (MERCHANT_A, MERCHANT_B, MERCHANT_C):
        out += f"""
[[peer]]
id = "{site.identity}"
remote_ts = ["{site.subnet}"]
enabled = true
ticket = "{site.ticket}"
"""
    return out


def merchant_config(site: Site, *, claim: Site | None = None) -> str:
    """A merchant site: brings its tunnel up at start; `claim` adds a child asking for another's subnet."""
    conn = CONNECTION_MERCHANT
    text = _common_head(site)
    text += _connection_common(conn, site).replace("{remote_addrs}", f'["{PROCESSOR.address}"]')
    text += f"""
[connections.{conn}.remote]
auth = "pubkey"
id = "{PROCESSOR.identity}"
cacerts = ["{AUTHORITY}"]
revocation = "strict"
"""
    text += _child(conn, CHILD, f'"{site.subnet}"', f'"{PROCESSOR.subnet}"', "start", "restart", "start")
    if claim is not None:
        text += f"\n# Deliberately wrong: {site.name} asks for {claim.name}'s subnet (refused).\n"
        text += _child(
            conn, CLAIM_CHILD, f'"{claim.subnet}"', f'"{PROCESSOR.subnet}"', "none", "clear", "none"
        )
    return text


def build_scenario(now: dt.datetime | None = None) -> Scenario:
    """Generate the PKI and the three gateways' configs and files."""
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    not_before = now - dt.timedelta(minutes=5)
    not_after = not_before + CERT_LIFETIME
    ca = CertificateAuthority.create_root(
        "CN=Processor VPN demo CA,O=Payment Processor (ikeguard demo)",
        KeyKind.ECDSA_P384,
        not_before=not_before,
        not_after=not_before + dt.timedelta(days=30),
        path_length=0,
        now=now,
    )
    siem_ca = CertificateAuthority.create_root(
        "CN=Processor SIEM demo CA,O=Payment Processor (ikeguard demo)",
        KeyKind.ECDSA_P384,
        not_before=not_before,
        not_after=not_before + dt.timedelta(days=30),
        path_length=0,
        now=now,
    )
    retired = ca.issue_leaf(
        f"CN={MERCHANT_C.identity},O=Payment Processor (ikeguard demo)",
        sans=[f"dns:{MERCHANT_C.identity}"],
        not_before=not_before,
        not_after=not_after,
        eku=("ipsecIKE",),
        now=now,
    )
    # The retired device still holds the CRL from before its revocation (number 1); everyone else has the
    # current one (number 2), which revokes it.
    stale_crl = ca.crl(
        this_update=not_before, next_update=not_before + dt.timedelta(hours=24), crl_number=1, now=now
    )
    crl = ca.crl(
        [retired],
        this_update=not_before,
        next_update=not_before + dt.timedelta(hours=24),
        crl_number=2,
        now=now,
    )
    crl_pem = crl.public_bytes(serialization.Encoding.PEM)
    siem_server = siem_ca.issue_leaf(
        "CN=siem.processor.example,O=Payment Processor (ikeguard demo)",
        sans=[f"ip:{SIEM_ADDRESS}", "dns:siem.processor.example"],
        not_before=not_before,
        not_after=not_after,
        eku=("serverAuth",),
        now=now,
    )

    def files_for(site: Site, device: IssuedCertificate | None = None) -> dict[str, bytes]:
        device = device or ca.issue_leaf(
            f"CN={site.identity},O=Payment Processor (ikeguard demo)",
            sans=[f"dns:{site.identity}"],
            not_before=not_before,
            not_after=not_after,
            eku=("ipsecIKE",),
            now=now,
        )
        siem_client = siem_ca.issue_leaf(
            f"CN={site.identity},O=SIEM client",
            sans=[f"dns:{site.identity}"],
            not_before=not_before,
            not_after=not_after,
            eku=("clientAuth",),
            now=now,
        )
        return {
            "pki/ca.pem": _ca_pem(ca),
            "pki/vpn.crl": crl_pem,
            "pki/device.pem": _pem_cert(device),
            "pki/device.key": device.key_pem(),
            "pki/siem-ca.pem": _ca_pem(siem_ca),
            "pki/siem-client.pem": _pem_cert(siem_client),
            "pki/siem-client.key": siem_client.key_pem(),
        }

    processor = GatewayFiles(PROCESSOR, processor_config(), files_for(PROCESSOR))
    processor.files["merchants.toml"] = inventory().encode()
    merchant_a = GatewayFiles(MERCHANT_A, merchant_config(MERCHANT_A), files_for(MERCHANT_A))
    merchant_b = GatewayFiles(
        MERCHANT_B, merchant_config(MERCHANT_B, claim=MERCHANT_A), files_for(MERCHANT_B)
    )
    merchant_c = GatewayFiles(MERCHANT_C, merchant_config(MERCHANT_C), files_for(MERCHANT_C, retired))
    merchant_c.files["pki/vpn.crl"] = stale_crl.public_bytes(serialization.Encoding.PEM)
    siem = SiemFiles(_pem_cert(siem_server), siem_server.key_pem(), _ca_pem(siem_ca))
    return Scenario(
        processor,
        merchant_a,
        merchant_b,
        merchant_c,
        siem,
        ca.cert.subject.rfc4514_string(),
        retired.serial,
        not_after,
    )
