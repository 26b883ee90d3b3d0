"""IKE_FOLLOWUP_KE (RFC 9370 §2.2.4): the additional key exchanges of a CREATE_CHILD_SA, one exchange each.

The CREATE_CHILD_SA exchange runs the proposal's KE method as usual; when the selected proposal also has
ADDKE transforms other than NONE, the responder's answer carries ``N(ADDITIONAL_KEY_EXCHANGE)(link)`` and
nothing is installed yet. The initiator then sends, for each ADDKE in transform type order,
``IKE_FOLLOWUP_KE: SK {KEi(n), N(ADDITIONAL_KEY_EXCHANGE)(link)}`` and the responder answers with ``KEr(n)``
(and a new link while more follow). Only after the last one are the keys derived, from every shared secret
in order, the additional ones after the nonces: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
(Child SA) and SKEYSEED = prf(SK_d(old), SK(0) | Ni | Nr | SK(1) | ... | SK(n)) (IKE SA rekey); strongSwan
6.1 derives the same (its CHD log at level 4 shows the seed). An unknown link is answered STATE_NOT_FOUND.

:class:`Followup` holds one exchange's progress; the task that started it (``ChildCreateTask``,
``IkeRekeyTask`` and their responders) keeps it and is run again for each IKE_FOLLOWUP_KE (initiator:
``Status.RETRY`` re-sends the active exchange with the next message ID; responder: ``IkeSa.followups`` maps
the link back to the task).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ikeguard.crypto.dh import KeyExchange, new_key_exchange
from ikeguard.crypto.errors import CryptoError, UnsupportedTransform
from ikeguard.engine.errors import RemoteProtocolError
from ikeguard.wire.iana import KeId, NotifyType, name_of
from ikeguard.wire.payloads import KePayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage
    from ikeguard.engine.tasks.base import Task

__all__ = ["MAX_PENDING", "Followup", "register_link", "take_link"]

MAX_PENDING = 4  # responder: CREATE_CHILD_SA exchanges waiting for their IKE_FOLLOWUP_KE per IKE SA
LINK_LEN = 8


@dataclass
class Followup:
    """The additional key exchanges of one CREATE_CHILD_SA: methods, progress, link, shared secrets."""

    methods: tuple[int, ...]
    main: bytes | None = field(default=None, repr=False)  # SK(0), the CREATE_CHILD_SA's own KE (or none)
    shares: list[bytes] = field(default_factory=list, repr=False)  # SK(1) .. SK(n)
    done: int = 0
    link: bytes = field(default=b"", repr=False)
    ke: KeyExchange | None = field(default=None, repr=False)

    @property
    def method(self) -> int:
        return self.methods[self.done]

    @property
    def complete(self) -> bool:
        return self.done >= len(self.methods)

    def additional(self) -> bytes:
        """SK(1) | ... | SK(n): they follow Ni | Nr in the key derivation (RFC 9370 §2.2.4)."""
        return b"".join(self.shares)

    def wipe(self) -> None:
        self.shares.clear()
        self.main = None
        self.ke = None

    # ------------------------------------------------------------------ initiator
    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        if self.ke is None or int(self.ke.method) != self.method:
            self.ke = new_key_exchange(self.method, sa.ctx.random)
        msg.add(KePayload(self.method, self.ke.public_value))
        msg.add_notify(NotifyType.ADDITIONAL_KEY_EXCHANGE, self.link)

    def process_i(self, msg: InMessage) -> None:
        """The responder's KE(n): raise ValueError when it is refused or malformed."""
        error = msg.error_notify()
        if error is not None:
            name = name_of(NotifyType, int(error.notify_type))
            raise ValueError(f"peer refused IKE_FOLLOWUP_KE with {name}")
        ke = msg.get(KePayload)
        if ke is None or int(ke.group) != self.method or self.ke is None:
            got = "no KE" if ke is None else f"KE {name_of(KeId, int(ke.group))}"
            raise ValueError(f"IKE_FOLLOWUP_KE answer with {got}, expected {name_of(KeId, self.method)}")
        self.shares.append(self.ke.shared_secret(ke.data))  # CryptoError: bad ciphertext length
        self.ke = None
        self.done += 1
        if not self.complete:
            link = msg.notify(NotifyType.ADDITIONAL_KEY_EXCHANGE)
            if link is None or not link.data:
                raise ValueError("IKE_FOLLOWUP_KE answer without the link for the next exchange")
            self.link = link.data

    # ------------------------------------------------------------------ responder
    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        ke = msg.get(KePayload)
        if ke is None or int(ke.group) != self.method:
            got = "no KE" if ke is None else f"KE {name_of(KeId, int(ke.group))}"
            raise RemoteProtocolError(f"IKE_FOLLOWUP_KE with {got}, expected {name_of(KeId, self.method)}",
                                      NotifyType.INVALID_SYNTAX)
        try:
            self.ke = new_key_exchange(self.method, sa.ctx.random)
            _, shared = self.ke.respond(ke.data)
        except (CryptoError, UnsupportedTransform) as exc:
            raise RemoteProtocolError(f"bad additional KE value: {exc}", NotifyType.INVALID_SYNTAX) from None
        self.shares.append(shared)
        self.done += 1

    def build_r(self, sa: IkeSa, msg: OutMessage, owner: Task) -> None:
        assert self.ke is not None
        msg.add(KePayload(int(self.ke.method), self.ke.public_value))
        self.ke = None
        if not self.complete:
            msg.add_notify(NotifyType.ADDITIONAL_KEY_EXCHANGE, register_link(sa, self, owner))


def register_link(sa: IkeSa, followup: Followup, owner: Task) -> bytes:
    """Responder: a fresh link naming ``owner`` for the peer's next IKE_FOLLOWUP_KE."""
    if len(sa.followups) >= MAX_PENDING:
        oldest = next(iter(sa.followups))
        sa.followups.pop(oldest)
    followup.link = sa.ctx.random.bytes(LINK_LEN)
    sa.followups[followup.link] = owner
    return followup.link


def take_link(sa: IkeSa, msg: InMessage) -> Task:
    """Responder: the task an IKE_FOLLOWUP_KE request continues, or STATE_NOT_FOUND (RFC 9370 §2.2.4)."""
    link = msg.notify(NotifyType.ADDITIONAL_KEY_EXCHANGE)
    owner = sa.followups.pop(link.data, None) if link is not None else None
    if owner is None:
        raise RemoteProtocolError("IKE_FOLLOWUP_KE with an unknown link", NotifyType.STATE_NOT_FOUND)
    return owner
