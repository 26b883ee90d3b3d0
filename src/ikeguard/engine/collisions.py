"""Simultaneous exchanges (collisions): every rule of who wins and what the loser does, in one function.

RFC 7296 §2.8.1 (both ends rekey the same Child SA), §2.8.2 (both ends rekey the IKE SA), §2.25.2 (an IKE SA
rekey meets a Child SA exchange) and §1.4.1 (both ends delete the same Child SA). The tasks that notice a
collision (engine/tasks/child_rekey.py, ike_rekey.py, delete.py) describe it and carry out the
``Resolution`` :func:`handle_collision` returns; none of them decides by itself. Pure: no SA, no task is
imported here, so every task may call it.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Collision", "Resolution", "handle_collision"]


class Collision(Enum):
    """What met what."""

    CHILD_REKEY = "child-rekey"  # §2.8.1: the peer's rekey of a Child SA we rekey too
    IKE_REKEY = "ike-rekey"  # §2.8.2: the peer's rekey of the IKE SA we rekey too
    IKE_REKEY_DURING_CHILD_EXCHANGE = "ike-rekey-during-child-exchange"  # §2.25.2, the peer's IKE rekey
    CHILD_DELETE = "child-delete"  # §1.4.1: the peer deletes a Child SA we are deleting too
    IKE_DELETE_AFTER_PEER_WON = "ike-delete-after-peer-won"  # §2.8.2: the winner deleted the old IKE SA


class Resolution(Enum):
    """What the task that noticed the collision does."""

    DECIDE_LATER = "decide-later"  # ours is still in flight: remember the peer's, decide when ours completes
    OURS_REDUNDANT = "ours-redundant"  # we delete the SA our exchange made; the peer's replaces the old one
    THEIRS_REDUNDANT = "theirs-redundant"  # ours replaces the old one; the peer deletes the one it made
    REFUSE = "refuse"  # answer TEMPORARY_FAILURE: the peer retries once our exchange is done
    ANSWER_WITHOUT_SPI = "answer-without-spi"  # the Child SA is gone on both ends: no half to return
    MOVE_CHILDREN = "move-children"  # the Child SAs live on in the peer's new IKE SA


def handle_collision(
    collision: Collision,
    *,
    ours: tuple[bytes, ...] = (),
    theirs: tuple[bytes, ...] = (),
    ours_complete: bool = True,
) -> Resolution:
    """The resolution of ``collision``. For rekeys: ``ours``/``theirs`` are the nonces of our and the peer's
    exchange (both of each), ``ours_complete`` whether our exchange has its answer; the exchange holding the
    lowest of the four nonces made the redundant SA (§2.8.1, §2.8.2)."""
    if collision in (Collision.CHILD_REKEY, Collision.IKE_REKEY):
        if not ours_complete:
            return Resolution.DECIDE_LATER
        if not ours or not theirs:
            raise ValueError(f"{collision.value}: the nonces of both exchanges are needed")
        return Resolution.OURS_REDUNDANT if min(ours) < min(theirs) else Resolution.THEIRS_REDUNDANT
    if collision is Collision.IKE_REKEY_DURING_CHILD_EXCHANGE:
        return Resolution.REFUSE  # finish the Child SA exchange first (as strongSwan)
    if collision is Collision.CHILD_DELETE:
        return Resolution.ANSWER_WITHOUT_SPI
    return Resolution.MOVE_CHILDREN
