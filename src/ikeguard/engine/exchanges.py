"""What happens when message X arrives (or is to be sent) in IKE SA state Y: one table.

Modelled on h11's ``_state.py`` and strongSwan's task manager (read, not copied). The key is (exchange type,
role, IKE SA state):

- ``Role.RESPONDER``: the peer's request of that exchange arrives; the entry says which tasks answer it
  (``Run``, whose ``select`` may look at the payloads: RFC 7296 §1.3 tells a new Child SA, a Child SA rekey
  and an IKE SA rekey apart by the SA protocol and REKEY_SA), which error notify refuses it (``Refuse``), or
  that it is dropped unanswered before it is even decrypted (``Ignore``: RFC 7296 §2.2, IKE_SA_INIT and
  IKE_AUTH happen once, in this order, initiated by the original initiator).
- ``Role.INITIATOR``: a request of ours of that exchange is next in the queue; ``Run`` sends it (its own
  tasks build the request and process the response), ``Ignore`` keeps it queued until the state moves on.

A key missing from the table is a ``LocalProtocolError`` (an engine bug, as for ``states.py``);
``tests/engine/test_exchange_table.py`` walks every exchange x role x state. The IKE SA holds the table as
``IkeSa.rules`` (handed in by the manager), so the SA does not import the tasks it runs. State transitions
and what our own commands (rekey, delete, reauthenticate, DPD) do in each state stay in ``engine/states.py``
(``COMMANDS``, which the tasks may consult without importing this table); simultaneous exchanges (rekey and
delete collisions) are resolved in ``engine/collisions.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName, Outcome
from ikeguard.engine.errors import LocalProtocolError, RemoteProtocolError
from ikeguard.engine.ha_mid_sync import MidSyncSupportTask
from ikeguard.engine.states import IkeState
from ikeguard.engine.tasks.base import Task
from ikeguard.engine.tasks.child_create import ChildCreateTask
from ikeguard.engine.tasks.child_rekey import ChildRekeyResponder
from ikeguard.engine.tasks.config import ConfigTask
from ikeguard.engine.tasks.delete import InformationalResponder
from ikeguard.engine.tasks.followup_ke import take_link
from ikeguard.engine.tasks.ike_auth import IkeAuthTask
from ikeguard.engine.tasks.ike_init import IkeInitTask
from ikeguard.engine.tasks.ike_intermediate import IkeIntermediateTask
from ikeguard.engine.tasks.ike_rekey import IkeRekeyResponder
from ikeguard.engine.tasks.mobike import MobikeTask, MobikeUpdateResponder
from ikeguard.engine.tasks.natd import NatdTask
from ikeguard.wire.iana import ExchangeType, NotifyType, ProtocolId
from ikeguard.wire.sa import SaPayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage
    from ikeguard.engine.settings import ChildSettings

__all__ = [
    "RULES",
    "TABLE",
    "Entry",
    "ExchangeRules",
    "Ignore",
    "Refuse",
    "Role",
    "Run",
    "initiator_setup",
    "lookup",
    "setup_tasks",
]

Selector = Callable[["IkeSa", "InMessage"], list[Task]]


class Role(Enum):
    """Our role in the exchange the message belongs to."""

    INITIATOR = "initiator"  # the request is ours (queued); its response runs the same tasks
    RESPONDER = "responder"  # the request is the peer's; we answer it


@dataclass(frozen=True)
class Run:
    """Run tasks: ``select`` picks the responder's tasks from the request (None for our own requests: the
    queued exchange's tasks); ``needs_keys``: only once IKE_SA_INIT gave the SA its keys."""

    select: Selector | None = None
    needs_keys: bool = False


@dataclass(frozen=True)
class Refuse:
    """Answer the request with only this error notify (RFC 7296 §2.21.2); tasks do not run."""

    notify: NotifyType
    reason: str


@dataclass(frozen=True)
class Ignore:
    """Responder: drop the request unanswered (not decrypted). Initiator: keep our request queued."""

    reason: str


Entry = Run | Refuse | Ignore


# ---------------------------------------------------------------------------------------------- selectors
def setup_tasks() -> list[Task]:
    """The responder's tasks of IKE_SA_INIT and IKE_AUTH; one list kept for both exchanges (the IKE_AUTH
    tasks read what IKE_SA_INIT negotiated, RFC 7296 §1.2), each runs in the exchange it belongs to."""
    return [IkeInitTask(), NatdTask(), IkeAuthTask(), ConfigTask(), ChildCreateTask(None), MobikeTask(),
            MidSyncSupportTask()]


