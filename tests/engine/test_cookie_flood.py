"""Issue 22, half-open flood: the COOKIE mode's hysteresis, the stateless COOKIE answer built without the
message encoder, the quick answer the service uses for the kernel's bulk sockets, and the cookie of a retried
IKE_SA_INIT checked before any payload body is decoded (RFC 7296 §2.6)."""

from __future__ import annotations

import ipaddress
import os

import pytest

from ikeguard.engine.cookies import CookieMode, cookie_answer, is_fresh_init_request, offers_cookie
from ikeguard.engine.events import AuditEvent, Endpoint, SendDatagram
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.message import OutMessage, encode_message
from ikeguard.wire import message as wire_message
from ikeguard.wire.iana import ExchangeType, NotifyType
from ikeguard.wire.message import parse_message
from ikeguard.wire.payloads import NotifyPayload
from tests.engine.responder_lab import ME, PEER, _pair, busy_responder, responder


def _init_request() -> tuple[object, bytes]:
    net = _pair()
    net.a.manager.initiate("tunnel", local=net.a.endpoint, remote=net.b.endpoint, now=0.0)
    return net, next(e.data for e in net.a.manager.events() if isinstance(e, SendDatagram))


def test_cookie_answer_is_what_the_encoder_made() -> None:
    spi, cookie = os.urandom(8), os.urandom(33)
    reply = OutMessage(ExchangeType.IKE_SA_INIT, 0, response=True)
    reply.add_notify(NotifyType.COOKIE, cookie)
    [encoded] = encode_message(reply, spi, bytes(8), initiator=False, protector=None)
    assert cookie_answer(spi, cookie) == encoded


def test_cookie_mode_has_hysteresis() -> None:
    mode = CookieMode(hold=10.0)
    assert not mode.update(29, 30, 0.0)
    assert mode.update(30, 30, 1.0)  # on at the threshold
    assert mode.update(14, 30, 5.0)  # under half, but within the hold time
    assert mode.update(16, 30, 60.0)  # past the hold time, but over half of the threshold
    assert not mode.update(15, 30, 60.0)  # both: off
    assert mode.update(30, 30, 61.0)
    # cookie-less requests answered with a cookie at the threshold's rate keep it on with no half-open SA
    for t in range(61, 200):
        for quarter in range(4):  # 40 per hold window
            mode.demanded(30, t + quarter / 4)
        assert mode.update(0, 30, t + 0.9), t
    assert mode.update(0, 30, 205.0)  # the last pressure was at 199.75
    assert not mode.update(0, 30, 210.0)
    assert not mode.update(100, 0, 211.0)  # threshold 0: cookies never demanded


def _engaged() -> IkeManager:
    """busy_responder() after one request on the regular path: cookie mode on (the quick path never turns
    it on or off: that is audited, so it is the regular path's)."""
    gw = busy_responder()
    _net, request = _init_request()
    gw.receive_datagram(request, ME, Endpoint(ipaddress.ip_address("203.0.113.99"), 500), 0.0)
    assert [e for e in gw.events() if isinstance(e, SendDatagram)]
    return gw


def test_quick_answer_leads_to_a_half_open_sa_and_keeps_no_state() -> None:
    gw = _engaged()
    net, request = _init_request()
    assert is_fresh_init_request(request) and not offers_cookie(request)
    host = str(PEER.address)
    answer = gw.answer_cookieless_init(request, str(PEER), host, 0.0)
    assert answer and gw.events() == [] and gw.half_open_count() == 1  # stateless, no event
    parsed = parse_message(answer)
    first = parsed.payloads[0]
    assert isinstance(first, NotifyPayload) and first.notify_type == NotifyType.COOKIE
    # the initiator retries with the cookie; the regular path accepts it and makes the half-open SA
    net.a.manager.receive_datagram(answer, net.a.endpoint, net.b.endpoint, 0.0)  # type: ignore[attr-defined]
    retry = next(e.data for e in net.a.manager.events() if isinstance(e, SendDatagram))  # type: ignore[attr-defined]
    assert offers_cookie(retry) and gw.answer_cookieless_init(retry, str(PEER), host, 0.0) is None
    gw.receive_datagram(retry, ME, PEER, 0.0)
    assert gw.half_open_count() == 2
    response = parse_message(next(e.data for e in gw.events() if isinstance(e, SendDatagram)))
    assert response.header.is_response and response.payloads[0].type != 41  # a real IKE_SA_INIT response
    # a retransmission of the request that made that SA is the regular path's (the cached response)
    assert gw.answer_cookieless_init(retry, str(PEER), host, 0.0) is None


