"""Two ikeguard userspace data planes in network namespaces with static, matching SAs (keys from urandom)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ikeguard.tools.netns import Namespace, Topology, stop_process

REPO = Path(__file__).resolve().parents[2]


def sa_json(spi: int, direction: str, key: str, src: str, dst: str, local_ts: list[str],
            remote_ts: list[str], encr: str = "aes256gcm16", **extra: Any) -> dict[str, Any]:
    return {"spi": spi, "direction": direction, "encr": encr, "encr_key": key, "source": f"{src}:4500",
            "destination": f"{dst}:4500", "local_ts": local_ts, "remote_ts": remote_ts, "replay_window": 128,
            "child": 1, **extra}


KEY_LENGTHS = {"aes256gcm16": 36, "aes128gcm16": 20, "chacha20poly1305": 36, "aes256": 32, "aes128": 16}
INTEG_KEY_LENGTHS = {"": 0, "sha256": 32, "sha384": 48, "sha512": 64}


@dataclass
class SaPair:
    """Keys and SPIs of one Child SA (both directions) between left and right."""

    spi_lr: int
    spi_rl: int
    encr: str = "aes256gcm16"
    integ: str = ""
    esn: bool = False
    encap: bool = True
    child: int = 1
    keys: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for d in ("lr", "rl"):
            self.keys[d] = os.urandom(KEY_LENGTHS[self.encr]).hex()
            self.keys[d + "_integ"] = os.urandom(INTEG_KEY_LENGTHS[self.integ]).hex()

    def _sa(self, d: str, direction: str, src: str, dst: str, lts: list[str],
            rts: list[str]) -> dict[str, Any]:
        spi = self.spi_lr if d == "lr" else self.spi_rl
        return sa_json(spi, direction, self.keys[d], src, dst, lts, rts, encr=self.encr, integ=self.integ,
                       integ_key=self.keys[d + "_integ"], esn=self.esn, encap=self.encap,
                       child=self.child)

    def left(self, topo: Topology) -> tuple[dict[str, Any], dict[str, Any]]:
        l_, r = topo.left, topo.right
        lts, rts = [str(l_.subnet), str(l_.subnet6)], [str(r.subnet), str(r.subnet6)]
        return (self._sa("lr", "out", str(l_.address), str(r.address), lts, rts),
                self._sa("rl", "in", str(r.address), str(l_.address), lts, rts))

    def right(self, topo: Topology) -> tuple[dict[str, Any], dict[str, Any]]:
        l_, r = topo.left, topo.right
        lts, rts = [str(r.subnet), str(r.subnet6)], [str(l_.subnet), str(l_.subnet6)]
        return (self._sa("rl", "out", str(r.address), str(l_.address), lts, rts),
                self._sa("lr", "in", str(l_.address), str(r.address), lts, rts))


class DataPlaneProcess:
    """``python -m ikeguard.dataplane.userspace`` inside a namespace, controlled over stdin/stdout."""

    def __init__(self, ns: Namespace, config: dict[str, Any], workdir: Path) -> None:
        path = workdir / f"{ns.role}.json"
        path.write_text(json.dumps(config))
        self.stderr_path = workdir / f"{ns.role}.stderr"
        self.stderr = self.stderr_path.open("w")
        self.proc = ns.popen([sys.executable, "-m", "ikeguard.dataplane.userspace", str(path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                             cwd=REPO)
        ready = self._line()
        assert ready.get("ready"), ready

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"data plane exited: {self.stderr_path.read_text()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def cmd(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        reply = self._line()
        assert reply.get("ok"), reply
        return reply

    def sa(self, spi: int, direction: str) -> dict[str, Any]:
        for sa in self.cmd(op="counters")["sas"]:
            if sa["spi"] == f"{spi:08x}" and sa["direction"] == direction:
                return dict(sa)
        raise AssertionError(f"no SA {spi:08x}/{direction}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.stderr.close()


def start_planes(topo: Topology, pair: SaPair, workdir: Path, left_extra: dict[str, Any] | None = None,
                 **extra: Any) -> tuple[DataPlaneProcess, DataPlaneProcess]:
    def config(side: str) -> dict[str, Any]:
        host, sas = (topo.left, pair.left(topo)) if side == "left" else (topo.right, pair.right(topo))
        more = left_extra if side == "left" and left_extra else {}
        addresses = [f"{host.subnet_address}/32", f"{host.subnet_address6}/128"]
        return {"tun": "ikgdp0", "tun_addresses": addresses, "listen": str(host.address), "port": 4500,
                "sas": list(sas), **extra, **more}

    right = DataPlaneProcess(topo.right.namespace, config("right"), workdir)
    left = DataPlaneProcess(topo.left.namespace, config("left"), workdir)
    return left, right


class Capture:
    """tcpdump on an interface of a namespace, writing a pcap we parse ourselves."""

    def __init__(self, ns: Namespace, ifname: str, bpf: str, path: Path) -> None:
        self.path = path
        self.proc = ns.popen(["tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-w", str(path), bpf],
                             stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # "tcpdump: listening on ..."
        assert "listening" in line, line

    def stop(self) -> list[bytes]:
        time.sleep(0.3)
        stop_process(self.proc)
        return read_pcap(self.path)


def read_pcap(path: Path) -> list[bytes]:
    """Frames of a classic pcap file (link type Ethernet)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    frames, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, off + 8)[0]
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return frames


def udp_payloads(frames: list[bytes]) -> list[bytes]:
    """UDP payloads of IPv4-over-Ethernet frames."""
    out = []
    for f in frames:
        if len(f) < 42 or f[12:14] != b"\x08\x00" or f[23] != 17:
            continue
        ihl = (f[14] & 0x0F) * 4
        out.append(f[14 + ihl + 8 :])
    return out


def nettool(ns: Namespace, *args: str) -> subprocess.Popen[str]:
    return ns.popen([sys.executable, "-m", "tests.dataplane.nettools", *args], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, cwd=REPO)


def wait_listening(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "listening"


def esp_streams(frames: list[bytes]) -> dict[int, list[int]]:
    """ESP-in-UDP sequence numbers on the wire by SPI (keepalives and IKE, with a zero marker, left out)."""
    seqs: dict[int, list[int]] = defaultdict(list)
    for payload in udp_payloads(frames):
        if len(payload) >= 8 and payload[:4] != b"\x00\x00\x00\x00":
            spi, seq = struct.unpack_from("!II", payload)
            seqs[spi].append(seq)
    return seqs


def assert_one_sender_each(seqs: dict[int, list[int]]) -> None:
    """One sender per SA (issue 22, AES-GCM nonce safety): no sequence number twice, none out of order."""
    for spi, stream in seqs.items():
        assert len(stream) == len(set(stream)), f"SPI {spi:08x}: a sequence number sent twice"
        assert stream == sorted(stream), f"SPI {spi:08x}: numbers out of order on the wire (two senders?)"
