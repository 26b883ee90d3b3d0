"""Coverage-guided fuzz target (atheris) for the engine's responder path, through IkeManager.receive_datagram.

The first input octet chooses the state and what the rest is (tests/engine/responder_lab.py builds them):

0. an IKE_SA_INIT request (the whole datagram) to a fresh responder;
1. the same to a responder in COOKIE mode (RFC 7296 §2.6);
2. the plaintext payload chain of an IKE_AUTH request (first payload type in the second octet), encrypted
   with the real keys of a half-open IKE SA;
3. the same for CREATE_CHILD_SA and 4. for INFORMATIONAL, to an established IKE SA;
5. a whole datagram to the established IKE SA (its SPIs and the expected message ID written over the header).

The engine runs with ``raise_internal_errors`` so nothing is hidden: no exception may leave
``receive_datagram``, and each datagram must stay within the CPU bound (fuzz/common.py). Keyed states are
reused while the datagram left them as they were, else built again.

    python fuzz/fuzz_responder.py [libFuzzer flags] [corpus dirs]   # `make fuzz` runs it with fuzz/corpus/
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import common  # sets sys.path for tests.*; first, before the project's imports
from tests.engine import responder_lab
from tests.engine.responder_lab import KeyedLab

from ikeguard.engine.manager import IkeManager
from ikeguard.wire.header import HEADER_LEN
from ikeguard.wire.iana import ExchangeType

KEYED = (ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL)
_labs: dict[ExchangeType, KeyedLab] = {}
_busy: list[IkeManager] = []


def _lab(exchange: ExchangeType, fresh: bool) -> KeyedLab:
    lab = _labs.get(exchange)
    if fresh or lab is None or not lab.intact():
        lab = _labs[exchange] = responder_lab.LABS[exchange]()
    return lab


def _busy_responder(fresh: bool) -> IkeManager:
    if fresh or not _busy or _busy[0].half_open_count() != 1 or _busy[0].retained() > 4:
        _busy[:] = [responder_lab.busy_responder()]
    return _busy[0]


def _keyed(exchange: ExchangeType, inner: tuple[int, bytes]) -> Callable[[bool], float]:
    def run(fresh: bool) -> float:
        lab = _lab(exchange, fresh)
        data = lab.datagram(exchange, inner)
        return lab.send(data)

    return run


def _raw_to_established(data: bytes) -> Callable[[bool], float]:
    def run(fresh: bool) -> float:
        lab = _lab(ExchangeType.INFORMATIONAL, fresh)
        patched = bytearray(data)
        if len(patched) >= HEADER_LEN:
            patched[0:16] = lab.a_sa.spi_i + lab.a_sa.spi_r
            patched[20:24] = lab.b_sa.window.expected_peer_id.to_bytes(4, "big")
        return lab.send(bytes(patched))

    return run


def _plain(data: bytes, busy: bool) -> Callable[[bool], float]:
    def run(fresh: bool) -> float:
        manager = _busy_responder(fresh) if busy else responder_lab.responder()
        start = time.process_time()
        manager.receive_datagram(data, responder_lab.ME, responder_lab.PEER, 0.0)
        spent = time.process_time() - start
        manager.events()
        return spent

    return run


def one_input(data: bytes) -> None:
    """One fuzz input: mode octet, then the datagram or the inner chain (type octet, chain octets)."""
    if not data:
        return
    mode = data[0] % 6
    body = data[1:]
    if mode in (0, 1):
        run = _plain(body, busy=mode == 1)
    elif mode in (2, 3, 4):
        run = _keyed(KEYED[mode - 2], (body[0] if body else 0, body[1:]))
    else:
        run = _raw_to_established(body)
    first = [True]

    def measured() -> float:
        # the first run may reuse a state; a re-measurement starts from a freshly built one
        fresh, first[0] = not first[0], False
        return run(fresh)

    common.within_bound(measured, f"responder mode {mode}")


if __name__ == "__main__":
    common.run_target(one_input, sys.argv)
