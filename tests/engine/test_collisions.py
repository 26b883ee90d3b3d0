"""engine/collisions.py: the one place that decides simultaneous exchanges (RFC 7296 §1.4.1, §2.8.1, §2.8.2,
§2.25.2). The end-to-end collisions (both orders, both roles, against an in-memory peer) are in
tests/engine/test_rekey.py; here the rules themselves."""

from __future__ import annotations

import pytest

from ikeguard.engine.collisions import Collision, Resolution, handle_collision

LOW, MID, HIGH, TOP = b"\x01" * 32, b"\x40" * 32, b"\x80" * 32, b"\xf0" * 32


@pytest.mark.parametrize("collision", [Collision.CHILD_REKEY, Collision.IKE_REKEY])
def test_the_exchange_with_the_lowest_nonce_made_the_redundant_sa(collision: Collision) -> None:
    assert handle_collision(collision, ours=(LOW, TOP), theirs=(MID, HIGH)) is Resolution.OURS_REDUNDANT
    assert handle_collision(collision, ours=(MID, TOP), theirs=(HIGH, LOW)) is Resolution.THEIRS_REDUNDANT
    # the same four nonces seen from the other end give the opposite answer: exactly one SA is redundant
    assert handle_collision(collision, ours=(HIGH, LOW), theirs=(MID, TOP)) is Resolution.OURS_REDUNDANT


@pytest.mark.parametrize("collision", [Collision.CHILD_REKEY, Collision.IKE_REKEY])
def test_a_rekey_still_in_flight_is_decided_when_it_completes(collision: Collision) -> None:
    assert handle_collision(collision, ours_complete=False) is Resolution.DECIDE_LATER
    with pytest.raises(ValueError, match="nonces"):
        handle_collision(collision)


def test_the_other_collisions() -> None:
    assert handle_collision(Collision.IKE_REKEY_DURING_CHILD_EXCHANGE) is Resolution.REFUSE
    assert handle_collision(Collision.CHILD_DELETE) is Resolution.ANSWER_WITHOUT_SPI
    assert handle_collision(Collision.IKE_DELETE_AFTER_PEER_WON) is Resolution.MOVE_CHILDREN
