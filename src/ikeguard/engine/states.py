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


def next_child_state(state: ChildState, trigger: ChildTrigger) -> ChildState:
    """The state ``trigger`` leads to from ``state``; LocalProtocolError when the table forbids it."""
    try:
        return CHILD_TRANSITIONS[(state, trigger)]
    except KeyError:
        raise LocalProtocolError(f"Child SA cannot {trigger.value} in state {state.value}") from None
