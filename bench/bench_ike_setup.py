"""IKE_SA setups per second and responder memory per IKE SA (+1 Child SA): ikeguard vs strongSwan, one run.

Run: `.venv/bin/python -m bench bench_ike_setup` as root (IKG_BENCH_SAS=N SAs per case, default 500;
IKG_BENCH_PROFILE=1 runs the ikeguard responder under cProfile and prints where its time goes;
IKG_BENCH_KEEP=DIR keeps the logs, in a new directory inside DIR per run; IKG_BENCH_LOG=1 raises charon's log
level).
The same initiator drives both responders: strongSwan's load-tester plugin, built from Debian's source package
by scripts/build-load-tester.sh (cached), in its own namespace (fake_kernel, 2 initiator threads, at most
`init_limit` = 32 IKE_SAs in flight, 1 ms pacing), against
  (a) strongSwan's charon-systemd (stock Debian, kernel-libipsec installs every Child SA in userspace,
      dos_protection off, 4096-bucket IKE_SA table, unique = never), and
  (b) `ikeguard run` (GatewayProcess; dataplane none, profile baseline, dos_protection off, unique = never,
      audit trail on as in production),
for two cases: PSK with aes128gcm16-prfsha256-ecp256 (ESP aes128gcm16) and certificates with
aes256gcm16-prfsha384-ecp384 (ESP aes256gcm16). Certificates: the responder authenticates with an ECDSA P-384
certificate; the load-tester initiator can only authenticate with RSA (its credential set hands out RSA keys
only: it signs AUTH with the issuer key and issues itself a per-identity certificate on demand), so the
initiators use RSA-3072 certificates under an RSA-3072 CA (SHA-256 signatures).

Rate = established IKE SAs / (first "initiating IKE_SA" -> last "IKE_SA ... established") from the initiator's
log (ms timestamps), the same instrument for both responders. Memory = responder RSS and PSS (whole process
tree) with all N SAs up minus the same right after start, divided by N. CPU per SA = CPU time (user + system)
each side used during the run / N: when the initiator's CPU per SA approaches the wall time budget of its
cores, the rate measures the initiator, not the responder (the certificate case on a 2-core machine).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret, render

from ikeguard.tools.certfactory import CertificateAuthority, IssuedCertificate, KeyKind
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Namespace, NetnsLab, Topology, stop_process

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "build-load-tester.sh"
GW_ID = "gw.ss-lab.example"
PSK = "ikeguard-bench-load-test-psk-7f3a9c41d2e8b605"  # raw string: load-tester does not hex-decode
INIT_LIMIT = 32
SS_TS = ("198.51.100.128/25", "198.51.100.0/25")  # (initiator's, responder's) subnet for the strongSwan runs
INITIATOR_THREADS = 2
LOG_LEVEL = int(os.environ.get("IKG_BENCH_LOG", "0"))  # charon log levels (both sides) when debugging
PROFILE = os.environ.get("IKG_BENCH_PROFILE") == "1"  # ikeguard responder under cProfile, print top 25
# issue 22: ikeguard runs once per worker count ([gateway] workers); with more than one, the initiator sends
# from a fresh address per IKE SA (load-tester `addrs`, IPv6 so that the pool outgrows the SA count), as a
# population of peers does: the kernel spreads IKE_SA_INIT over the workers by source address. The pool is
# used for every responder of the run (strongSwan too): the same initiator for all.
WORKERS = [int(w) for w in os.environ.get("IKG_BENCH_WORKERS", "1,2").split(",") if w.strip()]
POOL = os.environ.get("IKG_BENCH_POOL", "1" if max(WORKERS) > 1 else "0") == "1"
RESPONDER_ADDR, INITIATOR_ADDR = (("2001:db8:0:1::1", "2001:db8:0:1::2") if POOL
                                  else ("192.0.2.1", "192.0.2.2"))
POOL_NET = "2001:db8:1::1:0/112"  # installed on the initiator's eth0 (as /64), routed there by the responder
POOL_ROUTE = "2001:db8:1::/64"


@dataclass(frozen=True)
class Case:
    """One benchmark case: authentication and proposals."""

    name: str
    auth: str  # psk | pubkey
    ike: str
    esp: str


CASES = (
    Case("PSK ECP-256", "psk", "aes128gcm16-prfsha256-ecp256", "aes128gcm16"),
    Case("certs ECP-384", "pubkey", "aes256gcm16-prfsha384-ecp384", "aes256gcm16"),
)


@dataclass
class Result:
    """What one run measured."""

    responder: str
    case: str
    wanted: int
    established: int
    failed: int
    seconds: float
    rss_kib_per_sa: float
    pss_kib_per_sa: float
    responder_sas: int
    responder_cpu_ms_per_sa: float = 0.0
    initiator_cpu_ms_per_sa: float = 0.0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.established / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Pki:
    """Responder ECDSA P-384 chain and the load-tester's RSA issuer (CA whose key also signs AUTH)."""

    gw_ca: CertificateAuthority
    gw: IssuedCertificate
    lt_ca: CertificateAuthority


