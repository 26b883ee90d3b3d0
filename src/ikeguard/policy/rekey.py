"""Rekey scheduling with jitter (``rand_time``): a burst of SAs set up together (e.g. 5,000 merchants
reconnecting after a failover) rekeys spread over the jitter window instead of all at once.

strongSwan semantics: the soft event fires at ``rekey_time - uniform(0, rand_time)`` after
establishment; the hard limit (``life_time`` for children, rekey/reauth + ``over_time`` for IKE SAs)
is not jittered. RFC 7296 §2.8: rekey timing SHOULD be jittered to avoid simultaneous rekeys.
Pure: times are plain seconds on whatever clock the caller uses; randomness is injected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ikeguard.policy.model import Child, Connection


class JitterSource(Protocol):
    """Anything with ``uniform(a, b)`` (``random.Random``, ``random.SystemRandom``, a test stub)."""

    def uniform(self, a: float, b: float) -> float: ...


def jittered(established_at: float, interval: float, rand_time: float, jitter: JitterSource) -> float | None:
    """``established_at + interval - uniform(0, rand_time)``; None when ``interval`` is 0 (disabled).
    ``rand_time`` is clamped below ``interval`` so the event never lands before establishment."""
    if interval <= 0:
        return None
    spread = min(max(rand_time, 0.0), interval * 0.99)
    return established_at + interval - (jitter.uniform(0.0, spread) if spread > 0 else 0.0)


@dataclass(frozen=True)
class ChildTimes:
    """When a Child SA rekeys (jittered) and when it hard-expires."""

    rekey_at: float | None
    expire_at: float | None


@dataclass(frozen=True)
class IkeTimes:
    """When an IKE SA rekeys and reauthenticates (jittered) and its hard limit."""

    rekey_at: float | None
    reauth_at: float | None
    expire_at: float | None


def child_times(established_at: float, child: Child, jitter: JitterSource) -> ChildTimes:
    """Schedule for a Child SA from its configuration."""
    rekey = jittered(established_at, child.rekey_time, child.effective_rand_time, jitter)
    life = child.effective_life_time
    return ChildTimes(rekey, established_at + life if life else None)


def ike_times(established_at: float, connection: Connection, jitter: JitterSource) -> IkeTimes:
    """Schedule for an IKE SA: rekey and reauth jittered by rand_time (default: over_time)."""
    rand = connection.rand_time if connection.rand_time is not None else connection.effective_over_time
    rekey = jittered(established_at, connection.rekey_time, rand, jitter)
    reauth = jittered(established_at, connection.reauth_time, rand, jitter)
    longest = max(connection.rekey_time, connection.reauth_time)
    expire = established_at + longest + connection.effective_over_time if longest else None
    return IkeTimes(rekey, reauth, expire)
