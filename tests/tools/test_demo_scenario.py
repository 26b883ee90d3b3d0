"""The demo's generated scenario: configs load and pass pci-dss-4, the PKI is what the demo claims, the
inventory binds each merchant to its own subnet, and the demo SIEM receives RFC 5425 frames over mTLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.audit.sinks.transport import TlsChannel, TlsTarget
from ikeguard.policy.loader import load_config
from ikeguard.policy.profile import load_profile
from ikeguard.policy.report import evaluate
from ikeguard.service.plan import build_plan
from ikeguard.tools.demo import siem
from ikeguard.tools.demo.scenario import (
    CHILD,
    CLAIM_CHILD,
    ESP_PROPOSAL,
    IKE_PROPOSAL,
    MERCHANT_A,
    MERCHANT_B,
    MERCHANT_C,
    PROCESSOR,
    Scenario,
    build_scenario,
)

# The SIEM test below does a real TLS handshake, which checks the 24-hour certificates against the real clock:
# the scenario is built at the time the suite runs (the demo itself does the same), never at a fixed date.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
pytestmark = pytest.mark.date_sensitive


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return build_scenario(NOW)


@pytest.fixture(scope="module")
def written(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo")
    return {gw.name: gw.write(root / gw.name) for gw in (*scenario.gateways, scenario.retired)}


@pytest.mark.parametrize("name", [PROCESSOR.name, MERCHANT_A.name, MERCHANT_B.name, MERCHANT_C.name])
def test_every_config_passes_pci_dss_4_except_rules_the_product_cannot_report_yet(
    written: dict[str, Path], name: str
) -> None:
    config = load_config(written[name])
    report = evaluate(config, load_profile("pci-dss-4"), now=NOW + dt.timedelta(minutes=1))
    assert report.profile.name == "pci-dss-4"
    assert report.by_status("fail") == []
    # Only "not implemented" rules may keep `check` from passing; none of them is a config problem.
    from ikeguard.policy.checks import NOT_IMPLEMENTED

    for result in report.by_status("not_implemented"):
        assert result.rule.check in NOT_IMPLEMENTED
    statuses = {r.rule.id: r.status for r in report.results}
    rules = [
        "audit.siem-sink",
        "revocation.configured",
        "crl.current",
        "pfs.required",
        "crypto.ike.encr",
        "crypto.esp.ke",
        "cert.key",
        "cert.chain",
    ]
    if name == PROCESSOR.name:  # the template connection and its inventory
        rules += ["seg.wildcard-fixed-ts", "seg.inventory-overlap"]
    for rule in rules:
        assert statuses[rule] == "pass", rule


def test_device_certificates_are_p384_short_lived_and_name_their_identity(scenario: Scenario) -> None:
    for gw in scenario.gateways:
        cert = x509.load_pem_x509_certificate(gw.files["pki/device.pem"])
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
        assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(hours=24)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [gw.site.identity]
        ca = x509.load_pem_x509_certificate(gw.files["pki/ca.pem"])
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)


def test_crl_is_signed_by_the_vpn_ca_and_lists_the_retired_device(scenario: Scenario) -> None:
    files = scenario.processor.files
    ca = x509.load_pem_x509_certificate(files["pki/ca.pem"])
    crl = x509.load_pem_x509_crl(files["pki/vpn.crl"])
    assert crl.issuer == ca.subject
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(scenario.revoked_serial) is not None
    for gw in scenario.gateways:
        device = x509.load_pem_x509_certificate(gw.files["pki/device.pem"])
        assert crl.get_revoked_certificate_by_serial_number(device.serial_number) is None
        assert gw.files["pki/vpn.crl"] == files["pki/vpn.crl"]
    assert 'crls = ["pki/vpn.crl"]' in scenario.processor.config
    # Merchant C's device is the revoked one, and it still holds the older CRL that does not list it.
    retired = scenario.retired.files
    assert x509.load_pem_x509_certificate(retired["pki/device.pem"]).serial_number == scenario.revoked_serial
    stale = x509.load_pem_x509_crl(retired["pki/vpn.crl"])
    assert stale.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert stale.get_revoked_certificate_by_serial_number(scenario.revoked_serial) is None
    number = x509.CRLNumber
    assert stale.extensions.get_extension_for_class(number).value.crl_number < (
        crl.extensions.get_extension_for_class(number).value.crl_number
    )


def test_keys_are_written_owner_only(written: dict[str, Path]) -> None:
    for config in written.values():
        for key in (config.parent / "pki").glob("*.key"):
            assert key.stat().st_mode & 0o777 == 0o600, key


def test_processor_plan_binds_each_merchant_to_its_own_subnet_only(written: dict[str, Path]) -> None:
    plan = build_plan(written[PROCESSOR.name], now=NOW + dt.timedelta(minutes=1))
    assert list(plan.connections) == ["merchants"]
    assert plan.dataplane == "userspace"
    assert [s.type for s in plan.audit_sinks] == ["syslog-tls"]
    for site in (MERCHANT_A, MERCHANT_B, MERCHANT_C):
        selectors = plan.selectors.selectors_for("merchants", site.identity)
        assert selectors is not None
        assert [(str(ts.start_address), str(ts.end_address)) for ts in selectors] == [
            (str(site.subnet.network_address), str(site.subnet.broadcast_address))
        ]
    assert plan.selectors.selectors_for("merchants", "merchant-d.merchants.processor.example") is None


def test_merchant_b_carries_a_claim_on_merchant_a_subnet_that_only_it_can_start(
    scenario: Scenario, written: dict[str, Path]
) -> None:
    plan = build_plan(written[MERCHANT_B.name], now=NOW + dt.timedelta(minutes=1))
    children = plan.config.model.connections["processor"].children
    assert children[CHILD].local_ts == [str(MERCHANT_B.subnet)]
    assert children[CLAIM_CHILD].local_ts == [str(MERCHANT_A.subnet)]
    assert children[CHILD].start_action == "start" and children[CLAIM_CHILD].start_action == "none"
    assert CLAIM_CHILD not in scenario.merchant_a.config
    for gw in scenario.gateways:
        assert f'proposals = ["{IKE_PROPOSAL}"]' in gw.config
        assert f'esp_proposals = ["{ESP_PROPOSAL}"]' in gw.config


# -- the demo SIEM ------------------------------------------------------------------------------------------


def _frames(data: bytes) -> list[bytes | None]:
    async def go() -> list[bytes | None]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        out: list[bytes | None] = []
        while True:
            frame = await siem.read_frame(reader)
            out.append(frame)
            if frame is None:
                return out

    return asyncio.run(go())


def test_read_frame_splits_octet_counted_messages() -> None:
    assert _frames(b"5 hello3 abc") == [b"hello", b"abc", None]
    assert _frames(b"") == [None]


@pytest.mark.parametrize(
    "data", [b"x5 hello", b"05 hello", b" hello", b"9999999 x", b"12", b"70000 " + b"a" * 10]
)
def test_read_frame_refuses_garbage(data: bytes) -> None:
    with pytest.raises((siem.FrameError, asyncio.IncompleteReadError)):
        _frames(data)


def test_siem_receives_over_mutual_tls_and_refuses_clients_without_a_certificate(
    scenario: Scenario, written: dict[str, Path], tmp_path: Path
) -> None:
    # Loopback only (network rule); the server certificate names 192.0.2.100, so the client checks that name.
    (tmp_path / "server.pem").write_bytes(scenario.siem.cert)
    (tmp_path / "server.key").write_bytes(scenario.siem.key)
    (tmp_path / "client-ca.pem").write_bytes(scenario.siem.client_ca)
    ctx = siem.server_context(tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "client-ca.pem")
    out_path = tmp_path / "received.jsonl"
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    async def start() -> asyncio.Server:
        receiver = siem.Receiver(out_path.open("a", encoding="utf-8"))
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0, ssl=ctx)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert ready.wait(5)
        pki = written[PROCESSOR.name].parent / "pki"
        target = TlsTarget(
            "127.0.0.1",
            port[0],
            pki / "siem-ca.pem",
            pki / "siem-client.pem",
            pki / "siem-client.key",
            server_name="192.0.2.100",
        )
        # A client without a certificate is refused: whatever it sends never reaches the store.
        without_cert = TlsTarget("127.0.0.1", port[0], pki / "siem-ca.pem", server_name="192.0.2.100")
        try:
            bare = TlsChannel(without_cert)
            bare.send(b"13 ike.up forged")
            bare.close()
        except (ssl.SSLError, OSError):
            pass  # TLS 1.2 fails in the handshake, TLS 1.3 after it
        channel = TlsChannel(target)
        stamp = NOW.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        message = b"<110>1 " + stamp + b" gw ikeguard 1 ts.rejected - ts.rejected failure"
        channel.send(str(len(message)).encode() + b" " + message)
        channel.close()
        lines: list[str] = []
        for _ in range(50):
            lines = out_path.read_text().splitlines() if out_path.exists() else []
            if lines:
                break
            threading.Event().wait(0.05)
        records = [json.loads(line) for line in lines]
        assert records == [
            {"client": PROCESSOR.identity, "msgid": "ts.rejected", "message": message.decode()}
        ]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
