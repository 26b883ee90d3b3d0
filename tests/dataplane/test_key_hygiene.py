"""Issue 16 item 8, key hygiene: when an SA is deleted its keys are overwritten, not only dropped
(docs/key-hygiene.md says what Python can and cannot guarantee)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ikeguard.dataplane.base import SaConfig, SaDirection
from ikeguard.dataplane.esp import EspError
from ikeguard.dataplane.table import SaTable, Send
from ikeguard.engine.events import ChildSaSpec, Direction, Endpoint, InstallChildSa
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.iana import EncrId, IntegId
from tests.dataplane.packets import udp4
from tests.harness.memscan import count_in_process

ROOT = Path(__file__).resolve().parents[2]
LEFT = TrafficSelector.for_network(ipaddress.ip_network("198.51.100.0/24"))
RIGHT = TrafficSelector.for_network(ipaddress.ip_network("203.0.113.0/24"))
A = Endpoint(ipaddress.ip_address("192.0.2.1"), 4500)
B = Endpoint(ipaddress.ip_address("192.0.2.2"), 4500)


def _event(direction: Direction, encr_id: int, bits: int, integ_id: int, keys: tuple[bytes, bytes],
           us: str) -> InstallChildSa:
    """What the engine emits: fresh bytearray copies of one direction's keys."""
    inbound = direction is Direction.INBOUND
    local, remote = (A, B) if us == "a" else (B, A)
    lts, rts = (LEFT, RIGHT) if us == "a" else (RIGHT, LEFT)
    spec = ChildSaSpec(0x4242, encr_id, bits, integ_id, False, bytearray(keys[0]), bytearray(keys[1]),
                       remote if inbound else local, local if inbound else remote, True, "tunnel", 64,
                       (lts,), (rts,))
    return InstallChildSa(1, 2, "net", direction, spec, "test")


@pytest.mark.parametrize("encr_id,bits,integ_id,key_lens", [
    (EncrId.AES_GCM_16, 256, 0, (36, 0)),
    (EncrId.CHACHA20_POLY1305, 256, 0, (36, 0)),
    (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128, (32, 32)),
])
def test_a_deleted_sa_has_its_keys_zeroed_and_refuses_packets(encr_id: int, bits: int, integ_id: int,
                                                             key_lens: tuple[int, int]) -> None:
    keys = (os.urandom(key_lens[0]), os.urandom(key_lens[1]))
    a, b = SaTable(), SaTable()
    out_event = _event(Direction.OUTBOUND, encr_id, bits, integ_id, keys, "a")
    in_event = _event(Direction.INBOUND, encr_id, bits, integ_id, keys, "b")
    a.add_sa(SaConfig.from_install(out_event))
    b.add_sa(SaConfig.from_install(in_event))
    sent = a.outbound(udp4("198.51.100.5", "203.0.113.5", 1, 2, b"hello"))
    assert isinstance(sent, Send) and b.inbound(sent.data) is not None
    sa_out = a.policies()[0].outbound
    assert sa_out is not None

    assert a.delete_sa(0x4242, SaDirection.OUTBOUND, 2) is not None
    assert b.delete_sa(0x4242, SaDirection.INBOUND, 2) is not None

    # the data plane took over the engine's copies and overwrote them (and its own derived ones)
    for event in (out_event, in_event):
        assert not any(event.sa.encr_key) and not any(event.sa.integ_key)
    assert b.inbound(sent.data) is None and b.drops.get("unknown_spi") == 1
    with pytest.raises(EspError, match="deleted"):  # a stale reference cannot encrypt with a zero key
        sa_out.protect(udp4("198.51.100.5", "203.0.113.5", 1, 2, b"late"))


def test_a_refused_install_wipes_its_keys() -> None:
    event = _event(Direction.INBOUND, EncrId.AES_GCM_16, 256, 0, (os.urandom(36), b""), "b")
    table = SaTable()
    table.add_sa(SaConfig.from_install(event))
    again = _event(Direction.INBOUND, EncrId.AES_GCM_16, 256, 0, (os.urandom(36), b""), "b")
    with pytest.raises(Exception, match="duplicate_spi"):
        table.add_sa(SaConfig.from_install(again))
    assert not any(again.sa.encr_key) and any(event.sa.encr_key)


def test_no_copy_of_a_deleted_sas_keys_is_left_in_the_process_memory() -> None:
    """Two engines and two data-plane tables in a child process: while the SA is up its ESP keys, SK_d and
    SK_e are found in the process's memory (the scan works); after the IKE SA is deleted none is found,
    live or in freed memory. On the previous commit each ESP key was still found after the delete."""
    child = subprocess.Popen([sys.executable, "-m", "tests.dataplane.key_residue_child"], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdin is not None and child.stdout is not None
        needles = [bytes.fromhex(h) for h in child.stdout.readline().split()]
        assert len(needles) == 5 and child.stdout.readline().strip() == "up"
        up = count_in_process(child.pid, needles)
        assert all(n >= 1 for n in up.values()), up
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "down"
        down = count_in_process(child.pid, needles)
        names = ["ESP in", "ESP out", "SK_d", "SK_ei", "SK_er"]
        assert {name: down[n] for name, n in zip(names, needles, strict=True)} == dict.fromkeys(names, 0)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
