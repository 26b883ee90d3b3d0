"""RADIUS accounting of remote-access sessions (RFC 2866), as strongSwan's eap-radius ``accounting = yes``.

A session starts when an IKE SA whose user authenticated with EAP is established (Accounting-Request
Start: User-Name, Acct-Session-Id, Framed-IP-Address, Calling-Station-Id) and stops when it ends (Stop with
Acct-Session-Time, the traffic of its Child SAs as the data plane counted it, and Acct-Terminate-Cause);
an IKE SA that replaces it by a rekey carries the session on. With ``accounting_interval`` an
Interim-Update every interval reports the traffic so far (the deleted Child SAs' final counters plus the
live ones). The records go out in the RADIUS relay's worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ikeguard.engine.states import IkeState

if TYPE_CHECKING:
    from ikeguard.engine.events import IkeSaStateChanged
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.service.radius import RadiusRelay

# RFC 2866 §5.10 Acct-Terminate-Cause
USER_REQUEST, LOST_CARRIER, IDLE_TIMEOUT, SESSION_TIMEOUT, ADMIN_RESET, NAS_ERROR, NAS_REQUEST = (
    1, 2, 4, 5, 6, 9, 10)


def terminate_cause(reason: str) -> int:
    """The Acct-Terminate-Cause for an IKE SA's close reason."""
    text = reason.lower()
    if "admin" in text:
        return ADMIN_RESET
    if "dpd" in text or "dead peer" in text or "no answer" in text:
        return LOST_CARRIER
    if "lifetime" in text or "reauth" in text:
        return SESSION_TIMEOUT
    if "shutdown" in text or "stopping" in text:
        return NAS_REQUEST
    if "internal error" in text:
        return NAS_ERROR
    return USER_REQUEST  # the peer deleted it (or replaced it: INITIAL_CONTACT)


@dataclass
class Session:
    """One accounting session: the IKE SA carrying it now and the traffic of the ones before."""

    session_id: str
    user: str
    started: float
    sa: IkeSa
    uniqueids: list[int] = field(default_factory=list)


class Accounting:
    """Start/Stop records for the gateway (``Gateway._ike_state`` feeds it)."""

    def __init__(self, relay: RadiusRelay, enabled: bool, interval: float = 0.0) -> None:
        self._relay = relay
        self.enabled = enabled
        self.interval = interval
        self._timer: asyncio.TimerHandle | None = None
        # the live counters of an IKE SA's installed Child SAs (the gateway asks its data plane)
        self.live: Callable[[IkeSa], list[int]] = lambda sa: [0, 0, 0, 0]
        self._sessions: dict[int, Session] = {}  # IKE uniqueid -> session
        self._counted: dict[int, Session] = {}  # every IKE uniqueid a live session counts traffic of

    def counts(self, ike_uniqueid: int) -> bool:
        """Whether the traffic of ``ike_uniqueid``'s Child SAs belongs to a live session."""
        return ike_uniqueid in self._counted

    def ike_state(self, event: IkeSaStateChanged, sa: IkeSa | None, traffic: dict[int, list[int]],
                  loop: asyncio.AbstractEventLoop | None) -> None:
        """An IKE SA changed state; ``traffic`` maps IKE uniqueids to [in octets, out octets, in packets,
        out packets] of their deleted Child SAs (the data plane's final counters)."""
        if not self.enabled or loop is None:
            return
        if event.new is IkeState.ESTABLISHED and sa is not None and sa.eap_identity:
            self._established(sa, loop)
        elif event.new is IkeState.CLOSED:
            session = self._sessions.pop(event.ike_uniqueid, None)
            if session is None:
                return
            successor = session.sa.rekeyed_by
            if successor is not None and successor.state is not IkeState.CLOSED:
                session.sa = successor
                session.uniqueids.append(successor.uniqueid)
                self._sessions[successor.uniqueid] = session
                self._counted[successor.uniqueid] = session
                return
            for uid in session.uniqueids:
                self._counted.pop(uid, None)
            self._stop(session, traffic, loop)

    def _established(self, sa: IkeSa, loop: asyncio.AbstractEventLoop) -> None:
        if sa.uniqueid in self._sessions or sa.created_by_rekey:
            return
        session = Session(f"{sa.spi_i.hex()}-{sa.spi_r.hex()}", sa.eap_identity, time.time(), sa,
                          [sa.uniqueid])
        self._sessions[sa.uniqueid] = session
        self._counted[sa.uniqueid] = session
        self._relay.account({**self._common(session), "Acct-Status-Type": "Start"}, loop)

    def _common(self, session: Session) -> dict[str, Any]:
        sa = session.sa
        attrs: dict[str, Any] = {"User-Name": session.user, "Acct-Session-Id": session.session_id,
                                 "Calling-Station-Id": str(sa.remote.address), "NAS-Port": sa.uniqueid}
        vip = sa.virtual_ip
        if vip is not None and vip.version == 4:
            attrs["Framed-IP-Address"] = str(vip)
        return attrs

    def _traffic(self, session: Session, traffic: dict[int, list[int]], *, drop: bool) -> dict[str, Any]:
        totals = [0, 0, 0, 0]
        for uid in session.uniqueids:
            for i, value in enumerate(traffic.pop(uid, [0, 0, 0, 0]) if drop else traffic.get(uid, [0] * 4)):
                totals[i] += value
        for i, value in enumerate(self._live(session)):
            totals[i] += value
        return {"Acct-Session-Time": int(time.time() - session.started),
                "Acct-Input-Octets": totals[0] & 0xFFFFFFFF, "Acct-Output-Octets": totals[1] & 0xFFFFFFFF,
                "Acct-Input-Packets": totals[2] & 0xFFFFFFFF, "Acct-Output-Packets": totals[3] & 0xFFFFFFFF}

    def _live(self, session: Session) -> list[int]:
        sa = session.sa
        return self.live(sa) if sa.state is not IkeState.CLOSED else [0, 0, 0, 0]

    def _stop(self, session: Session, traffic: dict[int, list[int]], loop: asyncio.AbstractEventLoop) -> None:
        attrs = {**self._common(session), "Acct-Status-Type": "Stop",
                 **self._traffic(session, traffic, drop=True),
                 "Acct-Terminate-Cause": terminate_cause(session.sa.close_reason)}
        self._relay.account(attrs, loop)

    def start_interim(self, traffic: dict[int, list[int]], loop: asyncio.AbstractEventLoop) -> None:
        """Every ``interval`` seconds an Interim-Update per live session (RFC 2866 §5.1, RFC 2869 §2.1)."""
        if not self.enabled or self.interval <= 0:
            return

        def tick() -> None:
            for session in {id(s): s for s in self._sessions.values()}.values():
                attrs = {**self._common(session), "Acct-Status-Type": "Interim-Update",
                         **self._traffic(session, traffic, drop=False)}
                self._relay.account(attrs, loop)
            self._timer = loop.call_later(self.interval, tick)

        self._timer = loop.call_later(self.interval, tick)

    def close(self) -> None:
        """Stop the Interim-Update timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
