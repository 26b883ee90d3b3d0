"""Retention (PCI DSS 10.5.1: 12 months kept, the latest 3 immediately available) as a pure plan.

Records older than ``online_days`` leave the database for sealed archive files, but only once every sink has
confirmed them; archives older than ``retention_days`` are *reported* as eligible for disposal. Nothing is
ever deleted silently: disposing of an archive file is an operator's act.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RetentionPlan:
    """What to do now."""

    archive_through: int | None
    expired_archives: tuple[str, ...]


def plan_retention(
    *,
    now: dt.datetime,
    online_days: int,
    retention_days: int,
    newest_old_seq: int | None,
    delivered_seq: int | None,
    head_seq: int,
    archives: Sequence[tuple[str, dt.datetime]] = (),
) -> RetentionPlan:
    """Plan archiving and report expired archives.

    ``newest_old_seq``: last record older than ``now - online_days`` (None when there is none);
    ``delivered_seq``: the lowest cursor over all sinks (None without sinks); ``archives``: each file with
    the time of its newest record.
    """
    if online_days < 1 or retention_days < online_days:
        raise ValueError("need 1 <= online_days <= retention_days")
    through = newest_old_seq
    if through is not None and delivered_seq is not None:
        through = min(through, delivered_seq)
    if through is not None:
        through = min(through, head_seq - 1)  # the newest record always stays online (chain head)
        if through < 1:
            through = None
    cutoff = now - dt.timedelta(days=retention_days)
    expired = tuple(name for name, newest in archives if newest < cutoff)
    return RetentionPlan(through, expired)
