"""Shared pieces of the gateway audit end-to-end tests: rsyslogd inside the gateway's namespace, the gateway
config with an RFC 5425 sink, the strongSwan client, and readers for rsyslog's file, the store and metrics."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ikeguard.audit.chain import Record
from ikeguard.audit.sinks.syslog import SD_CHAIN
from ikeguard.audit.store import AuditStore
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Namespace, Topology
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

from .rsyslog import RSYSLOGD, Pki, Rsyslog

PSK = "siem-e2e-psk-5b8e2d41c0f97a36c3"
SYSLOG_PORT = 6514
METRICS_PORT = 9814
PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]


class NsRsyslog(Rsyslog):
    """rsyslogd on 127.0.0.1 inside a test namespace (the gateway's audit process lives there too)."""

    def __init__(self, namespace: Namespace, workdir: Path, pki: Pki, port: int = SYSLOG_PORT) -> None:
        super().__init__(workdir, pki, port)
        self.namespace = namespace

    def _listening(self) -> bool:
        assert self.proc is not None
        try:  # /proc/PID/net/tcp shows the sockets of the process's own network namespace
            lines = Path(f"/proc/{self.proc.pid}/net/tcp").read_text().splitlines()[1:]
        except OSError:
            return False
        suffix = f":{self.port:04X}"
        return any(f[1].endswith(suffix) and f[3] == "0A" for f in (line.split() for line in lines))

    def start(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        with open(self.workdir / "rsyslogd.err", "ab") as err:
            self.proc = self.namespace.popen(
                [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)], stderr=err
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {(self.workdir / 'rsyslogd.err').read_text()[-2000:]}")
            if self._listening():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("rsyslogd did not start listening")

    def by_seq(self) -> tuple[dict[int, dict[str, Any]], list[int]]:
        """De-duplicated messages by ``seq`` (first copy) and the seqs in order of first arrival."""
        first: dict[int, dict[str, Any]] = {}
        order: list[int] = []
        for message in self.messages():
            seq = int(message["sd"][SD_CHAIN]["seq"])  # type: ignore[index]
            if seq not in first:
                first[seq] = message
                order.append(seq)
        return first, order


def gateway_config(topo: Topology, pki: Pki | None, **kwargs: Any) -> str:
    """The gateway as a PSK responder for the client, with an RFC 5425 sink to the namespace's rsyslogd."""
    right, left = topo.right, topo.left
    config = GwConfig(str(right.address), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet), str(left.subnet),
                      psk=PSK, extra_gateway=f'metrics = "127.0.0.1:{METRICS_PORT}"', **kwargs)
    text = config.text()
    if pki is not None:
        text += (f'\n[[audit.sinks]]\ntype = "syslog-tls"\naddress = "127.0.0.1:{SYSLOG_PORT}"\n'
                 f'ca = "{pki.ca}"\ncert = "{pki.client_cert}"\nkey = "{pki.client_key}"\n')
    return text


def gateway_files() -> dict[str, bytes | str]:
    return {"psk.txt": PSK + "\n"}


def client_connection(topo: Topology, name: str = "ikg") -> ConnectionConfig:
    """strongSwan's side of the tunnel; further names get one try and a second (unused) IKE proposal, so
    charon sees another IKE config and sets up a new IKE SA instead of reusing the first one's."""
    left, right = topo.left, topo.right
    return ConnectionConfig(
        name=name,
        keyingtries=None if name == "ikg" else 1,
        local_addrs=[str(left.address)],
        remote_addrs=[str(right.address)],
        local=AuthConfig("psk", CLIENT_FQDN),
        remote=AuthConfig("psk", GW_FQDN),
        proposals=[IKE_PROPOSAL] if name == "ikg" else [IKE_PROPOSAL, "aes128gcm16-prfsha256-ecp256"],
        children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL])],
    )


def strongswan_client(factory: PeerFactory, topo: Topology, *names: str, **kwargs: Any) -> StrongSwanPeer:
    conns = [client_connection(topo, n) for n in (names or ("ikg",))]
    return factory(topo.left.namespace, "client", connections=conns,
                   psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)], **kwargs)


def store_records(state_dir: Path) -> dict[int, Record]:
    store = AuditStore(state_dir, create=False)
    try:
        return {r.seq: r for r in store.iter_records()}
    finally:
        store.close()


def last_seq(state_dir: Path) -> int:
    store = AuditStore(state_dir, create=False)
    try:
        return store.head()[0]
    finally:
        store.close()


def metric(namespace: Namespace, name: str) -> dict[str, float]:
    """One metric family from the gateway's Prometheus endpoint (inside its namespace): labels -> value."""
    script = ("import sys, urllib.request; "
              "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")
    out = namespace.run(sys.executable, "-c", script, f"http://127.0.0.1:{METRICS_PORT}/metrics").stdout
    values: dict[str, float] = {}
    for line in out.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if m:
            values[m.group(1) or ""] = float(m.group(2))
    return values


_KEY_HEADER = re.compile(r"\](?: <[^>]*>)? ((?:Sk_\w+ secret)|(?:\w+ (?:initiator|responder) key)|"
                         r"(?:shared Diffie Hellman secret)) => (\d+) bytes")
_DUMP_LINE = re.compile(r"\](?: <[^>]*>)?\s+\d+: ((?:[0-9A-F]{2} )+)")


def logged_keys(charon_log: str) -> dict[str, str]:
    """Key material strongSwan logged at level 4 (SK_* of each IKE SA, ESP keys of each Child SA), as hex.

    That is the material both sides derived (RFC 7296 §2.14, §2.17); ikeguard must not let any of it out."""
    keys: dict[str, str] = {}
    lines = charon_log.splitlines()
    for i, line in enumerate(lines):
        m = _KEY_HEADER.search(line)
        if not m:
            continue
        size, octets = int(m.group(2)), []
        for follow in lines[i + 1 :]:
            d = _DUMP_LINE.search(follow)
            if d is None or len(octets) >= size:
                break
            octets += d.group(1).split()
        if size >= 16 and len(octets) >= size:
            keys[f"{m.group(1)}#{i}"] = "".join(octets[:size]).lower()
    return keys


def audit_tail_json(gw: GatewayProcess, count: int) -> list[dict[str, Any]]:
    """``ikeguard audit tail --json`` as an operator runs it, parsed (one record per line)."""
    import json

    argv = [gw.python, "-m", "ikeguard", "audit", "tail", "--state-dir", str(gw.state_dir), "-n", str(count),
            "--json"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
