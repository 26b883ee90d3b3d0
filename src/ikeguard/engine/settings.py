"""Engine-facing configuration: small frozen dataclasses the service builds from the policy config.

Kept apart from the TOML model so the engine is testable on its own; secrets are ``repr=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from cryptography import x509

from ikeguard.crypto.signatures import PrivateKey
from ikeguard.engine.pools import PoolSettings
from ikeguard.engine.ppk import PpkSettings
from ikeguard.engine.retransmit import RetransmitPolicy
from ikeguard.pki.raw_keys import PinnedKey
from ikeguard.policy.profile import Profile, load_profile
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.proposal_string import ProposalSpec


class AuthKind(Enum):
    """How one side authenticates (contract: ``auth = "pubkey" | "psk"``)."""

    PSK = "psk"
    PUBKEY = "pubkey"
    EAP_RADIUS = "eap-radius"  # EAP relayed to RADIUS (RFC 7296 §2.16, RFC 3579)
    EAP = "eap"  # we are the EAP client of the responder (RFC 7296 §2.16, engine.eap_peer)
    EAP_ONLY = "eap-only"  # responder: no CERT/AUTH of ours, the mutual EAP method authenticates (RFC 5998)


@dataclass(frozen=True)
class LocalAuth:
    """Our identity and credentials."""

    kind: AuthKind
    identity: str  # contract syntax, e.g. gw.example.net, CN=gw, O=Example
    psk: bytes = field(default=b"", repr=False)
    private_key: PrivateKey | None = field(default=None, repr=False)
    certs: tuple[x509.Certificate, ...] = ()  # end entity first, then intermediates
    rsa_pss: bool = True  # RSA keys sign with RSASSA-PSS (RFC 8247); False = PKCS#1 v1.5 for old peers
    raw_public_key: bool = False  # no certificate: our key goes in a CERT payload, encoding 15 (RFC 7670)
    eap_method: str = ""  # kind EAP: "md5" | "mschapv2"
    eap_id: str = ""  # kind EAP: our EAP identity (empty: ``identity``)
    eap_secret: bytes = field(default=b"", repr=False)  # kind EAP: the password ([secrets.eap.*])


@dataclass(frozen=True)
class RemoteAuth:
    """What we require of the peer; ``identity`` None means ``%any`` (any identity that authenticates)."""

    kind: AuthKind
    identity: str | None = None  # contract syntax; exact or pattern, matched by the policy helper
    psk: bytes = field(default=b"", repr=False)
    send_certreq: bool = True
    eap_id: str | None = None  # EAP identity the user must give (None: any, as swanctl's eap_id = %any)
    pubkeys: tuple[PinnedKey, ...] = ()  # raw public keys (RFC 7670) instead of certificates, when pubkey


class PeerSelectors(Protocol):
    """Resolves ``%peer``: the selectors the inventory binds to an authenticated identity (None: unlisted)."""

    def selectors_for(self, connection: str, identity: str) -> tuple[TrafficSelector, ...] | None: ...


@dataclass(frozen=True)
class ChildSettings:
    """One ``children.NAME`` entry."""

    name: str
    local_ts: tuple[str, ...]  # config syntax: CIDR[proto/port], "dynamic"
    remote_ts: tuple[str, ...]  # config syntax, plus "%peer" (inventory selectors of the peer's identity)
    esp_proposals: tuple[ProposalSpec, ...]
    mode: str = "tunnel"
    rekey_time: float = 3600.0
    life_time: float = 0.0  # 0: rekey_time * 1.1
    rand_time: float = 0.0  # 0: life_time - rekey_time
    rekey_bytes: int = 0
    life_bytes: int = 0
    rekey_packets: int = 0
    life_packets: int = 0
    replay_window: int = 32
    per_resource_sas: int = 0  # RFC 9611: additional Child SAs with these selectors, one per resource (CPU)

    @property
    def pfs(self) -> bool:
        """True when the ESP proposals carry a key exchange group (PFS on CREATE_CHILD_SA)."""
        return any(t.id != 0 for p in self.esp_proposals for t in p.ke)


@dataclass(frozen=True)
class GroupSettings:
    """A RADIUS group (``Class``/``Filter-Id`` value) and the local selectors its users get."""

    name: str
    local_ts: tuple[str, ...]
    cde: bool = False


@dataclass(frozen=True)
class ConnectionSettings:
    """One ``connections.NAME`` entry, as the engine needs it."""

    name: str
    ike_proposals: tuple[ProposalSpec, ...]
    local: LocalAuth
    remote: RemoteAuth
    children: tuple[ChildSettings, ...]
    remote_addrs: tuple[str, ...] = ("%any",)
    remote_port: int = 500
    rekey_time: float = 14400.0
    reauth_time: float = 0.0
    over_time: float = 0.0  # 0: 10 % of rekey/reauth time
    rand_time: float = 0.0
    dpd_delay: float = 0.0  # 0: no liveness checks
    dpd_timeout: float = 0.0
    mobike: bool = True
    fragmentation: bool = True
    encap: bool = False  # force UDP encapsulation (fake NAT-D)
    unique: str = "no"
    remote2: RemoteAuth | None = None  # a second authentication round (RFC 4739), e.g. EAP after pubkey
    local2: LocalAuth | None = None  # our second round as initiator (RFC 4739): EAP after our certificate
    pools: tuple[PoolSettings, ...] = ()  # virtual IPs for peers that ask (CFG_REQUEST, RFC 7296 §3.15)
    groups: tuple[GroupSettings, ...] = ()  # with groups, an EAP user must be in one (RADIUS Class/Filter-Id)
    ppk: PpkSettings | None = None  # RFC 8784 post-quantum preshared key (engine.ppk)
    redirect_to: str = ""  # RFC 5685 §6: authenticated peers are redirected here in IKE_AUTH
    ocsp: str = "never"  # RFC 4806: "never" | "reply" | "request" | "both" (engine.ocsp_stapling)


@dataclass(frozen=True)
class EngineSettings:
    """Gateway-wide engine knobs (``[gateway]`` of the contract)."""

    retransmit: RetransmitPolicy = field(default_factory=RetransmitPolicy)
    cookie_threshold: int = 10  # half-open SAs before we demand cookies (RFC 7296 §2.6)
    block_threshold: int = 5  # half-open SAs per peer address before we drop its IKE_SA_INIT
    half_open_timeout: float = 30.0
    revocation_timeout: float = 10.0  # a CRL/OCSP fetch not answered by then counts as failed (docs/pki.md)
    radius_timeout: float = 30.0  # a RADIUS round not answered by then counts as unreachable
    max_ike_sas: int = 0  # 0: unlimited
    cookie_secret_period: float = 120.0
    fragment_size: int = 1280  # RFC 7383 §2.5.1 default for IPv4 fallback
    max_fragments: int = 64
    max_reassembly_bytes: int = 65536
    nat_keepalive: float = 20.0
    profile: Profile = field(default_factory=lambda: load_profile("baseline"))
    max_init_retries: int = 5  # COOKIE / INVALID_KE_PAYLOAD round trips before giving up
    redirect_to: str = ""  # RFC 5685 §3: new peers are sent here in IKE_SA_INIT (engine.tasks.redirect)
    redirect_above: int = 0  # ... only while more IKE SAs than this are established (0: always)
    ha_mid_sync: bool = False  # an HA pair member: announce RFC 6311 message ID sync (engine/ha_mid_sync.py)
    raise_internal_errors: bool = False  # tests: let engine bugs surface instead of closing the SA
