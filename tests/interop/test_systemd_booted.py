"""packaging/ikeguard.service, run by a real systemd: the unit as shipped starts the gateway as its own user
with its sandbox, and the gateway answers `sas` and carries a strongSwan peer's traffic.

The machine has no systemd as PID 1, so the test boots one: ``systemd-nspawn --volatile=yes -b`` boots this
host's own /usr (read-only) in a container whose root is a tmpfs, inside the gateway's test network namespace.
Into it go, read-only, what an operator installs: the unit in /etc/systemd/system; /etc/ikeguard
(root:ikeguard 0750, the config 0640, the PSK file 0600 owned by the gateway user); a sysusers.d entry that
creates the ``ikeguard`` user (as a package would); /usr/local/bin/ikeguard (a console script running this
checkout). systemd starts only ``ikeguard.service`` and what it pulls in (``systemd.unit=ikeguard.service``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.netns import Namespace, Topology, wait_until
from tests.conftest import REPO
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

UNIT = REPO / "packaging" / "ikeguard.service"
GATEWAY_UID = 850  # fixed in the sysusers.d entry so that the host-side files can be owned by it
PSK = "unit-booted-psk-3b9e27c4d1f08a65"
CONSOLE_SCRIPT = """#!/usr/bin/python3
import sys
sys.path[:0] = ["/opt/ikeguard/src", "/opt/ikeguard/site-packages"]
from ikeguard.control.cli import main
if __name__ == "__main__":
    sys.exit(main())
"""


class BootedContainer:
    """A systemd-nspawn container booted in ``namespace``; commands run in it through nsenter."""

    def __init__(self, namespace: Namespace, workdir: Path) -> None:
        self.namespace = namespace
        self.workdir = workdir
        self.log = workdir / "boot.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def boot(self, binds: list[str]) -> None:
        argv = ["systemd-nspawn", "-D", "/", "--volatile=yes", "--register=no", "--keep-unit",
                "-M", f"ikg{os.getpid()}", "--console=passive", "--bind=/dev/net/tun",
                f"--network-namespace-path=/run/netns/{self.namespace.name}",
                "--capability=CAP_NET_ADMIN",  # a host's own network: what the unit's bounding set draws from
                *binds,
                "-b", "systemd.unit=ikeguard.service", "systemd.firstboot=off",
                "systemd.mask=systemd-networkd-wait-online.service"]
        # Not through `ip netns exec`: it remounts /sys for the namespace, hiding systemd's cgroup tree.
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def booted(self) -> bool:
        """The container's init is running (nspawn's only child)."""
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
        return bool(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split())

    @property
    def init_pid(self) -> int:
        assert self.proc is not None
        return int(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()[0])

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["nsenter", "-t", str(self.init_pid), "-a", *argv], capture_output=True,
                                text=True, timeout=30, check=False)
        assert not check or result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
        return result

    def unit_state(self) -> str:
        return self.run("systemctl", "is-active", "ikeguard.service", check=False).stdout.strip()

    def journal(self) -> str:
        return self.run("journalctl", "-u", "ikeguard.service", "--no-pager", check=False).stdout

    def shutdown(self) -> None:
        """Power the container off (nspawn turns SIGTERM into a clean shutdown), by the PID we started."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _install_tree(workdir: Path, config: GwConfig) -> list[str]:
    """The files an operator installs, owned and moded as the unit's header says; nspawn bind options."""
    etc = workdir / "etc-ikeguard"
    etc.mkdir(mode=0o750)
    (etc / "gateway.toml").write_text(config.text().replace('state_dir = "state"',
                                                            'state_dir = "/var/lib/ikeguard"'))
    for name, data in config.files().items():
        (etc / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    os.chown(etc, 0, GATEWAY_UID)
    os.chmod(etc / "gateway.toml", 0o640)
    os.chown(etc / "gateway.toml", 0, GATEWAY_UID)
    os.chmod(etc / "psk.txt", 0o600)
    os.chown(etc / "psk.txt", GATEWAY_UID, GATEWAY_UID)
    sysusers = workdir / "ikeguard.sysusers"
    sysusers.write_text(f'u ikeguard {GATEWAY_UID} "ikeguard gateway" /var/lib/ikeguard\n')
    bindir = workdir / "bin"
    bindir.mkdir()
    (bindir / "ikeguard").write_text(CONSOLE_SCRIPT)
    (bindir / "ikeguard").chmod(0o755)
    site_packages = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    return [f"--bind-ro={etc}:/etc/ikeguard", f"--bind-ro={UNIT}:/etc/systemd/system/ikeguard.service",
            f"--bind-ro={sysusers}:/etc/sysusers.d/ikeguard.conf", f"--bind-ro={bindir}:/usr/local/bin",
            f"--bind-ro={REPO / 'src'}:/opt/ikeguard/src",
            f"--bind-ro={site_packages}:/opt/ikeguard/site-packages"]


def test_unit_runs_the_gateway_under_systemd_as_its_own_user(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer], tmp_path: Path,
) -> None:
    if shutil.which("systemd-nspawn") is None:
        pytest.fail("systemd-nspawn is missing (make test installs systemd-container)")
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    config = GwConfig(str(right.address), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet), str(left.subnet),
                      psk=PSK, dataplane="userspace")
    container = BootedContainer(right.namespace, tmp_path)
    try:
        container.boot(_install_tree(tmp_path, config))
        assert wait_until(container.booted, 30)
        assert wait_until(lambda: container.unit_state() in ("active", "failed"), 60), container.journal()
        assert container.unit_state() == "active", container.journal()

        main_pid = container.run("systemctl", "show", "-p", "MainPID", "--value", "ikeguard.service").stdout
        owner = container.run("stat", "-c", "%U", f"/proc/{main_pid.strip()}").stdout.strip()
        assert owner == "ikeguard"  # User= from the unit, not root
        assert "ready" in container.journal()  # Type=notify: READY=1 reached systemd

        client = strongswan_peer(left.namespace, "client", connections=[ConnectionConfig(
            name="ikg", local_addrs=[str(left.address)], remote_addrs=[str(right.address)],
            proposals=[IKE_PROPOSAL], local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN),
            children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                                  esp_proposals=[ESP_PROPOSAL])])],
            psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])
        client.initiate(child="net", ike="ikg")
        ss_sa = client.wait_established("ikg", "net")

        sas = container.run("/usr/local/bin/ikeguard", "sas", "-c", "/etc/ikeguard/gateway.toml").stdout
        assert CLIENT_FQDN in sas and f"{ss_sa.child('net').spi_out:08x}" in sas, sas
        ping = left.namespace.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I",
                                  str(left.subnet_address), str(right.subnet_address), check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr  # TUN + routes inside the unit's sandbox

        container.run("systemctl", "stop", "ikeguard.service")
        assert container.unit_state() == "inactive"
        assert wait_until(lambda: client.list_sas() == [], 5)  # SIGTERM: the gateway deleted its SAs
    finally:
        container.shutdown()
