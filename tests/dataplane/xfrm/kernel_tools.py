"""Test helpers for the XFRM backend: iproute2's own netlink bytes (captured with strace) and a parser for
``ip xfrm policy`` text (iproute2 6.1 prints no JSON for xfrm)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ikeguard.dataplane.xfrm.structs import split_nlmsgs

_HEX_LINE = re.compile(r"^ \| [0-9a-f]{5}  ((?:[0-9a-f]{2} {1,2}){1,16})")


def iproute2_request(netns: str, args: list[str], tmp: Path) -> tuple[int, int, bytes, str]:
    """Run ``ip ARGS`` in ``netns`` under strace; return (message type, flags, payload, stderr) of the first
    netlink request it sent (the payload without ``nlmsghdr``)."""
    trace = tmp / "strace.txt"
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "strace",
            "-qq",
            "-o",
            str(trace),
            "-e",
            "trace=sendmsg",
            "-e",
            "write=all",
            "ip",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    buffers: list[bytearray] = []
    for line in trace.read_text().splitlines():
        if line.startswith(" * ") and "bytes in buffer" in line:
            buffers.append(bytearray())
            continue
        m = _HEX_LINE.match(line)
        if m and buffers:
            buffers[-1] += bytes.fromhex(m.group(1).replace(" ", ""))
    if not buffers:
        raise AssertionError(f"strace captured no netlink request from ip {args}: {proc.stderr}")
    msg_type, flags, _seq, payload = split_nlmsgs(bytes(buffers[0]))[0]
    return msg_type, flags, payload, proc.stderr


@dataclass
class ShownPolicy:
    """One policy as ``ip xfrm policy`` prints it."""

    src: str
    dst: str
    selector_extra: dict[str, str]
    dir: str
    priority: int
    action: str
    tmpl_src: str = ""
    tmpl_dst: str = ""
    tmpl: dict[str, str] = field(default_factory=dict)
    if_id: str = ""
    mark: str = ""


def shown_policies(netns: str) -> list[ShownPolicy]:
    """Parse ``ip xfrm policy`` in ``netns``."""
    text = subprocess.run(
        ["ip", "-n", netns, "xfrm", "policy"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    out: list[ShownPolicy] = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if not line.startswith(("\t", " ")) and words[0] == "src":
            extra = dict(zip(words[4::2], words[5::2], strict=False))
            out.append(ShownPolicy(words[1], words[3], extra, "", 0, "allow"))
            continue
        if not out:
            continue
        cur = out[-1]
        if words[0] == "dir":
            cur.dir = words[1]
            kv = dict(zip(words[2::2], words[3::2], strict=False))
            cur.priority = int(kv.get("priority", "0"))
            cur.action = kv.get("action", "allow")
        elif words[0] == "tmpl":
            cur.tmpl_src, cur.tmpl_dst = words[2], words[4]
        elif words[0] == "proto":
            cur.tmpl.update(dict(zip(words[0::2], words[1::2], strict=False)))
        elif words[0] == "if_id":
            cur.if_id = words[1]
        elif words[0] == "mark":
            cur.mark = " ".join(words[1:])
    return out
