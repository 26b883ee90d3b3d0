"""Lifetimes and periodic work of established SAs: rekey/reauth/expiry with ``rand_time`` jitter, DPD,
half-open expiry, Child SA rekey/expiry (RFC 7296 §2.4, §2.8; strongSwan's rekey/over/rand times)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName, Outcome
from ikeguard.engine import commands
from ikeguard.engine.events import SendNatKeepalive
from ikeguard.engine.states import (
    IKE_NOT_AUTHENTICATED,
    ChildState,
    Command,
    CommandAction,
    IkeState,
    command_action,
)
from ikeguard.engine.tasks.delete import DpdTask, watches_nat_mapping
from ikeguard.engine.timers import Timer, child_timer, split_timer

if TYPE_CHECKING:
    from ikeguard.engine.child_sa import ChildSa
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.rekey_calendar import RekeyCalendar

CERT_EXPIRY_MARGIN = 300.0  # reauthenticate this long before the peer certificate's notAfter


def _jitter(sa: IkeSa, rand_time: float) -> float:
    return rand_time * sa.ctx.random_fraction() if rand_time > 0 else 0.0


def _rekey_deadline(sa: IkeSa, calendar: RekeyCalendar, lifetime: float, rand_time: float) -> float:
    """``lifetime`` minus the jitter, moved earlier (never before half the lifetime) when that second is
    crowded (engine/rekey_calendar.py)."""
    now = sa.now
    planned = now + lifetime - _jitter(sa, rand_time)
    return calendar.place(planned, now + lifetime / 2, lifetime, now)


def schedule_ike(sa: IkeSa) -> None:
    """Set the IKE SA's rekey, reauth, hard-expiry and DPD deadlines after establishment."""
    conn = sa.conn
    assert conn is not None
    now = sa.now
    hard: list[float] = []
    if conn.rekey_time > 0:
        sa.timers[Timer.IKE_REKEY] = _rekey_deadline(sa, sa.ctx.ike_rekeys, conn.rekey_time, conn.rand_time)
        hard.append(now + conn.rekey_time + (conn.over_time or conn.rekey_time * 0.1))
    if conn.reauth_time > 0:
        sa.timers[Timer.REAUTH] = now + conn.reauth_time - _jitter(sa, conn.rand_time)
        hard.append(now + conn.reauth_time + (conn.over_time or conn.reauth_time * 0.1))
    sa.expire_reason = "IKE SA lifetime expired"
    if sa.remote_cert_not_after is not None:
        # Hard cap: no IKE SA outlives the peer's certificate (reauthenticate before notAfter, else close).
        cap = sa.remote_cert_not_after - CERT_EXPIRY_MARGIN
        if cap > now:
            sa.timers[Timer.REAUTH] = min(sa.timers.get(Timer.REAUTH, cap), cap)
        if not hard or sa.remote_cert_not_after < min(hard):
            sa.expire_reason = "peer certificate expires (notAfter reached without reauthentication)"
        hard.append(sa.remote_cert_not_after - 1.0)
    if hard:
        sa.timers[Timer.IKE_EXPIRE] = min(hard)
    if conn.dpd_delay > 0:
        sa.timers[Timer.DPD] = now + conn.dpd_delay


def schedule_child(sa: IkeSa, child: ChildSa) -> None:
    """Rekey and hard-expiry deadlines of a freshly installed Child SA."""
    s = child.settings
    now = sa.now
    life = s.life_time or s.rekey_time * 1.1
    rand = s.rand_time or max(life - s.rekey_time, 0.0)
    if s.rekey_time > 0:
        child.rekey_at = _rekey_deadline(sa, sa.ctx.child_rekeys, s.rekey_time, min(rand, s.rekey_time))
        sa.timers[child_timer(Timer.CHILD_REKEY, child.uniqueid)] = child.rekey_at
    if life > 0:
        child.expire_at = now + life
        sa.timers[child_timer(Timer.CHILD_EXPIRE, child.uniqueid)] = child.expire_at


