"""pytest fixtures: namespace labs, strongSwan peers, ikeguard gateways, a test PKI; with guaranteed teardown.

Registered from tests/conftest.py (``pytest_plugins``). At session end it fails the run loudly if any
namespace or process (charon included) started by this run is still there.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.certfactory import CertificateAuthority, IssuedCertificate, KeyKind
from ikeguard.tools.gateway_process import GatewayProcess, live_gateway_pids, stop_all_gateways
from ikeguard.tools.netns import (
    Namespace,
    NetnsLab,
    Topology,
    install_signal_handlers,
    live_namespaces,
    started_pids,
)
from tests.harness.libreswan import LibreswanPeer, live_plutos
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer, live_charons
from tests.harness.strongswan61 import StrongSwan61Peer, strongswan61_root

GW_FQDN = "gw.ss-lab.example"
CLIENT_FQDN = "client.ss-lab.example"

_PEERS_KEY = pytest.StashKey[list[StrongSwanPeer]]()
_GATEWAYS_KEY = pytest.StashKey[list[GatewayProcess]]()
_PLUTOS_KEY = pytest.StashKey[list[LibreswanPeer]]()


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so fixture finalisers remove namespaces and stop charons."""
    install_signal_handlers()


def _need_root() -> None:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("needs root (network namespaces, veth, TUN)")


@pytest.fixture
def netns_lab() -> Iterator[NetnsLab]:
    """A NetnsLab closed after the test (processes stopped, namespaces deleted), also on failure."""
    _need_root()
    lab = NetnsLab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def netns_topology(netns_lab: NetnsLab) -> Callable[..., Topology]:
    """Factory: ``netns_topology("direct" | "nat", left_role="client", right_role="gw") -> Topology``."""

    def make(kind: str = "direct", **roles: str) -> Topology:
        if kind == "direct":
            return Topology.two_hosts(netns_lab, **roles)
        if kind == "nat":
            return Topology.behind_nat(netns_lab, **roles)
        raise ValueError(f"unknown topology {kind!r} (direct | nat)")

    return make


def _peer_factory(cls: Any, peers: list[Any], tmp_path: Path,
                  default_name: str | None) -> Iterator[Callable[..., Any]]:
    """The factory behind ``strongswan_peer`` and ``libreswan_peer``: a peer per call in ``tmp_path/<name>``,
    started unless ``start=False``, every one stopped by PID (newest first) when the test ends."""

    def make(namespace: Namespace, name: str | None = default_name, *, connections: Sequence[Any],
             start: bool = True, **kwargs: Any) -> Any:
        assert name is not None, "a peer needs a name"
        peer = cls(namespace, tmp_path / name, name=name, connections=connections, **kwargs)
        peers.append(peer)
        return peer.start() if start else peer

    try:
        yield make
    finally:
        for peer in reversed(peers):
            peer.stop()


@pytest.fixture
def strongswan_peer(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., StrongSwanPeer]]:
    """Factory: ``strongswan_peer(namespace, name, connections=[...], **peer kwargs)`` -> started peer.

    Each peer gets ``tmp_path/<name>`` as its workdir and is stopped by PID after the test; a failing test
    gets the tail of every peer's charon log in its report.
    """
    peers: list[StrongSwanPeer] = []
    request.node.stash[_PEERS_KEY] = peers
    yield from _peer_factory(StrongSwanPeer, peers, tmp_path, default_name=None)


@pytest.fixture
def strongswan61_peer(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., StrongSwan61Peer]]:
    """Factory like ``strongswan_peer`` for strongSwan 6.1 (ML-KEM, IKE_INTERMEDIATE) from its chroot.

    The chroot is built on first use (scripts/build-strongswan61.sh, about a minute, cached). When it cannot
    be built the test is skipped with the reason, except under CI=true, where it fails.
    """
    _need_root()
    try:
        strongswan61_root()
    except StrongSwanError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"strongSwan 6.1 fixture could not be built: {exc}")
        pytest.skip(f"strongSwan 6.1 fixture could not be built: {str(exc)[:300]}")
    peers: list[StrongSwanPeer] = []
    request.node.stash[_PEERS_KEY] = peers
    yield from _peer_factory(StrongSwan61Peer, peers, tmp_path, default_name=None)


def one_worker(config: str) -> str:
    """``config`` with ``workers = 1`` in its ``[gateway]`` table when it names no ``workers``.

    The product's default is one IKE worker process per core (``"auto"``, issue 22); with the userspace data
    plane that costs a test gateway ~4 s more to start on two loaded cores (each worker imports and plans on
    its own). The suite's many gateways therefore run one process unless a test asks for workers.
    """
    try:
        gateway = tomllib.loads(config).get("gateway")
    except tomllib.TOMLDecodeError:
        return config
    if not isinstance(gateway, dict) or "workers" in gateway:
        return config
    return re.sub(r"(?m)^\[gateway\][ \t]*$", "[gateway]\nworkers = 1", config, count=1)


class _OneWorkerGateway(GatewayProcess):
    """A GatewayProcess whose configs (also those of later reloads) run one process (:func:`one_worker`)."""

    def update_config(self, config: str) -> None:
        super().update_config(one_worker(config))


