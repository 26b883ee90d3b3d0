"""Day-one operations as a strongSwan operator expects them (issue 16), against `ikeguard run` and a real
strongSwan peer whose own `list-sas` is the judge:

1. `initiate` on a connection that is already up, or whose `start_action` retry is pending, reuses that IKE SA
   (strongSwan ends up with one IKE SA and one Child SA, as `swanctl --initiate` would leave it).
2. `terminate` of an IKE SA still in IKE_AUTH (strongSwan's answers dropped by nftables) is the operator's
   act: `admin.command` + `ike.down` with the admin reason, no `auth.failure`, no IKE_AUTH failure in the
   metrics, and no automatic retry.
3. `rekey --conn NAME` says which SAs it rekeyed (IKE or Child, unique ids, old and new SPIs: the new ones are
   strongSwan's); `--child` and `--ike` choose as `swanctl --rekey` does.
4. `reload` of a change that can apply at the next rekey (rekey_time, DPD, a proposal list that still allows
   what runs) touches no SA: same SPIs on strongSwan, no ping lost; `reload --json` says which way each went.
5. Defaults: no -c/--socket finds the gateway through the default config ($IKEGUARD_CONFIG, else
   /etc/ikeguard/gateway.toml); `audit verify` without the key on the host says to pass --key; `events` text
   lines carry the SPIs of rekeys; metrics show the CRL's nextUpdate and the peer certificate's expiry.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN, TestPki
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PSK = "0x5d1e8a3f7c2b9064e1d3a5c7b9f0e2d4"  # strongSwan's hex form; ikeguard reads it the same way
PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]


def _peer(strongswan_peer: PeerFactory, topo: Topology, *, start: bool = True) -> StrongSwanPeer:
    left, right = topo.left, topo.right
    conn = ConnectionConfig(
        name="ikg", local_addrs=[str(left.address)], remote_addrs=[str(right.address)],
        local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN), proposals=[IKE_PROPOSAL],
        children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL])])
    return strongswan_peer(left.namespace, "client", connections=[conn], start=start,
                           psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])


def _gateway(ikeguard_gateway: GatewayFactory, topo: Topology, **kwargs: Any) -> GatewayProcess:
    left, right = topo.left, topo.right
    config = GwConfig(str(right.address), str(left.address), GW_FQDN, CLIENT_FQDN, str(right.subnet),
                      str(left.subnet), psk=PSK, **kwargs)
    return ikeguard_gateway(right.namespace, "gw", config.text(), config.files())


def _installed(sas: list[dict[str, Any]]) -> bool:
    return len(sas) >= 1 and all(sa["state"] == "established" for sa in sas) and all(
        c["state"] == "installed" for sa in sas for c in sa["children"]) and bool(sas[0]["children"])


def _counts_stay(gw: GatewayProcess, client: StrongSwanPeer, seconds: float) -> None:
    """For ``seconds``: exactly one IKE SA with one installed Child SA on both sides (a rekeyed Child SA
    may linger while its DELETE is exchanged)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ours, theirs = gw.sas(), client.list_sas()
        assert len(ours) == 1 and [c["state"] for c in ours[0]["children"]].count("installed") == 1, ours
        assert len(theirs) == 1 and [c.state for c in theirs[0].children].count("INSTALLED") == 1, theirs
        time.sleep(0.3)


