"""vici ``list-sa`` sections from ``sas --json`` (control/vici_answers.py): what charon's clients read."""

from __future__ import annotations

import datetime as dt

from ikeguard.control import vici_answers as answers


def _at(seconds_ago: float, now: float) -> str:
    return dt.datetime.fromtimestamp(now - seconds_ago, dt.UTC).isoformat().replace("+00:00", "Z")


def test_install_time_comes_from_the_child_sas_installed_at() -> None:
    """The same answer in one process and behind the workers' proxy: both have only ``sas --json``."""
    now = dt.datetime.now(dt.UTC).timestamp()
    child = {"name": "net", "uniqueid": 3, "state": "installed", "installed_at": _at(42.4, now),
             "rekey_at": _at(-600, now), "expires_at": _at(-900, now)}
    section = answers.child_section(child, encap=False, now=now)
    assert (section["install-time"], section["rekey-time"], section["life-time"]) == (42, 600, 900)
    creating = dict(child, state="creating", installed_at=None)
    assert answers.child_section(creating, encap=False, now=now)["install-time"] == 0
    sa = {"uniqueid": 1, "state": "established", "children": [child]}
    assert answers.ike_section(sa, now=now)["child-sas"]["net-3"]["install-time"] == 42
