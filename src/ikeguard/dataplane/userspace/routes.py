"""Routes steering a Child SA's remote selectors into the TUN device, with a fail-closed fallback.

Per remote selector (as CIDRs) two routes: ``dev TUN metric 10`` (traffic reaches the data plane, which
encrypts it or drops it when no SA is installed) and ``blackhole metric 4294967295`` underneath, so that even
when the TUN device disappears (data plane stopped or crashed) the selectors never fall back to a less
specific route such as the default route: nothing is sent in the clear (RFC 4301 §4.4.1 DISCARD).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable

from ikeguard.dataplane.userspace.tun import ip
from ikeguard.policy.ts import TrafficSelector

TUN_METRIC = "10"
BLACKHOLE_METRIC = "4294967295"


def selector_networks(selectors: Iterable[TrafficSelector]) -> list[str]:
    """The CIDRs covering the selectors' address ranges."""
    nets: list[str] = []
    for ts in selectors:
        for net in ipaddress.summarize_address_range(ts.start_address, ts.end_address):
            text = str(net)
            if text not in nets:
                nets.append(text)
    return nets


def _family(cidr: str) -> str:
    return "-6" if ":" in cidr else "-4"


def install_routes(tun: str, selectors: Iterable[TrafficSelector], source: dict[int, str]) -> list[str]:
    """Add the TUN and blackhole routes; ``source`` = preferred source address per IP version."""
    nets = selector_networks(selectors)
    for cidr in nets:
        fam = _family(cidr)
        ip(fam, "route", "replace", "blackhole", cidr, "metric", BLACKHOLE_METRIC)
        extra = ["src", source[6 if fam == "-6" else 4]] if (6 if fam == "-6" else 4) in source else []
        ip(fam, "route", "replace", cidr, "dev", tun, "metric", TUN_METRIC, *extra)
    return nets


def remove_routes(tun: str, nets: Iterable[str]) -> None:
    """Remove both routes of each CIDR (a tunnel that is gone for good, not one that is down)."""
    for cidr in nets:
        fam = _family(cidr)
        tun_route = (cidr, "dev", tun, "metric", TUN_METRIC)
        for args in (tun_route, ("blackhole", cidr, "metric", BLACKHOLE_METRIC)):
            with contextlib.suppress(OSError):  # already gone (e.g. with the TUN device)
                ip(fam, "route", "del", *args)
