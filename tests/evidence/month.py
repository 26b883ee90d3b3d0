"""A scripted month of gateway activity for the evidence tests.

The IKE exchanges are real: three merchants (two with certificates, one with a PSK) run the ikeguard engine
against the gateway's engine over the in-memory network of tests/engine/harness.py with an injected clock:
every working day each merchant connects, Child SAs rekey hourly, the IKE SA rekeys every two hours, then the
merchant disconnects; every Wednesday a fourth peer with a certificate from another CA is refused. The
gateway side's audit records are written to a real audit store through its own API (``append_batch`` with
the simulated times), together with the records the service adds (configuration loaded, a peer added by an
admin with a ticket, HSM signatures). ``Month`` keeps what the peers saw, to compare with the pack.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from ikeguard.audit.events import AuditEvent, EventName
from ikeguard.audit.store import AuditStore
from ikeguard.engine.settings import AuthKind, ConnectionSettings, LocalAuth, RemoteAuth
from ikeguard.tools.certfactory import CertificateAuthority, KeyKind
from tests.engine.harness import Network, child, ike, mirror, pair, psk_conn
from tests.engine.pki import T0, TrustAnchorValidator, ca, leaf

HOUR = 3600.0
DAY = 86400.0
GW_ID = "gw.processor.example"
CERT_MERCHANTS = {"m1.merchants.example": ("aes256gcm16-prfsha384-ecp384", "aes256gcm16-ecp384"),
                  "m2.merchants.example": ("aes128gcm16-prfsha256-ecp256", "aes128gcm16-ecp256")}
PSK_MERCHANT = ("m3.merchants.example", "aes256-sha256-modp2048", "aes256-sha256-modp2048")
ROGUE = "m9.merchants.example"


class StampedNetwork(Network):
    """Keeps the gateway side's audit events with the simulated time they were emitted at."""

    stamped: list[tuple[float, AuditEvent]]

    def collect(self) -> None:
        before = len(self.b.events)
        super().collect()
        for event in self.b.events[before:]:
            if isinstance(event, AuditEvent):
                self.stamped.append((self.now, event))


def _stamped(net: Network) -> StampedNetwork:
    net.__class__ = StampedNetwork
    assert isinstance(net, StampedNetwork)
    net.stamped = []
    net.now = T0
    return net


def _cert_net(merchant: str, ike_p: str, esp_p: str, ca_name: str = "Test CA") -> StampedNetwork:
    c = child(proposals=(esp_p,), rekey_time=HOUR)
    mkey, mcert = leaf(merchant, "ecdsa-p256", ca_name)
    gkey, gcert = leaf(GW_ID, "ecdsa-p384")
    a = ConnectionSettings("merchants", ike(ike_p), LocalAuth(AuthKind.PUBKEY, merchant, private_key=mkey,
                                                               certs=(mcert,)),
                           RemoteAuth(AuthKind.PUBKEY, GW_ID), (c,), rekey_time=2 * HOUR)
    b = ConnectionSettings("merchants", ike(ike_p), LocalAuth(AuthKind.PUBKEY, GW_ID, private_key=gkey,
                                                               certs=(gcert,)),
                           RemoteAuth(AuthKind.PUBKEY, None), (mirror(c),), rekey_time=2 * HOUR)
    return _stamped(pair([a], [b], validator=TrustAnchorValidator([ca("Test CA")[1]])))


def _psk_net() -> StampedNetwork:
    merchant, ike_p, esp_p = PSK_MERCHANT
    c = child(proposals=(esp_p,), rekey_time=HOUR)
    a = psk_conn("legacy", merchant, GW_ID, (c,), ike_proposals=(ike_p,), rekey_time=2 * HOUR)
    b = psk_conn("legacy", GW_ID, merchant, (mirror(c),), ike_proposals=(ike_p,), rekey_time=2 * HOUR)
    return _stamped(pair([a], [b]))


@dataclass
class Month:
    """What happened, as the peers (side a) saw it."""

    start: dt.datetime
    end: dt.datetime
    peer_ike_sas: int = 0  # IKE SAs established or rekeyed, counted on the merchants' side
    peer_child_sas: int = 0
    refused: int = 0
    peer_certs: set[tuple[str, str, str]] = field(default_factory=set)  # (subject, issuer, serial) sent
    issued: set[tuple[str, str, str]] = field(default_factory=set)  # the gateway's own, obtained by ACME


def _session(net: StampedNetwork, conn: str, at: float, hours: float) -> None:
    net.advance(at - net.now)
    uid = net.initiate(conn)
    net.run()
    net.advance(hours * HOUR - 60)
    for sa in net.a.manager.ike_sas():
        net.a.manager.terminate_ike(sa.uniqueid, net.now, "end of business")
    net.run()
    net.advance(60)
    del uid


