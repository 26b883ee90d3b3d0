"""``report.html`` (and ``report.pdf``) of an evidence pack: a report people read, summary first (profile
verdict, counts, exceptions), then charts where they beat tables (SAs and authentication failures per day,
suites negotiated, certificate expiry, rekey timing), then the tables. Made only from the pack's own files,
so it is as deterministic as they are; no scripts, no network (inline SVG, inline CSS). The PDF is the same
HTML through WeasyPrint (docs/evidence.md).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ikeguard.audit.chain import Record
from ikeguard.evidence import svg
from ikeguard.evidence.ca import CA_EVENTS
from ikeguard.evidence.ca import names_in as ca_names
from ikeguard.evidence.ca import records_in as ca_records
from ikeguard.evidence.inventory import days_left

SECTIONS = ("Summary", "SAs and authentication failures", "Suites negotiated", "Certificate expiry",
            "Rekey timing", "Cryptographic inventory", "Certificates", "Certificate authority",
            "Configuration changes", "Exceptions and findings")
_CSS = """
body { font-family: "DejaVu Sans", sans-serif; color: #24292f; margin: 24px; font-size: 12px; }
h1 { font-size: 20px; margin-bottom: 4px; } h2 { font-size: 15px; border-bottom: 1px solid #d0d7de;
margin-top: 24px; page-break-after: avoid; }
.summary { background: #eef3f8; border: 1px solid #9db7d3; padding: 10px 14px; }
.verdict-pass { color: #1a7f37; font-weight: bold; } .verdict-fail { color: #c8322d; font-weight: bold; }
.counts td { padding: 2px 14px 2px 0; }
table.data { border-collapse: collapse; width: 100%; font-size: 10px; }
table.data th, table.data td { border: 1px solid #d0d7de; padding: 2px 4px; text-align: left;
vertical-align: top; } table.data th { background: #f6f8fa; } .chart { display: block; margin: 8px 0; }
section { page-break-inside: auto; } .note { color: #57606a; }
"""


def _load(files: Mapping[str, bytes], name: str) -> Any:
    return json.loads(files[name]) if name in files else None


def _records(files: Mapping[str, bytes]) -> list[Record]:
    text = files.get("trail/records.jsonl", b"").decode()
    return [Record.from_json(json.loads(line)) for line in text.splitlines() if line.strip()]


MAX_ROWS = 150  # a table longer than this shows its first rows; the full list is in the pack's CSV/JSON


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], full: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows[:MAX_ROWS])
    more = (f'<p class="note">The first {MAX_ROWS} of {len(rows)} rows; all of them are in '
            f"{escape(full)}.</p>" if len(rows) > MAX_ROWS else "")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}'


def _days(period: Mapping[str, Any]) -> list[str]:
    start = dt.datetime.fromisoformat(str(period["from"]).replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(str(period["to"]).replace("Z", "+00:00"))
    return [f"{start + dt.timedelta(days=i):%Y-%m-%d}" for i in range(max(1, (end - start).days))]


def _per_day(records: Sequence[Record], days: Sequence[str], events: set[str]) -> list[int]:
    counts = Counter(r.time[:10] for r in records if str(r.body.get("event")) in events)
    return [counts.get(d, 0) for d in days]


def rekey_intervals(records: Sequence[Record]) -> list[float]:
    """Minutes between a Child SA's setup (or last rekey) and its next rekey, per IKE SA and child name."""
    last: dict[tuple[str, object, object], dt.datetime] = {}  # (conn/peer, IKE SA, child) -> last
    out: list[float] = []
    for r in records:
        event = str(r.body.get("event"))
        if event == "ike.down":  # (child.down also follows every rekey: the old SA goes)
            for k in [k for k in last if k[0] == f"{r.body.get('connection')}/{r.body.get('remote_id')}"
                      and k[1] == r.body.get("ike_uniqueid")]:
                del last[k]
            continue
        if event not in ("child.up", "child.rekeyed"):
            continue
        details = r.body.get("details") if isinstance(r.body.get("details"), dict) else {}
        assert isinstance(details, dict)
        key = (f"{r.body.get('connection')}/{r.body.get('remote_id')}", r.body.get("ike_uniqueid"),
               details.get("child"))
        when = dt.datetime.fromisoformat(r.time.replace("Z", "+00:00"))
        if event == "child.rekeyed" and key in last:
            out.append(round((when - last[key]).total_seconds() / 60, 1))
        last[key] = when
    return out


def _scans(files: Mapping[str, bytes]) -> str:
    results = [json.loads(files[n]) for n in sorted(files) if n.startswith("scan/")]
    if not results:
        return "none included (ikeguard evidence --scan FILE)"
    return "; ".join(f"{r.get('target', {}).get('host')}: {r.get('status')}, exit {r.get('exit_code')}"
                     for r in results)


def _summary(files: Mapping[str, bytes], period: Mapping[str, Any], check: Mapping[str, Any],
             summary: Mapping[str, Any], crypto: Mapping[str, Any], certs: Mapping[str, Any],
             changes: Sequence[Any]) -> str:
    verdict = str(check.get("verdict", "unknown"))
    css = "verdict-pass" if check.get("passed") else "verdict-fail"
    failing = [f for f in check.get("findings", []) if f.get("status") == "fail"]
    waived = [f for f in check.get("findings", []) if f.get("status") == "waived"]
    retiring = [u for u in crypto.get("negotiated", []) if u.get("retirement")]
    rejected = [c for c in certs.get("seen", []) if str(c.get("revocation", "")).startswith("rejected")]
    rows = [("Period", f"{period['from']} to {period['to']}"),
            ("Trail records", f"{period['records']} (seq {period['first_seq']}..{period['last_seq']})"),
            ("IKE SAs established or rekeyed", summary.get("ike_sas", 0)),
            ("Child SAs established or rekeyed", summary.get("child_sas", 0)),
            ("Authentication failures", summary.get("auth_failures", 0)),
            ("Suites negotiated", len(crypto.get("negotiated_suites", []))),
            ("Suites in use scheduled for retirement", len({u["proposal"] for u in retiring})),
            ("Peer certificates seen / rejected", f"{len(certs.get('seen', []))} / {len(rejected)}"),
            ("Configuration changes", len(changes)),
            ("Failing rules / compensating controls (waivers)", f"{len(failing)} / {len(waived)}"),
            ("Scans of this gateway (ikeguard scan)", _scans(files))]
    table = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return (f'<div class="summary" id="summary-box"><p>Profile <b>{escape(str(check.get("profile")))}</b> '
            f'(version {escape(str(check.get("profile_version")))}): verdict '
            f'<span class="{css}">{escape(verdict)}</span>, judged as of the end of the period.</p>'
            f'<table class="counts">{table}</table>'
            '<p class="note">Integrity: every file is listed with its SHA-256 in manifest.json, sealed by '
            'the audit trail; check it with <code>ikeguard evidence verify PACK --key KEY</code>. '
            'The trail\'s <code>audit verify</code> result when the pack was made is in '
            'integrity/at-creation.json.</p>'
            "</div>")


def _certificate_authorities(files: Mapping[str, bytes]) -> str:
    """Per CA given with ``--ca``: who it is, what it issued and revoked, its key's use, its inventory."""
    names = ca_names(files)
    if not names:
        return ('<p class="note">No CA included: ikeguard ran no certificate authority for this pack '
                "(<code>ikeguard evidence --ca DIR</code> adds an <code>ikeguard pki</code> CA).</p>")
    out = []
    for name in names:
        period = _load(files, f"ca/{name}/period.json") or {}
        ca, counts = period.get("ca", {}), period.get("summary", {})
        rows = [("CA", ca.get("subject", "")), ("Issuer", ca.get("issuer", "")),
                ("Key", ca.get("key", "")), ("Certificate not after", ca.get("not_after", "")),
                ("Trail records", f"{period.get('records')} (seq {period.get('first_seq')}.."
                                  f"{period.get('last_seq')})"),
                ("Certificates issued / revoked / CRLs", f"{counts.get('issued', 0)} / "
                 f"{counts.get('revoked', 0)} / {counts.get('crls', 0)}"),
                ("CA key: token logins / signatures / errors", f"{counts.get('hsm_logins', 0)} / "
                 f"{counts.get('hsm_signatures', 0)} / {counts.get('hsm_errors', 0)}")]
        table = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in rows)
        log = [(r.seq, r.time, r.body.get("event"), r.body.get("cert_subject", ""),
                r.body.get("cert_serial", ""), r.body.get("reason", ""), r.body.get("admin", ""))
               for r in ca_records(files, name) if r.body.get("event") in CA_EVENTS]
        inventory = _load(files, f"ca/{name}/certificates.json") or []
        out.append(f"<h3>{escape(name)}</h3><table class=\"counts\">{table}</table>"
                   + _table(["seq", "time", "event", "subject", "serial", "reason", "admin"], log,
                            f"ca/{name}/issuance.csv")
                   + _table(["serial", "subject", "key type", "not after", "status at the end of the period"],
                            [(c["serial"], c["subject"], c["key_type"], c["not_after"], c["status"])
                             for c in inventory], f"ca/{name}/certificates.csv"))
    return "".join(out)


def build_html(files: Mapping[str, bytes]) -> str:
    """The report from the pack's files (all but the manifest, its seal and the report itself)."""
    period = _load(files, "period.json")
    check = _load(files, "compliance/check.json") or {}
    summary = _load(files, "connections/summary.json") or {}
    crypto = _load(files, "inventory/crypto.json") or {}
    certs = _load(files, "inventory/certificates.json") or {}
    changes = _load(files, "config/changes.json") or []
    records = _records(files)
    days = _days(period)
    parts: list[str] = [f"<h1>ikeguard evidence pack: {escape(str(period['config']))}</h1>"]
    sections: dict[str, str] = {}
    sections["Summary"] = _summary(files, period, check, summary, crypto, certs, changes)
    sections["SAs and authentication failures"] = svg.daily_bars(
        "IKE SAs, Child SAs and authentication failures per day (UTC)", days,
        [("IKE SAs", svg.BAR, _per_day(records, days, {"ike.up", "ike.rekeyed"})),
         ("Child SAs", "#7aa6d6", _per_day(records, days, {"child.up", "child.rekeyed"})),
         ("auth failures", svg.ALERT, _per_day(records, days, {"auth.failure"}))])
    per_suite: dict[tuple[str, str], list[Any]] = {}  # (protocol, proposal) -> [SAs, peers, retiring]
    for u in crypto.get("negotiated", []):
        entry = per_suite.setdefault((u["protocol"], u["proposal"]), [0, set(), False])
        entry[0] += u["count"]
        entry[1].add(u["peer"])
        entry[2] = entry[2] or any(not n.startswith("no key exchange") for n in u.get("retirement", []))
    suite_rows = [(f"{proto} {proposal} ({len(peers)} peer{'s' if len(peers) != 1 else ''})", float(count),
                   svg.ALERT if retiring else svg.BAR)
                  for (proto, proposal), (count, peers, retiring) in sorted(per_suite.items())]
    sections["Suites negotiated"] = svg.horizontal_bars("SAs per suite (red: scheduled for retirement)",
                                                        suite_rows)
    end = dt.datetime.fromisoformat(str(period["to"]).replace("Z", "+00:00"))
    expiry = [(f"{c['role']}: {c['subject']}", float(left), svg.ALERT if left < 90 else svg.BAR)
              for c in certs.get("configured", [])
              if (left := days_left(c.get("not_after", ""), end)) is not None]
    sections["Certificate expiry"] = (svg.horizontal_bars("Days from the end of the period to not-after "
                                                          "(red: under 90)", expiry, " d")
                                      + '<p class="note">Peer certificates: the trail records subject, '
                                        "issuer and serial, not their expiry (see Certificates).</p>")
    sections["Rekey timing"] = svg.histogram("Minutes from a Child SA's setup or last rekey to its rekey",
                                             rekey_intervals(records), unit=" min")
    sections["Cryptographic inventory"] = _table(
        ["kind", "connection", "child / peer", "protocol", "proposal", "count", "first seen", "last seen",
         "retirement"],
        [("configured", c["connection"], c["child"], c["protocol"], c["proposal"], "", "", "",
          "; ".join(c["retirement"])) for c in crypto.get("configured", [])]
        + [("negotiated", u["connection"], u["peer"], u["protocol"], u["proposal"], u["count"],
            u["first_seen"], u["last_seen"], "; ".join(u["retirement"]))
           for u in crypto.get("negotiated", [])], "inventory/crypto.csv")
    sections["Certificates"] = _table(
        ["role", "subject", "issuer", "serial", "key type", "not after", "last check"],
        [(c["role"], c["subject"], c["issuer"], c["serial"], c["key_type"], c["not_after"], c["revocation"])
         for c in (*certs.get("configured", []), *certs.get("seen", []))], "inventory/certificates.csv")
    sections["Configuration changes"] = _table(
        ["seq", "time", "event", "admin", "ticket", "connection", "peer", "reason"],
        [(c["seq"], c["time"], c["event"], c["admin"], c["ticket"], c["connection"], c["peer"], c["reason"])
         for c in changes], "config/changes.csv")
    sections["Certificate authority"] = _certificate_authorities(files)
    findings = [f for f in check.get("findings", []) if f.get("status") in ("fail", "waived", "warn")]
    sections["Exceptions and findings"] = _table(
        ["status", "rule", "scope", "message", "PCI DSS", "NIST SP 800-53"],
        [(f.get("status"), f.get("rule"), f.get("scope"), f.get("message"), ", ".join(f.get("pci_dss", [])),
          ", ".join(f.get("nist_800_53", []))) for f in findings], "compliance/check.json")
    for title in SECTIONS:
        slug = title.lower().replace(" ", "-")
        parts.append(f'<section id="{slug}"><h2>{escape(title)}</h2>{sections[title]}</section>')
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>ikeguard evidence {escape(str(period['from'])[:10])}..{escape(str(period['to'])[:10])}"
            f"</title><style>{_CSS}</style></head><body>" + "".join(parts) + "</body></html>\n")


def build_pdf(html: str) -> bytes:
    """The same report as PDF through WeasyPrint (ImportError/OSError without it or its libraries)."""
    import weasyprint  # type: ignore[import-untyped]  # no type hints published

    return bytes(weasyprint.HTML(string=html).write_pdf())
