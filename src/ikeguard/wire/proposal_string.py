"""swanctl proposal strings (``aes256gcm16-prfsha384-ecp384``) parsed to transforms and printed back.

Written by hand (no library parses strongSwan's syntax). The keyword set and the completion rules follow
strongSwan's ``proposal_keywords_static.txt`` and ``proposal.c:check_proposal()`` (read, not copied):

* tokens are separated by ``-`` (spaces around them ignored); keywords are lowercase, as in strongSwan,
  so a string we accept also loads in swanctl.conf; ``ke1_`` .. ``ke7_`` before a key exchange
  keyword makes it an additional key exchange (RFC 9370 ADDKE1..7, strongSwan 6 syntax);
* IKE: without a ``prf…`` keyword the PRF is taken from each integrity algorithm (sha256 -> prfsha256);
  an AEAD proposal has no integrity algorithm, so it must name its PRF; ``none`` is dropped and a key
  exchange method is mandatory; ``esn``/``noesn`` are refused (RFC 7296 §3.3.3: ESN is for ESP/AH only);
* IKE and ESP: an encryption algorithm is mandatory; AEAD and classic ciphers cannot share a proposal;
  with AEAD ciphers any integrity keyword is dropped (RFC 5282 §8); IKE with a classic cipher needs integrity;
* ESP/AH: PRF keywords are dropped (strongSwan does the same); without ``esn``/``noesn`` the proposal
  carries NO_ESN; AH keeps only ``aes…gmac`` (mapped to AES-GMAC integrity) and needs integrity.

Weak algorithms (des, 3des, md5, sha1, modp1024, …) parse on purpose: the compliance layer rejects them with
a rule id, which a syntax error would hide.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ikeguard.wire.iana import EncrId, EsnId, IntegId, KeId, PrfId, ProtocolId, TransformType
from ikeguard.wire.transforms import INTEG_HMAC_SHA2_256_96, Transform, is_ke_type

__all__ = [
    "KEYWORDS",
    "ProposalSpec",
    "ProposalSyntaxError",
    "Transform",
    "describe_proposal",
    "format_proposal",
    "keyword_for",
    "parse_proposal",
    "parse_proposals",
]

_T = TransformType
_Key = tuple[int, int, int | None]  # (transform type, id, key length)
_GMAC_INTEG = {128: IntegId.AES_128_GMAC, 192: IntegId.AES_192_GMAC, 256: IntegId.AES_256_GMAC}


@dataclass(frozen=True, slots=True)
class _Keyword:
    type: TransformType
    id: int
    key_length: int | None


def _build_keywords() -> tuple[dict[str, _Keyword], dict[_Key, str]]:
    """Keyword table and the canonical keyword of each (type, id, key length); first name wins."""
    table: dict[str, _Keyword] = {}
    canonical: dict[_Key, str] = {}

    def add(name: str, ttype: TransformType, tid: int, klen: int | None = None, alias: bool = False) -> None:
        table[name] = _Keyword(ttype, tid, klen)
        if not alias:
            canonical.setdefault((int(ttype), tid, klen), name)

    e = _T.ENCR
    add("null", e, EncrId.NULL)
    add("des", e, EncrId.DES)
    add("3des", e, EncrId.TRIPLE_DES)
    add("cast128", e, EncrId.CAST, 128)
    add("aes", e, EncrId.AES_CBC, 128, alias=True)
    add("blowfish", e, EncrId.BLOWFISH, 128, alias=True)
    add("camellia", e, EncrId.CAMELLIA_CBC, 128, alias=True)
    aead_icv = {8: "64", 12: "96", 16: "128"}
    gcm = {8: EncrId.AES_GCM_8, 12: EncrId.AES_GCM_12, 16: EncrId.AES_GCM_16}
    ccm = {8: EncrId.AES_CCM_8, 12: EncrId.AES_CCM_12, 16: EncrId.AES_CCM_16}
    cam_ccm = {8: EncrId.CAMELLIA_CCM_8, 12: EncrId.CAMELLIA_CCM_12, 16: EncrId.CAMELLIA_CCM_16}
    for bits in (128, 192, 256):
        add(f"aes{bits}", e, EncrId.AES_CBC, bits)
        add(f"aes{bits}ctr", e, EncrId.AES_CTR, bits)
        for mode, ids in (("gcm", gcm), ("ccm", ccm)):
            for icv, tid in ids.items():
                add(f"aes{bits}{mode}{icv}", e, tid, bits)
                add(f"aes{bits}{mode}{aead_icv[icv]}", e, tid, bits, alias=True)
            add(f"aes{bits}{mode}", e, ids[16], bits, alias=True)
        add(f"aes{bits}gmac", e, EncrId.NULL_AUTH_AES_GMAC, bits)
        # AH carries AES-GMAC as an integrity transform (RFC 4543); it prints back as the same keyword.
        canonical[(int(_T.INTEG), _GMAC_INTEG[bits], None)] = f"aes{bits}gmac"
        add(f"blowfish{bits}", e, EncrId.BLOWFISH, bits)
        add(f"camellia{bits}", e, EncrId.CAMELLIA_CBC, bits)
        add(f"camellia{bits}ctr", e, EncrId.CAMELLIA_CTR, bits)
        for icv, tid in cam_ccm.items():
            add(f"camellia{bits}ccm{icv}", e, tid, bits)
            add(f"camellia{bits}ccm{aead_icv[icv]}", e, tid, bits, alias=True)
    add("chacha20poly1305", e, EncrId.CHACHA20_POLY1305)
    add("chacha20poly1305compat", e, EncrId.CHACHA20_POLY1305, 256)

    i = _T.INTEG
    add("sha1", i, IntegId.HMAC_SHA1_96)
    add("sha", i, IntegId.HMAC_SHA1_96, alias=True)
    add("sha1_160", i, IntegId.HMAC_SHA1_160)
    add("sha256", i, IntegId.HMAC_SHA2_256_128)
    add("sha2_256", i, IntegId.HMAC_SHA2_256_128, alias=True)
    add("sha256_96", i, INTEG_HMAC_SHA2_256_96)
    add("sha2_256_96", i, INTEG_HMAC_SHA2_256_96, alias=True)
    add("sha384", i, IntegId.HMAC_SHA2_384_192)
    add("sha2_384", i, IntegId.HMAC_SHA2_384_192, alias=True)
    add("sha512", i, IntegId.HMAC_SHA2_512_256)
    add("sha2_512", i, IntegId.HMAC_SHA2_512_256, alias=True)
    add("md5", i, IntegId.HMAC_MD5_96)
    add("md5_128", i, IntegId.HMAC_MD5_128)
    add("aesxcbc", i, IntegId.AES_XCBC_96)
    add("aescmac", i, IntegId.AES_CMAC_96)

    p = _T.PRF
    add("prfsha1", p, PrfId.HMAC_SHA1)
    add("prfsha256", p, PrfId.HMAC_SHA2_256)
    add("prfsha384", p, PrfId.HMAC_SHA2_384)
    add("prfsha512", p, PrfId.HMAC_SHA2_512)
    add("prfmd5", p, PrfId.HMAC_MD5)
    add("prfaesxcbc", p, PrfId.AES128_XCBC)
    add("prfaescmac", p, PrfId.AES128_CMAC)

    k = _T.KE
    add("none", k, KeId.NONE)
    add("modpnone", k, KeId.NONE, alias=True)
    for bits in (768, 1024, 1536, 2048, 3072, 4096, 6144, 8192):
        add(f"modp{bits}", k, KeId[f"MODP_{bits}"])
    add("modp1024s160", k, KeId.MODP_1024_160)
    add("modp2048s224", k, KeId.MODP_2048_224)
    add("modp2048s256", k, KeId.MODP_2048_256)
    for bits in (192, 224, 256, 384, 521):
        add(f"ecp{bits}", k, KeId[f"ECP_{bits}"])
    add("ecp224bp", k, KeId.BRAINPOOL_P224R1)
    add("ecp256bp", k, KeId.BRAINPOOL_P256R1)
    add("ecp384bp", k, KeId.BRAINPOOL_P384R1)
    add("ecp512bp", k, KeId.BRAINPOOL_P512R1)
    add("x25519", k, KeId.CURVE25519)
    add("curve25519", k, KeId.CURVE25519, alias=True)
    add("x448", k, KeId.CURVE448)
    add("curve448", k, KeId.CURVE448, alias=True)
    add("mlkem512", k, KeId.ML_KEM_512)
    add("mlkem768", k, KeId.ML_KEM_768)
    add("mlkem1024", k, KeId.ML_KEM_1024)

    add("noesn", _T.ESN, EsnId.NO_ESN)
    add("esn", _T.ESN, EsnId.ESN)
    return table, canonical


_KEYWORDS, _CANONICAL = _build_keywords()
KEYWORDS: frozenset[str] = frozenset(_KEYWORDS)
"""Every keyword :func:`parse_proposal` accepts (without ``keN_`` prefixes)."""

_ADDKE_PREFIX = re.compile(r"ke([1-7])_(.*)\Z", re.DOTALL)

# strongSwan's integ -> PRF map for IKE proposals without a PRF keyword (proposal.c integ_prf_map).
_PRF_FROM_INTEG: dict[int, int] = {
    IntegId.HMAC_SHA1_96: PrfId.HMAC_SHA1,
    IntegId.HMAC_SHA1_160: PrfId.HMAC_SHA1,
    IntegId.HMAC_SHA2_256_128: PrfId.HMAC_SHA2_256,
    IntegId.HMAC_SHA2_384_192: PrfId.HMAC_SHA2_384,
    IntegId.HMAC_SHA2_512_256: PrfId.HMAC_SHA2_512,
    IntegId.HMAC_MD5_96: PrfId.HMAC_MD5,
    IntegId.HMAC_MD5_128: PrfId.HMAC_MD5,
    IntegId.AES_XCBC_96: PrfId.AES128_XCBC,
    IntegId.AES_CMAC_96: PrfId.AES128_CMAC,
}

_CATEGORY = {
    _T.ENCR: "encryption",
    _T.INTEG: "integrity",
    _T.PRF: "prf",
    _T.KE: "key exchange",
    _T.ESN: "esn",
}


class ProposalSyntaxError(ValueError):
    """A proposal string that cannot be used: names the keyword, its position and what would be valid."""

    def __init__(
        self,
        reason: str,
        *,
        text: str,
        keyword: str | None = None,
        position: int | None = None,
        suggestions: tuple[str, ...] = (),
    ) -> None:
        self.reason = reason
        self.text = text
        self.keyword = keyword
        self.position = position
        self.suggestions = suggestions
        where = f" at position {position}" if position is not None else ""
        what = f": {keyword!r}" if keyword is not None else ""
        hint = f"; valid here: {', '.join(suggestions)}" if suggestions else ""
        super().__init__(f"{reason}{what}{where} in proposal {text!r}{hint}")


@dataclass(frozen=True, slots=True)
class ProposalSpec:
    """One proposal: the transforms of each type in preference order (RFC 7296 §3.3)."""

    protocol: ProtocolId
    encr: tuple[Transform, ...] = ()
    integ: tuple[Transform, ...] = ()
    prf: tuple[Transform, ...] = ()
    ke: tuple[Transform, ...] = ()
    esn: tuple[Transform, ...] = ()
    addke: tuple[Transform, ...] = field(default=())
    """Additional key exchanges (RFC 9370), each Transform typed ADDKE1..ADDKE7."""

    @property
    def is_aead(self) -> bool:
        """True when every encryption transform is combined-mode (then no INTEG is sent, RFC 5282 §8)."""
        return bool(self.encr) and all(t.is_aead for t in self.encr)

    def transforms(self) -> tuple[Transform, ...]:
        """All transforms in wire order: by transform type (ENCR, PRF, INTEG, KE, ESN, ADDKE1..7)."""
        by_type = sorted(self.addke, key=lambda t: int(t.type))
        return (*self.encr, *self.prf, *self.integ, *self.ke, *self.esn, *by_type)

    @classmethod
    def from_transforms(cls, protocol: ProtocolId, transforms: Iterable[Transform]) -> ProposalSpec:
        """Group transforms (e.g. from a received SA payload) by type; unknown types raise ValueError."""
        groups: dict[int, list[Transform]] = {int(t): [] for t in _T}
        for t in transforms:
            if int(t.type) not in groups:
                raise ValueError(f"unknown transform type {int(t.type)}")
            groups[int(t.type)].append(t)
        addke = [t for tt in range(_T.ADDKE1, _T.ADDKE7 + 1) for t in groups[tt]]
        return cls(
            protocol=protocol,
            encr=tuple(groups[_T.ENCR]),
            integ=tuple(groups[_T.INTEG]),
            prf=tuple(groups[_T.PRF]),
            ke=tuple(groups[_T.KE]),
            esn=tuple(groups[_T.ESN]),
            addke=tuple(addke),
        )


@dataclass(slots=True)
class _Token:
    text: str
    position: int
    transform: Transform


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    for raw in text.split("-"):
        start = position + (len(raw) - len(raw.lstrip(" ")))
        word = raw.strip(" ")
        position += len(raw) + 1
        if not word:
            raise ProposalSyntaxError("empty algorithm keyword", text=text, keyword="", position=start)
        tokens.append(_Token(word, start, _lookup_keyword(word, start, text)))
    return tokens


def _lookup_keyword(word: str, start: int, text: str) -> Transform:
    prefix = _ADDKE_PREFIX.match(word)
    if prefix is not None:
        entry = _KEYWORDS.get(prefix.group(2))
        if entry is None or entry.type != _T.KE:
            ke_words = sorted(w for w, k in _KEYWORDS.items() if k.type == _T.KE)
            close = difflib.get_close_matches(prefix.group(2), ke_words, n=4, cutoff=0.6)
            raise ProposalSyntaxError(
                "unknown key exchange after 'ke<n>_' prefix",
                text=text,
                keyword=word,
                position=start,
                suggestions=tuple(f"ke{prefix.group(1)}_{w}" for w in close) or tuple(ke_words),
            )
        addke_type = TransformType(_T.ADDKE1 + int(prefix.group(1)) - 1)
        return Transform(addke_type, entry.id, entry.key_length)
    entry = _KEYWORDS.get(word)
    if entry is None and word.lower() in _KEYWORDS:
        raise ProposalSyntaxError(
            "algorithm keywords are lowercase",
            text=text,
            keyword=word,
            position=start,
            suggestions=(word.lower(),),
        )
    if entry is None:
        close = difflib.get_close_matches(word, sorted(_KEYWORDS), n=5, cutoff=0.6)
        raise ProposalSyntaxError(
            "unknown algorithm keyword",
            text=text,
            keyword=word,
            position=start,
            suggestions=tuple(close) or _canonical_overview(),
        )
    return Transform(entry.type, entry.id, entry.key_length)


def _canonical_overview() -> tuple[str, ...]:
    groups: dict[int, list[str]] = {}
    for (ttype, tid, _klen), name in _CANONICAL.items():
        if ttype == _T.INTEG and tid in _GMAC_INTEG.values():
            continue  # AH's view of the aes…gmac keyword, already listed under encryption
        groups.setdefault(ttype, []).append(name)
    return tuple(f"{_CATEGORY[TransformType(t)]}: {' '.join(names)}" for t, names in sorted(groups.items()))


def _dedupe(items: Iterable[Transform]) -> tuple[Transform, ...]:
    return tuple(dict.fromkeys(items))


def parse_proposal(text: str, protocol: ProtocolId) -> ProposalSpec:
    """Parse one swanctl proposal (``aes256gcm16-prfsha384-ecp384``) for ``protocol`` (IKE, ESP or AH).

    Raises :class:`ProposalSyntaxError` for unknown keywords and for proposals strongSwan would refuse.
    """
    protocol = ProtocolId(protocol)
    tokens = _tokenize(text)
    by_type: dict[int, list[_Token]] = {}
    for tok in tokens:
        by_type.setdefault(int(tok.transform.type), []).append(tok)

    def of(ttype: TransformType) -> list[_Token]:
        return by_type.get(int(ttype), [])

    encr = of(_T.ENCR)
    integ = [t.transform for t in of(_T.INTEG)]
    named_integ = list(integ)  # before AEAD proposals drop them: strongSwan derives the PRF first
    prf = [t.transform for t in of(_T.PRF)]
    ke = [t.transform for t in of(_T.KE)]
    esn = [t.transform for t in of(_T.ESN)]
    addke = [t.transform for tt in range(_T.ADDKE1, _T.ADDKE7 + 1) for t in by_type.get(tt, [])]
    proto = protocol.name

    if protocol == ProtocolId.AH:
        # AES-GMAC becomes the integrity transform it is, in place; other ciphers are dropped (RFC 4543).
        integ = [
            Transform(_T.INTEG, _GMAC_INTEG[t.transform.key_length or 0])
            if t.transform.type == _T.ENCR
            else t.transform
            for t in tokens
            if t.transform.type == _T.INTEG
            or (t.transform.id == EncrId.NULL_AUTH_AES_GMAC and t.transform.type == _T.ENCR)
        ]
        encr = []
        prf = []
        if not integ:
            raise ProposalSyntaxError(
                "an integrity algorithm is mandatory in AH proposals",
                text=text,
                position=len(text),
                suggestions=("sha256", "sha384", "sha512"),
            )
    else:
        if not encr:
            raise ProposalSyntaxError(
                f"an encryption algorithm is mandatory in {proto} proposals",
                text=text,
                position=len(text),
                suggestions=("aes256gcm16", "aes256", "chacha20poly1305"),
            )
        first_kind = encr[0].transform.is_aead
        for tok in encr[1:]:
            if tok.transform.is_aead != first_kind:
                raise ProposalSyntaxError(
                    f"classic and combined-mode (AEAD) ciphers cannot share one {proto} proposal "
                    f"(after {encr[0].text!r}); put them in separate proposals",
                    text=text,
                    keyword=tok.text,
                    position=tok.position,
                )
        if first_kind:
            integ = []  # RFC 5282 §8: AEAD proposals carry no integrity transform
        elif protocol == ProtocolId.IKE and not integ:
            raise ProposalSyntaxError(
                "an integrity algorithm is mandatory in IKE proposals with a classic (non-AEAD) cipher",
                text=text,
                keyword=encr[0].text,
                position=encr[0].position,
                suggestions=("sha256", "sha384", "sha512"),
            )

    if protocol == ProtocolId.IKE:
        if not prf:
            # strongSwan derives the PRF from each integrity algorithm named (even if an AEAD cipher then
            # drops them); with none named an AEAD proposal has nothing to derive from and must name its PRF.
            prf = [Transform(_T.PRF, _PRF_FROM_INTEG[t.id]) for t in named_integ if t.id in _PRF_FROM_INTEG]
        if not prf:
            aead_note = " (an AEAD cipher has no integrity algorithm to take it from)"
            raise ProposalSyntaxError(
                "a PRF is mandatory in IKE proposals" + (aead_note if encr[0].transform.is_aead else ""),
                text=text,
                keyword=encr[0].text if encr else None,
                position=encr[0].position if encr else len(text),
                suggestions=("prfsha256", "prfsha384", "prfsha512"),
            )
        ke = [t for t in ke if t.id != KeId.NONE]
        if not ke:
            raise ProposalSyntaxError(
                "a key exchange method is mandatory in IKE proposals",
                text=text,
                position=len(text),
                suggestions=("ecp384", "ecp256", "x25519", "modp3072"),
            )
        if of(_T.ESN):
            tok = of(_T.ESN)[0]
            raise ProposalSyntaxError(
                "sequence number transforms are only valid in ESP/AH proposals (RFC 7296 §3.3.3)",
                text=text,
                keyword=tok.text,
                position=tok.position,
            )
    else:
        prf = []
        if not esn:
            esn = [Transform(_T.ESN, EsnId.NO_ESN)]

    return ProposalSpec(
        protocol=protocol,
        encr=_dedupe(t.transform for t in encr),
        integ=_dedupe(integ),
        prf=_dedupe(prf),
        ke=_dedupe(ke),
        esn=_dedupe(esn),
        addke=_dedupe(addke),
    )


def parse_proposals(proposals: str | Iterable[str], protocol: ProtocolId) -> tuple[ProposalSpec, ...]:
    """Parse a comma-separated string or a list of proposal strings (swanctl ``proposals = a, b``)."""
    items = proposals.split(",") if isinstance(proposals, str) else list(proposals)
    return tuple(parse_proposal(item.strip(), protocol) for item in items)


def keyword_for(transform: Transform) -> str:
    """The canonical swanctl keyword of ``transform`` (``keN_`` prefixed for ADDKEn); ValueError if none."""
    ttype = int(transform.type)
    prefix = ""
    if is_ke_type(ttype) and ttype != _T.KE:
        prefix = f"ke{ttype - _T.ADDKE1 + 1}_"
        ttype = int(_T.KE)
    name = _CANONICAL.get((ttype, transform.id, transform.key_length))
    if name is None:
        raise ValueError(f"no swanctl keyword for transform {transform.describe()}")
    return prefix + name


def format_proposal(spec: ProposalSpec) -> str:
    """Canonical swanctl string of ``spec``; ``format_proposal(parse_proposal(s, p))`` is stable.

    Defaults are left out as strongSwan's parser would add them back: an IKE PRF equal to the one derived from
    the integrity algorithms, and an ESP/AH ``noesn`` that is the only sequence-number choice. Raises
    ValueError for a transform without keyword (e.g. AES without Key Length); :func:`describe_proposal`
    always works.
    """
    parts = [keyword_for(t) for t in spec.encr]
    # INTEG NONE (a peer may send it with an AEAD cipher, RFC 7296 §3.3.3) has no keyword: it is implied.
    parts += [keyword_for(t) for t in spec.integ if t.id != IntegId.NONE]
    derived = _dedupe(Transform(_T.PRF, _PRF_FROM_INTEG[t.id]) for t in spec.integ if t.id in _PRF_FROM_INTEG)
    if not (spec.protocol == ProtocolId.IKE and spec.prf == derived and derived):
        parts += [keyword_for(t) for t in spec.prf]
    parts += [keyword_for(t) for t in spec.ke]
    parts += [keyword_for(t) for t in sorted(spec.addke, key=lambda t: int(t.type))]
    if spec.esn != (Transform(_T.ESN, EsnId.NO_ESN),):
        parts += [keyword_for(t) for t in spec.esn]
    return "-".join(parts)


def describe_proposal(spec: ProposalSpec) -> str:
    """IANA-ish display form as `swanctl --list-sas` prints it: ``AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384``.

    Order: encryption, integrity, PRF, key exchange, additional key exchanges, then ``ESN`` only when
    extended sequence numbers are on offer (NO_ESN alone is the default and is left out, as strongSwan does).
    """
    parts = [t.describe() for t in (*spec.encr, *spec.integ, *spec.prf, *spec.ke)]
    parts += [t.describe() for t in sorted(spec.addke, key=lambda t: int(t.type))]
    if spec.esn != (Transform(_T.ESN, EsnId.NO_ESN),):
        parts += [t.describe() for t in spec.esn]
    return "/".join(parts)
