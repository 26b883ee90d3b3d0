"""IKE SA and Child SA states and every allowed transition, in one table (h11 ``_state.py`` style).

An SA changes state only through :func:`next_ike_state` / :func:`next_child_state`; a pair missing from the
table is a ``LocalProtocolError`` (a bug in the engine, caught by the hypothesis state tests).
"""

from __future__ import annotations

from enum import Enum

from ikeguard.engine.errors import LocalProtocolError


class IkeState(Enum):
    """Life cycle of an IKE SA (cf. strongSwan's ike_sa states, RFC 7296 §1.1-§1.4)."""

    CREATED = "created"  # object exists, nothing sent or received
    INIT_SENT = "init-sent"  # initiator: IKE_SA_INIT request sent
    HALF_OPEN = "half-open"  # responder: IKE_SA_INIT answered, waiting for IKE_AUTH
    AUTH_SENT = "auth-sent"  # initiator: IKE_AUTH request sent
    ESTABLISHED = "established"
    REKEYING = "rekeying"  # a CREATE_CHILD_SA for this IKE SA is in flight
    REKEYED = "rekeyed"  # replaced by a new IKE SA; waits for/sends the DELETE
    DELETING = "deleting"  # INFORMATIONAL DELETE sent, waiting for the answer
    CLOSED = "closed"  # terminal: keys wiped, object may be dropped


class IkeTrigger(Enum):
    """What moves an IKE SA from one state to another."""

    SEND_INIT = "send-init"
    INIT_RETRY = "init-retry"  # COOKIE or INVALID_KE_PAYLOAD: send IKE_SA_INIT again
    ANSWER_INIT = "answer-init"
    SEND_AUTH = "send-auth"
    AUTH_DONE = "auth-done"
    START_REKEY = "start-rekey"
    REKEY_ABORTED = "rekey-aborted"
    REKEY_DONE = "rekey-done"
    START_DELETE = "start-delete"
    CLOSE = "close"


_IKE_TABLE: dict[tuple[IkeState, IkeTrigger], IkeState] = {
    (IkeState.CREATED, IkeTrigger.SEND_INIT): IkeState.INIT_SENT,
    (IkeState.CREATED, IkeTrigger.ANSWER_INIT): IkeState.HALF_OPEN,
    (IkeState.INIT_SENT, IkeTrigger.INIT_RETRY): IkeState.INIT_SENT,
    (IkeState.INIT_SENT, IkeTrigger.SEND_AUTH): IkeState.AUTH_SENT,
    (IkeState.HALF_OPEN, IkeTrigger.AUTH_DONE): IkeState.ESTABLISHED,
    (IkeState.AUTH_SENT, IkeTrigger.AUTH_DONE): IkeState.ESTABLISHED,
    # An IKE SA created by a CREATE_CHILD_SA rekey is born established (RFC 7296 §2.18).
    (IkeState.CREATED, IkeTrigger.AUTH_DONE): IkeState.ESTABLISHED,
    (IkeState.ESTABLISHED, IkeTrigger.START_REKEY): IkeState.REKEYING,
    (IkeState.REKEYING, IkeTrigger.REKEY_ABORTED): IkeState.ESTABLISHED,
    (IkeState.REKEYING, IkeTrigger.REKEY_DONE): IkeState.REKEYED,
    (IkeState.ESTABLISHED, IkeTrigger.REKEY_DONE): IkeState.REKEYED,  # rekeyed by the peer
    (IkeState.ESTABLISHED, IkeTrigger.START_DELETE): IkeState.DELETING,
    (IkeState.REKEYING, IkeTrigger.START_DELETE): IkeState.DELETING,
    (IkeState.REKEYED, IkeTrigger.START_DELETE): IkeState.DELETING,
}
# Any state may close: failure, peer's DELETE, timeout, retransmission limit.
for _state in IkeState:
    if _state is not IkeState.CLOSED:
        _IKE_TABLE[(_state, IkeTrigger.CLOSE)] = IkeState.CLOSED

IKE_TRANSITIONS: dict[tuple[IkeState, IkeTrigger], IkeState] = dict(_IKE_TABLE)


# Named sets of states: every rule that treats several states alike names its set here (the AST check in
# tests/engine/test_sans_io.py refuses ad-hoc sets and string comparisons elsewhere in the engine).
IKE_NOT_AUTHENTICATED = frozenset({IkeState.CREATED, IkeState.HALF_OPEN})  # the half-open timer applies
IKE_AUTHENTICATING = frozenset({IkeState.HALF_OPEN, IkeState.AUTH_SENT})  # failing here is auth.failure
IKE_UP = frozenset({IkeState.ESTABLISHED, IkeState.REKEYING, IkeState.REKEYED})  # Child SAs may be installed
IKE_AUTHENTICATED = IKE_UP | {IkeState.DELETING}  # the peer knows our keys: a DELETE can still be sent


def next_ike_state(state: IkeState, trigger: IkeTrigger) -> IkeState:
    """The state ``trigger`` leads to from ``state``; LocalProtocolError when the table forbids it."""
    try:
        return IKE_TRANSITIONS[(state, trigger)]
    except KeyError:
        raise LocalProtocolError(f"IKE SA cannot {trigger.value} in state {state.value}") from None


