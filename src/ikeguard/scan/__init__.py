"""`ikeguard scan`: what an IKEv2 responder accepts in IKE_SA_INIT, judged by the project's profiles.

Sits below ``control`` and beside ``service``: it uses ``wire`` (messages), ``crypto`` (KE values) and
``policy`` (the profiles' rules), never the engine. See docs/scan.md.
"""

from ikeguard.scan.report import SCHEMA, ScanReport, judge
from ikeguard.scan.scanner import Observation, ScanOptions, ScanResult, scan
from ikeguard.scan.verdict import PolicyFileError, ScanFinding, load_policy

__all__ = [
    "SCHEMA",
    "Observation",
    "PolicyFileError",
    "ScanFinding",
    "ScanOptions",
    "ScanReport",
    "ScanResult",
    "judge",
    "load_policy",
    "scan",
]
