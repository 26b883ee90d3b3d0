"""Issue 13 item 4: `ikeguard run` as initiator refuses the responder's authentication (a strongSwan whose
certificate comes from a CA ikeguard does not trust, or which authenticates as another identity).

- RFC 7296 §2.21.2: ikeguard tells strongSwan in a separate INFORMATIONAL exchange (AUTHENTICATION_FAILED,
  protected by the new IKE SA's keys), so strongSwan deletes the IKE SA and Child SA it had just set up:
  `swanctl --list-sas` is empty within a second of each failure, not only when the next attempt arrives;
- the automatic retries (`start_action = "start"`) back off 1, 2, 4 ... s up to `[gateway]
  initiate_retry_max` (4 s here), seen from strongSwan's side (its log, with milliseconds);
- the audit trail holds the first failure in full and one `auth.failure` summary counting the repeats, not
  one record per attempt, whether the series ends because the peer is fixed or because the gateway stops.

Certificates are made with strongSwan's `pki` and the strongSwan side is an ordinary swanctl.conf.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import IkgAuthority, IkgLocal, IkgRemote
from tests.harness.interop_pair import (
    CHILD,
    CONN,
    GatewayFactory,
    PeerFactory,
    address,
    ikeguard_side,
    strongswan_side,
    wait_one_sa,
)
from tests.harness.pki_tool import PkiTool, ToolCert
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

CEILING = 4  # [gateway] initiate_retry_max for these tests: gaps 1, 2, 4, 4, ...
WATCH = 13.0  # seconds of failing attempts observed: attempts at ~0, 1, 3, 7, 11 s
ROGUE_ID = "rogue.ss-lab.example"
# strongSwan's log (filelog with time_add_ms): "Dec  3 08:42:03.123 ..."
_STAMP = re.compile(r"^(\w{3}\s+\d+ \d\d:\d\d:\d\d\.\d{3}) ")


def _stamp(line: str) -> float | None:
    match = _STAMP.match(line)
    if match is None:
        return None
    parsed = dt.datetime.strptime(f"2000 {match.group(1)}", "%Y %b %d %H:%M:%S.%f")
    return parsed.timestamp()  # only differences are used (the year is irrelevant)


def _times(log: str, needle: str) -> list[float]:
    """Timestamps of the log lines containing ``needle``, in order."""
    out = []
    for line in log.splitlines():
        if needle in line:
            stamp = _stamp(line)
            if stamp is not None:
                out.append(stamp)
    return out


def _per_sa(log: str, needle: str) -> dict[str, float]:
    """strongSwan's IKE SA number (``<ikg|N>``) -> time of its first log line containing ``needle``."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        tag = re.search(r"<ikg\|(\d+)>", line)
        stamp = _stamp(line)
        if needle in line and tag is not None and stamp is not None:
            out.setdefault(tag.group(1), stamp)
    return out


def _setup(refusal: str, tmp_path: Path, netns_topology: Callable[..., Topology],
           strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
           ) -> tuple[StrongSwanPeer, GatewayProcess, PkiTool, ToolCert]:
    """strongSwan responder whose authentication ikeguard refuses; ikeguard initiates at start."""
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=ss-lab, CN=ss-lab Root CA")
    gw_cert = tool.issue("gw", ca, f"C=US, O=ss-lab, CN={GW_FQDN}", sans=[GW_FQDN])
    if refusal == "untrusted-ca":  # a CA of its own that ikeguard's connection does not name
        rogue = tool.self_signed_ca("rogue", "C=US, O=elsewhere, CN=elsewhere CA")
        ss_id = CLIENT_FQDN
        ss_cert = tool.issue("client", rogue, f"C=US, O=elsewhere, CN={CLIENT_FQDN}", sans=[CLIENT_FQDN])
        ss_chain = ss_cert.issued(rogue)
    else:  # trusted CA, but the responder authenticates as an identity ikeguard's connection does not expect
        ss_id = ROGUE_ID
        ss_cert = tool.issue("client", ca, f"C=US, O=ss-lab, CN={ROGUE_ID}", sans=[ROGUE_ID])
        ss_chain = ss_cert.issued(ca)
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    peer = strongswan_side(strongswan_peer, left, right, remote_addr="%any", name="strongswan",
                           local=AuthConfig("pubkey", ss_id, certs=["client.pem"]),
                           remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]),
                           certs={"client": ss_chain}, cacerts={"ca": ca.cert},
                           charon_options={"filelog.ikg.time_add_ms": True})
    gw = ikeguard_side(ikeguard_gateway, right, left, local_addrs=[address(right)],
                       local=IkgLocal("pubkey", GW_FQDN, certs=["pki/gw.pem"], key="pki/gw.key"),
                       remote=IkgRemote("pubkey", CLIENT_FQDN, cacerts=["lab"], revocation="relaxed"),
                       authorities=[IkgAuthority("lab", cacert="pki/ca.pem")],
                       child={"start_action": "start"}, gateway_keys={"initiate_retry_max": CEILING},
                       files={"pki/gw.pem": gw_cert.cert_pem(), "pki/gw.key": gw_cert.key_pem(),
                              "pki/ca.pem": ca.cert_pem()}, name="gw")
    return peer, gw, tool, ca


def _watch(peer: StrongSwanPeer, seconds: float) -> dict[int, tuple[float, float]]:
    """Poll strongSwan's IKE SAs for ``seconds``: uniqueid -> (first, last) time it was listed."""
    seen: dict[int, tuple[float, float]] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic()
        for sa in peer.list_sas():
            first, _ = seen.get(sa.uniqueid, (now, now))
            seen[sa.uniqueid] = (first, now)
        time.sleep(0.05)
    return seen


