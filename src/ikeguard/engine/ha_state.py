"""High availability: the versioned record of what a standby needs to continue an IKE SA and its Child SAs
without renegotiation (issue 20, docs/ha.md).

An established IKE SA is fully described, for continuing it, by its SPIs, the negotiated proposal, the
SK_* keys (RFC 7296 §2.14: SK_d derives every later Child SA and rekeyed IKE SA, §2.17/§2.18; SK_e*/SK_a*
protect the next message; SK_p* only matter for a new AUTH, kept for completeness), the message IDs of
both directions (§2.3), the nonces, identities, NAT state (RFC 7296 §2.23) and the lifetime deadlines; each
Child SA by its SPIs, proposal, selectors, KEYMAT split (§2.17) and the ESP sequence state (RFC 4303
§3.3.3 outbound counter, §3.4.3 inbound replay window) that only the data plane knows, so the service
passes it in.

The record is plain data. :func:`record_to_json` / :func:`record_from_json` give its wire form; it carries
keys, so the service encrypts it before it leaves the process (service/ha) and nothing here logs it: the
reprs of records and keys never show key bytes. Deadlines are absolute engine times (epoch seconds, the
service's clock), so they survive a move to another node with a synchronised clock.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from ikeguard.crypto.keymat import ChildKeys, IkeKeys
from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.events import Endpoint
from ikeguard.engine.ike_sa import IkeSa
from ikeguard.engine.states import ChildState, IkeState
from ikeguard.engine.timers import Timer
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.iana import ProtocolId, TransformType
from ikeguard.wire.proposal_string import ProposalSpec
from ikeguard.wire.transforms import Transform

RECORD_VERSION = 1
IKE_TIMERS = (Timer.IKE_REKEY, Timer.REAUTH,
              Timer.IKE_EXPIRE)  # lifetime deadlines carried over (the rest restart)


class RecordError(ValueError):
    """A record that cannot be read or restored (wrong version, unknown connection, bad field)."""


@dataclass(frozen=True)
class EspSequence:
    """The data plane's sequence state of one Child SA: last outbound sequence number sent (RFC 4303
    §3.3.3) and highest inbound one accepted (§3.4.3). Zero when unknown."""

    seq_out: int = 0
    replay_top: int = 0


@dataclass(frozen=True, repr=False)
class ChildSaRecord:
    """One installed Child SA."""

    name: str
    spi_in: int
    spi_out: int
    proposal: ProposalSpec
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    initiator: bool  # who started the exchange that created it: KEYMAT direction (§2.17)
    mode: str
    installed_at: float
    rekey_at: float | None
    expire_at: float | None
    keys: ChildKeys = field(repr=False)
    esp: EspSequence = EspSequence()

    def __repr__(self) -> str:
        return f"ChildSaRecord({self.name!r}, in={self.spi_in:08x}, out={self.spi_out:08x})"


@dataclass(frozen=True, repr=False)
class IkeSaRecord:
    """One established IKE SA and its installed Child SAs, as of ``exported_at`` (engine time)."""

    connection: str
    initiator: bool
    local: Endpoint
    remote: Endpoint
    spi_i: bytes
    spi_r: bytes
    proposal: ProposalSpec
    keys: IkeKeys = field(repr=False)
    nonce_i: bytes = field(repr=False, default=b"")
    nonce_r: bytes = field(repr=False, default=b"")
    next_request_id: int = 0  # ours (§2.3)
    expected_peer_id: int = 0  # the peer's next request
    local_id: str = ""
    remote_id: str = ""
    remote_cert_subject: str = ""
    remote_cert_serial: str = ""
    remote_cert_issuer: str = ""
    remote_cert_not_after: float | None = None
    eap_identity: str = ""
    nat_local: bool = False
    nat_remote: bool = False
    peer_natt: bool = False
    encap: bool = False
    fragmentation: bool = False
    mobike: bool = False
    mid_sync: bool = False  # both announced RFC 6311 message ID sync (engine/ha_mid_sync.py)
    redirect: bool = False  # the peer announced REDIRECT_SUPPORTED (RFC 5685): vici redirect after takeover
    signature_hashes: tuple[int, ...] = ()
    established_at: float = 0.0
    timers: tuple[tuple[str, float], ...] = ()  # IKE_TIMERS that were set
    virtual_ip: str = ""
    children: tuple[ChildSaRecord, ...] = ()
    exported_at: float = 0.0
    version: int = RECORD_VERSION

    @property
    def key(self) -> str:
        """Stable name of the SA across nodes: ``SPIi-SPIr`` in hex (``sas --json`` spelling)."""
        return f"{self.spi_i.hex()}-{self.spi_r.hex()}"

    def __repr__(self) -> str:
        return f"IkeSaRecord({self.connection!r}, {self.key}, children={len(self.children)})"

    def wipe(self) -> None:
        """Zero every key of the record (ARCHITECTURE rule 6)."""
        self.keys.wipe()
        for child in self.children:
            child.keys.wipe()


def exportable(sa: IkeSa) -> bool:
    """Only established IKE SAs with keys are replicated: a half-open or closing SA is renegotiated."""
    return sa.state is IkeState.ESTABLISHED and sa.crypto is not None and sa.proposal is not None


def export_ike_sa(sa: IkeSa, now: float, esp: dict[int, EspSequence] | None = None) -> IkeSaRecord:
    """The record of ``sa``; ``esp`` maps a Child SA's inbound SPI to its data-plane sequence state."""
    if not exportable(sa) or sa.conn is None:
        raise RecordError(f"IKE SA #{sa.uniqueid} is not established")
    assert sa.crypto is not None and sa.proposal is not None
    esp = esp or {}
    children = tuple(
        ChildSaRecord(
            name=c.name, spi_in=c.spi_in, spi_out=c.spi_out, proposal=c.proposal, local_ts=c.local_ts,
            remote_ts=c.remote_ts, initiator=c.initiator, mode=c.mode, installed_at=c.installed_at,
            rekey_at=c.rekey_at, expire_at=c.expire_at, keys=_copy_child_keys(c),
            esp=esp.get(c.spi_in, EspSequence()),
        )
        for c in sa.children.values()
        if c.state is ChildState.INSTALLED and c.keys is not None and c.proposal is not None
        and c.outbound_installed
    )
    k = sa.crypto.keys
    return IkeSaRecord(
        connection=sa.conn.name, initiator=sa.initiator, local=sa.local, remote=sa.remote,
        spi_i=sa.spi_i, spi_r=sa.spi_r, proposal=sa.proposal,
        keys=IkeKeys(*(bytearray(getattr(k, n)) for n in _IKE_KEY_FIELDS)),
        nonce_i=bytes(sa.nonce_i), nonce_r=bytes(sa.nonce_r),
        next_request_id=sa.window.next_request_id, expected_peer_id=sa.window.expected_peer_id,
        local_id=sa.local_id, remote_id=sa.remote_id, remote_cert_subject=sa.remote_cert_subject,
        remote_cert_serial=sa.remote_cert_serial, remote_cert_issuer=sa.remote_cert_issuer,
        remote_cert_not_after=sa.remote_cert_not_after, eap_identity=sa.eap_identity,
        nat_local=sa.nat_local, nat_remote=sa.nat_remote, peer_natt=sa.peer_natt, encap=sa.encap,
        fragmentation=sa.peer.fragmentation, mobike=sa.peer.mobike, mid_sync=sa.peer.mid_sync,
        redirect=sa.peer.redirect,
        signature_hashes=tuple(sa.peer.signature_hashes),
        established_at=sa.established_at if sa.established_at is not None else now,
        timers=tuple((n, sa.timers[n]) for n in IKE_TIMERS if n in sa.timers),
        virtual_ip=str(sa.virtual_ip) if sa.virtual_ip is not None else "",
        children=children, exported_at=now,
    )


