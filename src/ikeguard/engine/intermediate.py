"""What an IKE SA keeps of its RFC 9370 additional key exchanges: the negotiated methods, how many are done,
and the RFC 9242 §3.3.2 IntAuth chain (the exchange itself: ``engine.tasks.ike_intermediate``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ikeguard.crypto.keymat import prf
from ikeguard.wire.iana import TransformType
from ikeguard.wire.proposal_string import ProposalSpec

__all__ = ["IntermediateState", "additional_key_exchanges", "offers_additional_ke"]


def additional_key_exchanges(spec: ProposalSpec) -> tuple[int, ...]:
    """The negotiated ADDKE methods other than NONE, in transform type order (RFC 9370 §2.2.2)."""
    found = sorted(
        (int(t.type), int(t.id))
        for t in spec.transforms()
        if TransformType.ADDKE1 <= int(t.type) <= TransformType.ADDKE7 and t.id != 0
    )
    return tuple(method for _, method in found)


def offers_additional_ke(specs: tuple[ProposalSpec, ...]) -> bool:
    """Whether any of these proposals carries an ADDKE transform other than NONE."""
    return any(additional_key_exchanges(s) for s in specs)


@dataclass
class IntermediateState:
    """The IKE SA's additional key exchanges: what was negotiated, how many are done, the IntAuth chain."""

    methods: tuple[int, ...]
    done: int = 0
    int_auth_i: bytes = field(default=b"", repr=False)
    int_auth_r: bytes = field(default=b"", repr=False)

    @property
    def complete(self) -> bool:
        """Every negotiated additional key exchange has run."""
        return self.done >= len(self.methods)

    def chain(self, prf_id: int, sk_p: bytes | bytearray, *, from_initiator: bool, ap: bytes) -> None:
        """IntAuth_[i|r]N = prf(SK_p[i|r], IntAuth_[i|r](N-1) | A | P) with the SK_p in force for the
        exchange (SK_pi for the initiator's message, SK_pr for the responder's)."""
        if from_initiator:
            self.int_auth_i = prf(prf_id, sk_p, self.int_auth_i + ap)
        else:
            self.int_auth_r = prf(prf_id, sk_p, self.int_auth_r + ap)
