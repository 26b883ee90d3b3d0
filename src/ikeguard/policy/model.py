"""The configuration model (docs/reference.md "Configuration file"), validated with pydantic v2.

Tree and key names follow strongSwan's swanctl.conf. Values stay close to what was written (durations
and sizes become integers, identities/selectors/proposals stay strings validated by their parsers) so
that findings can quote them and the JSON Schema stays readable for editors.
"""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    WithJsonSchema,
    model_validator,
)

from ikeguard.audit.archive import span_days
from ikeguard.policy.identity import validate_identity
from ikeguard.policy.profile import available_profiles
from ikeguard.policy.proposals import validate_esp_proposal, validate_ike_proposal
from ikeguard.policy.ts import validate_ts
from ikeguard.policy.values import (
    format_duration,
    format_size,
    parse_duration,
    parse_host_port,
    parse_ip_address,
    parse_oid,
    parse_peer_address,
    parse_size,
)

DEFAULT_IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
DEFAULT_ESP_PROPOSAL = "aes256gcm16-ecp384"

Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": ["string", "integer"], "pattern": r"^\d+[smhd]?$",
                    "description": 'duration: "90s", "30m", "8h", "1d" or seconds'}),
]
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str),
    WithJsonSchema({"type": ["string", "integer"], "pattern": r"^\d+[KMGTkmgt]?$",
                    "description": 'size: "500M", "64G" or a plain number (powers of 1024)'}),
]


def _ip(text: str) -> str:
    parse_ip_address(text)
    return text


def _addr(text: str) -> str:
    return parse_peer_address(text)


def _host_port(text: str) -> str:
    parse_host_port(text)
    return text


def _oid(text: str) -> str:
    return parse_oid(text)


IpAddress = Annotated[str, AfterValidator(_ip), Field(description="IPv4 or IPv6 address")]
PeerAddress = Annotated[str, AfterValidator(_addr),
                        Field(description="%any, an IPv4/IPv6 address, a CIDR or a host name")]
HostPort = Annotated[str, AfterValidator(_host_port), Field(description='"host:port"')]
IdentityText = Annotated[str, AfterValidator(validate_identity),
                         Field(description="FQDN, @FQDN, user@domain, IP, DN (CN=.., O=..), @#hex or %any")]
TsText = Annotated[str, AfterValidator(validate_ts),
                   Field(description='CIDR[proto/port], address range, "dynamic" or "%peer"')]
IkeProposal = Annotated[str, AfterValidator(validate_ike_proposal),
                        Field(description="swanctl IKE proposal, e.g. aes256gcm16-prfsha384-ecp384")]
EspProposal = Annotated[str, AfterValidator(validate_esp_proposal),
                        Field(description="swanctl ESP proposal, e.g. aes256gcm16-ecp384")]
Oid = Annotated[str, AfterValidator(_oid), Field(description="dotted OID")]
NonEmpty = Annotated[str, Field(min_length=1)]


