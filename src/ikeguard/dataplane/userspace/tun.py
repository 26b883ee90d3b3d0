"""Linux TUN device (``/dev/net/tun``, TUNSETIFF with IFF_TUN | IFF_NO_PI, optionally IFF_MULTI_QUEUE).

Written against the kernel's documented ioctl (Documentation/networking/tuntap.rst); no library needed.
The device exists while a queue file descriptor is open: closing the last one removes it (and its routes).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000  # every read/write starts with a struct virtio_net_hdr (10 octets): GSO packets


def open_tun(name: str, multi_queue: bool = False, vnet_hdr: bool = False) -> tuple[int, str]:
    """Open (creating if needed) TUN ``name``: returns (non-blocking fd, the kernel's device name)."""
    if len(name.encode()) > 15:
        raise ValueError("interface names have at most 15 characters")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    flags = IFF_TUN | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0)
    flags |= IFF_VNET_HDR if vnet_hdr else 0
    try:
        ifr = fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
    except OSError:
        os.close(fd)
        raise
    return fd, ifr[:16].rstrip(b"\x00").decode()


def ip(*args: str) -> None:
    """Run one ``ip`` command (iproute2); raise with its message on failure."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def configure_tun(name: str, mtu: int, addresses: tuple[str, ...] = ()) -> None:
    """Set the MTU, add addresses (CIDR strings) and bring the device up."""
    ip("link", "set", "dev", name, "mtu", str(mtu))
    with contextlib.suppress(OSError):  # no IPv6 link-local address, so no router/MLD chatter into the tunnel
        ip("link", "set", "dev", name, "addrgenmode", "none")
    for address in addresses:
        ip("addr", "replace", address, "dev", name)
    ip("link", "set", "dev", name, "up")