_IKE_KEY_FIELDS = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")
_CHILD_KEY_FIELDS = ("encr_i", "integ_i", "encr_r", "integ_r")


def _copy_child_keys(child: ChildSa) -> ChildKeys:
    assert child.keys is not None
    k = child.keys.keys
    return ChildKeys(*(bytearray(getattr(k, n)) for n in _CHILD_KEY_FIELDS))


# ---------------------------------------------------------------------- wire form (JSON, hex for octets)
def _proposal_out(spec: ProposalSpec) -> dict[str, Any]:
    return {"protocol": int(spec.protocol),
            "transforms": [[int(t.type), t.id, t.key_length] for t in spec.transforms()]}


def _proposal_in(obj: dict[str, Any]) -> ProposalSpec:
    transforms = [Transform(TransformType(t), i, k) for t, i, k in obj["transforms"]]
    return ProposalSpec.from_transforms(ProtocolId(obj["protocol"]), transforms)


def _ts_out(ts: tuple[TrafficSelector, ...]) -> list[list[int]]:
    return [[t.version, t.start, t.end, t.protocol, t.start_port, t.end_port] for t in ts]


def _ts_in(items: list[list[int]]) -> tuple[TrafficSelector, ...]:
    return tuple(TrafficSelector(*item) for item in items)


def _ep_out(ep: Endpoint) -> list[Any]:
    return [str(ep.address), ep.port]


def _ep_in(item: list[Any]) -> Endpoint:
    return Endpoint(ipaddress.ip_address(item[0]), int(item[1]))