def initiator_setup(first_child: ChildSettings | None) -> list[list[Task]]:
    """Our IKE_SA_INIT and IKE_AUTH requests (with the first Child SA, RFC 7296 §1.2); further Child SAs
    follow as CREATE_CHILD_SA (``commands.create_child``)."""
    auth: list[Task] = [IkeAuthTask(), *([ChildCreateTask(first_child)] if first_child else []), MobikeTask(),
                        MidSyncSupportTask()]
    return [[IkeInitTask(), NatdTask()], auth]


def _setup(sa: IkeSa, msg: InMessage) -> list[Task]:
    if sa.responder_tasks is None:
        sa.responder_tasks = setup_tasks()
    return [t for t in sa.responder_tasks if t.exchange is msg.exchange]


def _intermediate(sa: IkeSa, msg: InMessage) -> list[Task]:
    return [IkeIntermediateTask()]  # refuses when no additional key exchange is due (RFC 9370 §2.2.2)


def _followup(sa: IkeSa, msg: InMessage) -> list[Task]:
    return [take_link(sa, msg)]  # the CREATE_CHILD_SA task it continues (RFC 9370 §2.2.4)


def _informational(sa: IkeSa, msg: InMessage) -> list[Task]:
    if msg.notify(NotifyType.REDIRECT) is not None and sa.initiator:
        from ikeguard.engine.tasks.redirect import RedirectFollower

        return [RedirectFollower(), InformationalResponder()]  # RFC 5685 §5: we announced support
    if msg.notify(NotifyType.UPDATE_SA_ADDRESSES) is not None and sa.peer.mobike:
        return [MobikeUpdateResponder(), InformationalResponder()]  # RFC 4555 §3.5
    return [InformationalResponder()]


def _rekeys_ike(msg: InMessage) -> bool:
    offer = msg.get(SaPayload)
    return offer is not None and bool(offer.proposals) and int(offer.proposals[0].protocol) == ProtocolId.IKE


def _create_child_sa(sa: IkeSa, msg: InMessage) -> list[Task]:
    """ESTABLISHED: an IKE SA rekey, a Child SA rekey (REKEY_SA) or a new Child SA (RFC 7296 §1.3)."""
    if _rekeys_ike(msg):
        return [IkeRekeyResponder()]
    rekey = msg.notify(NotifyType.REKEY_SA)
    if rekey is not None:
        return [ChildRekeyResponder(int.from_bytes(rekey.spi, "big") if len(rekey.spi) == 4 else -1)]
    if sa.ctx.new_child_refusal is not None:
        # RFC 7296 §1.3/§3.10.1: NO_ADDITIONAL_SAS = unwilling to accept more Child SAs on this IKE SA
        # (rekeys above still go through: the existing SAs are kept).
        reason = f"new Child SA refused: {sa.ctx.new_child_refusal}"
        sa.audit(EventName.CHILD_FAILED, Outcome.FAILURE, reason, child="")
        raise RemoteProtocolError(reason, NotifyType.NO_ADDITIONAL_SAS)
    return [ChildCreateTask(None, ExchangeType.CREATE_CHILD_SA)]


def _create_child_sa_rekeying(sa: IkeSa, msg: InMessage) -> list[Task]:
    """REKEYING: the peer's IKE SA rekey is a collision (engine/collisions.py, §2.8.2); no Child SA creation
    or rekey while the IKE SA itself is being rekeyed (§2.25.2)."""
    if _rekeys_ike(msg):
        return [IkeRekeyResponder()]
    raise RemoteProtocolError("IKE SA rekey in progress", NotifyType.TEMPORARY_FAILURE)


# ---------------------------------------------------------------------------------------------- the table
_UNEXPECTED = Refuse(NotifyType.INVALID_SYNTAX, "unexpected exchange IKE_SESSION_RESUME")
_ONCE = Ignore("IKE_SA_INIT and IKE_AUTH happen once, in order, from the original initiator (RFC 7296 §2.2)")
_NO_SA_YET = Ignore("no IKE SA before IKE_SA_INIT")
_CLOSED = Ignore("IKE SA closed")
_NOT_UP_CHILD = Refuse(NotifyType.TEMPORARY_FAILURE, "CREATE_CHILD_SA while not established")
_REPLACED = Refuse(NotifyType.TEMPORARY_FAILURE, "IKE SA rekeyed: nothing new is made on it (§2.25.2)")
_NOT_UP_FOLLOWUP = Refuse(NotifyType.STATE_NOT_FOUND, "IKE_FOLLOWUP_KE while not established")
_WAIT = Ignore("wait: an exchange of the setup is in flight")

