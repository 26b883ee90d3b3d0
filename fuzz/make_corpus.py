"""Writes the seed corpora fuzz/corpus/wire and fuzz/corpus/responder (run again when the targets' input
layout changes: `python fuzz/make_corpus.py`). Seeds are the IKE messages of the third-party captures in
tests/vectors, messages and decrypted payload chains of real exchanges between two in-memory engines, and the
hostile chains of tests/wire/hostile.py (at a few KiB each, so that seeds stay small); each file is named by
the SHA-1 of its content, as libFuzzer names what it adds.
"""

from __future__ import annotations

import hashlib

import common
from tests.engine import responder_lab
from tests.wire.hostile import datagram, init_request_chains, worst_case_chains
from tests.wire.protectors import NullProtector
from tests.wire.test_captures import IKEV2_CAPTURES, ike_messages

from ikeguard.engine.events import SendDatagram
from ikeguard.engine.message import decode_message
from ikeguard.wire.header import HEADER_LEN, HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType
from ikeguard.wire.message import encode_payloads
from ikeguard.wire.sk import encode_encrypted_message, encode_fragments

CORPUS = common.ROOT / "fuzz" / "corpus"
SMALL = 2048


def _write(target: str, seeds: list[bytes]) -> int:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (folder / hashlib.sha1(seed).hexdigest()).write_bytes(seed)  # noqa: S324 - a file name, as libFuzzer
    return len(seeds)


def _captures() -> list[bytes]:
    vectors = common.ROOT / "tests" / "vectors"
    return [data for folder, name, _n in IKEV2_CAPTURES for _d, data in ike_messages(vectors / folder / name)]


def _exchanges() -> tuple[list[bytes], dict[ExchangeType, list[tuple[int, bytes]]]]:
    """Datagrams of a full exchange sequence, and the decrypted request chains by exchange (IKE_AUTH from a
    handshake, CREATE_CHILD_SA new/rekey Child SA and IKE SA rekey, INFORMATIONAL Delete)."""
    full = responder_lab._pair()
    full.initiate()
    full.run()
    a_sa, b_sa = full.a.manager.ike_sas()[0], full.b.manager.ike_sas()[0]
    assert a_sa.crypto is not None and b_sa.crypto is not None
    inbound = b_sa.crypto.inbound
    a = full.a.manager
    uid = a_sa.uniqueid
    steps = [
        lambda: a.create_child(uid, "net", full.now),
        lambda: a.rekey_child(uid, next(iter(a_sa.children)), full.now),
        lambda: a.terminate_child(uid, next(iter(a_sa.children)), full.now),
        lambda: a.rekey_ike(uid, full.now),
    ]
    chains: dict[ExchangeType, list[tuple[int, bytes]]] = {}
    seen = 0
    for step in [lambda: None, *steps]:
        step()
        full.run()
        sent = [e.data for e in full.a.events if isinstance(e, SendDatagram)]
        for data in sent[seen:]:
            if data[18] == ExchangeType.IKE_SA_INIT or data[19] & 0x20:  # plaintext, or a response
                continue
            try:
                message = decode_message(data, inbound, None)
            except Exception:  # noqa: S112 - after the IKE SA rekey, other keys: not a seed
                continue
            chains.setdefault(ExchangeType(data[18]), []).append(encode_payloads(message.payloads))
        seen = len(sent)
    datagrams = [e.data for side in (full.a, full.b) for e in side.events if isinstance(e, SendDatagram)]
    return datagrams, chains


def main() -> None:
    captures = _captures()
    datagrams, chains = _exchanges()
    hostile = {**worst_case_chains(SMALL), **init_request_chains()}
    hostile_small = {k: v for k, v in hostile.items() if len(v[1]) <= SMALL}
    protector = NullProtector(block=4)
    header = IkeHeader(b"\1" * 8, b"\2" * 8, ExchangeType.INFORMATIONAL, HeaderFlags.INITIATOR, 3)
    sealed = []
    for exchange_chains in chains.values():
        for first, octets in exchange_chains:
            from ikeguard.wire.message import decode_payloads

            payloads = decode_payloads(octets, first, inner=True)
            sealed.append(encode_encrypted_message(header, payloads, protector))
            sealed += encode_fragments(header, payloads, protector, 200)[:1]
    wire = [bytes([0]) + d for d in captures + datagrams]
    wire += [bytes([1, first]) + octets for cs in chains.values() for first, octets in cs]
    wire += [bytes([1, first]) + octets for first, octets in hostile_small.values()]
    wire += [bytes([2]) + b"\0\0\0\0" + d for d in captures[:5]]
    wire += [bytes([3]) + d for d in captures + [datagram(c) for c in hostile_small.values()]]
    wire += [bytes([4]) + d for d in sealed]
    responder = [bytes([0]) + d for d in datagrams if d[18] == ExchangeType.IKE_SA_INIT and not d[19] & 0x20]
    responder += [bytes([mode]) + d for mode in (0, 1) for d in (datagram(c) for c in hostile_small.values())]
    for mode, exchange in ((2, ExchangeType.IKE_AUTH), (3, ExchangeType.CREATE_CHILD_SA),
                           (4, ExchangeType.INFORMATIONAL)):
        responder += [bytes([mode, first]) + octets for first, octets in chains.get(exchange, [])]
        responder += [bytes([mode, first]) + octets for first, octets in hostile_small.values()]
    encrypted = [d for d in datagrams if len(d) > HEADER_LEN and d[18] != ExchangeType.IKE_SA_INIT]
    responder += [bytes([5]) + d for d in encrypted]
    print("wire:", _write("wire", wire), "responder:", _write("responder", responder))


if __name__ == "__main__":
    main()