def _pki() -> Pki:
    gw_ca = CertificateAuthority.create_root("CN=bench responder CA,O=ikeguard bench", KeyKind.ECDSA_P384)
    gw = gw_ca.issue_leaf(f"CN={GW_ID},O=ikeguard bench", sans=[GW_ID, RESPONDER_ADDR])
    lt_ca = CertificateAuthority.create_root("CN=bench load-tester CA,O=ikeguard bench", KeyKind.RSA_3072)
    return Pki(gw_ca, gw, lt_ca)


# -- memory ----------------------------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    pids = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task").iterdir():
            children = (child / "children").read_text().split()
            for c in children:
                pids.extend(_tree(int(c)))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (threads included), in seconds."""
    ticks = 0
    for p in set(_tree(pid)):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_process(pid: int) -> dict[int, float]:
    """CPU seconds of each process of the tree under ``pid``."""
    out: dict[int, float] = {}
    for p in set(_tree(pid)):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            out[p] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def cpu_split(before: dict[int, float], after: dict[int, float], top: int, log: str) -> str:
    """Where a multi-worker gateway's CPU went: supervisor, each worker (pids from its log), the rest (the
    audit process)."""
    workers = {int(pid): int(index) for index, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", log)}
    parts: dict[str, float] = {}
    for pid, seconds in after.items():
        used = seconds - before.get(pid, 0.0)
        name = "supervisor" if pid == top else (f"worker {workers[pid]}" if pid in workers else "audit")
        parts[name] = parts.get(name, 0.0) + used
    return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in sorted(parts.items()))


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB of a process and all its descendants, from /proc/PID/smaps_rollup."""
    rss = pss = 0
    for p in set(_tree(pid)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss, pss


# -- the initiator ---------------------------------------------------------------------------------------
_TS = re.compile(r"^(\w{3}) +(\d+) (\d\d):(\d\d):(\d\d)\.(\d{3}) ")


def _when(line: str) -> float | None:
    m = _TS.match(line)
    if not m:
        return None
    return int(m[3]) * 3600 + int(m[4]) * 60 + int(m[5]) + int(m[6]) / 1000


class LoadTester:
    """The private charon with the load-tester plugin, initiating N IKE SAs as soon as it starts."""

    def __init__(self, prefix: Path, ns: Namespace, workdir: Path, case: Case, count: int, pki: Pki,
                 ts: tuple[str, str] | None = None, *, addresses: tuple[str, str] | None = None,
                 pool: tuple[str, int] | None = None, charon_options: dict[str, object] | None = None,
                 private_run: bool = False, id_prefix: str = "lt") -> None:
        self.id_prefix = id_prefix  # IDi = PREFIX-thread-n: distinct per instance (INITIAL_CONTACT, §2.4)
        self.charon_options = charon_options or {}  # e.g. port/port_nat_t: several instances in one namespace
        self.private_run = private_run  # its own tmpfs over PREFIX/run (charon.pid): several at once
        self.ts = ts  # (TSi, TSr) proposed; None = dynamic (the outer addresses)
        self.addresses = addresses or (INITIATOR_ADDR, RESPONDER_ADDR)  # (initiator, responder)
        self.pool = pool or ((POOL_NET, 64) if POOL else None)  # (addresses on eth0, their prefix length)
        self.prefix = prefix
        self.ns = ns
        self.workdir = workdir
        self.case = case
        self.count = count
        self.pki = pki
        self.log_path = workdir / "initiator.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.retransmit_tries = 3  # charon.retransmit_tries (strongSwan's default is 5)

    def write(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lt: dict[str, object] = {
            "enable": True,
            "initiators": INITIATOR_THREADS,
            "iterations": self.count // INITIATOR_THREADS,
            "init_limit": INIT_LIMIT,
            "delay": 1,
            "version": 2,
            "initiator": self.addresses[0],
            "responder": self.addresses[1],
            "proposal": self.case.ike,
            "esp": self.case.esp,
            "initiator_auth": self.case.auth,
            "responder_auth": self.case.auth,
            "initiator_id": f"{self.id_prefix}-%d-%d.ss-lab.example",
            "responder_id": GW_ID,
            "preshared_key": PSK,
            "fake_kernel": True,
            "child_rekey": 0,
            "ike_rekey": 0,
            "socket": f"unix://{self.workdir}/charon.ldt",
        }
        if self.ts is not None:
            lt.update(initiator_tsi=self.ts[0], initiator_tsr=self.ts[1])
        if self.pool is not None:
            lt.update(addrs={"eth0": self.pool[0]}, addrs_prefix=self.pool[1])
        if self.case.auth == "pubkey":
            ca_dir = self.workdir / "cacerts"
            ca_dir.mkdir(exist_ok=True)
            (ca_dir / "gw-ca.pem").write_bytes(self.pki.gw_ca.issued.cert_pem())
            (self.workdir / "issuer.pem").write_bytes(self.pki.lt_ca.issued.cert_pem())
            key = self.workdir / "issuer.key"
            key.write_bytes(self.pki.lt_ca.issued.key_pem())
            os.chmod(key, 0o600)
            lt.update(issuer_cert=str(self.workdir / "issuer.pem"), issuer_key=str(key), ca_dir=str(ca_dir),
                      digest="sha256")
        plugins = ("load-tester random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints gmp sha1 sha2 "
                   "hmac kdf aes gcm kernel-netlink socket-default")
        tree = {
            "charon": {
                "load": plugins,
                "install_routes": False,
                "dos_protection": False,
                "ikesa_table_size": 4096,
                "ikesa_table_segments": 16,
                "retransmit_tries": self.retransmit_tries,
                **self.charon_options,
                "plugins": {"load-tester": lt},
                "filelog": {"lt": {"path": str(self.log_path), "time_format": "%b %e %T",
                                   "time_add_ms": True, "append": False, "flush_line": True,
                                   "default": LOG_LEVEL, "ike": LOG_LEVEL}},
            }
        }
        conf = self.workdir / "strongswan.conf"
        conf.write_text(render(tree) + "\n")  # type: ignore[arg-type]
        return conf

    def start(self) -> None:
        conf = self.write()
        (self.prefix / "run").mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.prefix / "run" / "charon.pid").unlink()
        out = open(self.workdir / "initiator.out", "wb")  # noqa: SIM115
        try:
            argv = [str(self.prefix / "libexec/ipsec/charon")]
            if self.private_run:  # charon refuses to start while PREFIX/run/charon.pid names a live charon
                argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                        'mount -t tmpfs tmpfs "$1" && exec "$2"', "sh", str(self.prefix / "run"), argv[0]]
            self.process = self.ns.popen(argv,
                                         env={"STRONGSWAN_CONF": str(conf)}, stdout=out,
                                         stderr=subprocess.STDOUT)
        finally:
            out.close()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def progress(self) -> tuple[int, int]:
        """(established, failed) IKE SAs so far, from the log."""
        text = self.log()
        established = len(re.findall(r"IKE_SA load-test\[\d+\] established between", text))
        failed = len(re.findall(r"establishing IKE_SA failed|giving up|AUTHENTICATION_FAILED|"
                                r"NO_PROPOSAL_CHOSEN|authentication of .* failed", text))
        return established, failed

    def wait(self, timeout: float, stall: float = 30.0) -> tuple[int, int]:
        """Until every SA is up or failed, ``timeout`` passed, or nothing changed for ``stall`` seconds."""
        deadline = time.monotonic() + timeout
        last = (-1, -1)
        stalled_since = time.monotonic()
        while True:
            now = self.progress()
            if now[0] + now[1] >= self.count:
                return now
            if now != last:
                last, stalled_since = now, time.monotonic()
            if time.monotonic() > deadline or time.monotonic() - stalled_since > stall:
                return now
            if self.process is not None and self.process.poll() is not None:
                return now
            time.sleep(0.2)

    def duration(self) -> float:
        """First initiation -> last established, from the log's ms timestamps."""
        first = last = None
        for line in self.log().splitlines():
            if first is None and "initiating IKE_SA load-test" in line:
                first = _when(line)
            if " established between " in line and "IKE_SA load-test" in line:
                last = _when(line) or last
        if first is None or last is None:
            return 0.0
        return (last - first) % 86400