def test_quick_answer_declines_what_the_regular_path_must_see() -> None:
    fresh = responder()
    _net, request = _init_request()
    assert fresh.answer_cookieless_init(request, str(PEER), str(PEER.address), 0.0) is None  # cookies off
    assert busy_responder().answer_cookieless_init(request, str(PEER), str(PEER.address), 0.0) is None
    gw = _engaged()
    assert gw.answer_cookieless_init(request[:-1], str(PEER), str(PEER.address), 0.0) is None  # bad length
    not_init = bytearray(request)
    not_init[18] = ExchangeType.IKE_AUTH
    assert gw.answer_cookieless_init(bytes(not_init), str(PEER), str(PEER.address), 0.0) is None
    # block_threshold: the address that already holds the half-open SA (busy_responder's) at its limit
    gw.ctx.settings = gw.ctx.settings.__class__(**{**gw.ctx.settings.__dict__, "block_threshold": 1})
    assert gw.answer_cookieless_init(request, "203.0.113.77:500", "203.0.113.77", 0.0) is None
    assert gw.answer_cookieless_init(request, str(PEER), str(PEER.address), 0.0)


@pytest.mark.parametrize("first_notify", [NotifyType.COOKIE, NotifyType.NAT_DETECTION_SOURCE_IP])
def test_forged_or_other_first_notify_costs_no_decode_in_cookie_mode(monkeypatch: pytest.MonkeyPatch,
                                                                      first_notify: NotifyType) -> None:
    """A flood of requests with a forged COOKIE (which the kernel steers to the priority socket) or another
    notify first: answered with a fresh cookie from the raw payload chain, no payload body decoded."""
    calls: list[int] = []
    real = wire_message.decode_scanned

    def counting(raw):  # type: ignore[no-untyped-def]
        calls.append(len(raw))
        return real(raw)

    monkeypatch.setattr(wire_message, "decode_scanned", counting)
    gw = busy_responder()
    _net, request = _init_request()
    # N(first_notify) with 33 octets of data put first in the chain
    body = bytes([0, 0]) + int(first_notify).to_bytes(2, "big") + os.urandom(33)
    payload = bytes([request[16], 0]) + (4 + len(body)).to_bytes(2, "big") + body
    forged = bytearray(request[:28] + payload + request[28:])
    forged[16] = 41
    forged[24:28] = len(forged).to_bytes(4, "big")
    spoofed = Endpoint(ipaddress.ip_address("203.0.113.200"), 500)
    calls.clear()
    for _ in range(20):
        gw.receive_datagram(bytes(forged), ME, spoofed, 0.0)
    answers = [e for e in gw.events() if isinstance(e, SendDatagram)]
    assert calls == [] and len(answers) == 20 and gw.half_open_count() == 1
    first = parse_message(answers[0].data).payloads[0]
    assert isinstance(first, NotifyPayload) and first.notify_type == NotifyType.COOKIE


def test_cookies_stay_on_after_the_half_open_sas_expire_until_the_hold_time_passed() -> None:
    """The manager's use of CookieMode: the half-open SA that turned cookies on times out (count 0), yet new
    requests are still asked for a cookie until 10 s without pressure have passed; then cookies go off
    (audited) and a request makes a half-open SA again."""
    gw = _engaged()  # on at t=0 (one half-open SA, cookie_threshold 1)
    _net, request = _init_request()
    spoofed = Endpoint(ipaddress.ip_address("203.0.113.50"), 500)
    expiry = gw.ctx.settings.half_open_timeout + 1
    gw.receive_datagram(request, ME, spoofed, expiry - 1)  # a cookie demanded (1 = the threshold): pressure
    assert _cookie_sent(gw.events())
    gw.handle_timer(expiry)  # the half-open SA that turned cookies on expires
    gw.events()
    assert gw.half_open_count() == 0
    gw.receive_datagram(request, ME, spoofed, expiry + 8)  # 9 s after the last pressure: still on
    assert _cookie_sent(gw.events())
    assert gw.answer_cookieless_init(request, str(spoofed), "203.0.113.50", expiry + 8.5) is not None
    gw.receive_datagram(request, ME, spoofed, expiry + 19)  # 10.5 s after the last pressure: off
    events = gw.events()
    assert not _cookie_sent(events)
    assert [e for e in events if isinstance(e, AuditEvent) and e.event == "dos.cookies_off"]
    assert gw.half_open_count() == 1  # the request made a half-open SA (a Diffie-Hellman) again


def _cookie_sent(events: list[object]) -> bool:
    for event in events:
        if isinstance(event, SendDatagram):
            first = parse_message(event.data).payloads[0]
            return isinstance(first, NotifyPayload) and first.notify_type == NotifyType.COOKIE
    return False
