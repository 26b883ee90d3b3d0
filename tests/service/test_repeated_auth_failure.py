"""Issue 13 item 4 in-process (two real gateways on loopback, real engine and audit store): an initiator whose
automatic attempts keep refusing the responder's authentication backs off up to ``initiate_retry_max``,
writes the first failure in full and then summaries that count the repeats (periodically while the series
lasts, and when it ends), and each refused responder (here ikeguard too) drops its SA on the initiator's
AUTHENTICATION_FAILED (RFC 7296 §2.21.2). With strongSwan: tests/interop/test_initiator_auth_failure.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from ikeguard.service import actions
from tests.service.gwconfig import GwConfig
from tests.service.inprocess import (
    CLIENT_ID,
    GW_ID,
    INITIATOR_ADDR,
    PSK,
    RESPONDER_ADDR,
    free_port,
    make_plan,
    running,
)

IMPOSTER = "imposter.inprocess.example"
REFUSED = "peer refused our authentication (AUTHENTICATION_FAILED, RFC 7296 §2.21.2)"


def _failures(seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in seen if e["event"] == "auth.failure"]


def test_repeated_refusals_back_off_and_are_summarised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actions, "REPEAT_SUMMARY_EVERY", 2.5)
    port = free_port()
    # the responder authenticates as an identity the initiator's connection does not name
    responder = GwConfig(RESPONDER_ADDR, "%any", IMPOSTER, CLIENT_ID, "10.1.0.0/24", "10.2.0.0/24", psk=PSK)
    initiator = GwConfig(INITIATOR_ADDR, RESPONDER_ADDR, CLIENT_ID, GW_ID, "10.2.0.0/24", "10.1.0.0/24",
                         psk=PSK, start_action="start", extra_gateway="initiate_retry_max = 2")
    responder_seen: list[dict[str, Any]] = []
    client_seen: list[dict[str, Any]] = []
    responder_up: list[float] = []  # when the responder had an SA (polled)

    async def main() -> None:
        async with running(make_plan(tmp_path / "gw", responder, port)) as gw:
            async with running(make_plan(tmp_path / "client", initiator, port)) as client:
                started = time.monotonic()
                while time.monotonic() - started < 7.6:  # attempts at ~0, 1, 3, 5, 7 s (1, 2, 2, 2)
                    if gw.gateway.sas():
                        responder_up.append(time.monotonic())
                    await asyncio.sleep(0.02)
                client_seen.extend(client.seen)
            await asyncio.sleep(0.3)
            responder_seen.extend(gw.seen)

    asyncio.run(main())

    # every attempt reached the responder's ESTABLISHED state and was taken back at once
    told = [e for e in _failures(responder_seen) if e["reason"] == REFUSED]
    assert 4 <= len(told) <= 6, [e["reason"] for e in _failures(responder_seen)]
    downs = [e for e in responder_seen if e["event"] == "ike.down" and e["reason"] == REFUSED]
    assert len(downs) == len(told)
    # the responder's SA never lived for more than a moment (polled every 20 ms)
    assert len(responder_up) <= 3 * len(told), responder_up

    # the initiator's trail: one full failure, then summaries with the counts
    failures = _failures(client_seen)
    first, summaries = failures[0], failures[1:]
    assert f"peer identity {IMPOSTER} does not match {GW_ID}" in first["reason"]
    assert "details" not in first or "repeated" not in first["details"]
    assert summaries and all("repeated" in e["details"] for e in summaries), failures
    periodic = [e for e in summaries if not e["details"]["series_ended"]]
    assert periodic, summaries  # the series outlived REPEAT_SUMMARY_EVERY: summarised while still failing
    attempts = [e["details"]["attempts"] for e in summaries]
    assert attempts == sorted(attempts)
    assert 1 + sum(e["details"]["repeated"] for e in summaries) == attempts[-1]
    assert attempts[-1] in (len(told), len(told) + 1)  # (+1: an attempt cut short by the stop)
    assert all(e["reason"].startswith(first["reason"]) for e in summaries)
    # backoff capped at 2 s: ~5 attempts in 7.6 s, not 8
    assert attempts[-1] <= 6


def test_initiate_retry_max_setting() -> None:
    from pydantic import ValidationError

    from ikeguard.policy.model import GatewaySection

    assert GatewaySection().initiate_retry_max == actions.RETRY_MAX == 60
    assert GatewaySection(initiate_retry_max="5m").initiate_retry_max == 300
    for bad in (0, "0s", "2d", -1):
        with pytest.raises(ValidationError):
            GatewaySection(initiate_retry_max=bad)
