"""strongSwan's own tools against ikeguard's vici socket (`[gateway] vici`), with a running `ikeguard run`
gateway and a strongSwan peer in network namespaces:

* Debian's ``swanctl`` binary (``--uri unix://...``) runs ``--version``, ``--stats``, ``--list-conns``,
  ``--log``, ``--initiate``, ``--list-sas``, ``--rekey``, ``--terminate`` and ``--load-conns`` (checked like
  a reload: a weak connection is refused with the profile's findings) and prints the SAs with the SPIs that
  ``ikeguard sas --json`` reports (and the peer's charon agrees with);
* strongSwan's Python ``vici`` package lists the SAs (parsed by the harness's charon parser) and follows
  ``ike-updown`` events;
* every command is in the audit trail as ``admin.command`` with the user; a local user who is neither root
  nor the gateway's user cannot use the socket (file mode, and SO_PEERCRED when the mode is opened up).
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import vici

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, wait_until
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.sa_info import IkeSaInfo
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PSK = "vici-test-psk-8e1f3a5b7c9d0e2f4a6b"
SWANCTL = shutil.which("swanctl") or "/usr/sbin/swanctl"


@pytest.fixture
def vici_dir() -> Iterator[Path]:
    """A short private directory for the socket (sun_path is 108 bytes; pytest's tmp_path can be longer)."""
    path = Path(tempfile.mkdtemp(prefix="ikgvici"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _setup(netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
           ikeguard_gateway: Callable[..., GatewayProcess], sock: Path
           ) -> tuple[Topology, StrongSwanPeer, GatewayProcess]:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    conn = ConnectionConfig(
        name="ikg", local_addrs=[str(left.address)], remote_addrs=["%any"],
        local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN), proposals=[IKE_PROPOSAL],
        children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL])])
    peer = strongswan_peer(left.namespace, "client", connections=[conn],
                           psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])
    config = GwConfig(str(right.address), str(left.address), GW_FQDN, CLIENT_FQDN, str(right.subnet),
                      str(left.subnet), psk=PSK, extra_gateway=f'vici = "{sock}"')
    gw = ikeguard_gateway(right.namespace, "gw", config.text(), config.files())
    assert sock.exists() and (sock.stat().st_mode & 0o777) == 0o600
    return topo, peer, gw