_X = ExchangeType
_S = IkeState
_UP = (_S.ESTABLISHED, _S.REKEYING, _S.REKEYED)


def _responder_row(state: IkeState) -> dict[ExchangeType, Entry]:
    if state is _S.CLOSED:
        return {x: _CLOSED for x in _X}
    if state is _S.CREATED:
        return {x: (Run(_setup) if x is _X.IKE_SA_INIT else _NO_SA_YET) for x in _X}
    row: dict[ExchangeType, Entry] = {
        _X.IKE_SA_INIT: _ONCE,
        _X.IKE_AUTH: Run(_setup) if state is _S.HALF_OPEN else _ONCE,
        _X.IKE_INTERMEDIATE: Run(_intermediate),
        _X.INFORMATIONAL: Run(_informational),
        _X.IKE_SESSION_RESUME: _UNEXPECTED,
    }
    if state in _UP:
        row[_X.IKE_FOLLOWUP_KE] = Run(_followup)  # an exchange already answered goes on (RFC 9370 §2.2.4)
        by_state: dict[IkeState, Entry] = {
            _S.ESTABLISHED: Run(_create_child_sa),
            _S.REKEYING: Run(_create_child_sa_rekeying),
            _S.REKEYED: _REPLACED,
        }
        row[_X.CREATE_CHILD_SA] = by_state[state]
    else:  # half-open, setting up, deleting
        row[_X.IKE_FOLLOWUP_KE] = _NOT_UP_FOLLOWUP
        row[_X.CREATE_CHILD_SA] = _NOT_UP_CHILD
    return row


def _initiator_row(state: IkeState) -> dict[ExchangeType, Entry]:
    if state is _S.CLOSED:
        return {x: _CLOSED for x in _X}
    if state is _S.CREATED:
        return {x: (Run() if x is _X.IKE_SA_INIT else Ignore("IKE_SA_INIT first")) for x in _X}
    if state is _S.INIT_SENT:  # IKE_INTERMEDIATE / IKE_AUTH go once the IKE_SA_INIT response gave keys
        return {x: Run(needs_keys=True) for x in _X}
    if state in (_S.HALF_OPEN, _S.AUTH_SENT):
        return {x: _WAIT for x in _X}
    return {x: Run() for x in _X}  # established, rekeying, rekeyed, deleting: one request at a time


TABLE: dict[tuple[int, Role, IkeState], Entry] = {  # exchange types are IntEnum members
    (exchange, role, state): entry
    for state in IkeState
    for role, row in ((Role.RESPONDER, _responder_row(state)), (Role.INITIATOR, _initiator_row(state)))
    for exchange, entry in row.items()
}


def lookup(exchange: int, role: Role, state: IkeState) -> Entry:
    """The table's entry; LocalProtocolError when the table has none (an engine bug)."""
    try:
        return TABLE[(exchange, role, state)]  # an int hashes as its ExchangeType member
    except KeyError:
        raise LocalProtocolError(f"no rule for {exchange} as {role.value} in state {state.value}") from None


# ---------------------------------------------------------------------------------------------- for IkeSa
class ExchangeRules:
    """The table as the IKE SA uses it (``IkeSa.rules``)."""

    def accepts_request(self, sa: IkeSa, exchange: int) -> bool:
        """Whether the peer's request is decrypted and answered at all (``Ignore``: dropped silently). The
        peer of an IKE SA we initiated never starts IKE_SA_INIT or IKE_AUTH (RFC 7296 §2.2)."""
        if sa.initiator and exchange in (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH):
            return False
        return not isinstance(lookup(exchange, Role.RESPONDER, sa.state), Ignore)

    def responder_tasks(self, sa: IkeSa, msg: InMessage) -> list[Task]:
        """The tasks answering the peer's request; RemoteProtocolError with the notify when refused."""
        entry = lookup(msg.exchange, Role.RESPONDER, sa.state)
        if isinstance(entry, Refuse):
            raise RemoteProtocolError(entry.reason, entry.notify)
        if isinstance(entry, Ignore) or entry.select is None:
            raise LocalProtocolError(f"{msg.exchange.name} request in state {sa.state.value} not answerable")
        return entry.select(sa, msg)

    def may_send(self, sa: IkeSa, exchange: ExchangeType) -> bool:
        """Whether our queued request of ``exchange`` may be sent in the SA's state."""
        entry = lookup(exchange, Role.INITIATOR, sa.state)
        return isinstance(entry, Run) and (not entry.needs_keys or sa.crypto is not None)


RULES = ExchangeRules()