def record_to_json(record: IkeSaRecord) -> bytes:
    """The record as UTF-8 JSON. It contains keys: encrypt it before it is stored or sent anywhere."""
    children = [
        {"name": c.name, "spi_in": c.spi_in, "spi_out": c.spi_out, "proposal": _proposal_out(c.proposal),
         "local_ts": _ts_out(c.local_ts), "remote_ts": _ts_out(c.remote_ts), "initiator": c.initiator,
         "mode": c.mode, "installed_at": c.installed_at, "rekey_at": c.rekey_at, "expire_at": c.expire_at,
         "keys": {n: bytes(getattr(c.keys, n)).hex() for n in _CHILD_KEY_FIELDS},
         "seq_out": c.esp.seq_out, "replay_top": c.esp.replay_top}
        for c in record.children
    ]
    obj = {
        "version": record.version, "connection": record.connection, "initiator": record.initiator,
        "local": _ep_out(record.local), "remote": _ep_out(record.remote),
        "spi_i": record.spi_i.hex(), "spi_r": record.spi_r.hex(), "proposal": _proposal_out(record.proposal),
        "keys": {n: bytes(getattr(record.keys, n)).hex() for n in _IKE_KEY_FIELDS},
        "nonce_i": record.nonce_i.hex(), "nonce_r": record.nonce_r.hex(),
        "next_request_id": record.next_request_id, "expected_peer_id": record.expected_peer_id,
        "local_id": record.local_id, "remote_id": record.remote_id,
        "remote_cert_subject": record.remote_cert_subject, "remote_cert_serial": record.remote_cert_serial,
        "remote_cert_issuer": record.remote_cert_issuer,
        "remote_cert_not_after": record.remote_cert_not_after,
        "eap_identity": record.eap_identity, "nat_local": record.nat_local, "nat_remote": record.nat_remote,
        "peer_natt": record.peer_natt, "encap": record.encap, "fragmentation": record.fragmentation,
        "mobike": record.mobike, "mid_sync": record.mid_sync, "redirect": record.redirect,
        "signature_hashes": list(record.signature_hashes),
        "established_at": record.established_at, "timers": [list(t) for t in record.timers],
        "virtual_ip": record.virtual_ip, "children": children, "exported_at": record.exported_at,
    }
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def record_from_json(data: bytes) -> IkeSaRecord:
    """Parse :func:`record_to_json` output; RecordError (naming no key material) on anything else."""
    try:
        obj = json.loads(data)
        if obj.get("version") != RECORD_VERSION:
            raise RecordError(f"HA record version {obj.get('version')!r} is not {RECORD_VERSION}")
        children = tuple(
            ChildSaRecord(
                name=c["name"], spi_in=int(c["spi_in"]), spi_out=int(c["spi_out"]),
                proposal=_proposal_in(c["proposal"]), local_ts=_ts_in(c["local_ts"]),
                remote_ts=_ts_in(c["remote_ts"]), initiator=bool(c["initiator"]), mode=c["mode"],
                installed_at=float(c["installed_at"]), rekey_at=c["rekey_at"], expire_at=c["expire_at"],
                keys=ChildKeys(*(bytearray.fromhex(c["keys"][n]) for n in _CHILD_KEY_FIELDS)),
                esp=EspSequence(int(c["seq_out"]), int(c["replay_top"])),
            )
            for c in obj["children"]
        )
        return IkeSaRecord(
            connection=obj["connection"], initiator=bool(obj["initiator"]), local=_ep_in(obj["local"]),
            remote=_ep_in(obj["remote"]), spi_i=bytes.fromhex(obj["spi_i"]),
            spi_r=bytes.fromhex(obj["spi_r"]),
            proposal=_proposal_in(obj["proposal"]),
            keys=IkeKeys(*(bytearray.fromhex(obj["keys"][n]) for n in _IKE_KEY_FIELDS)),
            nonce_i=bytes.fromhex(obj["nonce_i"]), nonce_r=bytes.fromhex(obj["nonce_r"]),
            next_request_id=int(obj["next_request_id"]), expected_peer_id=int(obj["expected_peer_id"]),
            local_id=obj["local_id"], remote_id=obj["remote_id"],
            remote_cert_subject=obj["remote_cert_subject"], remote_cert_serial=obj["remote_cert_serial"],
            remote_cert_issuer=obj["remote_cert_issuer"], remote_cert_not_after=obj["remote_cert_not_after"],
            eap_identity=obj["eap_identity"], nat_local=bool(obj["nat_local"]),
            nat_remote=bool(obj["nat_remote"]), peer_natt=bool(obj["peer_natt"]), encap=bool(obj["encap"]),
            fragmentation=bool(obj["fragmentation"]), mobike=bool(obj["mobike"]),
            mid_sync=bool(obj.get("mid_sync", False)),  # absent in records written before RFC 6311 support
            redirect=bool(obj.get("redirect", False)),  # absent in records of older nodes
            signature_hashes=tuple(int(h) for h in obj["signature_hashes"]),
            established_at=float(obj["established_at"]),
            timers=tuple((str(n), float(t)) for n, t in obj["timers"]), virtual_ip=obj["virtual_ip"],
            children=children, exported_at=float(obj["exported_at"]),
        )
    except RecordError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # the message names the kind of fault only: the document holds keys
        raise RecordError(f"malformed HA record ({type(exc).__name__})") from None
