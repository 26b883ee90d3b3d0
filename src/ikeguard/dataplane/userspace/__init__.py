"""Userspace ESP-in-UDP (RFC 3948) data plane over a TUN device."""

from ikeguard.dataplane.userspace.plane import FEATURES, UserspaceDataPlane

__all__ = ["FEATURES", "UserspaceDataPlane"]
