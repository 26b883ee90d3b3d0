"""Issue 15 Done-when 2: "what happens when message X arrives in state Y?" is answered by one table
(engine/exchanges.py). This walks the whole table, every exchange x role x IKE SA state, against real IKE SAs
brought into that state by an in-memory peer (tests/engine/harness.py), and checks that the SA does what the
entry says:

- responder, ``Ignore``: nothing is answered and the peer's message ID is not consumed;
- responder, ``Refuse``: the answer is exactly the entry's error notify and no selector ran;
- responder, ``Run``: the entry's selector ran (recorded) and an answer went out with the request's ID;
- initiator: a queued request of that exchange is sent iff the entry is ``Run`` (``needs_keys``: once keys
  exist).

The table of our own commands (engine/states.py ``COMMANDS``) is walked the same way. Every SA is made by the
peers' real exchanges (PSK, ECDH; ML-KEM for the keyed INIT_SENT state); only the crafted requests are new.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from ikeguard.engine import commands, exchanges, lifecycle
from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.errors import LocalProtocolError
from ikeguard.engine.events import SendDatagram
from ikeguard.engine.exchanges import TABLE, Ignore, Refuse, Role, Run, lookup
from ikeguard.engine.ike_sa import Exchange, IkeSa
from ikeguard.engine.message import OutMessage
from ikeguard.engine.states import COMMANDS, Command, CommandAction, IkeState
from ikeguard.engine.tasks.base import Task
from ikeguard.wire.header import decode_header
from ikeguard.wire.iana import ExchangeType, NotifyType
from ikeguard.wire.payloads import KePayload, NoncePayload, NotifyPayload
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.sk import decode_encrypted_message
from tests.engine.harness import Network, child, mirror, pair, psk_conn

PQ = "aes256gcm16-prfsha384-ecp384-ke1_mlkem768"


def _net(proposal: str = "aes256gcm16-prfsha256-ecp256") -> Network:
    c = child()
    kw = {"ike_proposals": (proposal,), "dpd_delay": 30.0}
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), **kw)  # type: ignore[arg-type]
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), **kw)  # type: ignore[arg-type]
    return pair([a], [b])


def _step(net: Network, count: int) -> None:
    """Deliver the first ``count`` datagrams in flight, one at a time; the rest stays held."""
    net.collect()
    for _ in range(count):
        sender, dgram = net.in_flight.pop(0)
        net.deliver(sender, dgram)
        net.collect()


def _only(net: Network, side: str) -> IkeSa:
    manager = net.a.manager if side == "a" else net.b.manager
    (sa,) = manager.ike_sas()
    return sa


@dataclass
class Lab:
    """``subject``: the IKE SA in the state under test; ``peer``: the other end with keys (None: no keys)."""

    net: Network
    subject: IkeSa
    peer: IkeSa | None
    side: str  # which manager holds the subject
    init: bytes = b""  # CREATED: the IKE_SA_INIT request the SA was made for


def _created() -> Lab:
    """A responder IKE SA as the manager makes it for an IKE_SA_INIT request, before it runs."""
    net = _net()
    net.initiate()
    manager = net.b.manager
    sa = IkeSa(manager.ctx, initiator=False, local=net.b.endpoint, remote=net.a.endpoint,
               spi_local=b"\x11" * 8, conn=None, now=0.0, rules=exchanges.RULES)
    net.collect()
    init = net.in_flight[0][1].data
    sa.spi_i = decode_header(init)[0].spi_i
    return Lab(net, sa, None, "b", init)


def _init_sent() -> Lab:
    """Initiator after the IKE_SA_INIT response (keys exist), its IKE_INTERMEDIATE request held."""
    net = _net(PQ)
    net.initiate()
    _step(net, 2)
    lab = Lab(net, _only(net, "a"), _only(net, "b"), "a")
    assert lab.subject.state is IkeState.INIT_SENT and lab.subject.crypto is not None
    return lab


def _half_open(subject: str) -> Lab:
    net = _net()
    net.initiate()
    _step(net, 2)  # IKE_SA_INIT both ways; the IKE_AUTH request stays held
    a, b = _only(net, "a"), _only(net, "b")
    return Lab(net, b, a, "b") if subject == "b" else Lab(net, a, b, "a")


def _established() -> Network:
    net = _net()
    net.initiate()
    net.run()
    return net


def _rekeying() -> Lab:
    net = _established()
    a = _only(net, "a")
    net.a.manager.rekey_ike(a.uniqueid, net.now)  # request held
    return Lab(net, a, _only(net, "b"), "a")


def _rekeyed() -> Lab:
    net = _established()
    a, b = _only(net, "a"), _only(net, "b")
    net.a.manager.rekey_ike(a.uniqueid, net.now)
    _step(net, 1)  # b answers the rekey; its answer (and a's DELETE after it) stay held
    return Lab(net, b, a, "b")


def _deleting() -> Lab:
    net = _established()
    b = _only(net, "b")
    net.b.manager.terminate_ike(b.uniqueid, net.now)  # DELETE held
    return Lab(net, b, _only(net, "a"), "b")


def _closed() -> Lab:
    net = _established()
    a, b = _only(net, "a"), _only(net, "b")
    b.close("walk: closed")
    return Lab(net, b, a, "b")


BUILD: dict[IkeState, Callable[[], Lab]] = {
    IkeState.CREATED: _created,
    IkeState.INIT_SENT: _init_sent,
    IkeState.HALF_OPEN: lambda: _half_open("b"),
    IkeState.AUTH_SENT: lambda: _half_open("a"),
    IkeState.ESTABLISHED: lambda: Lab(n := _established(), _only(n, "b"), _only(n, "a"), "b"),
    IkeState.REKEYING: _rekeying,
    IkeState.REKEYED: _rekeyed,
    IkeState.DELETING: _deleting,
    IkeState.CLOSED: _closed,
}


def _lab(state: IkeState) -> Lab:
    lab = BUILD[state]()
    assert lab.subject.state is state
    lab.net.collect()
    lab.net.in_flight.clear()  # held datagrams are never delivered
    for side in (lab.net.a, lab.net.b):
        side.events.clear()
    return lab


def _request(lab: Lab, exchange: ExchangeType) -> bytes:
    """The peer's request of ``exchange`` with the payloads its rules require (wire/rules.py)."""
    if lab.init:
        return lab.init  # CREATED: nothing but this IKE_SA_INIT can be read (no keys yet)
    mid = lab.subject.window.expected_peer_id
    msg = OutMessage(exchange, mid, response=False)
    if exchange is ExchangeType.CREATE_CHILD_SA:  # an IKE SA rekey offer: the one kind REKEYING answers
        spec = lab.net.a.manager.ctx.connections["tunnel"].ike_proposals[0]
        msg.add(SaPayload((Proposal.from_spec(1, spec, b"\x22" * 8),)))
        msg.add(NoncePayload(b"\x33" * 32))
    elif exchange is ExchangeType.IKE_FOLLOWUP_KE:
        msg.add(KePayload(19, b"\x44" * 64))
        msg.add_notify(NotifyType.ADDITIONAL_KEY_EXCHANGE, b"\x55" * 8)
    elif exchange is ExchangeType.IKE_SESSION_RESUME:
        msg.add(NoncePayload(b"\x33" * 32))
        msg.add_notify(16400)  # TICKET_OPAQUE (RFC 5723 §4.3.1)
    if exchange is ExchangeType.IKE_SA_INIT or lab.peer is None:
        return _initial_request()
    return lab.peer.encode(msg)[0]