# -- the responders --------------------------------------------------------------------------------------
Responder = tuple[Any, int, Callable[[], int]]  # (handle with .stop(), PID, count of IKE SAs up)


def _strongswan_responder(ns: Namespace, workdir: Path, case: Case, pki: Pki) -> Responder:
    if case.auth == "psk":
        local, remote = AuthConfig("psk", GW_ID), AuthConfig("psk", "%any")
        kwargs: dict[str, object] = {"psks": [PskSecret(ids=[], secret=PSK)]}
    else:
        local = AuthConfig("pubkey", GW_ID, certs=["gw.pem"])
        remote = AuthConfig("pubkey", "%any", cacerts=["lt-ca.pem"])
        kwargs = {"certs": {"gw": pki.gw}, "cacerts": {"lt-ca": pki.lt_ca.cert}}
    conn = ConnectionConfig(
        name="lt", local_addrs=[RESPONDER_ADDR], remote_addrs=["%any"], local=local, remote=remote,
        proposals=[case.ike], unique="never", encap=None, mobike=False,
        # subnets, not the outer addresses: a libipsec policy for 192.0.2.2/32 would swallow IKE replies
        children=[ChildConfig("net", local_ts=[SS_TS[1]], remote_ts=[SS_TS[0]], esp_proposals=[case.esp])],
    )
    peer = StrongSwanPeer(
        ns, workdir, connections=[conn], name="strongswan", log_level=LOG_LEVEL,
        charon_options={"install_routes": False, "dos_protection": False, "ikesa_table_size": 4096,
                        "ikesa_table_segments": 16},
        **kwargs,  # type: ignore[arg-type]
    )
    peer.start()

    def count() -> int:
        m = re.search(r"IKE_SAs: (\d+) total", peer.swanctl("--stats").stdout)
        return int(m[1]) if m else -1

    assert peer.pid is not None
    return peer, peer.pid, count