def scripted_month(state_dir: Path, start: dt.datetime, days: int = 30) -> tuple[AuditStore, Month]:
    """Run the month and write the gateway's records into a new store in ``state_dir``."""
    nets = {m: _cert_net(m, i, e) for m, (i, e) in CERT_MERCHANTS.items()}
    nets[PSK_MERCHANT[0]] = _psk_net()
    rogue = _cert_net(ROGUE, *CERT_MERCHANTS["m1.merchants.example"], ca_name="Rogue CA")
    month = Month(start, start + dt.timedelta(days=days))
    for day in range(days):
        weekday = (start + dt.timedelta(days=day)).weekday()
        if weekday >= 5:
            continue
        for k, (merchant, net) in enumerate(nets.items()):
            conn = "legacy" if merchant == PSK_MERCHANT[0] else "merchants"
            _session(net, conn, T0 + day * DAY + (8 + k) * HOUR, 3 + k)
        if weekday == 2:
            _session(rogue, "merchants", T0 + day * DAY + 12 * HOUR, 1)
    for net in (*nets.values(), rogue):
        month.peer_ike_sas += len(net.a.audits("ike.up")) + len(net.a.audits("ike.rekeyed"))
        month.peer_child_sas += len(net.a.audits("child.up")) + len(net.a.audits("child.rekeyed"))
    month.refused = len(rogue.b.audits("cert.rejected"))
    for merchant in CERT_MERCHANTS:
        cert = leaf(merchant, "ecdsa-p256", "Test CA")[1]
        month.peer_certs.add((cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                              format(cert.serial_number, "x")))
    rogue_cert = leaf(ROGUE, "ecdsa-p256", "Rogue CA")[1]
    month.peer_certs.add((rogue_cert.subject.rfc4514_string(), rogue_cert.issuer.rfc4514_string(),
                          format(rogue_cert.serial_number, "x")))

    def when(t: float) -> dt.datetime:
        return start + dt.timedelta(seconds=t - T0)

    items = [(when(t), e) for net in (*nets.values(), rogue) for t, e in net.stamped]
    items.append((start + dt.timedelta(minutes=5), AuditEvent(
        EventName.CONFIG_LOADED, reason="configuration gw.toml loaded", details={"file": "gw.toml"})))
    items.append((start + dt.timedelta(days=10, hours=7), AuditEvent(
        EventName.PEER_ADDED, reason="peer added by alice", connection="merchants",
        remote_id="m4.merchants.example", admin="alice", details={"remote_ts": "10.4.0.0/24",
                                                                  "ticket": "CHG-1042"})))
    gw_cert = leaf(GW_ID, "ecdsa-p384")[1]  # the gateway's certificate, renewed by ACME on day 14
    items.append((start + dt.timedelta(days=14, hours=3), AuditEvent(
        EventName.PKI_ISSUED, connection="merchants", reason="certificate renewed from ACME",
        cert_subject=gw_cert.subject.rfc4514_string(), cert_serial=format(gw_cert.serial_number, "x"),
        cert_issuer=gw_cert.issuer.rfc4514_string(),
        details={"source": "acme", "ca": "https://192.0.2.50:14000/dir", "renewal": True,
                 "not_before": gw_cert.not_valid_before_utc.isoformat(),
                 "not_after": gw_cert.not_valid_after_utc.isoformat(), "identifiers": GW_ID})))
    month.issued.add((gw_cert.subject.rfc4514_string(), gw_cert.issuer.rfc4514_string(),
                      format(gw_cert.serial_number, "x")))
    for day in range(0, days, 7):
        items.append((start + dt.timedelta(days=day, hours=9), AuditEvent(
            EventName.HSM_SIGN, details={"key": "pkcs11:token=gw;object=ike", "count": 12})))
    items.sort(key=lambda item: item[0])
    store = AuditStore(state_dir, now=start)
    for k in range(0, len(items), 200):
        store.append_batch([(e, t) for t, e in items[k:k + 200]])
    return store, month


def gateway_config(directory: Path, profile: str = "pci-dss-4") -> Path:
    """The gateway's configuration file (certificates relative to now) naming the suites of the month."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    root = CertificateAuthority.create_root("CN=Merchant CA", KeyKind.ECDSA_P384,
                                            not_after=now + dt.timedelta(days=400), now=now)
    gw = root.issue_leaf(f"CN={GW_ID}", sans=[f"dns:{GW_ID}"], key_kind="ecdsa-p384",
                         not_after=now + dt.timedelta(days=200), now=now)
    pki = directory / "pki"
    root.issued.write_pem(pki, "ca")
    gw.write_pem(pki, "gw")
    (directory / "psk.txt").write_text("0x" + "5e" * 32 + "\n")
    m1_ike, m1_esp = CERT_MERCHANTS["m1.merchants.example"]
    m2_ike, m2_esp = CERT_MERCHANTS["m2.merchants.example"]
    _m, l_ike, l_esp = PSK_MERCHANT
    text = f"""
[gateway]
profile = "{profile}"
state_dir = "state"
dataplane = "none"
listen = ["192.0.2.1"]

[authorities.merchants]
cacert = "pki/ca.crt"

[connections.merchants]
local_addrs = ["192.0.2.1"]
proposals = ["{m1_ike}", "{m2_ike}"]

[connections.merchants.local]
auth = "pubkey"
id = "{GW_ID}"
certs = ["pki/gw.crt"]
key = "pki/gw.key"

[connections.merchants.remote]
auth = "pubkey"
cacerts = ["merchants"]

[connections.merchants.children.net]
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]
esp_proposals = ["{m1_esp}", "{m2_esp}"]

[connections.legacy]
local_addrs = ["192.0.2.1"]
remote_addrs = ["198.51.100.1"]
proposals = ["{l_ike}"]

[connections.legacy.local]
auth = "psk"
id = "{GW_ID}"

[connections.legacy.remote]
auth = "psk"
id = "{PSK_MERCHANT[0]}"

[connections.legacy.children.net]
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.3.0.0/24"]
esp_proposals = ["{l_esp}"]

[secrets.ike.legacy]
ids = ["{PSK_MERCHANT[0]}", "{GW_ID}"]
secret_file = "psk.txt"
"""
    path = directory / "gw.toml"
    path.write_text(text)
    return path
