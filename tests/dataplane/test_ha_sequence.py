"""Issue 20: an ESP SA taken over from another node continues its sequence state (RFC 4303 §3.3.3, §3.4.3):
the userspace data plane sends after ``seq_out`` and treats everything up to ``replay_top`` as seen; the XFRM
NEWSA carries the same state to the kernel (struct xfrm_replay_state(_esn) offsets from <linux/xfrm.h>)."""

from __future__ import annotations

import struct
import sys
from dataclasses import replace

from ikeguard.dataplane.table import SaTable
from ikeguard.dataplane.xfrm import messages as msg
from ikeguard.dataplane.xfrm.structs import parse_attrs
from tests.dataplane.packets import udp4
from tests.dataplane.test_table import sa_pair, send
from tests.dataplane.xfrm.sas import gcm_udp_sa

ORDER = "<" if sys.byteorder == "little" else ">"


def test_taken_over_sa_continues_after_the_replicated_numbers() -> None:
    a_out, b_in, _b_out, _a_in = sa_pair()
    early = SaTable()
    early.add_sa(a_out)
    packets = [send(early, udp4("198.51.100.7", "203.0.113.9", 1, 2, bytes([i]))) for i in range(3)]
    a, b = SaTable(), SaTable()
    a.add_sa(replace(a_out, seq_out=1000))  # the new node: numbers up to 1000 may have been sent
    b.add_sa(replace(b_in, replay_top=3))  # the new node's peer-facing side: 1..3 were received
    esp = send(a, udp4("198.51.100.7", "203.0.113.9", 1, 2, b"x"))
    assert struct.unpack_from("!I", esp, 4)[0] == 1001
    assert b.inbound(esp) is not None
    assert all(b.inbound(p) is None for p in packets)  # replays of what the old node received


def test_xfrm_newsa_carries_the_replicated_sequence_state() -> None:
    sa = replace(gcm_udp_sa(), seq_out=(7 << 32) + 1000, replay_top=5, esn=True, replay_window=64)
    attrs = dict(parse_attrs(msg.newsa(sa, reqid=5, options=msg.XfrmOptions())[224:]))
    bmp_len, oseq, seq, oseq_hi, seq_hi, window = struct.unpack_from(ORDER + "6I", attrs[23], 0)
    assert (bmp_len, oseq, seq, oseq_hi, seq_hi, window) == (2, 1000, 5, 7, 0, 64)
    legacy = replace(gcm_udp_sa(), seq_out=1000, replay_top=5, replay_window=32)
    attrs = dict(parse_attrs(msg.newsa(legacy, reqid=5, options=msg.XfrmOptions())[224:]))
    assert struct.unpack_from(ORDER + "3I", attrs[10], 0) == (1000, 5, 0xFFFFFFFF)
    fresh = dict(parse_attrs(msg.newsa(replace(legacy, seq_out=0, replay_top=0), 5, msg.XfrmOptions())[224:]))
    assert 10 not in fresh