def _ikeguard_responder(ns: Namespace, workdir: Path, case: Case, pki: Pki,
                        workers: int = 1) -> Responder:
    files: dict[str, str | bytes] = {}
    secrets: list[IkgSecret] = []
    authorities: list[IkgAuthority] = []
    if case.auth == "psk":
        local, remote = IkgLocal("psk", id=GW_ID), IkgRemote("psk", id="%any")
        secrets = [IkgSecret("lt", ids=[], secret=PSK)]
        files.update(secret_files(secrets))
    else:
        local = IkgLocal(id=GW_ID, certs=["pki/gw.pem"], key="pki/gw.key")
        remote = IkgRemote(id="%any", cacerts=["lt-ca"], revocation="relaxed")
        authorities = [IkgAuthority("lt-ca", cacert="pki/lt-ca.pem")]
        files.update({"pki/gw.pem": pki.gw.cert_pem(), "pki/gw.key": pki.gw.key_pem(),
                      "pki/lt-ca.pem": pki.lt_ca.issued.cert_pem()})
    config = gateway_toml(
        [IkgConnection("lt", local_addrs=[RESPONDER_ADDR], remote_addrs=["%any"], local=local, remote=remote,
                       proposals=[case.ike], unique="never", mobike=False,
                       children=[IkgChild("net", esp_proposals=[case.esp])])],
        profile="baseline", dataplane="none", listen=[RESPONDER_ADDR], secrets=secrets,
        authorities=authorities, gateway={"dos_protection": False, "workers": workers},
    )
    argv = None
    if PROFILE:  # the gateway under cProfile (main thread = the asyncio loop); stats written at exit
        argv = [sys.executable, "-m", "cProfile", "-o", str(workdir.resolve() / "gateway.prof"),
                "-m", "ikeguard", "run", "-c", str(workdir.resolve() / "gateway.toml")]
    gw = GatewayProcess(ns.name, workdir, config, files, name="ikeguard", argv=argv)
    gw.start(timeout=30)

    def count() -> int:
        conns = gw.request("conns")
        return sum(int(c.get("ike_sas_up", 0)) for c in conns)

    assert gw.pid is not None
    return gw, gw.pid, count


