"""keepalived (Debian package) in a test namespace: one VRRP instance moving a virtual address, track scripts
on the ikeguard process and on its HA health (``ha_notify --check``: made MASTER but unable to hold the etcd
lease, docs/ha.md), and a notify script running ``python3 -m ikeguard.control.ha_notify`` (docs/ha.md).
Stopped by its PID through the namespace lab. Missing under CI=true it fails the test, else it is skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ikeguard.tools.netns import Namespace


def keepalived(ns: Namespace, workdir: Path, *, name: str, priority: int, vip: str, ifname: str,
               gateway_pid: int, socket: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("keepalived") or ("/usr/sbin/keepalived" if Path("/usr/sbin/keepalived").exists()
                                             else None)
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("keepalived is not installed (keepalived)")
        pytest.skip("keepalived is not installed (keepalived)")
    workdir.mkdir(parents=True, exist_ok=True)
    notify = workdir / "notify.sh"
    notify.write_text(f"#!/bin/sh\necho \"$(date +%s.%N) $3\" >> {workdir}/notify.log\n"
                      f"exec {sys.executable} -m ikeguard.control.ha_notify --socket {socket} \"$@\" "
                      f">> {workdir}/notify.log 2>&1\n")
    notify.chmod(0o700)
    check = workdir / "check.sh"
    check.write_text(f"#!/bin/sh\nexec {sys.executable} -m ikeguard.control.ha_notify --socket {socket} "
                     f"--check >/dev/null 2>&1\n")
    check.chmod(0o700)
    conf = workdir / "keepalived.conf"
    conf.write_text(f"""global_defs {{
    router_id {name}
    script_user root
    vrrp_version 3
    vrrp_garp_master_repeat 3
}}
vrrp_script ikeguard_alive {{
    script "/bin/kill -0 {gateway_pid}"
    interval 1
    fall 1
    rise 1
}}
vrrp_script ikeguard_lease {{
    script "{check}"
    interval 1
    timeout 2
    fall 1
    rise 1
}}
vrrp_instance gw {{
    state BACKUP
    interface {ifname}
    virtual_router_id 51
    priority {priority}
    advert_int 0.2
    garp_master_refresh 1
    nopreempt
    virtual_ipaddress {{
        {vip} dev {ifname}
    }}
    track_script {{
        ikeguard_alive
        ikeguard_lease
    }}
    notify {notify}
}}
""")
    log = (workdir / "keepalived.log").open("wb")
    return ns.popen([binary, "-n", "-l", "-D", "-P", "-f", str(conf), "-p", str(workdir / "k.pid"),
                     "-r", str(workdir / "v.pid"), "-c", str(workdir / "c.pid")], stdout=log, stderr=log)
