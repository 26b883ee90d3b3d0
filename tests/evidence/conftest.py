"""One scripted month (tests/evidence/month.py) shared by the evidence tests of a module."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from ikeguard.audit.store import AuditStore, read_verification_key

from .month import Month, gateway_config, scripted_month


@dataclass
class MonthLab:
    """The gateway's config and trail after the month, and what the peers saw."""

    config: Path
    state: Path
    store: AuditStore
    month: Month

    @property
    def key_file(self) -> Path:
        return self.state / "audit-verification.key"

    @property
    def key(self) -> bytes:
        return read_verification_key(self.key_file)

    @property
    def period(self) -> tuple[str, str]:
        """--from/--to covering the month (the last day included)."""
        return (f"{self.month.start:%Y-%m-%d}", f"{self.month.end - dt.timedelta(days=1):%Y-%m-%d}")


@pytest.fixture(scope="module")
def month_lab(tmp_path_factory: pytest.TempPathFactory) -> MonthLab:
    directory = tmp_path_factory.mktemp("gw")
    config = gateway_config(directory)
    # a month that ended a few days ago (the clock is injected: records carry these times)
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).replace(hour=0, minute=0, second=0,
                                                                     microsecond=0)
    store, month = scripted_month(directory / "state", start)
    yield MonthLab(config, directory / "state", store, month)
    store.close()
