"""Our proposal parser against strongSwan's own: libstrongswan's proposal_create_from_string via ctypes.

Thousands of seeded keyword sequences go through both; both must accept the same strings and produce the same
transforms (strongSwan keeps duplicates, we drop them). Known, deliberate difference: strongSwan 5.9 keeps an
``esn``/``noesn`` keyword in an IKE proposal; we refuse it (RFC 7296 §3.3.3: ESN is an ESP/AH transform).
Only keywords strongSwan 5.9 knows are used (no ``mlkem…``, no ``keN_`` prefixes: those are strongSwan 6).
"""

from __future__ import annotations

import ctypes
import os
import random
from pathlib import Path

import pytest

from ikeguard.wire.iana import ProtocolId
from ikeguard.wire.proposal_string import KEYWORDS, ProposalSyntaxError, parse_proposal

LIBSTRONGSWAN = Path("/usr/lib/ipsec/libstrongswan.so.0")
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not LIBSTRONGSWAN.exists() and os.environ.get("CI") != "true",
        reason="needs strongSwan's libstrongswan (make test installs it)",
    ),
]

_ENUM_CREATE = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
_ENUMERATE = ctypes.CFUNCTYPE(
    ctypes.c_bool, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint16), ctypes.POINTER(ctypes.c_uint16)
)
_DESTROY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

Triple = tuple[int, int, int | None]


class StrongSwanProposals:
    """Thin ctypes view of proposal_t: create from a string, list (type, id, key size) per transform type."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(str(LIBSTRONGSWAN))
        self.lib.library_init.restype = ctypes.c_bool
        self.lib.library_init.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        self.lib.proposal_create_from_string.restype = ctypes.c_void_p
        self.lib.proposal_create_from_string.argtypes = [ctypes.c_int, ctypes.c_char_p]
        if not self.lib.library_init(None, b"ikeguard-wire-test"):
            pytest.skip("libstrongswan failed to initialise")

    def parse(self, text: str, protocol: ProtocolId) -> list[Triple] | None:
        proposal = self.lib.proposal_create_from_string(int(protocol), text.encode())
        if not proposal:
            return None
        vtable = ctypes.cast(proposal, ctypes.POINTER(ctypes.c_void_p))
        create_enumerator = _ENUM_CREATE(vtable[1])  # proposal_t: add_algorithm, create_enumerator, ...
        out: list[Triple] = []
        for ttype in (1, 2, 3, 4, 5):
            enumerator = create_enumerator(proposal, ttype)
            methods = ctypes.cast(enumerator, ctypes.POINTER(ctypes.c_void_p))
            enumerate_, destroy = _ENUMERATE(methods[0]), _DESTROY(methods[2])
            alg, size = ctypes.c_uint16(), ctypes.c_uint16()
            while enumerate_(enumerator, ctypes.byref(alg), ctypes.byref(size)):
                triple = (ttype, alg.value, size.value or None)
                if triple not in out:
                    out.append(triple)
            destroy(enumerator)
        return out


@pytest.fixture(scope="module")
def strongswan() -> StrongSwanProposals:
    return StrongSwanProposals()


def ours(text: str, protocol: ProtocolId) -> list[Triple] | None:
    try:
        spec = parse_proposal(text, protocol)
    except ProposalSyntaxError:
        return None
    order = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}
    return sorted(
        [(int(t.type), t.id, t.key_length) for t in spec.transforms()],
        key=lambda t: order[t[0]],
    )


_SS5_WORDS = sorted(w for w in KEYWORDS if not w.startswith("mlkem"))


@pytest.mark.parametrize(
    ("text", "protocol"),
    [
        ("aes256gcm16-prfsha384-ecp384", ProtocolId.IKE),
        ("aes256gcm16-ecp384", ProtocolId.ESP),
        ("aes256-sha384-x25519", ProtocolId.IKE),
        ("aes256gcm16-sha384-ecp384", ProtocolId.IKE),
        ("aes256gcm16-ecp384", ProtocolId.IKE),
        ("3des-md5-modp1024", ProtocolId.IKE),
        ("aes128-sha256_96-modp2048", ProtocolId.IKE),
        ("aes128gmac-sha256-esn", ProtocolId.AH),
        ("aes128-aes128gcm16-sha256-ecp256", ProtocolId.IKE),
        ("aes128-sha256-prfsha256-none", ProtocolId.ESP),
        (" aes128 - sha256 ", ProtocolId.ESP),
        ("AES128-SHA256", ProtocolId.ESP),
    ],
)
def test_examples_agree_with_strongswan(
    strongswan: StrongSwanProposals, text: str, protocol: ProtocolId
) -> None:
    assert ours(text, protocol) == strongswan.parse(text, protocol)


def test_ike_esn_is_our_one_deliberate_difference(strongswan: StrongSwanProposals) -> None:
    text = "aes128-sha256-ecp256-esn"
    assert strongswan.parse(text, ProtocolId.IKE) == [
        (1, 12, 128),
        (2, 5, None),
        (3, 12, None),
        (4, 19, None),
        (5, 1, None),
    ]
    assert ours(text, ProtocolId.IKE) is None


def test_random_keyword_sequences_agree_with_strongswan(strongswan: StrongSwanProposals) -> None:
    rng = random.Random(5)
    accepted = 0
    for _ in range(12000):
        words = [rng.choice(_SS5_WORDS) for _ in range(rng.randint(1, 8))]
        protocol = rng.choice([ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH])
        if protocol == ProtocolId.IKE and any(w in ("esn", "noesn") for w in words):
            continue
        text = "-".join(words)
        theirs = strongswan.parse(text, protocol)
        assert ours(text, protocol) == theirs, text
        accepted += theirs is not None
    assert accepted > 1500
