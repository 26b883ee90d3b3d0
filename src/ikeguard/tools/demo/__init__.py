"""`ikeguard demo`: the payment-processor case on one machine (README "Quick start: the demo").

scenario: sites, throwaway PKI and the gateway configs; topology: the namespaces; probes: reading results;
siem: the demo's RFC 5425 receiver; runner: the steps and the teardown; display: what is printed.
"""

from ikeguard.tools.demo.result import DemoResult, StepFailed
from ikeguard.tools.demo.runner import Demo, run_demo

__all__ = ["Demo", "DemoResult", "StepFailed", "run_demo"]