def swanctl(sock: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run([SWANCTL, *args, "--uri", f"unix://{sock}"], capture_output=True, text=True,
                            timeout=60, check=False)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _installed(gw: GatewayProcess) -> list[dict[str, Any]]:
    return gw.wait_sas(lambda sas: bool(sas) and all(c["state"] == "installed" for c in sas[0]["children"])
                       and bool(sas[0]["children"]), timeout=15)


def test_swanctl_drives_and_lists_a_running_gateway(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], vici_dir: Path,
) -> None:
    sock = vici_dir / "charon.vici"
    _topo, peer, gw = _setup(netns_topology, strongswan_peer, ikeguard_gateway, sock)

    version = swanctl(sock, "--version", "--daemon")
    assert version.startswith("strongSwan ") and " ikeguard (Linux, " in version, version
    conns = swanctl(sock, "--list-conns")
    assert "ikg: IKEv2, no reauthentication, rekeying every 14400s" in conns, conns
    assert "local pre-shared key authentication:" in conns and f"id: {CLIENT_FQDN}" in conns
    assert "net: TUNNEL, rekeying every 3600s" in conns
    assert "IKE_SAs: 0 total, 0 half-open" in swanctl(sock, "--stats")

    logger = subprocess.Popen([SWANCTL, "--log", "--uri", f"unix://{sock}"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until(lambda: any(e["details"]["command"] == "vici register log"
                                      for e in gw.audit_events() if e["event"] == "admin.command"), 10)
        out = swanctl(sock, "--initiate", "--child", "net", "--timeout", "20")
        assert "initiate completed successfully" in out, out
        sa = _installed(gw)[0]
        time.sleep(0.5)
    finally:
        logger.send_signal(signal.SIGINT)
        logged, _ = logger.communicate(timeout=10)
    assert "00[IKE] ike.up success conn=ikg peer=client.ss-lab.example" in logged, logged
    assert "[CHD] child.up success conn=ikg" in logged
    child = sa["children"][0]
    listed = swanctl(sock, "--list-sas")
    # swanctl's own layout of charon's fields, with ikeguard's SPIs
    assert f"ikg: #{sa['uniqueid']}, ESTABLISHED, IKEv2, {sa['spi_i']}_i* {sa['spi_r']}_r" in listed, listed
    assert f"local  '{GW_FQDN}' @ {sa['local_addr']}[{sa['local_port']}]" in listed
    assert f"remote '{CLIENT_FQDN}' @ {sa['remote_addr']}[{sa['remote_port']}]" in listed
    assert "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384" in listed
    mode = "TUNNEL-in-UDP" if sa["encap"] else "TUNNEL"  # no PFS group: the IKE_AUTH Child SA has no KE
    assert f"net: #{child['uniqueid']}, reqid 0, INSTALLED, {mode}, ESP:AES_GCM_16-256\n" in listed, listed
    assert f"in  {child['spi_in']}," in listed and f"out {child['spi_out']}," in listed
    assert f"local  {child['local_ts'][0]}" in listed and f"remote {child['remote_ts'][0]}" in listed
    # ... and the peer's charon sees the same SA
    ss = peer.wait_established("ikg", "net")
    assert (f"{ss.initiator_spi:016x}", f"{ss.responder_spi:016x}") == (sa["spi_i"], sa["spi_r"])
    assert f"{ss.child('net').spi_out:08x}" == child["spi_in"]
    assert "IKE_SAs: 1 total, 0 half-open" in swanctl(sock, "--stats")
    # the CLI's own view agrees
    cli = gw.cli("sas")
    assert cli[0]["children"][0]["spi_in"] == child["spi_in"]

    assert "rekey completed successfully" in swanctl(sock, "--rekey", "--child", "net")
    rekeyed = gw.wait_sas(lambda sas: bool(sas) and any(c["state"] == "installed" and c["spi_in"]
                                                        != child["spi_in"] for c in sas[0]["children"]),
                          timeout=15)
    new_spi = next(c["spi_in"] for c in rekeyed[0]["children"]
                   if c["state"] == "installed" and c["spi_in"] != child["spi_in"])
    assert wait_until(lambda: f"in  {new_spi}," in swanctl(sock, "--list-sas"), 10)

    assert "terminate completed successfully" in swanctl(sock, "--terminate", "--ike", "ikg")
    assert wait_until(lambda: gw.sas() == [], 10)
    assert wait_until(lambda: peer.list_sas() == [], 10)
    failed = swanctl(sock, "--terminate", "--ike", "ikg", check=False)
    assert "terminate failed" in failed

    gw.wait_audit(lambda e: e["event"] == "admin.command" and e["outcome"] == "failure"
                  and e["details"]["command"] == "vici terminate ike=ikg")
    commands = [(e["details"]["command"], e["outcome"], e["admin"]) for e in gw.audit_events()
                if e["event"] == "admin.command" and e["details"]["command"].startswith("vici")]
    names = [c[0].split()[1] for c in commands]
    for expected in ("version", "list-conns", "stats", "initiate", "list-sas", "rekey", "terminate"):
        assert expected in names, commands
    assert ("vici initiate child=net timeout=20000", "success", "root") in commands
    assert ("vici terminate ike=ikg", "failure", "root") in commands


def test_python_vici_lists_sas_and_follows_ike_updown(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], vici_dir: Path,
) -> None:
    sock = vici_dir / "charon.vici"
    _topo, peer, gw = _setup(netns_topology, strongswan_peer, ikeguard_gateway, sock)
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    listening = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            session = vici.Session(s)
            for kind, message in session.listen(["ike-updown", "child-updown"], timeout=0.2):
                listening.set()
                if stop.is_set():
                    break
                if kind is not None:
                    events.put((kind.decode(), message))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert listening.wait(10)

    # a script initiates through the vici package (control-log streamed while it runs); the events follow
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        logs = list(vici.Session(s).initiate({"child": "net", "timeout": "20000"}))
    assert any(b"ike.up success conn=ikg" in m["msg"] for m in logs), logs
    sa = _installed(gw)[0]
    kind, up = events.get(timeout=10)
    assert kind == "ike-updown" and up["up"] == b"yes"
    section = up["ikg"]
    assert section["initiator-spi"].decode() == sa["spi_i"]
    assert section["responder-spi"].decode() == sa["spi_r"]
    assert section["state"] == b"ESTABLISHED" and "child-sas" not in section
    kind, child_up = events.get(timeout=10)
    assert kind == "child-updown" and child_up["up"] == b"yes"
    assert [c["spi-in"].decode() for c in child_up["ikg"]["child-sas"].values()] == \
        [sa["children"][0]["spi_in"]]

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        session = vici.Session(s)
        listed = [IkeSaInfo.parse(name, raw) for event in session.list_sas() for name, raw in event.items()]
        assert len(listed) == 1
        info = listed[0]
        assert (f"{info.initiator_spi:016x}", f"{info.responder_spi:016x}") == (sa["spi_i"], sa["spi_r"])
        assert info.state == "ESTABLISHED" and info.initiator
        assert f"{info.child('net').spi_in:08x}" == sa["children"][0]["spi_in"]
        assert info.child("net").state == "INSTALLED"
        # install-time: seconds since the Child SA was installed (from sas --json installed_at)
        installed = dt.datetime.fromisoformat(str(sa["children"][0]["installed_at"]).replace("Z", "+00:00"))
        since = (dt.datetime.now(dt.UTC) - installed).total_seconds()
        install_time = info.child("net").install_time
        assert install_time is not None and since - 2 <= install_time <= since + 1
        assert session.version()["daemon"] == b"ikeguard"
        list(session.terminate({"ike-id": str(sa["uniqueid"]), "timeout": "5000"}))

    downs = []
    while len(downs) < 2:
        downs.append(events.get(timeout=10))
    ike_down = next(m for k, m in downs if k == "ike-updown")
    assert "up" not in ike_down and ike_down["ikg"]["initiator-spi"].decode() == sa["spi_i"]
    stop.set()
    listener.join(5)
    assert wait_until(lambda: peer.list_sas() == [], 10)
    gw.wait_audit(lambda e: e["event"] == "admin.command"
                  and e["details"]["command"] == "vici register ike-updown")


def test_unauthorised_local_user_cannot_use_the_socket(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], vici_dir: Path,
) -> None:
    sock = vici_dir / "charon.vici"
    _topo, _peer, gw = _setup(netns_topology, strongswan_peer, ikeguard_gateway, sock)
    nobody = pwd.getpwnam("nobody")

    def as_nobody() -> str:
        pid = os.fork()
        if pid == 0:  # child: drop to nobody and try the socket
            code = 3
            try:
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(5)
                    s.connect(str(sock))
                    session = vici.Session(s)
                    session.version()
                    code = 0
            except PermissionError:
                code = 1
            except Exception:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        outcomes = {0: "answered", 1: "permission denied", 2: "connection closed"}
        return outcomes.get(os.waitstatus_to_exitcode(status), "error")

    assert as_nobody() == "permission denied"  # mode 0600 socket in a 0700 directory
    # opened up by mistake: the server still refuses by SO_PEERCRED, and says so in the audit trail
    os.chmod(vici_dir, 0o755)
    os.chmod(sock, 0o666)
    assert as_nobody() == "connection closed"
    gw.wait_audit(lambda e: e["event"] == "admin.command" and e["outcome"] == "failure"
                  and e["details"]["command"] == "vici connect" and e["details"]["uid"] == nobody.pw_uid)
    assert " ikeguard (Linux, " in swanctl(sock, "--version", "--daemon")  # the owner is still served