def _initial_request() -> bytes:
    """A genuine IKE_SA_INIT request of a fresh initiator."""
    other = _net()
    other.a.manager.initiate("tunnel", local=other.a.endpoint, remote=other.b.endpoint, now=0.0)
    return next(e.data for e in other.a.manager.events() if isinstance(e, SendDatagram))


def _answers(lab: Lab) -> list[bytes]:
    manager = lab.net.a.manager if lab.side == "a" else lab.net.b.manager
    return [e.data for e in manager.events() if isinstance(e, SendDatagram)]


CELLS = list(itertools.product(IkeState, ExchangeType))


def test_the_table_has_an_entry_for_every_exchange_role_and_state() -> None:
    assert set(TABLE) == set(itertools.product(ExchangeType, Role, IkeState))
    assert set(COMMANDS) == set(itertools.product(Command, IkeState))


def test_a_missing_entry_is_a_local_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    key = (ExchangeType.INFORMATIONAL, Role.RESPONDER, IkeState.ESTABLISHED)
    monkeypatch.delitem(TABLE, key)
    with pytest.raises(LocalProtocolError, match="no rule for"):
        lookup(*key)
    lab = _lab(IkeState.ESTABLISHED)
    with pytest.raises(LocalProtocolError):  # the harness raises engine bugs instead of closing the SA
        lab.subject.receive(_request(lab, ExchangeType.INFORMATIONAL), ExchangeType.INFORMATIONAL,
                            lab.subject.window.expected_peer_id, False, lab.subject.local, lab.subject.remote,
                            lab.net.now)


