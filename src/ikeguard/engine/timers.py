"""Names of an IKE SA's deadlines (``IkeSa.timers``: name -> deadline, fired by ``engine/lifecycle.py``).

A ``StrEnum``: the names stay the strings they always were (HA records carry them, engine/ha_state.py).
Per-Child-SA deadlines are ``"<kind>:<child uniqueid>"`` (:func:`child_timer`).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Timer", "child_timer", "split_timer"]


class Timer(StrEnum):
    """What fires when a deadline passes (RFC 7296 §2.1 retransmission, §2.4 liveness, §2.8 lifetimes)."""

    RETRANSMIT = "retransmit"
    KEEPALIVE = "keepalive"  # NAT keepalive (RFC 3948 §2.3)
    REVOCATION = "revocation"  # a revocation fetch waited too long (engine/pending.py)
    RADIUS = "radius"  # a RADIUS round waited too long
    HALF_OPEN = "half_open"
    DPD = "dpd"
    DPD_DEADLINE = "dpd_deadline"
    REDUNDANT_EXPIRE = "redundant_expire"  # an IKE SA from a lost rekey collision waits for its DELETE
    REKEYED_EXPIRE = "rekeyed_expire"  # a rekeyed IKE SA waits for the initiator's DELETE
    IKE_REKEY = "ike_rekey"
    REAUTH = "reauth"
    IKE_EXPIRE = "ike_expire"
    REDIRECT_EXPIRE = "redirect_expire"  # RFC 5685 §5: the redirected peer did not delete the IKE SA itself
    CHILD_OUTBOUND = "child_outbound"  # per Child SA: install the held-back outbound half
    CHILD_REKEY = "child_rekey"  # per Child SA
    CHILD_EXPIRE = "child_expire"  # per Child SA


CHILD_TIMERS = frozenset({Timer.CHILD_OUTBOUND, Timer.CHILD_REKEY, Timer.CHILD_EXPIRE})


def child_timer(kind: Timer, uniqueid: int) -> str:
    """The name of a Child SA's deadline of ``kind``."""
    return f"{kind.value}:{uniqueid}"


def split_timer(name: str) -> tuple[Timer, int]:
    """(kind, Child SA uniqueid or 0) of a deadline's name; ValueError for a name no code sets."""
    kind, _, ident = name.partition(":")
    return Timer(kind), int(ident) if ident else 0
