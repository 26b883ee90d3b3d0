"""RFC 9611 per-resource Child SAs: several Child SAs with the same traffic selectors, one per resource (a
CPU, a data-plane worker), so that one tunnel's flows are encrypted on several cores without sharing a
sequence number counter (one sender per SA, RFC 4303 §3.3.3).

``children.NAME.per_resource_sas = N`` (N > 0) turns it on for a Child SA configuration:

* Initiator (§3): the first Child SA of that configuration is the *fallback* SA (bound to no resource, it
  carries what no per-resource SA does); its request carries SA_RESOURCE_INFO. When the answer carries it too,
  the peer supports per-resource SAs and N more Child SAs with the same selectors are requested, one
  CREATE_CHILD_SA each, every request with SA_RESOURCE_INFO (its Resource Identifier, optional and opaque,
  §4, is the resource number in ASCII). Without it in the answer (a peer without RFC 9611, such as
  strongSwan 5.9, ignores the status notify, RFC 7296 §3.10.1) nothing more is requested: the fallback SA
  alone carries the traffic, as a plain Child SA.
* Responder (§3, §4): a request with SA_RESOURCE_INFO for a configuration with N > 0 is answered with
  SA_RESOURCE_INFO; once the fallback and N per-resource SAs with those selectors are up, a further one is
  refused with TS_MAX_QUEUE. With N = 0 the notify is ignored and the Child SA is an ordinary one.
* TS_MAX_QUEUE in an answer ends the initiator's additional requests for that group (the SAs already made
  stay).
* Rekeying (§3): each SA of the group is rekeyed like any Child SA (REKEY_SA names it); the request carries
  SA_RESOURCE_INFO again and the new SA takes the old one's place in the group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.engine.errors import RemoteProtocolError
from ikeguard.engine.states import CHILD_GOING
from ikeguard.wire.iana import NotifyType

if TYPE_CHECKING:
    from ikeguard.engine.child_sa import ChildSa
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage
    from ikeguard.engine.settings import ChildSettings
    from ikeguard.policy.ts import TrafficSelector


def add_request_notify(msg: OutMessage, settings: ChildSettings, rekeyed: ChildSa | None,
                       resource_id: int) -> bool:
    """Add SA_RESOURCE_INFO to a Child SA request when it belongs to a per-resource group; True if added."""
    if rekeyed is not None:
        if not rekeyed.resource_group:
            return False
        resource_id = rekeyed.resource_id
    elif settings.per_resource_sas <= 0:
        return False
    msg.add_notify(NotifyType.SA_RESOURCE_INFO, str(resource_id).encode() if resource_id else b"")
    return True


def group_members(sa: IkeSa, settings: ChildSettings, local_ts: tuple[TrafficSelector, ...],
                  remote_ts: tuple[TrafficSelector, ...]) -> list[ChildSa]:
    """The live Child SAs of ``settings``' per-resource group with these selectors in ``sa``."""
    return [c for c in sa.children.values()
            if c.resource_group and c.settings.name == settings.name and c.local_ts == local_ts
            and c.remote_ts == remote_ts and c.state not in CHILD_GOING
            and c.replaced_by is None]


def responder_accepts(sa: IkeSa, settings: ChildSettings, msg: InMessage, rekeyed: ChildSa | None,
                      local_ts: tuple[TrafficSelector, ...],
                      remote_ts: tuple[TrafficSelector, ...]) -> int | None:
    """For a Child SA request: None when it is an ordinary Child SA, else its place in the group (0 = the
    fallback). Raises TS_MAX_QUEUE when the group is full (§4)."""
    if msg.notify(NotifyType.SA_RESOURCE_INFO) is None:
        return None
    if rekeyed is not None:
        return rekeyed.resource_id if rekeyed.resource_group else None
    if settings.per_resource_sas <= 0:
        return None  # not enabled here: the status notify is ignored (RFC 7296 §3.10.1)
    members = group_members(sa, settings, local_ts, remote_ts)
    if len(members) > settings.per_resource_sas:
        raise RemoteProtocolError(
            f"Child SA {settings.name}: the fallback and {settings.per_resource_sas} per-resource SAs with "
            "these selectors exist (RFC 9611 TS_MAX_QUEUE)", NotifyType.TS_MAX_QUEUE)
    used = {c.resource_id for c in members}
    return next(i for i in range(len(members) + 1) if i not in used)


def initiator_negotiated(child: ChildSa, sent: bool, msg: InMessage, rekeyed: ChildSa | None,
                         resource_id: int) -> None:
    """After our request was answered: is ``child`` part of a per-resource group?"""
    if rekeyed is not None:
        child.resource_group, child.resource_id = rekeyed.resource_group, rekeyed.resource_id
        return
    child.resource_group = sent and msg.notify(NotifyType.SA_RESOURCE_INFO) is not None
    child.resource_id = resource_id if child.resource_group else 0


def additional_ids(sa: IkeSa, child: ChildSa) -> range:
    """After the fallback SA of a negotiated group is up: the per-resource SAs to request (one
    CREATE_CHILD_SA each), none while new SAs are refused."""
    if not child.resource_group or child.resource_id != 0 or sa.ctx.new_child_refusal is not None:
        return range(0)
    return range(1, child.settings.per_resource_sas + 1)