def run_case(prefix: Path, responder: str, case: Case, count: int, pki: Pki, workdir: Path,
             workers: int = 1) -> Result:
    """One responder, one case: start it, measure its baseline, drive N setups, measure again."""
    with NetnsLab() as lab:
        topo = Topology.two_hosts(lab, "ltinit", "ltresp")
        if POOL:  # the load-tester's addresses are usable at once (no duplicate address detection)
            for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad",
                        "net.ipv6.conf.eth0.accept_dad"):
                topo.left.namespace.sysctl(key, 0)
            # behind the initiator's host, not on the link: one neighbour entry for all of them (the
            # kernel's neighbour table, 1,024 entries by default and host-wide, stalled the 1,025th peer)
            topo.right.namespace.add_route(POOL_ROUTE, via=INITIATOR_ADDR)
        where = (topo.right.namespace, workdir / "responder", case, pki)
        if responder == "strongSwan":
            handle, pid, sa_count = _strongswan_responder(*where)
        else:
            handle, pid, sa_count = _ikeguard_responder(*where, workers)
        ts = SS_TS if responder == "strongSwan" else None
        initiator = LoadTester(prefix, topo.left.namespace, workdir / "initiator", case, count, pki, ts)
        try:
            time.sleep(1.0)
            base = memory_kib(pid)
            cpu0 = cpu_seconds(pid)
            split0 = cpu_by_process(pid)
            initiator.start()
            established, failed = initiator.wait(timeout=max(120.0, count / 5))
            cpu1 = cpu_seconds(pid)
            split1 = cpu_by_process(pid)
            assert initiator.process is not None
            init_cpu = cpu_seconds(initiator.process.pid)
            time.sleep(1.0)
            full = memory_kib(pid)
            up = sa_count()
            seconds = initiator.duration()
            note = ""
            if established < count:
                tail = "\n".join(initiator.log().splitlines()[-5:])
                note = f"only {established}/{count} established, {failed} failed; initiator log tail:\n{tail}"
            n = max(up, 1)
            done = max(established, 1)
            if workers > 1:
                note = (note + "\n" if note else "") + "responder CPU by process: " + cpu_split(
                    split0, split1, pid, handle.log())
            return Result(responder, case.name, count, established, failed, seconds,
                          (full[0] - base[0]) / n, (full[1] - base[1]) / n, up,
                          (cpu1 - cpu0) * 1000 / done, init_cpu * 1000 / done, note)
        finally:
            initiator.stop()
            handle.stop()
            if PROFILE and responder.startswith("ikeguard"):
                _print_profile(workdir / "responder" / "gateway.prof")