@pytest.mark.parametrize(("state", "exchange"), CELLS, ids=[f"{s.value}-{x.name}" for s, x in CELLS])
def test_peer_request_in_every_state(state: IkeState, exchange: ExchangeType,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    lab = _lab(state)
    entry = TABLE[(exchange, Role.RESPONDER, state)]
    selected: list[list[Task] | Exception] = []
    if isinstance(entry, Run) and entry.select is not None:
        select = entry.select

        def recording(sa: IkeSa, msg: object) -> list[Task]:
            try:
                tasks = select(sa, msg)  # type: ignore[arg-type]
            except Exception as exc:
                selected.append(exc)
                raise
            selected.append(tasks)
            return tasks

        monkeypatch.setitem(TABLE, (exchange, Role.RESPONDER, state), replace(entry, select=recording))
    sa = lab.subject
    data = _request(lab, exchange)
    mid = sa.window.expected_peer_id
    sa.receive(data, exchange, mid, False, sa.local, sa.remote, lab.net.now)
    answers = _answers(lab)
    if isinstance(entry, Ignore):
        assert answers == [] and sa.window.expected_peer_id == mid
        return
    assert len(answers) == 1, answers
    header = decode_header(answers[0])[0]
    assert header.is_response and header.message_id == mid and int(header.exchange_type) == exchange
    if isinstance(entry, Refuse):
        assert lab.peer is not None and lab.peer.crypto is not None
        # the peer's inbound keys open the answer: only the entry's notify, no task ran (opened without the
        # exchange rules: an IKE_SESSION_RESUME answer is refused by them for being encrypted)
        inner = decode_encrypted_message(answers[0], lab.peer.crypto.inbound).inner
        assert [(type(p), p.notify_type) for p in inner] == [(NotifyPayload, entry.notify)]  # type: ignore[attr-defined]
        return
    assert len(selected) == 1  # the entry's selector chose the tasks that answered
    outcome = selected[0]
    if isinstance(outcome, Exception):  # a selector that looks at the payloads may refuse them itself
        assert exchange is ExchangeType.IKE_FOLLOWUP_KE and "unknown link" in str(outcome)
    else:
        assert outcome and all(t.exchange in (exchange, ExchangeType.IKE_FOLLOWUP_KE) for t in outcome)


class Probe(Task):
    """A request of ours of any exchange: records whether it was built (sent)."""

    def __init__(self, exchange: ExchangeType) -> None:
        self.exchange = exchange
        self.built = False

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        self.built = True


@pytest.mark.parametrize(("state", "exchange"), CELLS, ids=[f"{s.value}-{x.name}" for s, x in CELLS])
def test_our_request_in_every_state(state: IkeState, exchange: ExchangeType) -> None:
    lab = _lab(state)
    sa = lab.subject
    entry = TABLE[(exchange, Role.INITIATOR, state)]
    expected = isinstance(entry, Run) and (not entry.needs_keys or sa.crypto is not None)
    assert sa.rules.may_send(sa, exchange) is expected
    if not sa.window.can_send():  # a request is in flight: the window (RFC 7296 §2.3) holds ours back
        return
    probe = Probe(exchange)
    sa.queue.insert(0, Exchange([probe]))
    sa.start_next()
    assert probe.built is expected
    assert bool(_answers(lab)) is expected


def _any_child() -> ChildSa:
    net = _established()
    return next(iter(_only(net, "a").children.values()))


@pytest.mark.parametrize(("state", "command"), list(itertools.product(IkeState, Command)),
                         ids=[f"{s.value}-{c.value}" for s, c in itertools.product(IkeState, Command)])
def test_our_commands_in_every_state(state: IkeState, command: Command) -> None:
    lab = _lab(state)
    sa = lab.subject
    action = COMMANDS[(command, state)]
    child = next(iter(sa.children.values()), None) or _any_child()
    queued, sas = len(sa.queue), len((lab.net.a if lab.side == "a" else lab.net.b).manager.ike_sas())
    if command is Command.CREATE_CHILD:
        commands.create_child(sa, child.settings)
    elif command is Command.REKEY_CHILD:
        commands.rekey_child(sa, child)
    elif command is Command.REKEY_IKE:
        commands.rekey_ike(sa)
    elif command is Command.DELETE_CHILD:
        commands.delete_child(sa, child, "walk")
    elif command is Command.DELETE_IKE:
        commands.delete_ike(sa, "walk")
    elif command is Command.REAUTHENTICATE:
        commands.reauthenticate(sa, "walk")
    else:
        sa.ctx.now = sa.last_inbound + 100.0
        lifecycle.fire(sa, "dpd")
    manager = (lab.net.a if lab.side == "a" else lab.net.b).manager
    if action is CommandAction.CLOSE:
        assert sa.state is IkeState.CLOSED
    elif action is CommandAction.NOTHING:
        assert len(sa.queue) == queued and sa.state is state
    elif command is Command.REAUTHENTICATE:  # make-before-break: a new IKE SA (or the responder closes)
        assert len(manager.ike_sas()) > sas or sa.queue
    else:
        assert len(sa.queue) == queued + 1



_NOTIFY_CODES = {
    NotifyType.TEMPORARY_FAILURE: "T", NotifyType.STATE_NOT_FOUND: "S", NotifyType.INVALID_SYNTAX: "X"
}


def _code(entry: exchanges.Entry) -> str:
    if isinstance(entry, Refuse):
        return _NOTIFY_CODES[entry.notify]
    if isinstance(entry, Ignore):
        return "."
    return "K" if entry.needs_keys else "R"


def render() -> str:
    """The table as a matrix: one line per role and state, one column per exchange (in ExchangeType order:
    IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, IKE_SESSION_RESUME, IKE_INTERMEDIATE,
    IKE_FOLLOWUP_KE). R run, K run once keys exist, . ignore (initiator: stay queued), T/S/X refuse with
    TEMPORARY_FAILURE / STATE_NOT_FOUND / INVALID_SYNTAX."""
    return "\n".join(
        f"{role.value:9} {state.value:11} " + " ".join(_code(TABLE[(x, role, state)]) for x in ExchangeType)
        for role, state in itertools.product(Role, IkeState)
    )


# Reviewed by hand against RFC 7296 §1.3, §2.2, §2.25.2, RFC 9242, RFC 9370 and the engine's behaviour before
# the table (the initiator rows keep the old sending rule: after the setup, the window alone paces requests).
EXPECTED = """
initiator created     R . . . . . .
initiator init-sent   K K K K K K K
initiator half-open   . . . . . . .
initiator auth-sent   . . . . . . .
initiator established R R R R R R R
initiator rekeying    R R R R R R R
initiator rekeyed     R R R R R R R
initiator deleting    R R R R R R R
initiator closed      . . . . . . .
responder created     R . . . . . .
responder init-sent   . . T R X R S
responder half-open   . R T R X R S
responder auth-sent   . . T R X R S
responder established . . R R X R R
responder rekeying    . . R R X R R
responder rekeyed     . . T R X R R
responder deleting    . . T R X R S
responder closed      . . . . . . .
"""


def test_the_table_says_what_was_reviewed() -> None:
    assert render() == EXPECTED.strip()
