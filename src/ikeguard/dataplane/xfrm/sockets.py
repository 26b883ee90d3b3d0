"""IKE sockets next to kernel ESP: ESP-in-UDP decapsulation on the NAT-T port and per-socket policy bypass.

With the XFRM backend the kernel, not ikeguard, receives ESP: the UDP socket on port 4500 must be marked
``UDP_ENCAP_ESPINUDP`` so the kernel takes every datagram that is not IKE (no non-ESP marker, RFC 3948
§2.2) and hands IKE (marker included) and keepalives to the socket as before. IKE sockets also need
per-socket "bypass" policies in both directions, or a Child SA whose selectors cover the gateway's own
address would capture the IKE traffic that negotiates it (RFC 4301 §5.1 IKE bypass). Hand-written over
``setsockopt`` (no library wraps these options).
"""

from __future__ import annotations

import socket

from ikeguard.dataplane.xfrm.structs import (
    AF_INET,
    AF_INET6,
    UDP_ENCAP_ESPINUDP,
    XFRM_POLICY_ALLOW,
    XFRM_POLICY_IN,
    XFRM_POLICY_OUT,
    Selector,
    UserpolicyInfo,
)

SOL_UDP = 17
UDP_ENCAP = 100  # linux/udp.h
IP_XFRM_POLICY = 17  # linux/in.h
IPV6_XFRM_POLICY = 35  # linux/in6.h


def enable_esp_in_udp(sock: socket.socket) -> None:
    """Let the kernel decapsulate ESP arriving on this UDP socket (RFC 3948); IKE still reaches it."""
    sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)


def bypass_policies(sock: socket.socket) -> None:
    """Install per-socket in/out policies that let this socket's traffic bypass IPsec (IKE itself)."""
    if sock.family == socket.AF_INET6:
        level, option, family = socket.IPPROTO_IPV6, IPV6_XFRM_POLICY, AF_INET6
    else:
        level, option, family = socket.IPPROTO_IP, IP_XFRM_POLICY, AF_INET
    for direction in (XFRM_POLICY_IN, XFRM_POLICY_OUT):
        policy = UserpolicyInfo(sel=Selector(family=family), dir=direction, action=XFRM_POLICY_ALLOW)
        sock.setsockopt(level, option, policy.pack())