class ChildState(Enum):
    """Life cycle of a Child SA (RFC 7296 §1.3, §2.8)."""

    CREATING = "creating"
    INSTALLED = "installed"
    REKEYING = "rekeying"
    REKEYED = "rekeyed"  # replaced; old inbound SA kept until the DELETE exchange completes
    DELETING = "deleting"
    DELETED = "deleted"


class ChildTrigger(Enum):
    """What moves a Child SA from one state to another."""

    INSTALL = "install"
    START_REKEY = "start-rekey"
    REKEY_ABORTED = "rekey-aborted"
    REKEY_DONE = "rekey-done"
    START_DELETE = "start-delete"
    DELETE = "delete"


_CHILD_TABLE: dict[tuple[ChildState, ChildTrigger], ChildState] = {
    (ChildState.CREATING, ChildTrigger.INSTALL): ChildState.INSTALLED,
    (ChildState.INSTALLED, ChildTrigger.START_REKEY): ChildState.REKEYING,
    (ChildState.REKEYING, ChildTrigger.REKEY_ABORTED): ChildState.INSTALLED,
    (ChildState.REKEYING, ChildTrigger.REKEY_DONE): ChildState.REKEYED,
    (ChildState.INSTALLED, ChildTrigger.REKEY_DONE): ChildState.REKEYED,  # rekeyed by the peer
    (ChildState.INSTALLED, ChildTrigger.START_DELETE): ChildState.DELETING,
    (ChildState.REKEYING, ChildTrigger.START_DELETE): ChildState.DELETING,
    (ChildState.REKEYED, ChildTrigger.START_DELETE): ChildState.DELETING,
}
for _cstate in ChildState:
    if _cstate is not ChildState.DELETED:
        _CHILD_TABLE[(_cstate, ChildTrigger.DELETE)] = ChildState.DELETED

CHILD_TRANSITIONS: dict[tuple[ChildState, ChildTrigger], ChildState] = dict(_CHILD_TABLE)


CHILD_LIVE = frozenset({ChildState.INSTALLED, ChildState.REKEYING, ChildState.REKEYED})  # in the data plane
CHILD_GOING = frozenset({ChildState.DELETING, ChildState.DELETED})
CHILD_REPLACEABLE = frozenset({ChildState.INSTALLED, ChildState.REKEYING})  # a rekey may still replace it


def next_child_state(state: ChildState, trigger: ChildTrigger) -> ChildState:
    """The state ``trigger`` leads to from ``state``; LocalProtocolError when the table forbids it."""
    try:
        return CHILD_TRANSITIONS[(state, trigger)]
    except KeyError:
        raise LocalProtocolError(f"Child SA cannot {trigger.value} in state {state.value}") from None


# ---------------------------------------------------------------------------------------------- commands
# What our own actions do in each IKE SA state (engine/commands.py, engine/lifecycle.py consult it); the
# requests they queue are then sent as the exchange table (engine/exchanges.py) allows.
class Command(Enum):
    """Actions we start (operator, timer, data-plane upcall): ``engine/commands.py``."""

    CREATE_CHILD = "create-child"
    REKEY_CHILD = "rekey-child"
    REKEY_IKE = "rekey-ike"
    DELETE_CHILD = "delete-child"
    DELETE_IKE = "delete-ike"
    REAUTHENTICATE = "reauthenticate"
    LIVENESS = "liveness"  # DPD (RFC 7296 §1.4)


class CommandAction(Enum):
    """What a command does in a state."""

    QUEUE = "queue"  # queue its exchange (sent when the window and the table allow)
    CLOSE = "close"  # delete a never-established IKE SA: just drop it, no exchange
    NOTHING = "nothing"  # not in this state (already going, nothing to act on)


_Q, _C, _N = CommandAction.QUEUE, CommandAction.CLOSE, CommandAction.NOTHING
_UP = IKE_UP
_COMMAND_STATES: dict[Command, dict[IkeState, CommandAction]] = {
    Command.CREATE_CHILD: dict.fromkeys(IkeState, _Q),  # queued behind the setup (initiate's extra children)
    Command.REKEY_CHILD: {s: _Q if s in (IkeState.ESTABLISHED, IkeState.REKEYING) else _N for s in IkeState},
    Command.REKEY_IKE: {s: _Q if s is IkeState.ESTABLISHED else _N for s in IkeState},
    Command.DELETE_CHILD: {s: _Q if s in _UP else _N for s in IkeState},
    Command.DELETE_IKE: {s: _Q if s in _UP else (_N if s in (IkeState.CLOSED, IkeState.DELETING) else _C)
                         for s in IkeState},
    Command.REAUTHENTICATE: {s: _Q if s is IkeState.ESTABLISHED else _N for s in IkeState},
    Command.LIVENESS: {s: _Q if s is IkeState.ESTABLISHED else _N for s in IkeState},
}
COMMANDS: dict[tuple[Command, IkeState], CommandAction] = {
    (command, state): action for command, row in _COMMAND_STATES.items() for state, action in row.items()
}


def command_action(command: Command, state: IkeState) -> CommandAction:
    """What ``command`` does in ``state``; LocalProtocolError when the table has no entry."""
    try:
        return COMMANDS[(command, state)]
    except KeyError:
        raise LocalProtocolError(f"no rule for {command.value} in state {state.value}") from None