class Strict(BaseModel):
    """Base: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _profile_name(name: str) -> str:
    names = available_profiles()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown profile{hint} (expected one of: {', '.join(names)})")
    return name


ProfileName = Annotated[str, AfterValidator(_profile_name), Field(description="compliance profile name")]


def _gateway_address(text: str) -> str:
    """An IPv4/IPv6 address or a host name: what a RFC 5685 §10 gateway identity can carry."""
    import ipaddress
    import re

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        labels = text.rstrip(".").split(".")
        if len(text) > 253 or not all(re.fullmatch(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", x) for x in labels):
            raise ValueError("not an IP address nor a host name") from None
        return text.rstrip(".")


GatewayAddress = Annotated[str, AfterValidator(_gateway_address), Field(description="address or host name")]


class GatewaySection(Strict):
    """``[gateway]``: profile, violation handling, state, data plane, listeners, DoS and retransmission."""

    profile: ProfileName = "pci-dss-4"
    on_violation: Literal["refuse", "quarantine"] = "refuse"
    state_dir: str = "state"
    dataplane: Literal["userspace", "xfrm", "none"] = "userspace"
    listen: list[IpAddress] = Field(default_factory=lambda: ["0.0.0.0", "::"])  # noqa: S104 (strongSwan's default)
    dos_protection: bool = True
    cookie_threshold: int = Field(default=30, ge=0)
    block_threshold: int = Field(default=5, ge=0)
    retransmit_tries: int = Field(default=5, ge=0, le=20)
    retransmit_timeout: float = Field(default=4.0, gt=0)
    retransmit_base: float = Field(default=1.8, ge=1.0)
    # automatic (re)initiation (start_action, dpd_action/close_action, trap) retries after a failure with
    # exponential backoff, 1, 2, 4 ... s, never waiting longer than this between attempts
    initiate_retry_max: Duration = Field(default=60, ge=1, le=86400)
    keep_alive: Duration = Field(default=20, ge=1)  # NAT keepalive interval (RFC 3948 §4; charon.keep_alive)
    metrics: HostPort | None = None
    # strongSwan's control interface for swanctl and vici tools (owner-only UNIX socket; off unless set)
    vici: str | None = Field(default=None, min_length=1)
    # RFC 5685: send new peers that announce REDIRECT_SUPPORTED to this gateway in IKE_SA_INIT (maintenance,
    # load sharing), only while more than ``redirect_above`` IKE SAs are established (0: every new peer)
    redirect_to: GatewayAddress | None = None
    redirect_above: int = Field(default=0, ge=0)
    # issue 22: IKE worker processes behind one port 500/4500 (SO_REUSEPORT + a BPF program on our SPI,
    # service/reuseport.py); "auto" (the default) = the number of cores, or one process while the
    # configuration uses something not shared across workers yet (logged); 1 = one process
    workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    # with workers > 1 and dataplane = "userspace": the machine's one data plane runs this many ESP worker
    # processes ("workers" of the standalone plane, dataplane/userspace/workers.py; "auto" = the cores);
    # more than 1 needs ESP in UDP (peers behind NAT, or encap = true)
    esp_workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = 1


class AuditSink(Strict):
    """``[[audit.sinks]]``: RFC 5425 syslog over TLS, or a JSON-lines file."""

    type: Literal["syslog-tls", "json"]
    address: HostPort | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> AuditSink:
        if self.type == "syslog-tls" and None in (self.address, self.ca, self.cert, self.key):
            raise ValueError('a "syslog-tls" sink needs "address", "ca", "cert" and "key" '
                             '(RFC 5425 §5.3: the SIEM authenticates the gateway too; PCI DSS 4.0.1 10.3.2)')
        if (self.cert is None) != (self.key is None):
            raise ValueError('"cert" and "key" of a sink go together')
        if self.type == "json" and self.path is None:
            raise ValueError('a "json" sink needs "path"')
        return self


class AuditSection(Strict):
    """``[audit]``: retention (PCI DSS 10.5.1) and SIEM sinks."""

    retention_days: int = Field(default=365, ge=1)
    online_days: int = Field(default=90, ge=1)
    # the same as spans people say ("1y", "3mo", "13w", "90d"), counted in days rounded up (audit/archive.py)
    retention: str | None = None
    online: str | None = None
    sinks: list[AuditSink] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _spans(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for span, days in (("retention", "retention_days"), ("online", "online_days")):
            if data.get(span) is None:
                continue
            if days in data:
                raise ValueError(f'give "{span}" or "{days}", not both')
            data[days] = span_days(str(data[span]))
        return data


class Authority(Strict):
    """``[authorities.NAME]``: a trust anchor and its revocation sources."""

    cacert: NonEmpty
    crls: list[str] = Field(default_factory=list)
    crl_uris: list[str] = Field(default_factory=list)
    ocsp_uris: list[str] = Field(default_factory=list)


AuthMethod = Literal["pubkey", "psk", "eap-mschapv2", "eap-md5", "eap-tls", "eap"]


class LocalAuth(Strict):
    """``connections.NAME.local`` (or ``local-1``), ``local-2``: how we authenticate in that round. ``eap-*``:
    we are the EAP client of the responder when we initiate (RFC 7296 §2.16), with the password of
    ``[secrets.eap.*]`` whose ``id`` is our EAP identity (``eap_id``, else ``id``). ``eap`` (swanctl
    ``local.auth = eap`` on a responder): EAP-only authentication (RFC 5998), no certificate or AUTH of
    ours; the mutual EAP method the user runs with RADIUS (``remote.auth = "eap-radius"``) authenticates
    us."""

    auth: AuthMethod = "pubkey"
    id: IdentityText | None = None
    certs: list[str] = Field(default_factory=list)
    key: str | None = None
    # RFC 7670 raw public key instead of a certificate (swanctl local.pubkeys): our public key file
    pubkeys: list[str] = Field(default_factory=list, max_length=1)
    eap_id: NonEmpty | None = None  # our EAP identity (swanctl eap_id); default: id

    @model_validator(mode="after")
    def _pubkey_needs_cert(self) -> LocalAuth:
        if self.auth == "pubkey" and (not (self.certs or self.pubkeys) or self.key is None):
            raise ValueError('auth = "pubkey" needs "key" and "certs" (or "pubkeys" for a raw public key)')
        if self.certs and self.pubkeys:
            raise ValueError('"certs" and "pubkeys" exclude each other (a certificate or a raw public key)')
        if self.pubkeys and self.auth != "pubkey":
            raise ValueError('"pubkeys" needs auth = "pubkey"')
        if self.auth == "eap-tls" and (not self.certs or self.key is None):
            raise ValueError('auth = "eap-tls" needs "certs" and "key" (our TLS client certificate)')
        return self


RemoteAuthMethod = Literal["pubkey", "psk", "eap-radius", "eap"]


class RemoteAuth(Strict):
    """``connections.NAME.remote`` (or ``remote-1``), ``remote-2``: how the peer must authenticate in that
    round (RFC 4739) and which peers may. ``eap-radius`` relays EAP to the ``[radius]`` servers; ``eap``
    (initiator with ``local.auth = "eap-tls"``): EAP-only (RFC 5998), the responder is authenticated by the
    EAP-TLS server certificate, validated against ``cacerts`` and naming ``id``."""

    auth: RemoteAuthMethod = "pubkey"
    id: IdentityText = "%any"
    # the EAP identity the user must give (swanctl eap_id); "%any" asks with EAP-Identity and takes any
    eap_id: IdentityText | None = None
    cacerts: list[str] = Field(default_factory=list)
    revocation: Literal["strict", "ifuri", "relaxed"] = "relaxed"
    cert_policy: list[Oid] = Field(default_factory=list)
    # RFC 4945 §5.1.3.12 (policy/eku.py): "relaxed" accepts a non-critical serverAuth/clientAuth EKU
    # without ipsecIKE (as strongSwan, libreswan, Windows do); "strict" wants ipsecIKE/anyEKU in any EKU
    eku: Literal["relaxed", "strict"] = "relaxed"
    peers: str | None = None
    # RFC 7670 raw public keys (swanctl remote.pubkeys): key files or "sha256:" SPKI fingerprints; the peer
    # must hold one of them, no certificate is validated
    pubkeys: list[NonEmpty] = Field(default_factory=list)

    @model_validator(mode="after")
    def _pubkeys_alone(self) -> RemoteAuth:
        if self.pubkeys and self.auth != "pubkey":
            raise ValueError('"pubkeys" needs auth = "pubkey"')
        if self.pubkeys and self.cacerts:
            raise ValueError('"pubkeys" and "cacerts" exclude each other (pinned raw public keys, or '
                             "certificates validated against authorities)")
        return self


class Child(Strict):
    """``connections.NAME.children.NAME``: a Child SA (ESP) policy."""

    local_ts: list[TsText] = Field(default_factory=lambda: ["dynamic"])
    remote_ts: list[TsText] = Field(default_factory=lambda: ["dynamic"])
    esp_proposals: list[EspProposal] = Field(default_factory=lambda: [DEFAULT_ESP_PROPOSAL], min_length=1)
    rekey_time: Duration = 3600
    life_time: Duration | None = None
    rand_time: Duration | None = None
    rekey_bytes: Size = 0
    life_bytes: Size = 0
    rekey_packets: Size = 0
    life_packets: Size = 0
    replay_window: int = Field(default=32, ge=0, le=65536)
    # RFC 9611: besides this Child SA (the fallback), up to N more with the same selectors, one per resource
    # (CPU/worker), created when the peer answers with SA_RESOURCE_INFO; as responder up to N are accepted
    per_resource_sas: int = Field(default=0, ge=0, le=64)
    mode: Literal["tunnel", "transport"] = "tunnel"
    start_action: Literal["none", "start", "trap"] = "none"
    dpd_action: Literal["none", "clear", "trap", "restart"] = "clear"
    close_action: Literal["none", "trap", "start"] = "none"

    @property
    def effective_life_time(self) -> int:
        """Hard lifetime: ``life_time``, else strongSwan's default ``rekey_time`` + 10%."""
        return self.life_time if self.life_time is not None else self.rekey_time * 11 // 10

    @property
    def effective_rand_time(self) -> int:
        """Jitter: ``rand_time``, else strongSwan's default ``life_time - rekey_time``."""
        if self.rand_time is not None:
            return self.rand_time
        return max(0, self.effective_life_time - self.rekey_time)

    @model_validator(mode="after")
    def _lifetimes_consistent(self) -> Child:
        if self.life_time is not None and self.rekey_time and self.life_time <= self.rekey_time:
            raise ValueError(f"life_time ({format_duration(self.life_time)}) must be longer than "
                             f"rekey_time ({format_duration(self.rekey_time)})")
        if self.rand_time is not None and self.rekey_time and self.rand_time >= self.rekey_time:
            raise ValueError(f"rand_time ({format_duration(self.rand_time)}) must be shorter than "
                             f"rekey_time ({format_duration(self.rekey_time)})")
        return self


