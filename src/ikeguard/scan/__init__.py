"""`ikeguard scan`: what an IKEv2 responder accepts in IKE_SA_INIT, judged by the project's profiles.

Sits below ``control`` and beside ``service``: it uses ``wire`` (messages), ``crypto`` (KE values) and
``policy`` (the profiles' rules); the scan with credentials drives the engine as an initiator
(``scan.authenticated``). See docs/scan.md.
"""

from ikeguard.scan.authenticated import ScanCredentials
from ikeguard.scan.catalog import Observation
from ikeguard.scan.report import SCHEMA, ScanReport, judge
from ikeguard.scan.scanner import ScanOptions, ScanResult, scan
from ikeguard.scan.verdict import PolicyFileError, ScanFinding, load_policy

__all__ = [
    "SCHEMA",
    "Observation",
    "PolicyFileError",
    "ScanCredentials",
    "ScanFinding",
    "ScanOptions",
    "ScanReport",
    "ScanResult",
    "judge",
    "load_policy",
    "scan",
]
