"""A responder (``IkeManager``) in each state a hostile datagram can meet, built with tests/engine/harness.py:
fresh (IKE_SA_INIT), busy (COOKIE mode), half-open with the initiator's real keys (IKE_AUTH), and established
(CREATE_CHILD_SA, INFORMATIONAL), so that tests and the fuzz targets under fuzz/ can send crafted plaintext
payload chains encrypted with the real keys and measure what one datagram costs.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ikeguard.crypto.random import DeterministicRandom
from ikeguard.engine.events import Endpoint, SendDatagram
from ikeguard.engine.ike_sa import IkeSa
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.settings import EngineSettings
from ikeguard.engine.states import IkeState
from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType
from tests.engine.harness import FAST, Network, child, mirror, pair, psk_conn
from tests.wire.hostile import Chain, seal

ME = Endpoint(ipaddress.ip_address("198.51.100.1"), 500)
PEER = Endpoint(ipaddress.ip_address("203.0.113.9"), 500)
ENCRYPTED = (ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL)


def responder(settings: EngineSettings = FAST) -> IkeManager:
    """A responder with one PSK connection and no SA."""
    conn = psk_conn("tunnel", "b.example.net", "a.example.net", (child(),))
    return IkeManager([conn], settings, random=DeterministicRandom(7))


def busy_responder() -> IkeManager:
    """A responder in COOKIE mode (RFC 7296 §2.6): one half-open SA already at ``cookie_threshold`` = 1."""
    gw = responder(replace(FAST, cookie_threshold=1))
    net = _pair()
    net.a.manager.initiate("tunnel", local=net.a.endpoint, remote=net.b.endpoint, now=0.0)
    request = next(e.data for e in net.a.manager.events() if isinstance(e, SendDatagram))
    gw.receive_datagram(request, ME, Endpoint(ipaddress.ip_address("203.0.113.77"), 500), 0.0)
    gw.events()
    assert gw.half_open_count() == 1
    return gw


def _pair() -> Network:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    return pair([a], [b])


@dataclass
class KeyedLab:
    """An initiator ``a`` and the responder ``b`` under test, after IKE_SA_INIT (half-open) or IKE_AUTH."""

    net: Network
    a_sa: IkeSa
    b_sa: IkeSa

    def datagram(self, exchange: ExchangeType, inner: Chain, message_id: int | None = None) -> bytes:
        """``HDR, SK {inner}`` from the initiator, sealed with its real outbound keys."""
        assert self.a_sa.crypto is not None
        mid = self.b_sa.window.expected_peer_id if message_id is None else message_id
        header = IkeHeader(self.a_sa.spi_i, self.a_sa.spi_r, exchange, HeaderFlags.INITIATOR, mid)
        return seal(header, inner, self.a_sa.crypto.outbound)

    def send(self, data: bytes) -> float:
        """Deliver ``data`` to the responder; the CPU seconds ``receive_datagram`` took."""
        manager = self.net.b.manager
        start = time.process_time()
        manager.receive_datagram(data, self.net.b.endpoint, self.net.a.endpoint, self.net.now)
        spent = time.process_time() - start
        manager.events()
        return spent

    def intact(self) -> bool:
        """Whether the responder's SA is as built (reusable for another datagram)."""
        return self.b_sa.state in (IkeState.HALF_OPEN, IkeState.ESTABLISHED) and len(
            self.net.b.manager.ike_sas()
        ) == 1


def half_open() -> KeyedLab:
    """IKE_SA_INIT done, the initiator's IKE_AUTH request dropped: the responder waits for IKE_AUTH."""
    net = _pair()
    net.filter = lambda dgram, side: [] if side == "a" and dgram.data[18] == ExchangeType.IKE_AUTH else [
        dgram
    ]
    net.initiate()
    net.run()
    net.in_flight.clear()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert b_sa.state is IkeState.HALF_OPEN and a_sa.crypto is not None
    net.filter = None
    return KeyedLab(net, a_sa, b_sa)


def established() -> KeyedLab:
    """Both sides ESTABLISHED with one Child SA."""
    net = _pair()
    net.initiate()
    net.run()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert b_sa.state is IkeState.ESTABLISHED and a_sa.crypto is not None and b_sa.children
    net.a.manager.events()
    net.b.manager.events()
    return KeyedLab(net, a_sa, b_sa)


LABS: dict[ExchangeType, Callable[[], KeyedLab]] = {
    ExchangeType.IKE_AUTH: half_open,
    ExchangeType.CREATE_CHILD_SA: established,
    ExchangeType.INFORMATIONAL: established,
}
"""The state a request of each encrypted exchange is sent to."""


def send_plain(manager: IkeManager, data: bytes) -> float:
    """Deliver ``data`` to ``manager`` from PEER; the CPU seconds ``receive_datagram`` took."""
    start = time.process_time()
    manager.receive_datagram(data, ME, PEER, 0.0)
    spent = time.process_time() - start
    manager.events()
    return spent