def _check_refused_and_backed_off(peer: StrongSwanPeer) -> int:
    """strongSwan's view of the failing attempts: each IKE SA it set up was deleted at once on ikeguard's
    AUTHENTICATION_FAILED; the attempts came 1, 2, 4, 4 s apart. Returns the number of attempts."""
    lived = _watch(peer, WATCH)
    log = peer.log()
    attempts = _times(log, "parsed IKE_SA_INIT request 0")
    established = _per_sa(log, "established between")
    told = _per_sa(log, "parsed INFORMATIONAL request 2 [ N(AUTH_FAILED) ]")
    deleted = _per_sa(log, "IKE_SA deleted")
    assert len(attempts) >= 4, log[-3000:]
    # every attempt got as far as strongSwan's ESTABLISHED IKE SA (ikeguard refuses only afterwards); ikeguard
    # told strongSwan each time, which deleted the SA within a second (an attempt still in flight aside)
    assert len(attempts) - 1 <= len(established) <= len(attempts), (attempts, established)
    for sa, up in established.items():
        if sa not in told and up == max(established.values()):
            continue  # the last attempt may be under way as the log is read
        assert sa in told, f"ikeguard did not tell strongSwan's IKE SA {sa} (AUTHENTICATION_FAILED)"
        assert sa in deleted, f"strongSwan kept IKE SA {sa}"
        assert 0 <= told[sa] - up < 1.0 and 0 <= deleted[sa] - told[sa] < 1.0, (sa, up, told, deleted)
    # what `swanctl --list-sas` would have shown: no IKE SA stayed listed for a second
    assert all(last - first < 1.0 for first, last in lived.values()), lived
    # backoff: 1, 2, 4, then the 4 s ceiling; never every second
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    expected = [min(2.0**i, CEILING) for i in range(len(gaps))]
    for gap, want in zip(gaps, expected, strict=True):
        assert want - 0.1 <= gap <= want + 0.8, (gaps, expected)
    return len(attempts)


def _auth_records(gw: GatewayProcess) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = gw.audit_events()
    failures = [e for e in events if e["event"] == "auth.failure" and e["connection"] == CONN]
    return [e for e in failures if "repeated" not in e.get("details", {})], \
        [e for e in failures if "repeated" in e.get("details", {})]


def test_untrusted_responder_is_told_and_retries_back_off_until_it_is_fixed(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    peer, gw, tool, ca = _setup("untrusted-ca", tmp_path, netns_topology, strongswan_peer, ikeguard_gateway)
    attempts = _check_refused_and_backed_off(peer)
    out = peer.swanctl("--list-sas").stdout
    assert "ESTABLISHED" not in out and CONN not in out, out

    # the audit trail: the first failure in full (certificate and authentication), the repeats only counted
    singles, summaries = _auth_records(gw)
    assert len(singles) == 1 and "certificate rejected: unknown_issuer" in singles[0]["reason"], singles
    assert summaries == []  # the series still runs: summarised when it ends
    rejected = [e for e in gw.audit_events() if e["event"] == "cert.rejected"]
    assert len(rejected) == 1 and "CN=elsewhere CA" in rejected[0]["reason"]

    # the operator fixes strongSwan's certificate: the next backed-off attempt succeeds, and the series is
    # closed with one summary counting every attempt
    fixed = tool.issue("fixed", ca, f"C=US, O=ss-lab, CN={CLIENT_FQDN}", sans=[CLIENT_FQDN])
    peer.certs = {"client": fixed.issued(ca)}
    peer.reload()
    fixed_at = time.monotonic()
    wait_one_sa(gw, timeout=CEILING + 6)
    peer.wait_established(CONN, CHILD, timeout=5)
    assert time.monotonic() - fixed_at <= CEILING + 2  # at most one ceiling away
    summary = gw.wait_audit(lambda e: e["event"] == "auth.failure" and "repeated" in e.get("details", {}),
                            what="the repeated-failure summary")
    singles, summaries = _auth_records(gw)
    assert len(singles) == 1 and summaries == [summary]
    details = summary["details"]
    total = details["attempts"]
    assert details["repeated"] == total - 1 and details["series_ended"] is True
    assert attempts <= total <= attempts + 1  # (+1: an attempt may have failed during the reload)
    assert summary["outcome"] == "failure" and summary["remote_id"] == CLIENT_FQDN
    assert singles[0]["reason"] in summary["reason"] and f"{total} failed attempts" in summary["reason"]
    assert len([e for e in gw.audit_events() if e["event"] == "cert.rejected"]) == 1
    assert [e["event"] for e in gw.audit_events() if e["event"] in ("ike.up", "auth.success")]


def test_responder_with_the_wrong_identity_is_told_and_the_summary_is_written_at_shutdown(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    peer, gw, _, _ = _setup("wrong-identity", tmp_path, netns_topology, strongswan_peer, ikeguard_gateway)
    attempts = _check_refused_and_backed_off(peer)
    assert "ESTABLISHED" not in peer.swanctl("--list-sas").stdout

    singles, summaries = _auth_records(gw)
    assert len(singles) == 1 and summaries == []
    assert f"peer identity {ROGUE_ID} does not match {CLIENT_FQDN}" in singles[0]["reason"]
    gw.stop()  # the series ends with the gateway: its summary is written before the trail closes
    singles, summaries = _auth_records(gw)
    assert len(singles) == 1 and len(summaries) == 1, summaries
    details = summaries[0]["details"]
    assert details["series_ended"] is True and details["repeated"] == details["attempts"] - 1
    assert attempts <= details["attempts"] <= attempts + 1
    assert summaries[0].get("remote_id") == singles[0].get("remote_id")
    assert summaries[0]["reason"].startswith(singles[0]["reason"])
