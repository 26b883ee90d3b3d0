"""The Linux XFRM data plane: the kernel carries ESP, ikeguard programs states and policies over netlink.

``probe_esp_support()`` says whether this kernel can (None) or why not; ``XfrmDataPlane`` implements
:class:`ikeguard.dataplane.base.DataPlane`. See docs/xfrm.md for running it on a production host.
"""

from ikeguard.dataplane.xfrm.events import AcquireRequested
from ikeguard.dataplane.xfrm.plane import XfrmDataPlane
from ikeguard.dataplane.xfrm.probe import XFRM_FEATURES, ProbeResult, probe, probe_esp_support
from ikeguard.dataplane.xfrm.sockets import bypass_policies, enable_esp_in_udp

__all__ = ["XFRM_FEATURES", "AcquireRequested", "ProbeResult", "XfrmDataPlane", "bypass_policies",
           "enable_esp_in_udp", "probe", "probe_esp_support"]
