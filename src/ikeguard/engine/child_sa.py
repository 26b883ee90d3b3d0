"""A Child SA as the engine tracks it: negotiated proposal, SPIs, selectors, keys and lifetimes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ikeguard.engine.keys import ChildSaKeys
from ikeguard.engine.proposals import proposal_text
from ikeguard.engine.settings import ChildSettings
from ikeguard.engine.states import ChildState
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.proposal_string import ProposalSpec


@dataclass(eq=False, slots=True, weakref_slot=True)  # slots: issue 22, memory per SA
class ChildSa:
    """One ESP SA pair; ``spi_in`` is ours (the peer sends to it), ``spi_out`` the peer's."""

    uniqueid: int
    name: str
    settings: ChildSettings
    spi_in: int
    state: ChildState = ChildState.CREATING
    spi_out: int = 0
    proposal: ProposalSpec | None = None
    local_ts: tuple[TrafficSelector, ...] = ()
    remote_ts: tuple[TrafficSelector, ...] = ()
    keys: ChildSaKeys | None = field(default=None, repr=False)
    installed_at: float = 0.0
    rekey_at: float | None = None
    expire_at: float | None = None
    outbound_installed: bool = False
    initiator: bool = True  # we initiated the exchange that created it (KEYMAT direction, §2.17)
    mode: str = "tunnel"  # negotiated: "transport" only when both ends asked for it (RFC 7296 §1.3.1)
    resource_group: bool = False  # RFC 9611: one of a negotiated group of Child SAs with these selectors
    resource_id: int = 0  # its place in the group: 0 = the fallback SA, 1..N = per-resource SAs
    # Rekey bookkeeping (RFC 7296 §2.8.1): the SA our rekey created and that exchange's nonces; the SA
    # the peer's rekey of this one created (while ours was in flight) and its nonces.
    replaced_by: ChildSa | None = field(default=None, repr=False)
    our_rekey_nonces: tuple[bytes, bytes] = field(default=(), repr=False)  # type: ignore[assignment]
    peer_rekey: ChildSa | None = field(default=None, repr=False)
    # Responder of a rekey: outbound goes live once the old SA is deleted (the peer then uses the new one).
    deferred_for: ChildSa | None = field(default=None, repr=False)
    peer_rekey_nonces: tuple[bytes, bytes] = field(default=(), repr=False)  # type: ignore[assignment]

    @property
    def proposal_text(self) -> str:
        """The negotiated proposal in swanctl syntax (for events and ``sas``)."""
        return proposal_text(self.proposal) if self.proposal is not None else ""

    def wipe(self) -> None:
        """Zero the key material (ARCHITECTURE rule 6)."""
        if self.keys is not None:
            self.keys.keys.wipe()