def test_initiate_reuses_an_established_ike_sa(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    client = _peer(strongswan_peer, topo)
    gw = _gateway(ikeguard_gateway, topo, start_action="start")
    up = gw.wait_sas(_installed, timeout=15, what="start_action brought ikg up")
    ss = client.wait_established("ikg", "net")

    result = gw.cli("initiate", "--conn", "ikg")
    assert result["reused"] is True
    assert result["ike_uniqueids"] == [up[0]["uniqueid"], up[0]["children"][0]["uniqueid"]]
    text = gw.cli("initiate", "--conn", "ikg", "--child", "net", json=False)
    assert text.startswith(f"ikg: IKE SA {up[0]['uniqueid']} established (already up") and "reused" in text
    _counts_stay(gw, client, 2.0)
    assert client.list_sas()[0].initiator_spi == ss.initiator_spi


def test_initiate_while_the_start_action_retry_is_pending(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    client = _peer(strongswan_peer, topo, start=False)  # not there yet: the gateway's attempts fail
    gw = _gateway(ikeguard_gateway, topo, start_action="start",
                  extra_gateway="initiate_retry_max = 1\nretransmit_tries = 0\nretransmit_timeout = 0.5")
    gw.wait_audit(lambda e: e["event"] in ("ike.failed", "auth.failure"), timeout=15,
                  what="a failed start_action attempt")
    client.start()
    result = gw.cli("initiate", "--conn", "ikg", "--timeout", "10")
    uid = result["ike_uniqueids"][0]
    gw.wait_sas(_installed, timeout=10, what="ikg up")
    _counts_stay(gw, client, 4.0)  # several retry periods (initiate_retry_max = 1 s)
    assert gw.sas()[0]["uniqueid"] == uid
    assert "reusing IKE SA" in gw.log() or result["reused"] is False


METRICS = "127.0.0.1:9469"


def _scrape(topo: Topology) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = topo.right.namespace.run("curl", "-sf", f"http://{METRICS}/metrics").stdout
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def _drop_ike_auth(topo: Topology) -> None:
    """strongSwan's host drops every IKE_AUTH request (exchange type 35, RFC 7296 §3.1) on 500 and 4500."""
    ns = topo.left.namespace
    ns.run("nft", "add table inet ikg16")
    ns.run("nft", "add chain inet ikg16 in { type filter hook input priority 0 ; }")
    ns.run("nft", "add rule inet ikg16 in udp dport 500 @th,208,8 35 drop")
    ns.run("nft", "add rule inet ikg16 in udp dport 4500 @th,240,8 35 drop")  # after the non-ESP marker


def test_admin_terminate_of_a_half_open_sa_is_no_auth_failure_and_no_retry(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    _drop_ike_auth(topo)
    client = _peer(strongswan_peer, topo)
    gw = _gateway(ikeguard_gateway, topo, start_action="start",
                  extra_gateway=f'initiate_retry_max = 1\nmetrics = "{METRICS}"')
    half = gw.wait_sas(lambda sas: len(sas) == 1 and sas[0]["state"] == "auth-sent", timeout=15,
                       what="the start_action attempt waiting in IKE_AUTH")
    assert len(client.list_sas()) == 1  # strongSwan holds the half-open SA from IKE_SA_INIT

    assert gw.cli("terminate", "--conn", "ikg") == {"terminated": 1}
    down = gw.wait_audit(lambda e: e["event"] == "ike.down" and e.get("ike_uniqueid") == half[0]["uniqueid"],
                         what="ike.down of the terminated SA")
    assert down["outcome"] == "success" and down["reason"] == "terminated by admin root"
    time.sleep(3.5)  # three retry periods (initiate_retry_max = 1 s): nothing starts again
    assert gw.sas() == []
    events = gw.audit_events()
    assert [e for e in events if e["event"] in ("auth.failure", "ike.failed")] == []
    commands = [e for e in events if e["event"] == "admin.command"]
    assert any(e["details"]["command"] == "terminate conn=ikg" and e["admin"] == "root" for e in commands)
    assert gw.log().count("initiating IKE SA") == 1
    samples = _scrape(topo)
    assert not [k for k in samples if k[0] == "ikeguard_ike_failures_total" and ("connection", "ikg") in k[1]]
    assert samples.get(("ikeguard_ike_exchanges_total", (("connection", "ikg"), ("exchange", "IKE_AUTH"),
                                                          ("outcome", "failure")))) is None


def test_rekey_says_which_sas_with_old_and_new_spis(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    client = _peer(strongswan_peer, topo)
    gw = _gateway(ikeguard_gateway, topo, start_action="start")
    sa = gw.wait_sas(_installed, timeout=15, what="ikg up")[0]
    kid = sa["children"][0]
    client.wait_established("ikg", "net")

    # --child: only the Child SA; the new SPIs are the ones strongSwan installed
    result = gw.cli("rekey", "--conn", "ikg", "--child", "net")
    assert result["rekeyed"] == 1 and len(result["sas"]) == 1
    entry = result["sas"][0]
    assert entry["type"] == "child" and entry["status"] == "rekeyed" and entry["child"] == "net"
    assert (entry["old_uniqueid"], entry["old_spi_in"], entry["old_spi_out"]) == (
        kid["uniqueid"], kid["spi_in"], kid["spi_out"])
    assert entry["new_uniqueid"] != kid["uniqueid"] and entry["new_spi_in"] != kid["spi_in"]
    ss = client.wait_for(lambda sas: len(sas) == 1 and any(
        f"{c.spi_out:08x}" == entry["new_spi_in"] and c.state == "INSTALLED" for c in sas[0].children),
        what="strongSwan's new Child SA")[0]
    assert any(f"{c.spi_in:08x}" == entry["new_spi_out"] for c in ss.children)
    assert ss.initiator_spi == int(sa["spi_i"], 16)  # the IKE SA was not rekeyed

    # no choice: the IKE SA (as swanctl --rekey --ike NAME); the text names it with both SPI pairs
    text = gw.cli("rekey", "--conn", "ikg", json=False)
    assert text.startswith(f"IKE SA {sa['uniqueid']} (ikg) rekeyed: SPIs {sa['spi_i']}_i {sa['spi_r']}_r -> "
                           "IKE SA "), text
    assert text.count("\n") == 1
    new_ike = gw.wait_sas(lambda s: _installed(s) and s[0]["spi_i"] != sa["spi_i"], what="new IKE SA")[0]
    assert f"SPIs {new_ike['spi_i']}_i {new_ike['spi_r']}_r" in text
    client.wait_for(lambda sas: len(sas) == 1 and f"{sas[0].initiator_spi:016x}" == new_ike["spi_i"],
                    what="strongSwan's rekeyed IKE SA")

    # --ike and --child together: both, each reported
    both = gw.cli("rekey", "--conn", "ikg", "--ike", "--child", "net")
    assert sorted(e["type"] for e in both["sas"]) == ["child", "ike"]
    assert all(e["status"] == "rekeyed" for e in both["sas"])
    ike_entry = next(e for e in both["sas"] if e["type"] == "ike")
    assert ike_entry["old_uniqueid"] == new_ike["uniqueid"]
    final = gw.wait_sas(lambda s: _installed(s) and s[0]["uniqueid"] == ike_entry["new_uniqueid"],
                        what="the IKE SA of the second rekey")[0]
    assert (final["spi_i"], final["spi_r"]) == (ike_entry["new_spi_i"], ike_entry["new_spi_r"])
    _counts_stay(gw, client, 1.0)


def test_reload_of_a_lifetime_change_keeps_the_sas_and_loses_no_ping(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    client = _peer(strongswan_peer, topo)
    config = GwConfig(str(right.address), str(left.address), GW_FQDN, CLIENT_FQDN, str(right.subnet),
                      str(left.subnet), psk=PSK, dataplane="userspace", start_action="start")
    gw = ikeguard_gateway(right.namespace, "gw", config.text(), config.files())
    before = gw.wait_sas(_installed, timeout=15, what="ikg up")[0]
    ss_before = client.wait_established("ikg", "net")

    ping = left.namespace.popen(["ping", "-n", "-i", "0.1", "-c", "50", "-W", "2", "-I",
                                 str(left.subnet_address), str(right.subnet_address)],
                                stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        config.extra_connection = 'rekey_time = "2h"\nrand_time = "5m"'
        config.dpd_delay = "30s"
        config.extra_child = 'rekey_time = "50m"\nlife_time = "1h"'
        # a second ESP proposal: the running suite is still allowed
        config.esp_proposal = "aes256gcm16-ecp384\", \"chacha20poly1305-x25519"
        gw.update_config(config.text())
        result = gw.cli("reload", "--wait")
        out, _ = ping.communicate(timeout=30)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait(5)
    assert result["rekeyed_next"] == ["ikg"] and result["changed"] == [] and result["to_restart"] == 0
    change = result["changes"]["ikg"]
    assert change["applies"] == "next rekey"
    assert set(change["keys"]) == {"rekey_time", "rand_time", "dpd_delay", "children.net.rekey_time",
                                   "children.net.life_time", "children.net.esp_proposals"}
    counts = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert counts is not None, out
    sent, received = map(int, counts.groups())
    assert sent == received == 50, out

    after = gw.sas()
    assert len(after) == 1 and after[0]["uniqueid"] == before["uniqueid"]
    assert (after[0]["spi_i"], after[0]["spi_r"]) == (before["spi_i"], before["spi_r"])
    assert after[0]["children"][0]["spi_in"] == before["children"][0]["spi_in"]
    ss_after = client.list_sas()
    assert len(ss_after) == 1 and ss_after[0].initiator_spi == ss_before.initiator_spi
    assert ss_after[0].child("net").spi_in == ss_before.child("net").spi_in
    text = gw.cli("reload", json=False)
    assert text.startswith("configuration reloaded: kept ikg;")
    downs = [e for e in gw.audit_events() if e["event"] in ("ike.down", "child.down")]
    assert downs == []

    # a selector change re-establishes, make-before-break, and says so
    assert str(right.subnet) == "198.51.100.0/25"
    config.local_ts = "198.51.100.0/26"
    gw.update_config(config.text())
    changed = gw.cli("reload", "--wait")
    assert changed["changed"] == ["ikg"] and changed["changes"]["ikg"]["applies"] == "re-establish"
    assert changed["changes"]["ikg"]["how"] == "make-before-break"
    assert "children.net.local_ts" in changed["changes"]["ikg"]["keys"]
    gw.wait_sas(lambda s: _installed(s) and s[0]["uniqueid"] != before["uniqueid"]
                and s[0]["children"][0]["local_ts"] == [config.local_ts], timeout=15, what="re-established")


def _lines_until(proc: subprocess.Popen[str], needle: Callable[[str], bool], timeout: float) -> str:
    """Read ``proc``'s stdout until a line satisfies ``needle``; returns that line."""
    assert proc.stdout is not None
    fd, buffer, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if needle(line.decode()):
                return line.decode()
    raise AssertionError(f"no matching line within {timeout} s")


def test_defaults_events_spis_verify_key_and_metrics(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    test_pki: TestPki,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    client = strongswan_peer(left.namespace, "client", connections=[ConnectionConfig(
        name="ikg", local_addrs=[str(left.address)], remote_addrs=[str(right.address)],
        proposals=[IKE_PROPOSAL], local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
        remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]),
        children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL])])],
        certs={"client": test_pki.client}, cacerts={"ca": test_pki.ca.cert})
    now = dt.datetime.now(dt.UTC)
    crl = test_pki.ca.crl(next_update=now + dt.timedelta(days=3))
    from cryptography.hazmat.primitives.serialization import Encoding

    config = GwConfig(str(right.address), str(left.address), GW_FQDN, CLIENT_FQDN, str(right.subnet),
                      str(left.subnet), certs=("pki/gw.pem", "pki/gw.key", "lab"), start_action="start",
                      extra_gateway=f'metrics = "{METRICS}"\n\n[authorities.lab]\ncacert = "pki/ca.pem"\n'
                                    'crls = ["pki/ca.crl"]')
    gw = ikeguard_gateway(right.namespace, "gw", config.text(), {
        "pki/ca.pem": test_pki.ca.issued.cert_pem(), "pki/gw.pem": test_pki.gw.cert_pem(),
        "pki/gw.key": test_pki.gw.key_pem(), "pki/ca.crl": crl.public_bytes(Encoding.PEM)})
    sa = gw.wait_sas(_installed, timeout=15, what="ikg up")[0]
    client.wait_established("ikg", "net")
    env = {**os.environ, "IKEGUARD_CONFIG": str(gw.workdir / "gateway.toml")}

    # no -c / --socket: the default config names the socket
    plain = subprocess.run([gw.python, "-m", "ikeguard", "sas", "--json"], env=env, capture_output=True,
                           text=True, timeout=30, check=False)
    assert plain.returncode == 0, plain.stderr
    assert f'"uniqueid": {sa["uniqueid"]}' in plain.stdout
    if not Path("/etc/ikeguard/gateway.toml").exists():
        bare = {k: v for k, v in os.environ.items() if k != "IKEGUARD_CONFIG"}
        missing = subprocess.run([gw.python, "-m", "ikeguard", "sas"], env=bare, capture_output=True,
                                 text=True, timeout=30, check=False)
        assert missing.returncode == 2 and "/etc/ikeguard/gateway.toml" in missing.stderr

    # events (text): rekeys show their SPIs
    events = subprocess.Popen([gw.python, "-m", "ikeguard", "events"], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        gw.wait_audit(lambda e: e["event"] == "admin.command" and e["details"]["command"] == "events",
                      what="events stream open")
        kid = sa["children"][0]
        child = gw.cli("rekey", "--conn", "ikg", "--child", "net")["sas"][0]
        line = _lines_until(events, lambda text: " child.rekeyed " in text, 10)
        assert f"SPI in {kid['spi_in']} -> {child['new_spi_in']}" in line and not line.endswith(": ")
        ike = gw.cli("rekey", "--conn", "ikg")["sas"][0]
        line = _lines_until(events, lambda text: " ike.rekeyed " in text, 10)
        assert f"SPIs {ike['new_spi_i']}_i {ike['new_spi_r']}_r" in line
        assert f"replaces IKE SA {sa['uniqueid']}" in line
    finally:
        events.terminate()
        events.wait(5)

    # metrics: the CRL's nextUpdate and the peer's certificate expiry
    samples = _scrape(topo)
    issuer = test_pki.ca.cert.subject.rfc4514_string()
    next_update = samples[("ikeguard_crl_next_update_seconds",
                           (("authority", "lab"), ("file", "pki/ca.crl"), ("issuer", issuer)))]
    assert abs(next_update - (crl.next_update_utc - dt.datetime.now(dt.UTC)).total_seconds()) < 120
    peer = samples[("ikeguard_certificate_expiry_seconds", (
        ("kind", "peer"), ("name", "ikg"), ("subject", test_pki.client.cert.subject.rfc4514_string())))]
    expected = (test_pki.client.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds()
    assert abs(peer - expected) < 120

    # audit verify: the key moved off the host -> told to pass --key; with --key it verifies
    key = gw.state_dir / "audit-verification.key"
    kept = gw.workdir / "offhost-verification.key"
    key.rename(kept)
    no_key = subprocess.run([gw.python, "-m", "ikeguard", "audit", "verify"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert no_key.returncode == 2 and "--key" in no_key.stderr and "moved off this host" in no_key.stderr
    ok = subprocess.run([gw.python, "-m", "ikeguard", "audit", "verify", "--key", str(kept)], env=env,
                        capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