def _fragmentation(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if value in ("yes", "accept", "force", "no"):
        return str(value)
    raise ValueError('expected true, false, "yes", "accept", "force" or "no"')


Fragmentation = Annotated[bool | str, BeforeValidator(_fragmentation),
                          WithJsonSchema({"enum": [True, False, "yes", "accept", "force", "no"]})]


_FULL_TUNNEL = ("0.0.0.0/0", "::/0")


class Group(Strict):
    """``[connections.NAME.groups.GROUP]``: the policy of users whose RADIUS ``Class`` or ``Filter-Id`` is
    GROUP: the selectors they reach (``local_ts``: ``0.0.0.0/0`` = full tunnel, else a split tunnel
    announced as INTERNAL_IP4/6_SUBNET). ``cde = true`` marks access to the cardholder data environment:
    such users must have a full tunnel (PCI DSS 4.0.1 1.4/8.4.2 remote access into the CDE; a split tunnel
    would bridge the CDE and the user's local network)."""

    local_ts: list[TsText] = Field(min_length=1)
    cde: bool = False

    @model_validator(mode="after")
    def _cde_full_tunnel(self) -> Group:
        if self.cde and not any(ts in _FULL_TUNNEL for ts in self.local_ts):
            raise ValueError(f"a group with cde = true must be full tunnel: local_ts = [\"0.0.0.0/0\"] "
                             f"(and \"::/0\"), not the split tunnel {self.local_ts} (PCI DSS 4.0.1 "
                             f"1.4.2 and 8.4.2: remote access into the CDE)")
        return self


class Connection(Strict):
    """``[connections.NAME]``: an IKE SA policy with its children."""

    local_addrs: list[PeerAddress] = Field(default_factory=list)
    remote_addrs: list[PeerAddress] = Field(default_factory=lambda: ["%any"])
    proposals: list[IkeProposal] = Field(default_factory=lambda: [DEFAULT_IKE_PROPOSAL], min_length=1)
    rekey_time: Duration = 14400
    reauth_time: Duration = 0
    over_time: Duration | None = None
    rand_time: Duration | None = None
    dpd_delay: Duration = 0
    dpd_timeout: Duration | None = None
    mobike: bool = True
    fragmentation: Fragmentation = True
    encap: bool = False
    unique: Literal["no", "never", "keep", "replace"] = "no"
    if_id: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)
    local: LocalAuth = Field(validation_alias=AliasChoices("local", "local-1"))
    remote: RemoteAuth = Field(default_factory=RemoteAuth,
                               validation_alias=AliasChoices("remote", "remote-1"))
    # a second authentication round (RFC 4739), as swanctl's remote-2: EAP of the user after the device
    remote_2: RemoteAuth | None = Field(default=None, alias="remote-2")
    # our second round as initiator (RFC 4739), as swanctl's local-2: EAP after our certificate
    local_2: LocalAuth | None = Field(default=None, alias="local-2")
    pools: list[NonEmpty] = Field(default_factory=list)  # [pools.NAME] for virtual IPs (swanctl pools)
    groups: dict[str, Group] = Field(default_factory=dict)  # RADIUS Class/Filter-Id -> tunnel policy
    ppk_id: NonEmpty | None = None  # RFC 8784 post-quantum preshared key: [secrets.ppk.*] with this id
    ppk_required: bool = False  # refuse the IKE SA when the peer does not use that PPK
    # RFC 5685 §6: peers of this connection are sent to this gateway in the IKE_AUTH response, once
    # authenticated (no Child SA here); only peers that announced REDIRECT_SUPPORTED
    redirect_to: GatewayAddress | None = None
    # RFC 4806 OCSP in IKE, as swanctl's connections.<conn>.ocsp (docs/pki.md "OCSP stapling")
    ocsp: Literal["never", "reply", "request", "both"] = "never"
    children: dict[str, Child] = Field(default_factory=dict)

    @property
    def effective_over_time(self) -> int:
        """Hard-limit margin: ``over_time``, else strongSwan's 10% of the longer of rekey/reauth time."""
        if self.over_time is not None:
            return self.over_time
        return max(self.rekey_time, self.reauth_time) // 10

    @model_validator(mode="after")
    def _rand_below_rekey(self) -> Connection:
        if self.rand_time is not None and self.rekey_time and self.rand_time >= self.rekey_time:
            raise ValueError(f"rand_time ({format_duration(self.rand_time)}) must be shorter than "
                             f"rekey_time ({format_duration(self.rekey_time)})")
        return self

    @model_validator(mode="after")
    def _rounds(self) -> Connection:
        second = self.remote_2
        if second is not None:
            if second.auth != "eap-radius":
                raise ValueError('remote-2 must be auth = "eap-radius" (the user after the device)')
            if self.remote.auth == "eap-radius":
                raise ValueError("with remote-2, round 1 (remote) authenticates the device: pubkey or psk")
        mine = self.local_2
        if mine is not None:
            if not mine.auth.startswith("eap-"):
                raise ValueError('local-2 must be auth = "eap-mschapv2", "eap-md5" or "eap-tls" (EAP '
                                 'after our certificate)')
            if self.local.auth.startswith("eap-"):
                raise ValueError("with local-2, round 1 (local) is our certificate or PSK")
        if self.local.auth == "eap" and (self.remote.auth != "eap-radius" or self.remote_2 is not None
                                         or self.local_2 is not None):
            raise ValueError('local auth = "eap" needs remote auth = "eap-radius" as the only round '
                             '(EAP-only, RFC 5998: the EAP method authenticates both sides)')
        if self.remote.auth == "eap" and (self.local.auth != "eap-tls" or self.local_2 is not None
                                          or self.remote_2 is not None):
            raise ValueError('remote auth = "eap" needs local auth = "eap-tls" as the only round (EAP-only, '
                             'RFC 5998: our only mutual EAP method)')
        if self.local.auth.startswith("eap-") and self.remote.auth not in ("pubkey", "eap"):
            raise ValueError('EAP-only authentication (remote auth = "eap", RFC 5998) or the responder\'s '
                             'certificate (remote auth = "pubkey") must authenticate the responder with '
                             'local auth = "eap-*"')
        return self


