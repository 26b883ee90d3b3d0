"""GatewayProcess start/ready/stop/early exit, driven by a tiny stand-in speaking the systemd notify protocol.

The stand-in replaces `ikeguard run` (``argv=``) so these tests check the process handling itself: READY=1
over NOTIFY_SOCKET, the log tail of a gateway that dies during start, SIGTERM then SIGKILL by PID, files 0600,
and the same inside a network namespace. The real gateway is covered by the interop tests.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ikeguard.tools.gateway_process import (
    GatewayProcess,
    GatewayStartError,
    live_gateway_pids,
)
from ikeguard.tools.netns import NetnsLab
from tests.harness.ikeguard_conf import (
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    secret_files,
)

FAKE_GATEWAY = textwrap.dedent("""
    import os, signal, socket, sys, time
    mode = sys.argv[1]
    def notify(text):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.connect(os.environ["NOTIFY_SOCKET"])
        s.send(text.encode())
        s.close()
    def on_term(signum, frame):
        notify("STOPPING=1")
        print("got SIGTERM, stopping", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, lambda s, f: notify("RELOADING=1\\nREADY=1"))
    print("config", open(sys.argv[2]).read().strip(), flush=True)
    if mode == "fail":
        for i in range(60):
            print(f"log line {i}", flush=True)
        print("FATAL: config refused", flush=True)
        sys.exit(3)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(0.2)
    if mode != "hang":
        notify("STATUS=starting\\nREADY=1")
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
""")


def _gateway(tmp_path: Path, mode: str, netns: str | None = None, **kw: object) -> GatewayProcess:
    script = tmp_path / "fake_gateway.py"
    script.write_text(FAKE_GATEWAY)
    workdir = tmp_path / "gw"
    argv = [sys.executable, str(script), mode, str(workdir / "gateway.toml")]
    return GatewayProcess(netns, workdir, '[gateway]\nstate_dir = "st"\n', argv=argv, **kw)  # type: ignore[arg-type]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "X"
    return state not in ("Z", "X")


def test_start_waits_for_ready_and_stop_terminates_by_pid(tmp_path: Path) -> None:
    gw = _gateway(tmp_path, "ok", files={"pki/gw.key": b"key", "secrets/psk": "0xabc"})
    started = time.monotonic()
    gw.start(timeout=10)
    assert time.monotonic() - started >= 0.2  # it waited for the notify, not just for the process
    assert gw.running and gw.pid in live_gateway_pids()
    assert gw.notify_messages()[:2] == ["STATUS=starting", "READY=1"]
    for rel in ("gateway.toml", "pki/gw.key", "secrets/psk"):
        assert stat.S_IMODE((gw.workdir / rel).stat().st_mode) == 0o600
    assert (gw.workdir / "pki" / "gw.key").read_bytes() == b"key"
    assert gw.state_dir == gw.workdir / "st"
    assert gw.control_socket == gw.workdir / "st" / "control.sock"
    pid = gw.pid
    assert pid is not None
    assert gw.stop() == 0
    assert not _alive(pid)
    assert "STOPPING=1" in gw.notifications
    assert "got SIGTERM" in gw.log()
    assert gw.notify_path is not None and not gw.notify_path.exists()
    assert gw.stop() == 0  # idempotent


def test_early_exit_raises_with_the_last_40_log_lines(tmp_path: Path) -> None:
    gw = _gateway(tmp_path, "fail")
    with pytest.raises(GatewayStartError) as info:
        gw.start(timeout=10)
    assert info.value.returncode == 3
    tail = info.value.log_tail.splitlines()
    assert len(tail) == 40
    assert tail[-1] == "FATAL: config refused"
    assert "log line 59" in str(info.value) and "log line 20" not in str(info.value)
    assert not gw.running


def test_no_ready_within_timeout_raises_and_leaves_no_process(tmp_path: Path) -> None:
    gw = _gateway(tmp_path, "hang")
    with pytest.raises(GatewayStartError, match=r"did not send READY=1 within 0\.6s"):
        gw.start(timeout=0.6)
    assert gw.pid is not None and not _alive(gw.pid)


def test_sigkill_after_the_stop_timeout(tmp_path: Path) -> None:
    gw = _gateway(tmp_path, "ignore-term").start(timeout=10)
    started = time.monotonic()
    assert gw.stop(timeout=0.5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5


def test_kill_and_reload_signal(tmp_path: Path) -> None:
    with _gateway(tmp_path, "ok") as gw:
        gw.reload()
        deadline = time.monotonic() + 5
        while "RELOADING=1" not in gw.notify_messages() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "RELOADING=1" in gw.notifications
        assert gw.kill() == -signal.SIGKILL
    assert not gw.running


def test_long_workdir_falls_back_to_a_short_notify_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    script = tmp_path / "fake_gateway.py"
    script.write_text(FAKE_GATEWAY)
    argv = [sys.executable, str(script), "ok", str(deep / "gw" / "gateway.toml")]
    gw = GatewayProcess(None, deep / "gw", "", argv=argv)
    with gw:
        assert gw.notify_path is not None and str(gw.notify_path).startswith("/tmp/ikg-notify-")
    assert not gw.notify_path.parent.exists()


def test_refuses_paths_outside_the_workdir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="relative path"):
        GatewayProcess(None, tmp_path, "", {"../escape": "x"})
    with pytest.raises(ValueError, match="relative path"):
        GatewayProcess(None, tmp_path, "", {"/etc/passwd": "x"})


@pytest.mark.root
def test_ready_from_inside_a_network_namespace(tmp_path: Path) -> None:
    with NetnsLab() as lab:
        ns = lab.namespace("gwp")
        gw = _gateway(tmp_path, "ok", netns=ns.name)
        with gw:
            assert gw.pid in ns.pids()  # `ip netns exec` execs in place: our PID is the gateway itself
        assert gw.returncode == 0


def test_fixture_stops_gateways_after_the_test(ikeguard_gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "fake_gateway.py"
    script.write_text(FAKE_GATEWAY)
    argv = [sys.executable, str(script), "ok", str(tmp_path / "fx" / "gateway.toml")]
    gw = ikeguard_gateway(None, "fx", "[gateway]\n", argv=argv)
    assert gw.running and gw.workdir == tmp_path / "fx"
    assert "config [gateway]" in gw.log()


FAILING_TEST = textwrap.dedent("""
    import sys
    from pathlib import Path

    def test_fails(ikeguard_gateway, tmp_path):
        script = Path(__file__).parent / "fake_gateway.py"
        argv = [sys.executable, str(script), "ok", str(tmp_path / "gw" / "gateway.toml")]
        gw = ikeguard_gateway(None, "gw", "", argv=argv)
        print("GATEWAY_PID", gw.pid, flush=True)
        assert False, "the test fails with the gateway running"
