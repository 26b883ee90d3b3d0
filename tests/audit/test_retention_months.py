"""Issue 24, Done-when 3 (PCI DSS 10.5.1): thirteen simulated months of records with ``[audit] retention =
"1y"`` and ``online = "3mo"`` and a monthly ``ikeguard audit archive``: older segments are archived
compressed, none younger than the retention is deleted, the chain verifies across archived and online
segments, a deletion inside the retention is refused and recorded, a segment taken offline is restored
(a changed copy is refused), and an index row claiming a disposal the trail never recorded is caught."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from ikeguard.audit.lifecycle import all_records
from ikeguard.audit.store import AuditStore, rfc3339
from ikeguard.control.cli import main
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.loader import load_config

from .helpers import sample_event

DAYS = 400  # thirteen months and a few days
PER_DAY = 6
ONLINE_DAYS, RETENTION_DAYS = 93, 366  # "3mo" and "1y", rounded up (audit/archive.py)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_spans_in_the_configuration(tmp_path: Path) -> None:
    base = (Path(__file__).resolve().parents[2] / "examples" / "minimal-baseline.toml").read_text()
    (tmp_path / "gw.toml").write_text(base + '\n[audit]\nretention = "1y"\nonline = "3mo"\n')
    audit = load_config(tmp_path / "gw.toml").model.audit
    assert (audit.retention_days, audit.online_days) == (RETENTION_DAYS, ONLINE_DAYS)
    (tmp_path / "both.toml").write_text(base + '\n[audit]\nretention = "1y"\nretention_days = 400\n')
    with pytest.raises(ConfigError, match="not both"):
        load_config(tmp_path / "both.toml")


@pytest.fixture
def year(tmp_path: Path) -> tuple[Path, dt.datetime, dt.datetime]:
    """The store after 400 simulated days with a monthly archive run; returns (config, start, end)."""
    (tmp_path / "gw.toml").write_text('[gateway]\nstate_dir = "state"\n\n[audit]\nretention = "1y"\n'
                                      'online = "3mo"\n')
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=DAYS)).replace(hour=0, minute=0, second=0,
                                                                       microsecond=0)
    store = AuditStore(tmp_path / "state", now=start)
    for day in range(DAYS):
        base = start + dt.timedelta(days=day, hours=8)
        store.append_batch([(sample_event(day * PER_DAY + i), base + dt.timedelta(hours=i))
                            for i in range(PER_DAY)])
        if day % 30 == 29:
            when = rfc3339(start + dt.timedelta(days=day + 1))
            code, out = _run("audit", "-c", str(tmp_path / "gw.toml"), "archive", "--now", when)
            assert code == 0, out
    store.close()
    end = start + dt.timedelta(days=DAYS)
    code, out = _run("audit", "-c", str(tmp_path / "gw.toml"), "archive", "--now", rfc3339(end))
    assert code == 0 and "archived through" in out, out
    return tmp_path / "gw.toml", start, end


def test_thirteen_months_archive_verify_dispose_restore(year: tuple[Path, dt.datetime, dt.datetime],
                                                        tmp_path: Path) -> None:
    config, start, end = year
    c = str(config)
    store = AuditStore(tmp_path / "state", create=False)
    segments = store.archive_files()
    assert len(segments) >= 10 and all(p.name.endswith(".json.gz") for p in segments)
    for p in segments:
        json.loads(gzip.decompress(p.read_bytes()))  # really compressed JSON
    online_cut = rfc3339(end - dt.timedelta(days=ONLINE_DAYS))
    online = store.records()
    archived = [r for r in all_records(store) if r.seq < online[0].seq]
    assert all(r.time >= online_cut for r in online[:-1])  # the last three months stay online
    assert archived and all(r.time < online_cut for r in archived)  # older ones were archived
    everything = [r.seq for r in all_records(store)]
    assert everything == list(range(1, store.head()[0] + 1))  # nothing deleted
    assert len(everything) > DAYS * PER_DAY

    head = store.head()[0]
    code, out = _run("audit", "-c", c, "verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["checked"] == head, out  # archives and online, one chain

    # the archive run lists the oldest segment as past retention, and only it
    code, out = _run("audit", "-c", c, "archive", "--now", rfc3339(end))
    past = [line for line in out.splitlines() if line.startswith("past retention")]
    assert [line.rsplit(": ", 1)[1] for line in past] == [segments[0].name], out

    # deletion inside the retention: refused, the file kept, and the refusal is in the trail
    for young in (segments[1], segments[-1]):
        code, out = _run("audit", "-c", c, "dispose", young.name, "--now", rfc3339(end))
        assert code == 1 and "REFUSED" in out and "inside the retention of 366 days" in out, out
        assert young.exists()
    refusals = [r for r in store.records(store.head()[0] - 5) if r.body["event"] == "audit.disposed"]
    assert refusals and all(r.body["outcome"] == "failure" for r in refusals)
    assert refusals[-1].body["details"]["file"] == segments[-1].name

    # the oldest segment is past retention: disposed of, and the chain still verifies from its last hash
    code, out = _run("audit", "-c", c, "dispose", segments[0].name, "--now", rfc3339(end))
    assert code == 0 and not segments[0].exists(), out
    code, out = _run("audit", "-c", c, "verify")
    assert code == 0 and "disposed of after retention" in out, out

    # a segment taken to offline storage: verify names it missing; restore puts it back; a changed copy is
    # refused
    offline = tmp_path / "offline"
    offline.mkdir()
    moved = offline / segments[3].name
    shutil.move(segments[3], moved)
    code, out = _run("audit", "-c", c, "verify")
    assert code == 1 and segments[4].name in out, out
    changed = offline / "changed.json.gz"
    data = json.loads(gzip.decompress(moved.read_bytes()))
    data["records"][1]["body"]["remote_id"] = "someone.else.example"
    changed.write_bytes(gzip.compress(json.dumps(data).encode()))
    code, out = _run("audit", "-c", c, "restore", str(changed))
    assert code == 1 and "does not verify" in out, out
    code, out = _run("audit", "-c", c, "restore", str(moved))
    assert code == 0 and segments[3].exists(), out
    assert segments[3].read_bytes() == moved.read_bytes()  # the same octets as archived
    code, out = _run("audit", "-c", c, "verify")
    assert code == 0, out
    assert any(r.body["event"] == "audit.restored" for r in store.records(store.head()[0] - 3))
    # an evidence pack of months 4 to 6, read from archived segments, verifies and states their anchors
    pack = tmp_path / "pack"
    code, out = _run("evidence", "-c", c, "--from", rfc3339(start + dt.timedelta(days=100)), "--to",
                     rfc3339(start + dt.timedelta(days=190)), "-o", str(pack))
    assert code == 0, out
    period = json.loads((pack / "period.json").read_text())
    lo, hi = rfc3339(start + dt.timedelta(days=100)), rfc3339(start + dt.timedelta(days=190))
    assert period["records"] == sum(1 for r in all_records(store) if lo <= r.time < hi) > 90 * PER_DAY
    assert period["last_seq"] < online[0].seq  # all of it from archived segments
    at_creation = json.loads((pack / "integrity" / "at-creation.json").read_text())["retention"]
    assert at_creation["disposed_segments"][0]["file"] == segments[0].name
    assert len(at_creation["archive_anchors"]) == len(segments)
    code, out = _run("evidence", "verify", str(pack), "--key", str(tmp_path / "state" /
                                                                   "audit-verification.key"))
    assert code == 0, out
    anchors = store.archive_index()  # what an evidence pack states as the segments' anchors
    assert [a[0] for a in anchors] == [p.name for p in segments]
    assert all(a[2] + 1 == b[1] for a, b in itertools.pairwise(anchors))

    # root deletes a young segment and writes a disposal into the index: the trail never sealed one
    db = sqlite3.connect(tmp_path / "state" / "audit.db")
    row = db.execute("SELECT path, first_seq, last_seq, last_hash FROM archives WHERE path=?",
                     (segments[1].name,)).fetchone()
    db.execute("INSERT INTO disposed VALUES (?,?,?,?,?)", (*row, store.head()[0]))
    db.commit()
    db.close()
    segments[1].chmod(0o600)
    segments[1].unlink()
    code, out = _run("audit", "-c", c, "verify")
    assert code == 1 and "no sealed audit.disposed record" in out, out
    store.close()