def _conn(name: str, topo: Topology, ike: str, esp: str, remote_id: str, rekey: str = "4h") -> str:
    left, right = topo.left, topo.right
    return f"""\
    {name} {{
        local_addrs = {right.address}
        remote_addrs = {left.address}
        proposals = {ike}
        rekey_time = {rekey}
        local {{
            auth = psk
            id = {GW_FQDN}
        }}
        remote {{
            auth = psk
            id = {remote_id}
        }}
        children {{
            net {{
                local_ts = {right.subnet}
                remote_ts = {left.subnet}
                esp_proposals = {esp}
            }}
        }}
    }}
"""


def test_swanctl_load_conns_is_checked_like_a_reload(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], vici_dir: Path, tmp_path: Path,
) -> None:
    sock = vici_dir / "charon.vici"
    topo, _peer, gw = _setup(netns_topology, strongswan_peer, ikeguard_gateway, sock)
    conf = tmp_path / "swanctl.conf"

    # a weak connection is refused with the profile's findings; the running configuration stays
    conf.write_text("connections {\n" + _conn("weak", topo, "3des-sha1-modp1024", "3des-sha1",
                                              "weak.ss-lab.example") + "}\n")
    out = swanctl(sock, "--load-conns", "--file", str(conf), check=False)
    assert "loading connection 'weak' failed: configuration refused" in out, out
    assert "crypto.ike.encr" in out and "crypto.esp.encr" in out, out
    assert "weak" not in swanctl(sock, "--list-conns")

    # loading over a file connection replaces it (as charon does); it is live: initiated to the peer
    conf.write_text("connections {\n" + _conn("ikg", topo, IKE_PROPOSAL, ESP_PROPOSAL, CLIENT_FQDN, "2h")
                    + "}\n")
    out = swanctl(sock, "--load-conns", "--file", str(conf))
    assert "loaded connection 'ikg'" in out, out
    assert "ikg: IKEv2, no reauthentication, rekeying every 7200s" in swanctl(sock, "--list-conns")
    out = swanctl(sock, "--initiate", "--child", "net", "--timeout", "20")
    assert "initiate completed successfully" in out, out
    sa = _installed(gw)[0]
    assert sa["name"] == "ikg"

    # swanctl unloads what it loaded over vici (get-conns), and only that: the file's version is back
    conf.write_text("connections {\n}\n")
    out = swanctl(sock, "--load-conns", "--file", str(conf))
    assert "1 unloaded" in out, out
    assert "rekeying every 14400s" in swanctl(sock, "--list-conns")

    commands = [(e["details"]["command"], e["outcome"]) for e in gw.audit_events()
                if e["event"] == "admin.command"]
    assert ("vici load-conn weak", "failure") in commands
    assert ("vici load-conn ikg", "success") in commands
    assert ("vici unload-conn name=ikg", "success") in commands
    rejected = [e for e in gw.audit_events() if e["event"] == "config.rejected"]
    assert rejected and rejected[0]["admin"] == "root (vici)"
    assert any("crypto.ike.encr" in e["reason"] for e in rejected)
