"""Half-open flood (issue 22, Done-when 4): spoofed IKE_SA_INIT requests while legitimate peers set up SAs.

Run: `.venv/bin/python -m bench bench_flood` as root (IKG_FLOOD_LEGIT=N legitimate IKE SAs, default and at
most 120: one address each; IKG_FLOOD_PPS=rate of the flood per second, 0 = as fast as the flooder can,
default 0; IKG_BENCH_WORKERS=N the gateway's [gateway] workers, default 2; IKG_FLOOD_TRIES=N the legitimate
initiators' retransmissions, default 3, strongSwan's own default is 5; IKG_BENCH_KEEP=DIR keeps the logs).

Two namespaces (two_hosts): `ikeguard run` at 192.0.2.1 (dataplane none, profile baseline, dos_protection on
with the defaults cookie_threshold = 30 and block_threshold = 5, audit trail on), and in the other namespace
(a) the flooder: one process with a raw socket (IP_HDRINCL) sending well-formed IKE_SA_INIT requests (SA, KE
ECP-256, Nonce; built once by the engine as an initiator would, then only the SPIi and the source change) from
spoofed sources spread over 203.0.113.0/24 x ports, and (b) strongSwan's load-tester
(scripts/build-load-tester.sh) initiating IKG_FLOOD_LEGIT PSK ECP-256 IKE SAs + 1 Child SA, each from its own
address of 192.0.2.128/25 (as distinct peers: block_threshold counts per address), with 3 retransmissions
(4, 7.2, 13 s: about 24 s budget, 4 sends of each request) once the flood runs; IKG_FLOOD_TRIES=5 is
strongSwan's default budget (4, 7.2, 13, 23.3, 42 s and 75.6 s more before giving up: about 165 s, 6
sends). The gateway's answers to spoofed sources are
routed back to that namespace and dropped there (nobody listens). The flood stops when the legitimate setups
have all ended (up or given up).

Reported: flood packets sent and the rate, legitimate SAs established / wanted (target >= 99 %), the time
they took, whether cookies engaged (``dos.cookies_on`` in the audit trail), the gateway's CPU and the
half-open count while flooded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.ikeguard_conf import (
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    secret_files,
)

from bench.bench_ike_setup import (
    CASES,
    GW_ID,
    PSK,
    LoadTester,
    _load_tester_prefix,
    _pki,
    cpu_seconds,
)
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Namespace, NetnsLab, Topology, stop_process

LEGIT = min(int(os.environ.get("IKG_FLOOD_LEGIT", "120")), 124)  # the initiators' address pool
PPS = int(os.environ.get("IKG_FLOOD_PPS", "0"))
WORKERS = int(os.environ.get("IKG_BENCH_WORKERS", "2").split(",")[-1])
TRIES = int(os.environ.get("IKG_FLOOD_TRIES", "3"))
SPOOFED = ipaddress.ip_network("203.0.113.0/24")
CASE = CASES[0]  # PSK ECP-256
REPO = Path(__file__).resolve().parent.parent


def ike_sa_init_template() -> bytes:
    """One IKE_SA_INIT request as an initiator of CASE's proposal sends it (the engine builds it)."""
    from tests.engine.harness import child, pair, psk_conn

    conn = psk_conn("flood", "flood.example", GW_ID, (child(proposals=(CASE.esp,)),),
                    ike_proposals=(CASE.ike,))
    net = pair([conn], [])
    net.initiate("flood")
    from ikeguard.engine.events import SendDatagram

    for event in net.a.manager.events():
        if isinstance(event, SendDatagram):
            return event.data
    raise RuntimeError("the engine sent no IKE_SA_INIT")


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def flood(template: bytes, target: str, count_file: Path, pps: int) -> None:
    """Send spoofed IKE_SA_INIT requests until SIGTERM (raw socket, IPv4 header written here); the number
    sent goes to ``count_file`` every 256 packets."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    dst = ipaddress.IPv4Address(target).packed
    hosts = [a.packed for a in SPOOFED.hosts()]
    rng = random.Random(7)
    count = 0
    start = time.monotonic()
    udp_len = 8 + len(template)
    while not stopping:
        for _ in range(256):
            src = hosts[rng.randrange(len(hosts))]
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64, 17, 0, src, dst)
            ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
            udp = struct.pack("!HHHH", rng.randrange(1024, 65535), 500, udp_len, 0)
            with contextlib.suppress(OSError):
                sock.sendto(ip + udp + rng.randbytes(8) + template[8:], (target, 0))
            count += 1
        staged = count_file.with_suffix(".tmp")
        staged.write_text(str(count))
        staged.replace(count_file)  # atomic: a reader never sees an empty file
        if pps:
            ahead = count / pps - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    count_file.write_text(str(count))
    sock.close()


def _udp_counters(ns: Namespace) -> dict[str, int]:
    """The namespace's UDP counters (/proc/net/snmp): InDatagrams, RcvbufErrors (dropped: buffer full), ..."""
    lines = [line.split() for line in ns.run("cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Udp:")]
    return dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))


