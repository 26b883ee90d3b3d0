"""Negative cases against `ikeguard run` (issue 6 item 7): strongSwan peers that must be refused, each with
the RFC 7296 notify strongSwan receives, an audit record with the reason, and a valid peer served meanwhile.

Topology (tests/harness/multi_site.py): the ikeguard responder 192.0.2.1 and two strongSwan sites in their own
namespaces: ``bad`` (192.0.2.21) keeps failing in a loop while ``good`` (192.0.2.22) establishes; the good
peer's setup time is measured while the bad one is being refused and must stay short (no head-of-line
blocking, no global back-off after failures).

Cases (RFC 7296 §2.21 error notifies): wrong PSK, untrusted CA, expired certificate, identity not in the
certificate (AUTHENTICATION_FAILED, §2.15 / RFC 4945), no common proposal (NO_PROPOSAL_CHOSEN, §2.7); and
under profile pci-dss-4 an initiator offering only forbidden suites gets NO_PROPOSAL_CHOSEN whether or not
the gateway's config lists them (a waived legacy connection lists them: the waiver makes the config loadable,
never the suite negotiable), while a mixed offer (weak first, strong second) gets the strongest allowed suite.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import CertificateAuthority, IssuedCertificate
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab
from tests.harness.ikeguard_conf import (
    IkgAuthority,
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    secret_files,
)
from tests.harness.multi_site import (
    GATEWAY_ADDRESS,
    GATEWAY_SUBNET,
    MultiSite,
    SiteHost,
    SiteSpec,
    build_multi_site,
)
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]

IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"
GW_ID = "gw.clients.example"
GOOD_ID = "good.clients.example"
BAD_ID = "bad.clients.example"
PSK_ID = "psk.clients.example"
PSK = "negative-case-psk-4c1d9e7f2a6b3085"
SITES = (
    SiteSpec("bad", BAD_ID, "192.0.2.21", "198.51.100.128/26"),
    SiteSpec("good", GOOD_ID, "192.0.2.22", "198.51.100.192/26"),
)
GOOD_SETUP_LIMIT_S = 3.0  # the valid peer's IKE_SA_INIT + IKE_AUTH while the bad one is being refused
AUTH_FAILED = "received AUTHENTICATION_FAILED notify error"
NO_PROPOSAL = "received NO_PROPOSAL_CHOSEN notify error"


# -- configuration ------------------------------------------------------------------------------------------
def _gw_connection(name: str, remote: IkgRemote, remote_ts: str, *, psk: bool = False,
                   proposals: tuple[str, ...] = (IKE_PROPOSAL,), esp: tuple[str, ...] = (ESP_PROPOSAL,),
                   **settings: Any) -> IkgConnection:
    local = (IkgLocal("psk", GW_ID) if psk
             else IkgLocal("pubkey", GW_ID, certs=["pki/gw.pem"], key="pki/gw.key"))
    return IkgConnection(
        name=name, local_addrs=[GATEWAY_ADDRESS], remote_addrs=["%any"], local=local, remote=remote,
        children=[IkgChild("net", local_ts=[GATEWAY_SUBNET], remote_ts=[remote_ts], esp_proposals=list(esp),
                           **settings.pop("child", {}))],
        proposals=list(proposals), **settings,
    )


def _baseline_config(net: MultiSite) -> str:
    """Three exact-identity connections: the good peer, a certificate peer and a PSK peer (both for `bad`)."""
    secret = IkgSecret("psk-peer", [PSK_ID, GW_ID], PSK)
    return gateway_toml(
        [
            _gw_connection("good", IkgRemote("pubkey", GOOD_ID, cacerts=["lab"], revocation="relaxed"),
                           net["good"].subnet),
            _gw_connection("certs", IkgRemote("pubkey", BAD_ID, cacerts=["lab"], revocation="relaxed"),
                           net["bad"].subnet),
            _gw_connection("psk", IkgRemote("psk", PSK_ID), net["bad"].subnet, psk=True),
        ],
        listen=[GATEWAY_ADDRESS],
        authorities=[IkgAuthority("lab", "pki/ca.pem")],
        secrets=[secret],
    )


def _strongswan_conn(site: SiteHost, local: AuthConfig, remote: AuthConfig, *,
                     proposals: tuple[str, ...] = (IKE_PROPOSAL,),
                     esp: tuple[str, ...] = (ESP_PROPOSAL,)) -> ConnectionConfig:
    return ConnectionConfig(
        name="ikg", local_addrs=[site.address], remote_addrs=[GATEWAY_ADDRESS], local=local, remote=remote,
        proposals=list(proposals),
        children=[ChildConfig("net", local_ts=[site.subnet], remote_ts=[GATEWAY_SUBNET],
                              esp_proposals=list(esp))],
    )


@dataclass
class Pki:
    """The lab CA with the gateway's and the good peer's certificates (ECDSA P-384)."""

    ca: CertificateAuthority
    gw: IssuedCertificate
    good: IssuedCertificate

    def gateway_files(self) -> dict[str, bytes | str]:
        return {"pki/ca.pem": self.ca.issued.cert_pem(), "pki/gw.pem": self.gw.cert_pem(),
                "pki/gw.key": self.gw.key_pem()}


@pytest.fixture
def pki(cert_factory: CertificateAuthority) -> Pki:
    return Pki(cert_factory, cert_factory.issue_leaf(f"CN={GW_ID}", sans=[GW_ID]),
               cert_factory.issue_leaf(f"CN={GOOD_ID}", sans=[GOOD_ID]))


# -- the concurrent run -------------------------------------------------------------------------------------
@dataclass
class BadLoop:
    """Initiates the bad peer again and again in a thread until told to stop; records every outcome."""

    peer: StrongSwanPeer
    stop: threading.Event = field(default_factory=threading.Event)
    attempts: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, "failed"/"up")
    thread: threading.Thread | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                self.peer.initiate(child="net", ike="ikg", timeout=4)
                outcome = "up"
            except StrongSwanError:
                outcome = "failed"
            self.attempts.append((began, time.monotonic(), outcome))

    def __enter__(self) -> BadLoop:
        self.thread = threading.Thread(target=self.run, name="bad-peer", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=15)


def _serve_good_while_bad_fails(bad: StrongSwanPeer, good: StrongSwanPeer,
                                needle: str) -> tuple[float, BadLoop]:
    """Start the bad loop, wait for its first refusal (`needle` in charon's log), then bring the good peer up
    while the loop goes on; returns the good peer's setup time. Asserts that a refused attempt overlapped it
    and that the bad peer kept being refused afterwards."""
    with BadLoop(bad) as loop:
        bad.wait_for_log(needle, timeout=10)
        began = time.monotonic()
        good.initiate(child="net", ike="ikg", timeout=10)
        good_up = time.monotonic()
        deadline = good_up + 10
        while not any(start > good_up for start, _, _ in loop.attempts) and time.monotonic() < deadline:
            time.sleep(0.05)
    overlapping = [a for a in loop.attempts if a[0] <= good_up and a[1] >= began]
    assert overlapping, f"no bad attempt overlapped the good setup: {loop.attempts} vs {began}..{good_up}"
    assert any(start > good_up for start, _, _ in loop.attempts), "the bad peer stopped trying"
    assert bad.log().count(needle) >= 2
    return good_up - began, loop


@dataclass(frozen=True)
class Case:
    """One misbehaving peer: its strongSwan side, what strongSwan must log, what ikeguard must audit."""

    local: Callable[[Pki, CertificateAuthority], tuple[AuthConfig, dict[str, IssuedCertificate]]]
    remote: AuthConfig
    strongswan_log: str
    event: str
    reason: str
    proposals: tuple[str, ...] = (IKE_PROPOSAL,)
    psk: str | None = None


def _cert(leaf: Callable[[Pki, CertificateAuthority], IssuedCertificate], ident: str = BAD_ID) -> Callable[
        [Pki, CertificateAuthority], tuple[AuthConfig, dict[str, IssuedCertificate]]]:
    return lambda pki, rogue: (AuthConfig("pubkey", ident, certs=["bad.pem"]), {"bad": leaf(pki, rogue)})


_NOW = dt.datetime.now(dt.UTC)
GW_PUBKEY = AuthConfig("pubkey", GW_ID, cacerts=["ca.pem"])
GOOD_AUTH = AuthConfig("pubkey", GOOD_ID, certs=["good.pem"])
CASES = {
    "wrong_psk": Case(
        lambda pki, rogue: (AuthConfig("psk", PSK_ID), {}), AuthConfig("psk", GW_ID), AUTH_FAILED,
        "auth.failure", "pre-shared key mismatch", psk="not-the-gateways-psk-0123456789abcdef"),
    "untrusted_ca": Case(
        _cert(lambda pki, rogue: rogue.issue_leaf(f"CN={BAD_ID}", sans=[BAD_ID])), GW_PUBKEY, AUTH_FAILED,
        "cert.rejected", "unknown_issuer"),
    "expired_certificate": Case(
        _cert(lambda pki, rogue: pki.ca.issue_leaf(
            f"CN={BAD_ID}", sans=[BAD_ID], not_before=_NOW - dt.timedelta(days=30),
            not_after=_NOW - dt.timedelta(days=1))), GW_PUBKEY, AUTH_FAILED, "cert.rejected", "expired"),
    "id_not_in_certificate": Case(
        _cert(lambda pki, rogue: pki.ca.issue_leaf("CN=other.clients.example",
                                                   sans=["other.clients.example"])),
        GW_PUBKEY, AUTH_FAILED, "cert.rejected", "name_mismatch"),
    "no_common_proposal": Case(
        _cert(lambda pki, rogue: pki.ca.issue_leaf(f"CN={BAD_ID}", sans=[BAD_ID])), GW_PUBKEY, NO_PROPOSAL,
        "proposal.rejected", "no acceptable IKE proposal", proposals=("aes128gcm16-prfsha256-ecp256",)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_peer_refused_with_notify_and_audit_while_good_peer_is_served(
    name: str, netns_lab: NetnsLab, strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory, pki: Pki,
) -> None:
    case = CASES[name]
    net = build_multi_site(netns_lab, SITES, gateway_identity=GW_ID)
    files = {**pki.gateway_files(), **secret_files([IkgSecret("psk-peer", [PSK_ID, GW_ID], PSK)])}
    gw = ikeguard_gateway(net.gateway.namespace, "gw", _baseline_config(net), files)
    rogue = CertificateAuthority.create_root("CN=rogue root CA,O=not the lab")
    local, certs = case.local(pki, rogue)
    bad = strongswan_peer(
        net["bad"].namespace, "bad",
        connections=[_strongswan_conn(net["bad"], local, case.remote, proposals=case.proposals)],
        certs=certs, cacerts={"ca": pki.ca.cert},
        psks=[PskSecret([PSK_ID, GW_ID], case.psk)] if case.psk else [])
    good = strongswan_peer(
        net["good"].namespace, "good",
        connections=[_strongswan_conn(net["good"], GOOD_AUTH, GW_PUBKEY)],
        certs={"good": pki.good}, cacerts={"ca": pki.ca.cert})

    setup, loop = _serve_good_while_bad_fails(bad, good, case.strongswan_log)

    # strongSwan (the judge): the bad peer got the RFC 7296 notify every time; the good one is up.
    assert loop.attempts and all(outcome == "failed" for _, _, outcome in loop.attempts), loop.attempts
    assert len(loop.attempts) >= 2
    assert not any(sa.state == "ESTABLISHED" for sa in bad.list_sas())
    assert setup < GOOD_SETUP_LIMIT_S, f"good peer needed {setup:.2f}s while the bad one was refused"
    sa = good.wait_established("ikg", "net")
    assert sa.remote_id == GW_ID and sa.child("net").local_ts == (net["good"].subnet,)
    gw_sa = gw.wait_sas(lambda sas: any(s["remote_id"] == GOOD_ID for s in sas), what="good peer's SA")
    assert [s["remote_id"] for s in gw_sa] == [GOOD_ID]

    # ikeguard's audit: one record per refusal, with the reason; the good peer's success is there too
    # (the trail is written by its own process, committed in groups: wait for the records to be on disk).
    gw.wait_audit(lambda e: e["event"] == "auth.success" and e.get("remote_id") == GOOD_ID,
                  what="the good peer's auth.success")
    refusals = [e for e in gw.audit_events()
                if e["event"] == case.event and e.get("remote_addr", "").startswith(net["bad"].address)]
    assert refusals, f"no {case.event} from {net['bad'].address}: {[e['event'] for e in gw.audit_events()]}"
    assert all(case.reason in e["reason"] and e["outcome"] == "failure" for e in refusals), refusals
    assert any(e["event"] == "auth.success" and e.get("remote_id") == GOOD_ID for e in gw.audit_events())
    if case.event == "proposal.rejected":
        assert "AES_GCM_16" in refusals[0]["proposal"] and "ECP_256" in refusals[0]["proposal"], refusals[0]



# -- profile pci-dss-4: forbidden suites ---------------------------------------------------------------------
WEAK_IKE = ("3des-sha1-modp1024", "aes128-sha1-modp2048")
WEAK_ESP = "aes128-sha1-modp2048"
# The good peer's offer: a forbidden suite first, then two allowed ones, the weaker allowed one first.
MIXED_IKE = ("aes128-sha1-modp2048", "aes128gcm16-prfsha256-ecp256", "aes256gcm16-prfsha384-ecp384")
MIXED_ESP = ("aes128-sha1", "aes128gcm16", "aes256gcm16")
STRICT_IKE = ("aes128gcm16-prfsha256-ecp256", "aes256gcm16-prfsha384-ecp384")
STRICT_ESP = ("aes128gcm16-ecp256", "aes256gcm16-ecp384")
LEGACY_RULES = ("crypto.ike.encr", "crypto.ike.prf", "crypto.ike.integ", "crypto.ike.ke", "crypto.esp.integ")
PCI_TIMERS: dict[str, Any] = {"rekey_time": "4h", "reauth_time": "1d", "rand_time": "10m", "dpd_delay": "30s",
                              "child": {"rekey_time": "1h", "life_time": "90m", "rand_time": "5m"}}


def _waiver(rule: str, scope: str) -> dict[str, str | int | float | bool]:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m-%d")
    return {"rule": rule, "scope": scope, "reason": "interop test: no SIEM / legacy terminal", "owner": "qa",
            "ticket": "TEST-1", "expires": expires}


def _pci_config(net: MultiSite, *, list_weak: bool) -> str:
    """pci-dss-4; with `list_weak` a waived connection `legacy` lists exactly the forbidden suites."""
    strict = IkgRemote("pubkey", GOOD_ID, cacerts=["lab"], revocation="strict")
    connections = [_gw_connection("strict", strict, net["good"].subnet, proposals=STRICT_IKE, esp=STRICT_ESP,
                                  **PCI_TIMERS)]
    waivers = [_waiver("audit.siem-sink", "audit.sinks"), _waiver("audit.siem-delivery", "audit.sinks")]
    if list_weak:
        legacy = IkgRemote("pubkey", BAD_ID, cacerts=["lab"], revocation="strict")
        connections.append(_gw_connection("legacy", legacy, net["bad"].subnet, proposals=WEAK_IKE,
                                          esp=(WEAK_ESP,), **PCI_TIMERS))
        waivers += [_waiver(rule, "connections.legacy") for rule in LEGACY_RULES]
    authority = IkgAuthority("lab", "pki/ca.pem", crls=["pki/lab.crl"])
    return gateway_toml(connections, profile="pci-dss-4", listen=[GATEWAY_ADDRESS], authorities=[authority],
                        waivers=waivers)


@pytest.mark.parametrize("list_weak", [False, True], ids=["weak_not_configured", "weak_configured_waived"])
def test_forbidden_suites_get_no_proposal_chosen_and_mixed_offer_gets_the_strongest(
    list_weak: bool, netns_lab: NetnsLab, strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    pki: Pki,
) -> None:
    net = build_multi_site(netns_lab, SITES, gateway_identity=GW_ID)
    crl = pki.ca.crl().public_bytes(serialization.Encoding.PEM)
    gw = ikeguard_gateway(net.gateway.namespace, "gw", _pci_config(net, list_weak=list_weak),
                          {**pki.gateway_files(), "pki/lab.crl": crl})
    bad_cert = pki.ca.issue_leaf(f"CN={BAD_ID}", sans=[BAD_ID])
    bad = strongswan_peer(
        net["bad"].namespace, "bad",
        connections=[_strongswan_conn(net["bad"], AuthConfig("pubkey", BAD_ID, certs=["bad.pem"]), GW_PUBKEY,
                                      proposals=WEAK_IKE, esp=(WEAK_ESP,))],
        certs={"bad": bad_cert}, cacerts={"ca": pki.ca.cert})
    good = strongswan_peer(
        net["good"].namespace, "good",
        connections=[_strongswan_conn(net["good"], GOOD_AUTH, GW_PUBKEY, proposals=MIXED_IKE, esp=MIXED_ESP)],
        certs={"good": pki.good}, cacerts={"ca": pki.ca.cert})

    setup, loop = _serve_good_while_bad_fails(bad, good, NO_PROPOSAL)

    # Only forbidden suites: NO_PROPOSAL_CHOSEN every time, and a record naming what was offered.
    assert loop.attempts and all(outcome == "failed" for _, _, outcome in loop.attempts), loop.attempts
    assert not any(sa.state == "ESTABLISHED" for sa in bad.list_sas())
    gw.wait_audit(lambda e: e["event"] == "proposal.rejected", what="proposal.rejected")
    rejected = [e for e in gw.audit_events() if e["event"] == "proposal.rejected"
                and e.get("remote_addr", "").startswith(net["bad"].address)]
    assert rejected and all(e["outcome"] == "failure" for e in rejected)
    offered = rejected[0]["proposal"]
    assert "3DES" in offered and "MODP_1024" in offered and "SHA1" in offered, offered
    assert "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048" in offered, offered

    # Mixed offer (forbidden first, weaker allowed second, strongest third): the strongest allowed suite.
    assert setup < GOOD_SETUP_LIMIT_S, f"good peer needed {setup:.2f}s while the bad one was refused"
    sa = good.wait_established("ikg", "net")
    assert sa.proposal == "aes256gcm16-prfsha384-ecp384", sa
    assert sa.child("net").proposal == "aes256gcm16", sa.child("net")
    gw_sa = gw.wait_sas(lambda sas: len(sas) == 1, what="the good peer's SA")[0]
    assert gw_sa["remote_id"] == GOOD_ID and gw_sa["proposal"] == "aes256gcm16-prfsha384-ecp384"
    assert gw_sa["children"][0]["proposal"].startswith("aes256gcm16")

    # With list_weak the config really lists the forbidden suites: it loads only through audited waivers.
    gw.wait_audit(lambda e: e["event"] == "waiver.applied", what="waiver.applied records")
    waived = [(e["details"]["rule"], e["details"]["scope"]) for e in gw.audit_events()
              if e["event"] == "waiver.applied"]
    legacy_rules = {rule for rule, scope in waived if scope.startswith("connections.legacy.")}
    assert legacy_rules == (set(LEGACY_RULES) if list_weak else set()), waived
    assert ("audit.siem-sink", "audit.sinks") in waived
    assert [c["name"] for c in gw.cli("conns")] == (["strict", "legacy"] if list_weak else ["strict"])