def _network(text: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"expected a network in CIDR notation: {exc}") from None
    return text


class Pool(Strict):
    """``[pools.NAME]``: virtual IP addresses for remote-access peers (swanctl ``pools``)."""

    addrs: Annotated[str, AfterValidator(_network), Field(description="network in CIDR notation")]
    dns: list[IpAddress] = Field(default_factory=list)


class RadiusServer(Strict):
    """``[radius.servers.NAME]``: one RADIUS server (strongSwan eap-radius ``servers``), tried in order."""

    address: IpAddress
    auth_port: int = Field(default=1812, ge=1, le=65535)
    acct_port: int = Field(default=1813, ge=1, le=65535)
    # UDP: the shared secret, one line, mode 0600 (never inline: it would end up in logs)
    secret_file: NonEmpty | None = None
    # "tls": RADIUS over TLS (RFC 6614) to tls_port, mutual certificates, secret "radsec"
    transport: Literal["udp", "tls"] = "udp"
    tls_port: int = Field(default=2083, ge=1, le=65535)
    ca: NonEmpty | None = None  # RadSec: CA certificate file the server's certificate must chain to
    cert: NonEmpty | None = None  # RadSec: our client certificate file (chain)
    key: NonEmpty | None = None  # RadSec: its private key file (mode 0600)
    server_name: NonEmpty | None = None  # RadSec: the name the server's certificate must carry

    @model_validator(mode="after")
    def _transport(self) -> RadiusServer:
        if self.transport == "udp" and self.secret_file is None:
            raise ValueError('a RADIUS server over UDP needs "secret_file"')
        if self.transport == "tls" and (self.ca is None or self.cert is None or self.key is None):
            raise ValueError('a RadSec server (transport = "tls") needs "ca", "cert" and "key" (mutual TLS, '
                             'RFC 6614 §2.3)')
        return self


