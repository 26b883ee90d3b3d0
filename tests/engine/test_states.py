"""The IKE/Child state tables: only listed transitions happen, all states reachable, CLOSED terminal."""

from __future__ import annotations

import pytest

from ikeguard.engine.errors import LocalProtocolError
from ikeguard.engine.states import (
    IKE_TRANSITIONS,
    ChildState,
    ChildTrigger,
    IkeState,
    IkeTrigger,
    next_child_state,
    next_ike_state,
)


def test_every_ike_state_is_reachable_from_created() -> None:
    seen = {IkeState.CREATED}
    frontier = [IkeState.CREATED]
    while frontier:
        state = frontier.pop()
        for (src, _trigger), dst in IKE_TRANSITIONS.items():
            if src is state and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    assert seen == set(IkeState)


def test_closed_is_terminal() -> None:
    for trigger in IkeTrigger:
        with pytest.raises(LocalProtocolError):
            next_ike_state(IkeState.CLOSED, trigger)
    for ctrigger in ChildTrigger:
        with pytest.raises(LocalProtocolError):
            next_child_state(ChildState.DELETED, ctrigger)


def test_initiator_happy_path() -> None:
    state = IkeState.CREATED
    for trigger in (
        IkeTrigger.SEND_INIT,
        IkeTrigger.INIT_RETRY,
        IkeTrigger.SEND_AUTH,
        IkeTrigger.AUTH_DONE,
        IkeTrigger.START_REKEY,
        IkeTrigger.REKEY_DONE,
        IkeTrigger.START_DELETE,
        IkeTrigger.CLOSE,
    ):
        state = next_ike_state(state, trigger)
    assert state is IkeState.CLOSED


def test_responder_cannot_skip_authentication() -> None:
    with pytest.raises(LocalProtocolError, match="start-rekey"):
        next_ike_state(IkeState.HALF_OPEN, IkeTrigger.START_REKEY)
    with pytest.raises(LocalProtocolError):
        next_ike_state(IkeState.INIT_SENT, IkeTrigger.AUTH_DONE)
