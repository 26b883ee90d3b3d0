"""Issue 19 step 1: the RADIUS client (service/radius.py) against a real FreeRADIUS 3.2 on loopback.

An EAP-MD5 conversation (the simplest method FreeRADIUS offers; the client relays any method the same way)
is accepted with the right password and rejected with a wrong one; every request carries a
Message-Authenticator (FreeRADIUS is configured with ``require_message_authenticator = yes`` and drops
requests without one); a first server that never answers fails over to the second; a server whose
Access-Accept has no Message-Authenticator (a hostile or pre-BlastRADIUS server, played by a socket in the
test: no real server omits it for EAP) is refused with that reason; ``RadiusRelay`` delivers on the event
loop while the loop keeps running.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ikeguard.engine.eap_relay import EapRelayAnswer, EapRelayRequest, RelayOutcome
from ikeguard.engine.events import RadiusRound
from ikeguard.service.radius import RadiusClient, RadiusRelay, RadiusServer
from ikeguard.tools.certfactory import CertificateAuthority
from tests.harness.freeradius import FreeRadius

pytestmark = [pytest.mark.root]

SECRET = b"radius-test-secret-5f1e"
EAP_RESPONSE, EAP_REQUEST, EAP_SUCCESS, EAP_FAILURE = 2, 1, 3, 4


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def freeradius(tmp_path: Path) -> Iterator[FreeRadius]:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("FreeRADIUS runs as root here")
    ca = CertificateAuthority.create_root("CN=Radius Test CA")
    server = ca.issue_leaf("CN=radius.example.net", sans=["radius.example.net"], eku=["serverAuth"])
    port = _free_udp_port()
    radius = FreeRadius(tmp_path / "radius", namespace=None, address="127.0.0.1",
                        clients={"127.0.0.1": SECRET.decode()}, server_cert=server,
                        ca_pem=ca.cert.public_bytes(serialization.Encoding.PEM), auth_port=port,
                        acct_port=_free_udp_port(), default_eap="md5")
    radius.start()
    try:
        yield radius
    finally:
        radius.stop()


def _identity(eap_id: int, user: str) -> bytes:
    body = b"\x01" + user.encode()
    return struct.pack("!BBH", EAP_RESPONSE, eap_id, 4 + len(body)) + body


def _md5_response(request: bytes, password: str) -> bytes:
    eap_id = request[1]
    assert request[4] == 4, f"expected EAP-MD5, got type {request[4]}"
    size = request[5]
    challenge = request[6:6 + size]
    digest = hashlib.md5(bytes([eap_id]) + password.encode() + challenge).digest()
    body = b"\x04" + bytes([16]) + digest
    return struct.pack("!BBH", EAP_RESPONSE, eap_id, 4 + len(body)) + body


def _md5_conversation(client: RadiusClient, user: str, password: str) -> EapRelayAnswer:
    first = client.authenticate(EapRelayRequest(user, _identity(0, user), calling_station="192.0.2.2"))
    assert first.outcome is RelayOutcome.CHALLENGE, first
    assert first.eap_message[0] == EAP_REQUEST and first.state
    return client.authenticate(EapRelayRequest(user, _md5_response(first.eap_message, password), first.state),
                               preferred=first.server)


def test_eap_conversation_relayed_with_message_authenticator(freeradius: FreeRadius) -> None:
    client = RadiusClient([RadiusServer("127.0.0.1", SECRET, freeradius.auth_port)], timeout=1.0, retries=2)
    good = _md5_conversation(client, "alice", "alice-Pass-7431")
    assert good.outcome is RelayOutcome.ACCEPT, good
    assert good.eap_message[0] == EAP_SUCCESS
    assert good.user_class == ("staff",) and good.filter_id == ("split",)
    assert good.server == f"127.0.0.1:{freeradius.auth_port}"
    bad = _md5_conversation(client, "alice", "wrong-password")
    assert bad.outcome is RelayOutcome.REJECT and bad.eap_message[0] == EAP_FAILURE
    assert "secret" not in repr(good) and "alice-Pass" not in repr(good)


def test_failover_to_second_server_then_unreachable(freeradius: FreeRadius) -> None:
    dead = _free_udp_port()  # nothing listens there: every retransmission times out
    servers = [RadiusServer("127.0.0.1", SECRET, dead),
               RadiusServer("127.0.0.1", SECRET, freeradius.auth_port)]
    client = RadiusClient(servers, timeout=0.3, retries=2)
    started = time.monotonic()
    answer = _md5_conversation(client, "alice", "alice-Pass-7431")
    assert answer.outcome is RelayOutcome.ACCEPT, answer
    assert answer.server == f"127.0.0.1:{freeradius.auth_port}"
    assert time.monotonic() - started >= 0.6  # two unanswered transmissions to the first server
    freeradius.stop()
    down = client.authenticate(EapRelayRequest("alice", _identity(0, "alice")))
    assert down.outcome is RelayOutcome.UNREACHABLE
    assert f"127.0.0.1:{dead}: no answer" in down.reason and f":{freeradius.auth_port}: " in down.reason


class _NoMaServer(threading.Thread):
    """Answers every Access-Request with an Access-Accept that has a valid Response Authenticator but no
    Message-Authenticator."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.stop = False
        self.requests: list[bytes] = []

    def run(self) -> None:
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.requests.append(data)
            head = struct.pack("!BBH", 2, data[1], 20)
            auth = hashlib.md5(head + data[4:20] + SECRET).digest()
            self.sock.sendto(head + auth, peer)


def test_reply_without_message_authenticator_refused() -> None:
    server = _NoMaServer()
    server.start()
    try:
        client = RadiusClient([RadiusServer("127.0.0.1", SECRET, server.port)], timeout=0.3, retries=1)
        answer = client.authenticate(EapRelayRequest("alice", _identity(0, "alice")))
    finally:
        server.stop = True
        server.join()
        server.sock.close()
    assert answer.outcome is RelayOutcome.UNREACHABLE
    assert "reply without Message-Authenticator refused (BlastRADIUS, CVE-2024-3596)" in answer.reason
    request = server.requests[0]
    assert b"\x50\x12" in request  # Message-Authenticator (80), 18 octets, in the request we sent


def test_relay_delivers_on_the_loop(freeradius: FreeRadius) -> None:
    client = RadiusClient([RadiusServer("127.0.0.1", SECRET, freeradius.auth_port)], timeout=1.0, retries=2)

    async def run() -> tuple[EapRelayAnswer, int]:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[EapRelayAnswer] = loop.create_future()
        ticks = 0
        relay = RadiusRelay(lambda event, answer: got.set_result(answer), client, max_pending=1)
        event = RadiusRound(7, 7001, EapRelayRequest("alice", _identity(0, "alice")))
        relay.submit(event, loop)
        overflow: asyncio.Future[EapRelayAnswer] = loop.create_future()
        relay2 = RadiusRelay(lambda e, a: overflow.set_result(a), None)
        relay2.submit(event, loop)
        while not got.done():
            ticks += 1
            await asyncio.sleep(0.001)
        relay.close()
        relay2.close()
        assert (await overflow).outcome is RelayOutcome.UNREACHABLE
        return await got, ticks

    answer, ticks = asyncio.run(run())
    assert answer.outcome is RelayOutcome.CHALLENGE
    assert ticks > 0  # the loop ran while the request was out
