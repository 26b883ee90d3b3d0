"""Actions on an IKE SA started by us (operator command, timer, data-plane upcall): they queue exchanges.
Whether a command acts in the SA's state is the ``COMMANDS`` table of engine/states.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.engine.states import ChildState, ChildTrigger, Command, CommandAction, command_action
from ikeguard.wire.iana import ExchangeType

if TYPE_CHECKING:
    from ikeguard.engine.child_sa import ChildSa
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.settings import ChildSettings

_QUEUE, _CLOSE = CommandAction.QUEUE, CommandAction.CLOSE


def create_child(sa: IkeSa, settings: ChildSettings) -> None:
    """CREATE_CHILD_SA for an additional Child SA (RFC 7296 §1.3.1)."""
    from ikeguard.engine.tasks.child_create import ChildCreateTask

    sa.queue_exchange([ChildCreateTask(settings, ExchangeType.CREATE_CHILD_SA)])


def delete_child(sa: IkeSa, child: ChildSa, reason: str) -> None:
    """INFORMATIONAL DELETE of one Child SA (RFC 7296 §1.4.1)."""
    from ikeguard.engine.tasks.delete import DeleteChildTask

    if command_action(Command.DELETE_CHILD, sa.state) is not _QUEUE or child.state is ChildState.DELETING:
        return
    if any(isinstance(t, DeleteChildTask) and t.child is child for ex in sa.queue for t in ex.tasks):
        return
    sa.queue_exchange([DeleteChildTask(child, reason)])


def delete_ike(sa: IkeSa, reason: str, *, local_decision: bool = False) -> None:
    """INFORMATIONAL DELETE of the IKE SA; a half-open or never-established SA is just dropped.

    ``local_decision``: an operator (or shutdown, reload) ended it. A never-established SA dropped that way
    is ``ike.down`` with that reason, not ``auth.failure``/``ike.failed``: nothing failed."""
    from ikeguard.engine.tasks.delete import DeleteIkeTask

    action = command_action(Command.DELETE_IKE, sa.state)
    if action is _CLOSE:
        sa.close(reason, local_decision=local_decision)
    if action is not _QUEUE:
        return
    sa.queue.clear()
    sa.queue_exchange([DeleteIkeTask(reason)], front=True)


def rekey_child(sa: IkeSa, child: ChildSa) -> None:
    """CREATE_CHILD_SA with REKEY_SA for ``child`` (RFC 7296 §1.3.3), make-before-break."""
    from ikeguard.engine.tasks.child_rekey import ChildRekeyTask

    if command_action(Command.REKEY_CHILD, sa.state) is not _QUEUE or child.state is not ChildState.INSTALLED:
        return
    sa.child_transition(child, ChildTrigger.START_REKEY)
    sa.queue_exchange([ChildRekeyTask(child)])


def rekey_ike(sa: IkeSa) -> None:
    """CREATE_CHILD_SA rekeying the IKE SA itself (RFC 7296 §1.3.2)."""
    from ikeguard.engine.tasks.ike_rekey import IkeRekeyTask

    if command_action(Command.REKEY_IKE, sa.state) is not _QUEUE or sa.has_queued(IkeRekeyTask):
        return
    sa.queue_exchange([IkeRekeyTask()])


def reauthenticate(sa: IkeSa, reason: str) -> None:
    """Make-before-break reauthentication: a new IKE SA is set up, then this one is deleted."""
    if command_action(Command.REAUTHENTICATE, sa.state) is not _QUEUE or sa.ctx.reauth_hook is None:
        return
    sa.ctx.reauth_hook(sa, reason)
