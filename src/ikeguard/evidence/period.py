"""The records of the audit trail in a period ``[start, end)``, read from the archive files and the database.

The period is one contiguous sequence range (from the first record at or after ``start`` to the last one
before ``end``, everything in between included), so the pack's records form one verifiable piece of the hash
chain (docs/audit.md §3), anchored on the hash of the record before it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ikeguard.audit.chain import GENESIS, Record
from ikeguard.audit.lifecycle import LifecycleError, all_records
from ikeguard.audit.store import AuditStore, rfc3339


class PeriodError(ValueError):
    """A period that cannot be read (bad dates, unreadable archive)."""


def parse_date(text: str, *, end: bool = False) -> dt.datetime:
    """``YYYY-MM-DD`` (midnight UTC; as ``end`` the midnight after, so the day is included) or RFC 3339."""
    try:
        if len(text) == 10:
            day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.UTC)
            return day + dt.timedelta(days=1) if end else day
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PeriodError(f"{text!r}: not a date (YYYY-MM-DD) or RFC 3339 time") from exc
    if when.tzinfo is None:
        raise PeriodError(f"{text!r}: give a time zone (e.g. Z)")
    return when.astimezone(dt.UTC)


@dataclass(frozen=True)
class Period:
    """The records of ``[start, end)`` and the chain hash before the first (the anchor)."""

    start: dt.datetime
    end: dt.datetime
    records: tuple[Record, ...]
    anchor: bytes

    @property
    def first_seq(self) -> int | None:
        """Sequence number of the first record (None: no records in the period)."""
        return self.records[0].seq if self.records else None

    @property
    def last_seq(self) -> int | None:
        """Sequence number of the last record."""
        return self.records[-1].seq if self.records else None

    def to_json(self) -> dict[str, object]:
        """The period as the pack states it."""
        return {"from": rfc3339(self.start), "to": rfc3339(self.end), "first_seq": self.first_seq,
                "last_seq": self.last_seq, "records": len(self.records), "anchor": self.anchor.hex()}


def read_period(store: AuditStore, start: dt.datetime, end: dt.datetime) -> Period:
    """The contiguous run of records from the first at/after ``start`` to the last before ``end``.

    Streams the trail (archive segments, then the database) and keeps only the period's records, plus the
    ones after a record of ``end`` or later until a record before ``end`` shows up again (a clock set back;
    reading stops at the first record a day past ``end``, so a pack of January does not hold December).
    """
    if end <= start:
        raise PeriodError("--to must be after --from")
    lo, hi, stop = rfc3339(start), rfc3339(end), rfc3339(end + dt.timedelta(days=1))
    chosen: list[Record] = []
    pending: list[Record] = []  # records at/after ``end`` that are kept only if an earlier one follows
    try:
        for record in all_records(store):
            if record.time >= stop:
                break
            if not chosen:
                if record.time >= lo and record.time < hi:
                    chosen.append(record)
                continue
            if record.time < hi:
                chosen.extend(pending)
                pending.clear()
                chosen.append(record)
            else:
                pending.append(record)
    except LifecycleError as exc:
        raise PeriodError(str(exc)) from exc
    if not chosen:
        return Period(start, end, (), GENESIS)
    return Period(start, end, tuple(chosen), chosen[0].prev)