class RadiusSection(Strict):
    """``[radius]``: where EAP is relayed (RFC 3579) for ``auth = "eap-radius"``."""

    servers: dict[str, RadiusServer] = Field(default_factory=dict)
    nas_identifier: str = Field(default="ikeguard", min_length=1)
    retransmit_timeout: float = Field(default=2.0, gt=0, le=30)  # seconds per try
    retransmit_tries: int = Field(default=3, ge=1, le=10)  # tries per server before the next one
    accounting: bool = False  # Accounting-Request Start/Stop per EAP user session (RFC 2866)
    accounting_interval: Duration = Field(default=0, ge=0)  # Interim-Update period (strongSwan's name)


class IkeSecret(Strict):
    """``[secrets.ike.NAME]``: a PSK bound to exact identities, from a file (0600) or inline."""

    ids: list[IdentityText] = Field(default_factory=list)
    secret: SecretStr | None = Field(default=None, json_schema_extra={"writeOnly": True})
    secret_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> IkeSecret:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError('give exactly one of "secret_file" (preferred, mode 0600) or "secret"')
        return self


class PpkSecret(Strict):
    """``[secrets.ppk.NAME]``: an RFC 8784 post-quantum preshared key named by its PPK_ID (``id``), from a
    file (0600) or inline; as strongSwan's ``secrets.ppk*`` (at least 256 bits of entropy are advised)."""

    id: NonEmpty
    secret: SecretStr | None = Field(default=None, json_schema_extra={"writeOnly": True})
    secret_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PpkSecret:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError('give exactly one of "secret_file" (preferred, mode 0600) or "secret"')
        return self


