"""`ikeguard demo`: the payment-processor case on one machine (INTERFACE.md "The demo").

scenario: sites, throwaway PKI and the three gateway configs; topology: the namespaces;
siem: the demo's RFC 5425 receiver; runner: the steps and the teardown; display: what is printed.
"""

from ikeguard.tools.demo.runner import Demo, DemoResult, StepFailed, run_demo

__all__ = ["Demo", "DemoResult", "StepFailed", "run_demo"]