def _sent(count_file: Path) -> int:
    try:
        return int(count_file.read_text() or 0)
    except (OSError, ValueError):
        return 0


def main() -> None:
    if os.geteuid() != 0 or not Path("/usr/sbin/charon-systemd").exists():
        print("flood bench: skipped (needs root, network namespaces and strongSwan)")
        return
    try:
        prefix = _load_tester_prefix()
    except Exception as exc:
        print(f"flood bench: load-tester unavailable: {exc}")
        return
    keep = os.environ.get("IKG_BENCH_KEEP")
    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="ikg-bench-flood-"))
    pki = _pki()
    template = ike_sa_init_template()
    print(f"flood bench: {LEGIT} legitimate {CASE.name} setups during a spoofed IKE_SA_INIT flood "
          f"({'max rate' if not PPS else f'{PPS}/s'}, {len(template)}-octet requests from {SPOOFED}), "
          f"ikeguard workers = {WORKERS}, {TRIES} retransmissions, load average {os.getloadavg()[0]:.2f}, "
          f"started {dt.datetime.now(dt.UTC):%H:%M:%S}Z")
    try:
        with NetnsLab() as lab:
            topo = Topology.two_hosts(lab, "flinit", "flresp")
            gw_ns, init_ns = topo.right.namespace, topo.left.namespace
            gw_ns.add_route(str(SPOOFED), via=str(topo.left.address))
            secrets = [IkgSecret("lt", ids=[], secret=PSK)]
            config = gateway_toml(
                [IkgConnection("lt", local_addrs=["192.0.2.1"], remote_addrs=["%any"],
                               local=IkgLocal("psk", id=GW_ID), remote=IkgRemote("psk", id="%any"),
                               proposals=[CASE.ike], unique="never", mobike=False,
                               children=[IkgChild("net", esp_proposals=[CASE.esp])])],
                profile="baseline", dataplane="none", listen=["192.0.2.1"], secrets=secrets,
                gateway={"workers": WORKERS},
            )
            gw = GatewayProcess(gw_ns.name, base / "gateway", config, secret_files(secrets), name="ikeguard")
            gw.start(timeout=60)
            assert gw.pid is not None
            count_file = base / "flood.count"
            (base / "flood.template").write_bytes(template)
            # one address per legitimate peer (block_threshold counts per address), on the hosts' link
            initiator = LoadTester(prefix, init_ns, base / "initiator", CASE, LEGIT, pki,
                                   addresses=("192.0.2.2", "192.0.2.1"), pool=("192.0.2.128/25", 24))
            initiator.retransmit_tries = TRIES
            try:
                cpu0 = cpu_seconds(gw.pid)
                udp0 = _udp_counters(gw_ns)
                flooder = init_ns.popen([sys.executable, "-m", "bench.bench_flood", "--flood", str(base)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
                time.sleep(3.0)  # the flood is on before the first legitimate request
                flood_start, sent_start = time.monotonic(), _sent(count_file)
                asked = time.monotonic()
                gw.request("sas")  # the control socket answers while flooded
                answered = time.monotonic() - asked
                initiator.start()
                established, _failed = initiator.wait(timeout=300, stall=200 if TRIES > 3 else 30)
                seconds = initiator.duration()
                elapsed = time.monotonic() - flood_start
                rate = (_sent(count_file) - sent_start) / elapsed if elapsed > 0 else 0.0
                cpu = cpu_seconds(gw.pid) - cpu0
                udp1 = _udp_counters(gw_ns)
            finally:
                if "flooder" in locals():
                    stop_process(flooder, 10)
                initiator.stop()
            events = [e["event"] for e in gw.audit_events()]
            gw.stop()
        share = established / LEGIT if LEGIT else 0.0
        print(f"  flood: {_sent(count_file)} spoofed IKE_SA_INIT sent, {rate:,.0f}/s while the legitimate "
              "peers ran")
        print(f"  legitimate: {established}/{LEGIT} established ({share:.1%}), {LEGIT - established} not "
              f"(gave up) in {seconds:.1f} s ({established / seconds if seconds else 0:.1f}/s)")
        print(f"  cookies engaged: {'dos.cookies_on' in events} ({events.count('dos.cookies_on')} times); "
              f"gateway CPU {cpu:.1f} s over the run; `sas` answered in {answered * 1000:.0f} ms while "
              "flooded")
        read = udp1["InDatagrams"] - udp0["InDatagrams"]
        dropped = udp1["RcvbufErrors"] - udp0["RcvbufErrors"]
        print(f"  gateway UDP: {read:,} datagrams read, {dropped:,} dropped with full receive buffers "
              f"({read / (read + dropped) if read + dropped else 0:.1%} of the arrivals read)")
        if established < LEGIT:
            print("    initiator log tail:\n    " + "\n    ".join(initiator.log().splitlines()[-5:]))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--flood"]:  # the flooder, started in the initiators' namespace by main()
        work = Path(sys.argv[2])
        flood((work / "flood.template").read_bytes(), "192.0.2.1", work / "flood.count", PPS)
    else:
        main()
    sys.exit(0)
