"""SA descriptions shared by the XFRM tests (documentation addresses only)."""

from __future__ import annotations

import ipaddress

from ikeguard.dataplane.base import SaConfig, SaDirection, SaEndpoint
from ikeguard.policy.ts import TrafficSelector

GW = ipaddress.ip_address("192.0.2.1")
PEER = ipaddress.ip_address("203.0.113.2")
LOCAL_NET = TrafficSelector.for_network(ipaddress.ip_network("198.51.100.0/25"))
REMOTE_NET = TrafficSelector.for_network(ipaddress.ip_network("198.51.100.128/25"))
GCM_KEY = bytes(range(1, 17)) + b"\xa1\xa2\xa3\xa4"  # 16-octet AES key, then the 4-octet salt


def gcm_udp_sa(
    direction: SaDirection = SaDirection.OUTBOUND, spi: int = 0xC1A2B3C4, **changes: object
) -> SaConfig:
    """AES-GCM-16/128 tunnel with UDP encapsulation (peer behind NAT: its port is 31337)."""
    gw, peer = SaEndpoint(GW, 4500), SaEndpoint(PEER, 31337)
    src, dst = (gw, peer) if direction is SaDirection.OUTBOUND else (peer, gw)
    values: dict[str, object] = dict(
        spi=spi,
        direction=direction,
        encr_id=20,
        encr_key_bits=128,
        integ_id=0,
        encr_key=GCM_KEY,
        integ_key=b"",
        source=src,
        destination=dst,
        local_ts=(LOCAL_NET,),
        remote_ts=(REMOTE_NET,),
        replay_window=32,
        soft_bytes=900_000_000,
        hard_bytes=1_000_000_000,
        soft_packets=0,
        hard_packets=0,
        child_uniqueid=3,
    )
    values.update(changes)
    return SaConfig(**values)  # type: ignore[arg-type]
