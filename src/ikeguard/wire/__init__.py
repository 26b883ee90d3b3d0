"""IKEv2 wire format: bytes <-> frozen dataclasses, IANA registries, swanctl proposal strings (RFC 7296)."""

from ikeguard.wire.proposal_string import (
    ProposalSpec,
    ProposalSyntaxError,
    describe_proposal,
    format_proposal,
    parse_proposal,
    parse_proposals,
)
from ikeguard.wire.transforms import Transform, TransformAttribute

__all__ = [
    "ProposalSpec",
    "ProposalSyntaxError",
    "Transform",
    "TransformAttribute",
    "describe_proposal",
    "format_proposal",
    "parse_proposal",
    "parse_proposals",
]
