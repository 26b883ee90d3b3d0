"""RFC 5424 structured data and ECS JSON: what we send parses back to the record (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.audit.chain import GENESIS, Record, chain_hash, seal
from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.audit.sinks import ecs, syslog

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
names = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda k: (
        not any(w in k for w in ("secret", "psk", "passw", "private", "token", "keymat", "credential"))
        and not k.startswith("sk_")
        and "_sk_" not in k
    )
)


@st.composite
def records(draw: st.DrawFn) -> Record:
    ev = AuditEvent(
        draw(st.sampled_from(list(EventName))),
        draw(st.sampled_from(list(Outcome))),
        reason=draw(text),
        connection=draw(text),
        ike_uniqueid=draw(st.none() | st.integers(0, 2**32)),
        remote_addr=draw(text),
        remote_id=draw(text),
        cert_subject=draw(text),
        admin=draw(text),
        details=draw(st.dictionaries(names, st.integers() | st.booleans() | text, max_size=4)),
    )
    body = ev.fields_dict()
    seq = draw(st.integers(1, 2**40))
    time = "2026-11-27T01:02:03.000004Z"
    digest = chain_hash(GENESIS, seq, time, body)
    return Record(seq, time, body, GENESIS, digest, seal(bytes(32), digest))


def _s(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


@settings(max_examples=150, deadline=None)
@given(rec=records())
def test_syslog_round_trip(rec: Record) -> None:
    msg = syslog.format_message(rec, hostname="gw.example", procid="42")
    framed = syslog.frame(msg)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(msg)  # RFC 5425 octet counting
    parsed = syslog.parse_message(msg.decode())
    sd = parsed["sd"]
    assert isinstance(sd, dict)
    body = dict(rec.body)
    details = body.pop("details", {})
    assert sd[syslog.SD_EVENT] == {k: _s(v) for k, v in body.items()}
    assert sd.get(syslog.SD_DETAILS, {}) == {k: _s(v) for k, v in details.items()}  # type: ignore[union-attr]
    assert sd[syslog.SD_CHAIN]["seq"] == str(rec.seq) and sd[syslog.SD_CHAIN]["hash"] == rec.hash.hex()
    assert parsed["msgid"] == body["event"] and parsed["time"] == rec.time


@settings(max_examples=150, deadline=None)
@given(rec=records())
def test_ecs_round_trip_rehashes(rec: Record) -> None:
    import json

    doc = json.loads(ecs.encode_line(rec))
    seq, time, body = ecs.from_ecs(doc)
    assert (seq, time, body) == (rec.seq, rec.time, dict(rec.body))
    assert chain_hash(rec.prev, seq, time, body) == rec.hash


def test_ecs_splits_endpoints_into_address_and_port() -> None:
    import json

    for local, remote, ip, port in (("192.0.2.1:4500", "198.51.100.7:4500", "198.51.100.7", 4500),
                                    ("[2001:db8::1]:500", "[2001:db8::2]:500", "2001:db8::2", 500)):
        body = AuditEvent(EventName.IKE_UP, local_addr=local, remote_addr=remote).fields_dict()
        digest = chain_hash(GENESIS, 1, "2026-11-27T01:02:03Z", body)
        rec = Record(1, "2026-11-27T01:02:03Z", body, GENESIS, digest, seal(bytes(32), digest))
        doc = json.loads(ecs.encode_line(rec))
        assert doc["source"] == {"address": ip, "ip": ip, "port": port}
        assert ecs.from_ecs(doc)[2] == body