@pytest.fixture
def ikeguard_gateway(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., GatewayProcess]]:
    """Factory: ``ikeguard_gateway(namespace, name, config, files={}, **GatewayProcess kwargs)`` -> started.

    `namespace` is a Namespace, a namespace name or None. Each gateway gets ``tmp_path/<name>`` as its workdir
    and is stopped by PID after the test (also on failure); a failing test gets each gateway's log tail.
    A config that does not name ``[gateway] workers`` runs one process (:func:`one_worker`) unless
    ``default_workers=True``: the workers tests name theirs, ``test_workers_auto.py`` runs the default.
    """
    gateways: list[GatewayProcess] = []
    request.node.stash[_GATEWAYS_KEY] = gateways

    def make(
        namespace: Namespace | str | None,
        name: str = "gw",
        config: str = "",
        files: dict[str, bytes | str] | None = None,
        *,
        start: bool = True,
        timeout: float = 20.0,
        default_workers: bool = False,
        **kwargs: Any,
    ) -> GatewayProcess:
        netns = namespace.name if isinstance(namespace, Namespace) else namespace
        kind = GatewayProcess if default_workers else _OneWorkerGateway
        gateway = kind(netns, tmp_path / name, one_worker(config) if not default_workers else config,
                       files or {}, name=name, **kwargs)
        gateways.append(gateway)
        return gateway.start(timeout=timeout) if start else gateway

    try:
        yield make
    finally:
        for gateway in reversed(gateways):
            gateway.stop()


@pytest.fixture
def libreswan_peer(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., LibreswanPeer]]:
    """Factory: ``libreswan_peer(namespace, name, connections=[LibreswanConn...], **peer kwargs)`` -> started.

    pluto from Debian's libreswan, unpacked by scripts/fetch-libreswan.sh (cached); workdir tmp_path/<name>;
    stopped by PID after the test; a failing test gets pluto's log tail.
    """
    peers: list[LibreswanPeer] = []
    request.node.stash[_PLUTOS_KEY] = peers
    yield from _peer_factory(LibreswanPeer, peers, tmp_path, default_name="pluto")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach charon and ikeguard gateway logs to the report of a failing test that used those fixtures."""
    report = yield
    if call.when == "call" and report.failed:  # type: ignore[attr-defined]
        for peer in item.stash.get(_PEERS_KEY, []):
            report.sections.append((f"charon log: {peer.name}", "\n".join(peer.log().splitlines()[-80:])))  # type: ignore[attr-defined]
        for pluto in item.stash.get(_PLUTOS_KEY, []):
            report.sections.append((f"pluto log: {pluto.name}", "\n".join(pluto.log().splitlines()[-80:])))  # type: ignore[attr-defined]
        for gateway in item.stash.get(_GATEWAYS_KEY, []):
            report.sections.append((f"ikeguard log: {gateway.name}", gateway.log_tail(80)))  # type: ignore[attr-defined]
    return report


@pytest.fixture
def cert_factory() -> CertificateAuthority:
    """A fresh root CA (ECDSA P-384) to issue intermediates, leaves and CRLs from."""
    return CertificateAuthority.create_root("CN=ikeguard test root CA,O=ikeguard test", KeyKind.ECDSA_P384)


@dataclass(frozen=True)
class TestPki:
    """A root CA with gateway and client leaves (ECDSA P-384, FQDN + IP SANs), PEM files in `directory`."""

    __test__ = False  # not a test class

    ca: CertificateAuthority
    gw: IssuedCertificate
    client: IssuedCertificate
    directory: Path


@pytest.fixture
def test_pki(cert_factory: CertificateAuthority, tmp_path: Path) -> TestPki:
    """gw.ss-lab.example (SAN 192.0.2.1) and client.ss-lab.example (SAN 192.0.2.2) under one root."""
    gw = cert_factory.issue_leaf(f"CN={GW_FQDN},O=ikeguard test", sans=[GW_FQDN, "192.0.2.1"])
    client = cert_factory.issue_leaf(f"CN={CLIENT_FQDN},O=ikeguard test", sans=[CLIENT_FQDN, "192.0.2.2"])
    directory = tmp_path / "pki"
    cert_factory.write_pem(directory, "ca")
    gw.write_pem(directory, "gw")
    client.write_pem(directory, "client")
    return TestPki(cert_factory, gw, client, directory)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a namespace or process started by it is still there (and remove it)."""
    leftovers = live_namespaces()
    charons = live_charons()
    gateways = live_gateway_pids()
    plutos = live_plutos()
    pids = started_pids()
    if not (leftovers or charons or gateways or plutos or pids):
        return
    message = (
        f"ikeguard harness: left behind namespaces={leftovers} charon PIDs={charons} "
        f"gateway PIDs={gateways} pluto PIDs={plutos} other PIDs={pids}; a fixture or test did not clean up"
    )
    from ikeguard.tools import netns

    stop_all_gateways()
    netns.cleanup_all()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message, red=True, bold=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
