"""Issue 13 S4: the matching rule (``Identity.matches``) with wildcards on the configured side only.

A received identity (``parse_peer_identity``) is literal: ``*`` and ``%any`` are text. Patterns match
concrete names; a name that carries a wildcard character is matched by ``%any`` only (as strongSwan's
identification_t does for the configured side), and exact configured ids by equal parts.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ikeguard.policy.identity import IdentityKind, parse_identity, parse_peer_identity

LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)  # never an address


@pytest.mark.parametrize(("configured", "received", "expected"), [
    ("*.example.net", "a.example.net", True),
    ("*.example.net", "A.Example.NET", True),
    ("*.example.net", "*.example.net", False),
    ("*.example.net", "a.b.example.net", False),
    ("*", "%any", False),
    ("*", "host", True),
    ("%any", "%any", True),
    ("%any", "*.example.net", True),
    ("a.example.net", "a.example.net", True),
    ("a.example.net", "@a.example.net", True),
    ("CN=*, O=Merchants", "CN=*, O=Merchants", False),
    ("CN=*, O=Merchants", "O=Merchants, CN=m1", True),
    ("CN=*, O=Merchants", "CN=m*, O=Merchants", False),
    ("*@example.net", "*@example.net", False),
    ("*@example.net", "alice@example.net", True),
    ("alice@*.example.net", "alice@%any.example.net", False),
])
def test_configured_patterns_match_received_names_never_received_patterns(
    configured: str, received: str, expected: bool
) -> None:
    assert parse_identity(configured).matches(parse_peer_identity(received)) is expected


def test_received_identities_are_never_patterns_or_any() -> None:
    for text in ("%any", "*.example.net", "CN=*, O=x", "*@example.net", "m1.*.net"):
        ident = parse_peer_identity(text)
        assert ident.literal and not ident.is_pattern and ident.kind is not IdentityKind.ANY, text
    assert parse_peer_identity("%any").kind is IdentityKind.FQDN
    with pytest.raises(ValueError):
        parse_peer_identity("two words")
    with pytest.raises(ValueError):
        parse_peer_identity("a..b")


@given(labels=st.lists(LABEL, min_size=2, max_size=4), index=st.integers(min_value=0, max_value=3))
def test_a_pattern_matches_every_concrete_name_it_describes_and_not_itself(labels: list[str],
                                                                          index: int) -> None:
    index %= len(labels)
    pattern = ".".join("*" if i == index else label for i, label in enumerate(labels))
    assert parse_identity(pattern).matches(parse_peer_identity(".".join(labels)))
    assert not parse_identity(pattern).matches(parse_peer_identity(pattern))
    assert parse_identity(".".join(labels)).matches(parse_peer_identity(".".join(labels)))
