"""Parsed views of charon's SAs (vici ``list-sas``): IkeSaInfo and ChildSaInfo, with swanctl proposal strings.

Written by hand: maps strongSwan's algorithm names back to swanctl keywords so tests can compare the
negotiated proposal with the configured one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChildSaInfo", "IkeSaInfo", "proposal_keyword"]

# strongSwan algorithm names (vici list-sas) -> swanctl proposal keywords
_ENCR = {
    "AES_CBC": "aes{}",
    "AES_CTR": "aes{}ctr",
    "AES_GCM_16": "aes{}gcm16",
    "AES_GCM_12": "aes{}gcm12",
    "AES_GCM_8": "aes{}gcm8",
    "AES_CCM_16": "aes{}ccm16",
    "AES_CCM_12": "aes{}ccm12",
    "AES_CCM_8": "aes{}ccm8",
    "CAMELLIA_CBC": "camellia{}",
    "CHACHA20_POLY1305": "chacha20poly1305",
    "3DES_CBC": "3des",
    "NULL": "null",
}
_INTEG = {
    "HMAC_SHA1_96": "sha1",
    "HMAC_SHA2_256_128": "sha256",
    "HMAC_SHA2_384_192": "sha384",
    "HMAC_SHA2_512_256": "sha512",
    "HMAC_MD5_96": "md5",
    "AES_XCBC_96": "aesxcbc",
    "AES_CMAC_96": "aescmac",
}
_PRF = {
    "PRF_HMAC_SHA1": "prfsha1",
    "PRF_HMAC_SHA2_256": "prfsha256",
    "PRF_HMAC_SHA2_384": "prfsha384",
    "PRF_HMAC_SHA2_512": "prfsha512",
    "PRF_HMAC_MD5": "prfmd5",
    "PRF_AES128_XCBC": "prfaesxcbc",
    "PRF_AES128_CMAC": "prfaescmac",
}


def proposal_keyword(kind: str, name: str | None, keysize: int | None = None) -> str | None:
    """One swanctl keyword for a strongSwan algorithm name (kind: encr | integ | prf | dh)."""
    if not name:
        return None
    if kind == "encr":
        pattern = _ENCR.get(name)
        return pattern.format(keysize or "") if pattern else name.lower()
    if kind == "integ":
        return _INTEG.get(name, name.lower())
    if kind == "prf":
        return _PRF.get(name, name.lower())
    return name.lower().replace(
        "_", ""
    )  # MODP_2048 -> modp2048, ECP_384 -> ecp384, CURVE_25519 -> curve25519


def _s(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value.decode() if isinstance(value, bytes) else None


def _i(raw: Mapping[str, Any], key: str) -> int | None:
    text = _s(raw, key)
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def _hex(raw: Mapping[str, Any], key: str) -> int:
    text = _s(raw, key)
    return int(text, 16) if text else 0


def _yes(raw: Mapping[str, Any], key: str) -> bool:
    return _s(raw, key) in ("yes", "1")


def _list(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    return tuple(v.decode() for v in value)


@dataclass(frozen=True)
class ChildSaInfo:
    """A CHILD_SA as charon reports it (vici list-sas)."""

    name: str
    uniqueid: int
    reqid: int
    state: str  # INSTALLED, REKEYING, REKEYED, DELETING, ...
    mode: str
    protocol: str
    encap: bool
    spi_in: int
    spi_out: int
    encr_alg: str | None
    encr_keysize: int | None
    integ_alg: str | None
    dh_group: str | None
    esn: bool
    bytes_in: int
    packets_in: int
    bytes_out: int
    packets_out: int
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    rekey_time: int | None
    life_time: int | None
    install_time: int | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def proposal(self) -> str:
        """The negotiated ESP proposal as a swanctl string, e.g. ``aes256gcm16`` or ``aes256gcm16-ecp384``."""
        parts = [
            proposal_keyword("encr", self.encr_alg, self.encr_keysize),
            proposal_keyword("integ", self.integ_alg),
            proposal_keyword("dh", self.dh_group),
        ]
        text = "-".join(p for p in parts if p)
        return text + "-esn" if self.esn else text

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ChildSaInfo:
        return cls(
            name=_s(raw, "name") or "",
            uniqueid=_i(raw, "uniqueid") or 0,
            reqid=_i(raw, "reqid") or 0,
            state=_s(raw, "state") or "",
            mode=_s(raw, "mode") or "",
            protocol=_s(raw, "protocol") or "",
            encap=_yes(raw, "encap"),
            spi_in=_hex(raw, "spi-in"),
            spi_out=_hex(raw, "spi-out"),
            encr_alg=_s(raw, "encr-alg"),
            encr_keysize=_i(raw, "encr-keysize"),
            integ_alg=_s(raw, "integ-alg"),
            dh_group=_s(raw, "dh-group"),
            esn=_yes(raw, "esn"),
            bytes_in=_i(raw, "bytes-in") or 0,
            packets_in=_i(raw, "packets-in") or 0,
            bytes_out=_i(raw, "bytes-out") or 0,
            packets_out=_i(raw, "packets-out") or 0,
            local_ts=_list(raw, "local-ts"),
            remote_ts=_list(raw, "remote-ts"),
            rekey_time=_i(raw, "rekey-time"),
            life_time=_i(raw, "life-time"),
            install_time=_i(raw, "install-time"),
            raw=raw,
        )


@dataclass(frozen=True)
class IkeSaInfo:
    """An IKE_SA as charon reports it (vici list-sas), with its CHILD_SAs."""

    name: str
    uniqueid: int
    version: int
    state: str  # CONNECTING, ESTABLISHED, REKEYING, REKEYED, DELETING, ...
    local_host: str
    local_port: int
    local_id: str
    remote_host: str
    remote_port: int
    remote_id: str
    initiator: bool
    initiator_spi: int
    responder_spi: int
    nat_local: bool
    nat_remote: bool
    nat_fake: bool
    nat_any: bool
    encr_alg: str | None
    encr_keysize: int | None
    integ_alg: str | None
    prf_alg: str | None
    dh_group: str | None
    established: int | None
    rekey_time: int | None
    reauth_time: int | None
    children: tuple[ChildSaInfo, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def proposal(self) -> str:
        """The negotiated IKE proposal as a swanctl string, e.g. ``aes256gcm16-prfsha384-ecp384``."""
        parts = [
            proposal_keyword("encr", self.encr_alg, self.encr_keysize),
            proposal_keyword("integ", self.integ_alg),
            proposal_keyword("prf", self.prf_alg),
            proposal_keyword("dh", self.dh_group),
        ]
        return "-".join(p for p in parts if p)

    @property
    def additional_key_exchanges(self) -> dict[int, str]:
        """RFC 9370 additional key exchanges as strongSwan 6 lists them (vici ``akeN``): {1: "ML_KEM_768"}."""
        return {n: v for n in range(1, 8) if (v := _s(self.raw, f"ake{n}"))}

    def child(self, name: str, state: str | None = "INSTALLED") -> ChildSaInfo:
        """The (first) CHILD_SA of that config name, in that state unless `state` is None."""
        for child in self.children:
            if child.name == name and (state is None or child.state == state):
                return child
        raise KeyError(f"no CHILD_SA {name!r} in state {state} on IKE_SA {self.name}#{self.uniqueid}")

    @classmethod
    def parse(cls, name: str, raw: Mapping[str, Any]) -> IkeSaInfo:
        children = tuple(ChildSaInfo.parse(c) for c in (raw.get("child-sas") or {}).values())
        return cls(
            name=name,
            uniqueid=_i(raw, "uniqueid") or 0,
            version=_i(raw, "version") or 0,
            state=_s(raw, "state") or "",
            local_host=_s(raw, "local-host") or "",
            local_port=_i(raw, "local-port") or 0,
            local_id=_s(raw, "local-id") or "",
            remote_host=_s(raw, "remote-host") or "",
            remote_port=_i(raw, "remote-port") or 0,
            remote_id=_s(raw, "remote-id") or "",
            initiator=_yes(raw, "initiator"),
            initiator_spi=_hex(raw, "initiator-spi"),
            responder_spi=_hex(raw, "responder-spi"),
            nat_local=_yes(raw, "nat-local"),
            nat_remote=_yes(raw, "nat-remote"),
            nat_fake=_yes(raw, "nat-fake"),
            nat_any=_yes(raw, "nat-any"),
            encr_alg=_s(raw, "encr-alg"),
            encr_keysize=_i(raw, "encr-keysize"),
            integ_alg=_s(raw, "integ-alg"),
            prf_alg=_s(raw, "prf-alg"),
            dh_group=_s(raw, "dh-group"),
            established=_i(raw, "established"),
            rekey_time=_i(raw, "rekey-time"),
            reauth_time=_i(raw, "reauth-time"),
            children=children,
            raw=raw,
        )
