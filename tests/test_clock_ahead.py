"""The suite cannot depend on the day it runs.

1. `scripts/clock-ahead.sh` (what `make test-future` uses to run the `date_sensitive` tests a year ahead)
   really moves the clock for every reader those tests rely on: Python, OpenSSL (Python's ssl and the
   `openssl` command), cryptography, strongSwan's libstrongswan (`pki`), rsyslog's GnuTLS, `date` (file times
   stay real); and leaves sleeping and timed waits working. Certificates valid for 30 days are accepted by
   each reader today and refused by each one under the moved clock, so a run a year ahead would catch a
   certificate with a fixed date.
2. No fixed calendar date enters `tests/` or `src/` unreviewed: each file holding one is listed below with why
   its dates never meet a real clock (an injected clock, or text that is only compared as text).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ikeguard.tools.certfactory import CertificateAuthority, KeyKind

REPO = Path(__file__).resolve().parent.parent
CLOCK_AHEAD = REPO / "scripts" / "clock-ahead.sh"
DAY = 86400.0


def _libfaketime_problem() -> str | None:
    if not any(Path("/usr/lib").glob("*/faketime/libfaketime.so.1")):
        return "needs libfaketime (Debian package faketime; make test installs it)"
    if shutil.which("cc") is None:
        return "needs a C compiler (Debian package gcc; make test installs it)"
    for tool in ("openssl", "pki", "/usr/sbin/rsyslogd", "date"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@pytest.fixture(scope="module")
def thirty_day_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "FAKETIME" in os.environ:
        pytest.skip("already running under a moved clock (this test compares it with the real one)")
    problem = _libfaketime_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    d = tmp_path_factory.mktemp("clock")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    until = now + dt.timedelta(days=30)
    ca = CertificateAuthority.create_root("CN=clock probe CA", KeyKind.ECDSA_P256, not_after=until, now=now)
    server = ca.issue_leaf("CN=127.0.0.1", sans=["ip:127.0.0.1"], key_kind="ecdsa-p256", eku=["serverAuth"],
                           not_after=until, now=now)
    client = ca.issue_leaf("CN=gw.example", sans=["dns:gw.example"], key_kind="ecdsa-p256",
                           eku=["clientAuth"], not_after=until, now=now)
    (d / "ca.pem").write_bytes(ca.cert.public_bytes(Encoding.PEM))
    for name, issued in (("server", server), ("client", client)):
        paths = issued.write_pem(d, name)
        paths.cert.rename(d / f"{name}.pem")
        paths.key.rename(d / f"{name}.key")
    return d


def _probe(directory: Path, *wrapper: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKETIME") and k != "LD_PRELOAD"}
    result = subprocess.run(
        [*wrapper, sys.executable, "-m", "tests.harness.clock_probe", str(directory)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(data, dict)
    return data


READERS = ("python_ssl", "cryptography", "openssl", "strongswan_pki", "rsyslog")


@pytest.mark.slow
def test_clock_ahead_moves_every_clock_the_date_sensitive_tests_read(thirty_day_pki: Path) -> None:
    import time

    today = _probe(thirty_day_pki)
    now = time.time()
    for clock in ("time", "datetime", "date", "mtime"):
        assert abs(float(today[clock]) - now) < 120, (clock, today)  # type: ignore[arg-type]
    assert {reader: today[reader] for reader in READERS} == dict.fromkeys(READERS, "ok"), today

    ahead = _probe(thirty_day_pki, str(CLOCK_AHEAD), "365", "--")
    now = time.time()
    for clock in ("time", "datetime", "date"):
        assert abs(float(ahead[clock]) - (now + 365 * DAY)) < 120, (clock, ahead)  # type: ignore[arg-type]
    # File times stay real (clock-ahead.sh says why): a file written now looks a year old.
    assert abs(float(ahead["mtime"]) - now) < 120, ahead  # type: ignore[arg-type]
    for wait in ("sleep", "event_wait"):  # the monotonic clocks stay real: waits take their real time
        assert 0.04 <= float(ahead[wait]) < 2.0, (wait, ahead)  # type: ignore[arg-type]
    for reader in READERS:
        assert str(ahead[reader]).startswith("refused"), (reader, ahead)
    for reader, why in (("python_ssl", "expired"), ("openssl", "expired"),
                        ("cryptography", "not valid at validation time")):
        assert why in str(ahead[reader]), (reader, ahead)


def test_clock_ahead_refuses_to_run_without_a_command() -> None:
    result = subprocess.run([str(CLOCK_AHEAD), "365"], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 2 and "usage" in result.stderr


# -- fixed dates --------------------------------------------------------------------------------------------

# A calendar date written into code: datetime(2026, ...), "2026-11-27", ASN.1 UTCTime/GeneralizedTime text, an
# epoch second count of this era (2017-2033).
FIXED_DATE = re.compile(
    r"datetime\(\s*(19|20)\d\d\s*,|(?<!\d)(19|20)\d\d-[01]\d-[0-3]\d(?!\d)"
    r"|(?<!\d)(\d\d)?\d{2}[01]\d[0-3]\d[0-2]\d[0-5]\d[0-5]\dZ\b|(?<![\w.])1[5-9]\d{8}(?![\d_])"
)
SCANNED = (".py", ".toml", ".conf", ".sh", ".json", ".txt", ".pem", ".crl", ".cfg")

# Each file with a fixed date, and why none of its dates meets a real clock (TLS stacks, strongSwan, rsyslog,
# openssl, `ikeguard check`/`run`, CRL next-update or certificate validity read against the wall clock).
REVIEWED: dict[str, str] = {
    "tests/test_clock_ahead.py": "the patterns above",
    "src/ikeguard/policy/model.py": "an example in an error message",
    "src/ikeguard/policy/waivers.py": "an example in a docstring",
    "tests/policy/conftest.py": "NOW is the injected `now` of evaluate()/enforce(); PKI from it is only "
    "judged with that same now",
    "tests/policy/test_certificates.py": "NOW is injected into evaluate()/enforce(); the one `ikeguard "
    "check` run (wall clock) issues its PKI at the real now",
    "tests/policy/test_waivers.py": "waiver expiries compared with the injected `now` fixture only",
    "tests/policy/test_mutations.py": "'sunset 2030-12-31' is message text from the profile",
    "tests/service/test_plan.py": "build_plan(now=NOW) with PKI issued at the same NOW (injected clock)",
    "tests/engine/pki.py": "in-memory engine tests: certificates judged at the engine's injected clock T0",
    "tests/pki/certs.py": "NOW is passed to the validator as its `now`; tests meeting a real clock issue "
    "relative to the real now",
    "tests/tools/test_certfactory.py": "cryptography's verifier is given .time(NOW); nothing reaches a real "
    "clock",
    "tests/crypto/test_signatures.py": "certificates only carry an AlgorithmIdentifier; validity never "
    "checked",
    "tests/audit/helpers.py": "record times injected into the store (its clock is a parameter)",
    "tests/audit/test_cli.py": "record times compared with other record times (tamper/ordering, export "
    "range)",
    "tests/audit/test_formats.py": "record encoding of a given time",
    "tests/audit/test_sinks.py": "record times injected; rsyslog does not judge message times",
    "tests/audit/test_store.py": "record times injected into the store",
    "tests/control/test_cli_gateway.py": "SA times shown as text by the CLI, never compared with the clock",
    "tests/wire/test_captures.py": "the date in a third-party capture's text dump",
    "tests/harness/test_libreswan_parse.py": "an epoch in libreswan status text, parsed as text",
    "tests/service/test_psk_selection.py": "build_plan(now=NOW): PSKs only, no certificate or CRL",
    "src/ikeguard/policy/report.py": "an example in a docstring",
    "src/ikeguard/policy/profiles/pci-dss-4.toml": "'sunset 2030-12-31' is message text",
    "src/ikeguard/policy/profiles/nist-800-77r1.toml": "'sunset 2030-12-31' is message text",
}


def _files_with_fixed_dates() -> set[str]:
    found = set()
    for top in ("src", "tests"):
        for path in (REPO / top).rglob("*"):
            if path.suffix not in SCANNED or "vectors" in path.parts or "__pycache__" in path.parts:
                continue  # tests/vectors: third-party captures and vectors (parsed, never validated)
            if FIXED_DATE.search(path.read_text(encoding="utf-8", errors="replace")):
                found.add(path.relative_to(REPO).as_posix())
    return found


def test_every_fixed_date_in_the_code_is_reviewed() -> None:
    unreviewed = _files_with_fixed_dates() - set(REVIEWED)
    assert not unreviewed, (
        f"{sorted(unreviewed)} hold a fixed calendar date: derive it from the real now (or a clock the test "
        "controls end to end) and mark the test date_sensitive if it meets a real clock; or, if it never "
        "meets one, add the file to REVIEWED in tests/test_clock_ahead.py saying why"
    )


def test_reviewed_files_still_hold_a_fixed_date() -> None:
    """A file that no longer holds one leaves the list (so the list stays a review, not a blanket pass)."""
    assert set(REVIEWED) <= _files_with_fixed_dates()


def test_the_fixed_date_pattern_finds_what_it_should() -> None:
    for text in ("dt.datetime(2026, 11, 27, tzinfo=dt.UTC)", 'time="2026-11-27T03:00:00Z"',
                 "b'261127030000Z'", "20261127030000Z", "add_time=1764214000,", "T0 = 1796286281.5"):
        assert FIXED_DATE.search(text), text
    for text in ("dt.datetime.now(dt.UTC)", "MODP_2048", "RFC 7296", "1_000_000_000", "0x1796286281",
                 "seq 123456789012"):
        assert not FIXED_DATE.search(text), text
