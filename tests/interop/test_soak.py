"""Issue 16 item 7, the soak: the scenario of tests/harness/soak.py (Child SA rekeys from both sides, IKE SA
rekeys, strongSwan's make-before-break reauthentication, DPD and MOBIKE moves under a ping stream against
strongSwan) with its rules: no SA leak, pings lost within the MOBIKE budget, gateway memory flat.

The suite runs it for a minute; ``make soak`` runs it for ``SOAK_SECONDS`` (default 900) and writes every
sample to ``SOAK_RESULT`` (build/soak.json); the figures go to docs/performance.md."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.soak import IKG_IKE_REKEY, MOBIKE_EVERY, SS_CHILD_REKEY, run_soak
from tests.harness.strongswan import StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop, pytest.mark.slow]
SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))


def test_rekeys_reauthentication_dpd_and_mobike_under_pings_leak_nothing(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess],
) -> None:
    result = run_soak(netns_topology("direct"), strongswan_peer, ikeguard_gateway, seconds=SECONDS)
    if os.environ.get("SOAK_RESULT"):
        path = Path(os.environ["SOAK_RESULT"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.as_dict(), indent=1))
    print(json.dumps(result.summary()))
    assert result.problems() == [], result.summary()
    # what the run went through, so that a quiet tunnel cannot pass for a soaked one
    assert result.moves >= int((SECONDS - 10) // MOBIKE_EVERY) >= 1
    assert result.events.get("ike.address_changed", 0) >= result.moves
    assert result.events.get("child.rekeyed", 0) >= int(SECONDS // SS_CHILD_REKEY)
    assert result.events.get("ike.rekeyed", 0) >= int(SECONDS // (IKG_IKE_REKEY * 1.5))