class EapSecret(Strict):
    """``[secrets.eap.NAME]``: the password of our EAP identity ``id`` when we are the EAP client (swanctl
    ``secrets.eap*``); only from a file (0600, one line, 0x/0s prefixes as for PSKs), never inline."""

    id: NonEmpty
    secret_file: NonEmpty


class SecretsSection(Strict):
    """``[secrets]``: ``ike`` pre-shared keys, ``ppk`` post-quantum preshared keys (RFC 8784) and ``eap``
    passwords of our EAP identities."""

    ike: dict[str, IkeSecret] = Field(default_factory=dict)
    ppk: dict[str, PpkSecret] = Field(default_factory=dict)
    eap: dict[str, EapSecret] = Field(default_factory=dict)


class HaSection(Strict):
    """``[ha]``: an active/standby pair sharing a virtual address (keepalived) whose IKE and Child SA state is
    replicated through etcd, so the standby continues every SA without renegotiation (docs/ha.md)."""

    enabled: bool = False
    node: str = Field(default="", max_length=64)  # this node's name in etcd and in ``ha status``
    etcd_endpoints: list[NonEmpty] = Field(default_factory=list)  # http(s)://host:port of the etcd cluster
    etcd_ca: str | None = None  # etcd over TLS: CA, client certificate and key files (mutual TLS)
    etcd_cert: str | None = None
    etcd_key: str | None = None
    prefix: str = Field(default="/ikeguard/ha/", min_length=1)
    key_file: str | None = None  # the pair's AES-256 key (32 octets, raw or hex), mode 0600
    sync_interval: float = Field(default=1.0, gt=0, le=60)  # seconds between replications
    max_state_age: float = Field(default=30.0, gt=0)  # a standby refuses to take over older state
    seq_margin: int = Field(default=1 << 20, ge=1, le=1 << 31)  # ESP sequence numbers skipped on takeover
    lease_ttl: int = Field(default=3, ge=1, le=60)  # etcd leader lease (fencing): seconds
    # direct heartbeat to the other node (docs/ha.md "Split brain"): "host:port" of the peer's listener
    peer_heartbeat: str | None = None
    heartbeat_listen: str | None = None  # "addr:port" this node listens on (needed with peer_heartbeat)
    heartbeat_interval: float = Field(default=0.2, gt=0, le=5)  # seconds between beats
    heartbeat_hold: float = Field(default=1.0, gt=0, le=30)  # a standby's promise after each active beat
    keep_serving: bool = True  # etcd lost: keep serving while the standby confirms it holds off

    @model_validator(mode="after")
    def _complete(self) -> HaSection:
        if self.enabled and (not self.node or not self.etcd_endpoints or self.key_file is None):
            raise ValueError('[ha] enabled needs "node", "etcd_endpoints" and "key_file"')
        if (self.peer_heartbeat is None) != (self.heartbeat_listen is None):
            raise ValueError('[ha] "peer_heartbeat" and "heartbeat_listen" go together')
        if self.heartbeat_hold < 3 * self.heartbeat_interval:
            raise ValueError('[ha] "heartbeat_hold" must be at least 3 x "heartbeat_interval"')
        return self