def _print_profile(path: Path) -> None:
    import pstats

    if not path.exists():
        print(f"    (no profile written at {path})")
        return
    print(f"    where the ikeguard responder's main thread spent its time ({path}):")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)


def _load_tester_prefix() -> Path:
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"build-load-tester.sh failed: {result.stderr.strip()[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def main() -> None:
    if os.geteuid() != 0 or not Path("/usr/sbin/charon-systemd").exists():
        print("IKE setup bench: skipped (needs root, network namespaces and strongSwan's charon-systemd)")
        return
    count = int(os.environ.get("IKG_BENCH_SAS", "500"))
    count -= count % INITIATOR_THREADS
    try:
        prefix = _load_tester_prefix()
    except Exception as exc:  # a benchmark reports, it does not crash
        print(f"IKE setup bench: load-tester unavailable: {exc}")
        return
    pki = _pki()
    results: list[Result] = []
    keep = os.environ.get("IKG_BENCH_KEEP")
    if keep:  # a fresh directory per run inside it: an earlier run's logs there would be counted again
        Path(keep).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="ikg-bench-ike-", dir=keep or None))
    print(f"IKE setup bench: {count} IKE SAs (+1 Child SA each) per case, load-tester initiator "
          f"({INITIATOR_THREADS} threads, <= {INIT_LIMIT} in flight"
          f"{', one IPv6 source address per IKE SA' if POOL else ''}), ikeguard with workers = "
          f"{', '.join(map(str, WORKERS))}, load average {os.getloadavg()[0]:.2f}, "
          f"started {dt.datetime.now(dt.UTC):%H:%M:%S}Z")
    responders = [("strongSwan", 1)] + [(_name(w), w) for w in WORKERS]
    try:
        for case in CASES:
            for responder, workers in responders:
                workdir = base / f"{responder}-{case.auth}"
                try:
                    r = run_case(prefix, responder, case, count, pki, workdir, workers)
                except Exception as exc:  # report and go on with the next case
                    print(f"  {case.name:14} {responder:10}: failed: {exc}")
                    continue
                results.append(r)
                print(f"  {case.name:14} {responder:12}: {r.established}/{r.wanted} up in "
                      f"{r.seconds:6.2f} s = {r.rate:7.1f} IKE_SA/s; "
                      f"responder holds {r.responder_sas} IKE SAs; "
                      f"memory/SA RSS {r.rss_kib_per_sa:6.1f} KiB, PSS {r.pss_kib_per_sa:6.1f} KiB; "
                      f"CPU/SA responder {r.responder_cpu_ms_per_sa:5.2f} ms, "
                      f"initiator {r.initiator_cpu_ms_per_sa:5.2f} ms")
                if r.note:
                    print("    " + r.note.replace("\n", "\n    "))
    finally:
        if keep:
            print(f"  logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    for case in CASES:
        ss = next((r for r in results if r.case == case.name and r.responder == "strongSwan"), None)
        for name, _ in responders[1:]:
            ikg = next((r for r in results if r.case == case.name and r.responder == name), None)
            if ss is None or ikg is None or not ss.rate:
                continue
            mem = ikg.rss_kib_per_sa / ss.rss_kib_per_sa if ss.rss_kib_per_sa > 0 else float("nan")
            cpu = (ikg.responder_cpu_ms_per_sa / ss.responder_cpu_ms_per_sa
                   if ss.responder_cpu_ms_per_sa > 0 else float("nan"))
            print(f"ratio {name}/strongSwan, {case.name}: setup rate {ikg.rate / ss.rate:.2f}x, "
                  f"memory per SA (RSS) {mem:.2f}x, responder CPU per SA {cpu:.2f}x")


def _name(workers: int) -> str:
    return "ikeguard" if workers == 1 else f"ikeguard-{workers}w"


if __name__ == "__main__":
    main()
    sys.exit(0)
