"""Does this kernel carry ESP through XFRM, and with which transforms? (capability probe)

The probe installs short-lived ESP states towards the loopback address, one per transform family, with a
random SPI, and deletes each at once: the kernel answers EPROTONOSUPPORT when no ESP type is registered
(esp4/esp6 missing), ENOSYS/ENOENT when a crypto algorithm is missing, EPERM without CAP_NET_ADMIN, and a
socket error when ``xfrm_user`` is absent. Nothing is left behind; no policy refers to the probe states.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import secrets
from dataclasses import dataclass, field

from ikeguard.dataplane.base import DataPlaneFeatures, SaConfig, SaDirection, SaEndpoint
from ikeguard.dataplane.xfrm.messages import (
    ENCR_AES_CBC,
    ENCR_AES_GCM_16,
    ENCR_CHACHA20_POLY1305,
    HMAC_NAMES,
    XfrmOptions,
    newsa,
    usersa_id,
)
from ikeguard.dataplane.xfrm.netlink import XfrmError, XfrmSocket
from ikeguard.dataplane.xfrm.structs import NLM_F_CREATE, NLM_F_EXCL, XFRM_MSG_DELSA, XFRM_MSG_NEWSA

USE_USERSPACE = 'use gateway.dataplane = "userspace"'
NO_ESP = f"kernel has no ESP (esp4/esp6 not available): {USE_USERSPACE}"
# what the backend can program: AES-GCM-16 and AES-CBC at 128/192/256 bits, ChaCha20-Poly1305,
# HMAC-SHA2-256-128/384-192/512-256
ALL_ENCR: frozenset[tuple[int, int | None]] = frozenset(
    {(ENCR_AES_GCM_16, b) for b in (128, 192, 256)} | {(ENCR_AES_CBC, b) for b in (128, 192, 256)}
    | {(ENCR_CHACHA20_POLY1305, None)})
ALL_INTEG: frozenset[int] = frozenset(HMAC_NAMES)


def xfrm_features(encr: frozenset[tuple[int, int | None]] = ALL_ENCR,
                  integ: frozenset[int] = ALL_INTEG) -> DataPlaneFeatures:
    """The backend's :class:`DataPlaneFeatures` restricted to the given transforms."""
    return DataPlaneFeatures(name="xfrm", encr=encr, integ=integ, udp_encap=True, esn=True,
                             transport_mode=True, moves_packets=True, raw_esp=True)


XFRM_FEATURES = xfrm_features()


@dataclass
class ProbeResult:
    """What the probe found: the usable transforms, or why none is."""

    reason: str | None  # None = ESP usable
    encr: set[tuple[int, int | None]] = field(default_factory=set)
    integ: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    @property
    def esp(self) -> bool:
        """True when ESP is usable (what ``service/dataplane.py`` asks)."""
        return self.reason is None

    @property
    def features(self) -> DataPlaneFeatures:
        """Features restricted to what the kernel accepted."""
        return xfrm_features(frozenset(self.encr), frozenset(self.integ))


def _probe_sa(encr_id: int, bits: int | None, integ_id: int, address: str) -> SaConfig:
    cipher = (bits or 0) // 8
    key_len = {ENCR_AES_GCM_16: cipher + 4, ENCR_CHACHA20_POLY1305: 36}.get(encr_id, cipher)
    integ_len = HMAC_NAMES[integ_id][1] if integ_id else 0
    ip = ipaddress.ip_address(address)
    return SaConfig(spi=0xC0000000 | secrets.randbits(29), direction=SaDirection.OUTBOUND,
                    encr_id=encr_id, encr_key_bits=bits, integ_id=integ_id, encr_key=bytearray(key_len),
                    integ_key=bytearray(integ_len),
                    source=SaEndpoint(ip), destination=SaEndpoint(ip), local_ts=(), remote_ts=(),
                    encap=False)


def _try(sock: XfrmSocket, sa: SaConfig) -> int:
    """0 when the kernel took (and we removed) the state, else the errno."""
    options = XfrmOptions()
    try:
        sock.request(XFRM_MSG_NEWSA, newsa(sa, 0, options), NLM_F_CREATE | NLM_F_EXCL, "probe NEWSA")
    except XfrmError as exc:
        return exc.errno or errno.EIO
    with contextlib.suppress(XfrmError):  # already gone
        sock.request(XFRM_MSG_DELSA, usersa_id(sa.destination.address, sa.spi, options), 0, "probe DELSA")
    return 0


def _reason_for(err: int, what: str) -> str:
    if err in (errno.EPERM, errno.EACCES):
        return f"{what}: permission denied: the XFRM backend needs CAP_NET_ADMIN (run the gateway as root)"
    if err == errno.EPROTONOSUPPORT:
        return NO_ESP
    return f"{what}: {errno.errorcode.get(err, str(err))}: {USE_USERSPACE}"


def probe(netns: str | None = None) -> ProbeResult:
    """Try each transform family in ``netns`` (default: this process's network namespace)."""
    try:
        sock = XfrmSocket(netns)
    except OSError as exc:
        if exc.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
            return ProbeResult("kernel has no XFRM netlink interface (load xfrm_user, or "
                               f"{USE_USERSPACE})")
        return ProbeResult(f"cannot open an XFRM netlink socket: {exc}: {USE_USERSPACE}")
    result = ProbeResult(None)
    working: list[tuple[int, int | None, int]] = []
    try:
        first_error = 0
        for encr_id, bits, integ_id in ((ENCR_AES_GCM_16, 128, 0), (ENCR_CHACHA20_POLY1305, None, 0),
                                         (ENCR_AES_CBC, 128, 12), (ENCR_AES_CBC, 128, 13),
                                         (ENCR_AES_CBC, 128, 14)):
            err = _try(sock, _probe_sa(encr_id, bits, integ_id, "127.0.0.1"))
            if err in (errno.EPERM, errno.EACCES, errno.EPROTONOSUPPORT):
                return ProbeResult(_reason_for(err, "ESP state"))
            if err:
                first_error = first_error or err
                continue
            working.append((encr_id, bits, integ_id))
            if encr_id == ENCR_AES_CBC:
                result.encr |= {(ENCR_AES_CBC, b) for b in (128, 192, 256)}
                result.integ.add(integ_id)
            elif encr_id == ENCR_AES_GCM_16:
                result.encr |= {(ENCR_AES_GCM_16, b) for b in (128, 192, 256)}
            else:
                result.encr.add((encr_id, None))
        if not result.encr:
            return ProbeResult(f"kernel ESP offers none of AES-GCM-16, ChaCha20-Poly1305, AES-CBC/HMAC-SHA2 "
                               f"({errno.errorcode.get(first_error, first_error)}): {USE_USERSPACE}")
        if _try(sock, _probe_sa(*working[0], "::1")) == errno.EPROTONOSUPPORT:
            result.notes.append("kernel has no esp6: IPv6 outer addresses will fail")
    finally:
        sock.close()
    return result


def probe_esp_support(netns: str | None = None) -> str | None:
    """None when the kernel can carry ESP through XFRM, else the reason (shown to the operator)."""
    return probe(netns).reason