def _expiry(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(0, 0), tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            return _expiry(dt.datetime.fromisoformat(value))
        except ValueError:
            pass
    raise ValueError('expected a date or date-time, e.g. 2026-12-31 or "2026-12-31T00:00:00Z"')


Expiry = Annotated[dt.datetime, BeforeValidator(_expiry),
                   WithJsonSchema({"type": "string", "format": "date-time"})]


class Waiver(Strict):
    """``[[waivers]]``: a time-boxed, owned, ticketed exception to one rule in one scope."""

    rule: NonEmpty
    scope: NonEmpty
    reason: NonEmpty
    owner: NonEmpty
    ticket: NonEmpty
    expires: Expiry


class Enrollment(Strict):
    """What ``[acme]`` and ``[scep]`` share: the connection whose certificate they manage and when it is
    renewed (docs/pki.md)."""

    connection: NonEmpty
    renew_at: float = Field(default=2 / 3, gt=0, lt=1)  # fraction of the lifetime after which to renew
    retry_min: Duration = Field(default=30, ge=1)  # first retry after a failed renewal, doubling up to
    retry_max: Duration = Field(default=3600, ge=1)


class AcmeSection(Enrollment):
    """``[acme]``: the certificate of one connection (``local.certs[0]``, for ``local.key``, a file or a token
    key) obtained from an ACME CA (RFC 8555, ``http-01``; IP identifiers RFC 8738) at first start and renewed
    when ``renew_at`` of its lifetime has passed (docs/pki.md)."""

    directory: NonEmpty  # the CA's directory URL
    account_key: NonEmpty  # PEM EC P-256 or RSA key of the ACME account (mode 0600)
    identifiers: list[NonEmpty] = Field(min_length=1)  # DNS names and IP addresses in the certificate
    ca_bundle: str | None = None  # CA certificates for the ACME server's HTTPS; not set: the system's
    contact: list[NonEmpty] = Field(default_factory=list)  # e.g. "mailto:pki@example.net"
    http01_listen: NonEmpty = "0.0.0.0:80"  # where the http-01 responder listens during an order


def _sha256_hex(value: str) -> str:
    text = value.replace(":", "").strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("expected the SHA-256 fingerprint of the CA certificate: 64 hex digits "
                         "(colons allowed), e.g. from `openssl x509 -noout -fingerprint -sha256`")
    return text


class ScepSection(Enrollment):
    """``[scep]``: the certificate of one connection obtained from a SCEP CA (RFC 8894) at first start and
    renewed when ``renew_at`` of its lifetime has passed; ``local.key`` must be RSA (docs/pki.md)."""

    url: NonEmpty  # the CA's SCEP URL, e.g. "http://ca.example.net/scep"
    ca_fingerprint: Annotated[str, AfterValidator(_sha256_hex)]  # SHA-256 of the CA certificate
    challenge: NonEmpty  # where the challenge password is: "file:PATH", a path, or "env:NAME"
    identifiers: list[NonEmpty] = Field(min_length=1)  # DNS names and IP addresses in the certificate
    common_name: str | None = None  # the subject's CN; default: the first identifier


class ConfigModel(Strict):
    """The whole configuration file."""

    gateway: GatewaySection = Field(default_factory=GatewaySection)
    audit: AuditSection = Field(default_factory=AuditSection)
    authorities: dict[str, Authority] = Field(default_factory=dict)
    connections: dict[str, Connection] = Field(default_factory=dict)
    secrets: SecretsSection = Field(default_factory=SecretsSection)
    radius: RadiusSection = Field(default_factory=RadiusSection)
    pools: dict[str, Pool] = Field(default_factory=dict)
    ha: HaSection = Field(default_factory=HaSection)
    waivers: list[Waiver] = Field(default_factory=list)
    acme: AcmeSection | None = None
    scep: ScepSection | None = None

    @model_validator(mode="after")
    def _enrollment_connection(self) -> ConfigModel:
        for name, section in (("acme", self.acme), ("scep", self.scep)):
            if section is not None:
                conn = self.connections.get(section.connection)
                if conn is None or conn.local.auth != "pubkey" or not conn.local.certs:
                    raise ValueError(f"[{name}] connection {section.connection!r}: needs a connection "
                                     f'with local.auth = "pubkey" and local.certs (the file {name.upper()} '
                                     "writes)")
        acme, scep = self.acme, self.scep
        if acme is not None and scep is not None and acme.connection == scep.connection:
            raise ValueError(f"[acme] and [scep] both manage connection {acme.connection!r}: choose one")
        return self

    @model_validator(mode="after")
    def _radius_for_eap(self) -> ConfigModel:
        for name, conn in self.connections.items():
            rounds = [conn.remote, *([conn.remote_2] if conn.remote_2 else [])]
            if any(r.auth == "eap-radius" for r in rounds) and not self.radius.servers:
                raise ValueError(f'connection {name} relays EAP to RADIUS: add a [radius.servers.NAME]')
            for pool in conn.pools:
                if pool not in self.pools:
                    raise ValueError(f"connection {name} names pool {pool!r}: no [pools.{pool}]")
        return self


class PeerEntry(Strict):
    """``[[peer]]`` in a peer inventory file: one exact identity and what ``%peer`` means for it."""

    id: IdentityText
    remote_ts: list[TsText] = Field(min_length=1)
    enabled: bool = True
    ticket: str | None = None


class PeerFile(Strict):
    """A peer inventory file: a list of ``[[peer]]`` tables."""

    peer: list[PeerEntry] = Field(default_factory=list)