""")


def test_a_failing_test_leaves_no_gateway_and_reports_its_log(tmp_path: Path) -> None:
    (tmp_path / "fake_gateway.py").write_text(FAKE_GATEWAY)
    (tmp_path / "test_case.py").write_text(FAILING_TEST)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{repo / 'src'}"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "tests.harness.plugin", "-p", "no:cacheprovider",
         str(tmp_path / "test_case.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    pid = int(next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("GATEWAY_PID")))
    assert not _alive(pid)
    assert "ikeguard log: gw" in result.stdout and "ready" in result.stdout
    assert "left behind" not in result.stdout


# -- the real `ikeguard run` -------------------------------------------------------------------------------
def _psk_config(profile: str = "baseline", *, inline: bool = False) -> tuple[str, dict[str, str]]:
    psk = IkgSecret("client", ids=["client.ss-lab.example"], secret="0x" + "5a" * 32, in_file=not inline)
    child = IkgChild("net", local_ts=["198.51.100.0/25"], remote_ts=["198.51.100.128/25"])
    text = gateway_toml(
        [IkgConnection("clients", local_addrs=["192.0.2.1"], remote_addrs=["%any"],
                       local=IkgLocal("psk", id="gw.ss-lab.example"),
                       remote=IkgRemote("psk", id="client.ss-lab.example"), children=[child])],
        secrets=[psk], profile=profile,
    )
    return text, secret_files([psk])


@pytest.mark.root
def test_real_gateway_ready_queries_and_clean_stop(tmp_path: Path) -> None:
    with NetnsLab() as lab:
        ns = lab.namespace("gwp")
        ns.add_address("lo", "192.0.2.1/32")
        config, files = _psk_config()
        with GatewayProcess(ns.name, tmp_path / "gw", config, files) as gw:
            assert gw.sas() == []
            [conn] = gw.cli("conns")
            assert conn["name"] == "clients" and conn["status"] == "down"
            assert gw.control_socket.exists()
            loaded = gw.wait_audit(lambda e: e["event"] == "config.loaded")
            assert loaded["outcome"] == "success"
        assert gw.returncode == 0
        assert "STOPPING=1" in gw.notifications
        assert not gw.control_socket.exists()


@pytest.mark.root
def test_real_gateway_refusing_its_config_raises_with_the_findings(tmp_path: Path) -> None:
    with NetnsLab() as lab:
        ns = lab.namespace("gwp")
        ns.add_address("lo", "192.0.2.1/32")
        config, _ = _psk_config(profile="pci-dss-4", inline=True)  # pci-dss-4: no secret written inline
        gw = GatewayProcess(ns.name, tmp_path / "gw", config)
        with pytest.raises(GatewayStartError) as info:
            gw.start(timeout=20)
        assert info.value.returncode == 1
        assert "secrets.ike.client.secret" in info.value.log_tail
        assert not gw.running