def fire(sa: IkeSa, name: str) -> None:
    """Run the action behind an expired deadline."""
    try:
        kind, ident = split_timer(name)
    except ValueError:
        return  # no code sets such a deadline
    if kind is Timer.RETRANSMIT:
        _retransmit(sa)
    elif kind is Timer.KEEPALIVE:
        if sa.nat_local:
            sa.emit(SendNatKeepalive(sa.local, sa.remote))  # RFC 3948 §2.3
        sa.timers[Timer.KEEPALIVE] = sa.now + sa.ctx.settings.nat_keepalive
    elif kind is Timer.REVOCATION:
        from ikeguard.engine.pending import timed_out

        timed_out(sa)
    elif kind is Timer.RADIUS:
        from ikeguard.engine.pending import relay_timed_out

        relay_timed_out(sa)
    elif kind is Timer.HALF_OPEN:
        if sa.state in IKE_NOT_AUTHENTICATED:
            sa.close("half-open IKE SA timed out", event=EventName.IKE_FAILED)
    elif kind is Timer.DPD:
        _dpd(sa)
    elif kind is Timer.DPD_DEADLINE:
        sa.audit(EventName.DPD_TIMEOUT, Outcome.FAILURE, "no answer to liveness check within dpd_timeout")
        sa.close("dpd timeout: peer did not answer liveness check", failure=True)
    elif kind is Timer.REDIRECT_EXPIRE:  # RFC 5685 §5: the redirected client did not delete it itself
        commands.delete_ike(sa, "redirected peer did not delete the old IKE SA", local_decision=True)
    elif kind in (Timer.REDUNDANT_EXPIRE, Timer.REKEYED_EXPIRE):
        sa.close("replaced IKE SA not deleted by the peer in time", failure=True)
    elif kind is Timer.IKE_REKEY:
        commands.rekey_ike(sa)
    elif kind is Timer.REAUTH:
        commands.reauthenticate(sa, "reauth_time reached or peer certificate about to expire")
    elif kind is Timer.IKE_EXPIRE:
        sa.close(sa.expire_reason, send_delete=True)
    elif kind is Timer.CHILD_OUTBOUND:
        from ikeguard.engine.tasks.child_create import install_deferred_outbound

        pending = sa.children.get(ident)
        if pending is not None:
            install_deferred_outbound(sa, pending)
    elif kind in (Timer.CHILD_REKEY, Timer.CHILD_EXPIRE):
        child = sa.children.get(ident)
        if child is None or child.state is ChildState.DELETED:
            return
        if kind is Timer.CHILD_REKEY:
            commands.rekey_child(sa, child)
        else:
            commands.delete_child(sa, child, "Child SA lifetime expired")


def _dpd(sa: IkeSa) -> None:
    conn = sa.conn
    if conn is None or conn.dpd_delay <= 0:
        return
    if command_action(Command.LIVENESS, sa.state) is not CommandAction.QUEUE:
        return
    idle = sa.now - sa.last_inbound
    # the first check learns how the NAT maps us on 4500 even while the peer's traffic proves liveness:
    # a later change is only noticed against it (RFC 4555 §3.5)
    learn = sa.natd_mapping is None and watches_nat_mapping(sa)
    if (idle >= conn.dpd_delay - 1e-6 or learn) and not sa.has_queued(DpdTask):
        sa.queue_exchange([DpdTask()])
        if conn.dpd_timeout > 0:
            sa.timers[Timer.DPD_DEADLINE] = sa.now + conn.dpd_timeout
        sa.timers[Timer.DPD] = sa.now + conn.dpd_delay
    else:
        # Traffic from the peer proves liveness: check again dpd_delay after the last message (here that is
        # in the future: idle < dpd_delay). A coarser floor (it was now + 1 s) stretched the worst case from
        # dpd_delay + dpd_timeout to dpd_delay + 1 s + dpd_timeout after the peer died.
        sa.timers[Timer.DPD] = max(sa.last_inbound + conn.dpd_delay, sa.now + 0.01)


def _retransmit(sa: IkeSa) -> None:
    """Resend the request in flight, or give up after ``retransmit_tries`` (RFC 7296 §2.1, §2.4)."""
    req = sa.window.in_flight
    if req is None:
        return
    policy = sa.ctx.settings.retransmit
    active = sa.active
    limit = active.tasks[0].max_attempts if active is not None and active.tasks else None
    if active is not None and limit is not None and req.attempt >= limit:
        # an optional exchange (RFC 6311 sync): give it up without losing the SA; its ID was not allocated
        sa.window.in_flight, sa.active = None, None
        for task in active.tasks:
            task.aborted(sa, f"no response after {req.attempt} retransmits")
        sa.start_next()
        return
    if req.attempt >= policy.tries:
        reason = f"peer unreachable: no response after {policy.tries} retransmits"
        sa.window.in_flight = None
        exchange, sa.active = sa.active, None
        if exchange is not None:
            for task in exchange.tasks:
                task.aborted(sa, reason)
            if sa.state is IkeState.ESTABLISHED and any(isinstance(t, DpdTask) for t in exchange.tasks):
                sa.audit(EventName.DPD_TIMEOUT, Outcome.FAILURE, reason)
        sa.close(reason, send_delete=False, failure=True)
        return
    req.attempt += 1
    sa.schedule_retransmit()
    sa.send_packets(req.packets)
