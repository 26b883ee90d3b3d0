"""Issue 16 item 8 against strongSwan: the running gateway overwrites a Child SA's keys when it deletes it.

``ikeguard run`` with the userspace data plane, strongSwan 5.9 (kernel-libipsec) initiating; charon logs the
CHILD_SA keys at level 4 in this lab only, so the test knows the octets to look for in the gateway process's
writable memory (live or freed; tests/harness/memscan.py). While a Child SA carries pings its keys are found
(the scan sees them); once strongSwan rekeyed it and the old SA's linger time is over, the old keys are found
nowhere while the new SA's are; after strongSwan deletes the IKE SA, no key is found.

On the previous commit a key of the rekeyed SA was still found (freed, not overwritten). In a busy process
freed memory is soon reused, so the scan after the final delete alone would pass by chance there;
tests/dataplane/test_key_hygiene.py is the deterministic proof (docs/key-hygiene.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.dataplane.userspace.plane import REKEYED_INBOUND_LINGER
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, wait_until
from tests.harness.memscan import count_in_process
from tests.harness.strongswan import StrongSwanPeer
from tests.interop.test_dataplane_strongswan import Tunnel, charon_encryption_keys, open_tunnel

pytestmark = [pytest.mark.root, pytest.mark.interop]


def _esp_keys(t: Tunnel) -> list[bytes]:
    """The AES-256 keys (without the salt) of the Child SA charon logged last, both directions."""
    keys = charon_encryption_keys(t.peer.log())
    assert set(keys) == {"initiator", "responder"}
    return [key[:32] for key in keys.values()]


def _found(t: Tunnel, keys: list[bytes]) -> list[int]:
    assert t.gw.pid is not None
    counts = count_in_process(t.gw.pid, keys)
    return [counts[k] for k in keys]


def test_rekeyed_and_deleted_child_sa_keys_are_gone_from_the_gateway_process(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    t = open_tunnel(netns_topology("direct"), strongswan_peer, ikeguard_gateway, tmp_path,
                    ikeguard_initiates=False, log_keys=True)
    assert t.ping(2).returncode == 0
    first = _esp_keys(t)
    assert all(n >= 1 for n in _found(t, first)), "the scan does not find the keys of a live SA"

    old_spi = t.child()["spi_in"]
    assert t.peer.rekey(child="net") == 1
    assert wait_until(lambda: [c["spi_in"] for c in t.gw.sas()[0]["children"]] not in ([old_spi], []),
                      timeout=10) and wait_until(lambda: len(t.gw.sas()[0]["children"]) == 1, timeout=10)
    second = _esp_keys(t)
    assert second != first
    time.sleep(REKEYED_INBOUND_LINGER + 0.5)  # the old inbound SA decrypts late packets until then
    assert t.ping(2).returncode == 0
    assert _found(t, first) == [0, 0]
    assert all(n >= 1 for n in _found(t, second))

    t.peer.terminate(ike="ikg")
    assert wait_until(lambda: not t.gw.sas(), timeout=10)
    assert _found(t, second) == [0, 0]
