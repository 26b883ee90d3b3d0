"""Everything a running gateway needs, built once from a configuration file (``ikeguard run`` and reload).

``build_plan`` loads and enforces the config (``on_violation``: refuse raises, quarantine drops the
offending connections/peers), then turns each enabled ``[connections.NAME]`` into the engine's
``ConnectionSettings``: proposals, PSKs from ``[secrets.ike]``, the private key and certificates from their
files, and a ``ConnectionTrust`` (anchors, revocation source, validation policy derived from the profile's
certificate rules) for the PKI validator. ``%peer`` is resolved through the live peer inventories, so
``peers disable`` takes effect at the next IKE_AUTH without a reload.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeguard.audit.service import SinkSpec
from ikeguard.crypto.pkcs11_key import TokenError, is_pkcs11_uri, open_token_key, safe_uri_text
from ikeguard.crypto.signatures import PrivateKey
from ikeguard.engine.pools import PoolSettings
from ikeguard.engine.ppk import PpkSettings
from ikeguard.engine.retransmit import RetransmitPolicy
from ikeguard.engine.settings import (
    AuthKind,
    ChildSettings,
    ConnectionSettings,
    EngineSettings,
    GroupSettings,
    LocalAuth,
    RemoteAuth,
)
from ikeguard.pki.engine_validator import ConnectionTrust, PkiValidator
from ikeguard.pki.fetch import DeferredFetcher
from ikeguard.pki.loading import PkiLoadError, load_certificates
from ikeguard.pki.raw_keys import PinnedKey, RawKeyError, load_pin, spki_der
from ikeguard.pki.trust import AuthoritySpec, build_trust
from ikeguard.pki.validation_policy import EkuMode, RevocationMode, ValidationPolicy
from ikeguard.policy.enforce import Enforcement, load_and_enforce
from ikeguard.policy.errors import ConfigError, Finding
from ikeguard.policy.identity import parse_identity
from ikeguard.policy.inventory import PeerInventory
from ikeguard.policy.loader import LoadedConfig
from ikeguard.policy.model import Child, Connection
from ikeguard.policy.model import LocalAuth as LocalAuthConfig
from ikeguard.policy.model import RadiusServer as RadiusServerConfig
from ikeguard.policy.profile import Profile, load_profile
from ikeguard.policy.proposals import parse_configured
from ikeguard.policy.psk import PskError, group_keys_allowed, read_secret, resolve_psks
from ikeguard.policy.ts import TrafficSelector
from ikeguard.service.radius import RadiusClient, RadiusServer
from ikeguard.service.radsec import RADSEC_SECRET, TlsSettings
from ikeguard.wire.proposal_string import ProposalSpec
from ikeguard.wire.transforms import Transform

IKE_PORT = 500
NATT_PORT = 4500
_CURVE_BITS = {"secp256r1": 256, "secp384r1": 384, "secp521r1": 521, "brainpoolP256r1": 256,
               "brainpoolP384r1": 384, "brainpoolP512r1": 512}


class ConfigRefused(ConfigError):
    """The configuration cannot run: every finding (file, key, value, rule), as ``ikeguard check`` lists."""


@dataclass(frozen=True)
class ChildActions:
    """``start_action``, ``dpd_action`` and ``close_action`` of one child (swanctl semantics)."""

    start_action: str = "none"
    dpd_action: str = "clear"
    close_action: str = "none"


class InventorySelectors:
    """The engine's ``PeerSelectors``: ``%peer`` = the subnets the inventory binds to an enabled identity."""

    def __init__(self, inventories: dict[str, PeerInventory]) -> None:
        self.inventories = inventories

    def selectors_for(self, connection: str, identity: str) -> tuple[TrafficSelector, ...] | None:
        """Selectors of ``identity`` in ``connection``'s inventory; None when unlisted or disabled."""
        inventory = self.inventories.get(connection)
        if inventory is None:
            return None
        try:
            return inventory.bound_selectors(parse_identity(identity))
        except ValueError:
            return None


@dataclass
class GatewayPlan:
    """A loaded, enforced configuration translated for the engine, the PKI validator and the service."""

    config: LoadedConfig
    enforcement: Enforcement
    engine_settings: EngineSettings
    connections: dict[str, ConnectionSettings]
    validator: PkiValidator
    selectors: InventorySelectors
    child_actions: dict[tuple[str, str], ChildActions]
    local_addrs: dict[str, tuple[str, ...]]
    listen: tuple[str, ...]
    dataplane: str
    state_dir: Path
    audit_sinks: tuple[SinkSpec, ...]
    retention_days: int
    online_days: int
    metrics: tuple[str, int] | None
    ike_port: int = IKE_PORT
    natt_port: int = NATT_PORT
    certificates: dict[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    radius: RadiusClient | None = None  # the [radius] servers EAP is relayed to (service/radius.py)
    radius_accounting: bool = False  # [radius] accounting: Start/Stop of EAP users (service/accounting.py)
    radius_interval: float = 0.0  # [radius] accounting_interval: Interim-Update period (0: none)

    @property
    def profile(self) -> Profile:
        """The compliance profile the gateway enforces."""
        return self.engine_settings.profile

    def connection_fingerprint(self, name: str) -> tuple[object, ...]:
        """Equal for two plans when a reload may keep ``name``'s SAs (certificate file contents excluded)."""
        from ikeguard.policy.diff import connection_dependencies

        conn = self.config.model.connections[name]
        return conn.model_dump_json(), connection_dependencies(self.config, name)

    def restrict_esp(self, supported: Callable[[Transform], bool]) -> None:
        """Drop ESP transforms the data plane cannot run (ARCHITECTURE rule 4); a child left with no
        proposal keeps none, so the engine refuses it rather than negotiate something uninstallable."""
        for name, conn in self.connections.items():
            children = tuple(replace(c, esp_proposals=_restrict(c.esp_proposals, supported))
                             for c in conn.children)
            self.connections[name] = replace(conn, children=children)


def _restrict(specs: Iterable[ProposalSpec], ok: Callable[[Transform], bool]) -> tuple[ProposalSpec, ...]:
    out = []
    for spec in specs:
        encr = tuple(t for t in spec.encr if ok(t))
        integ = tuple(t for t in spec.integ if ok(t))
        if encr and (integ or all(t.is_aead for t in encr)):
            out.append(replace(spec, encr=encr, integ=integ if not all(t.is_aead for t in encr) else ()))
    return tuple(out)


def _finding(config: LoadedConfig, path: str, value: str | None, message: str) -> Finding:
    return Finding("config.credentials", message, path=path, value=value, file=str(config.path))


def _load_key(path: Path) -> PrivateKey:
    data = path.read_bytes()
    pem = b"-----BEGIN" in data
    loader = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    key: Any = loader(data, password=None)
    return key  # type: ignore[no-any-return]


class _Builder:
    """Collects findings while translating every enabled connection (all problems reported at once)."""

    def __init__(self, config: LoadedConfig, profile: Profile) -> None:
        self.config = config
        self.profile = profile
        self.model = config.model
        self.findings: list[Finding] = []
        self.validation = _validation_policy(profile)
        self.fetcher = DeferredFetcher()  # no I/O: the gateway fetches off the loop (revocation_fetch.py)
        self.psk_choices = resolve_psks(config, config.enabled_connections(),
                                        allow_group_key=group_keys_allowed(profile))

    def fail(self, path: str, value: str | None, message: str) -> None:
        self.findings.append(_finding(self.config, path, value, message))

    def psk_for(self, name: str, conn: Connection) -> bytes:
        """The decoded key of the one secret bound to ``conn`` (``policy.psk``: the remote id must be named
        exactly, best match of both ids, no secret shared between peers; RFC 7296 §2.15)."""
        choice = self.psk_choices.get(name)
        if choice is None or choice.secret is None:
            problem = choice.problem if choice is not None else "no pre-shared key resolved"
            path = choice.key if choice is not None and choice.key else f"connections.{name}.remote.id"
            self.fail(path, conn.remote.id if path.endswith("remote.id") else None, problem or "")
            return b""
        try:
            return read_secret(self.config, choice.secret).value
        except PskError as exc:
            self.fail(exc.key, None, exc.reason)
            return b""

    def local_auth(self, name: str, conn: Connection) -> tuple[LocalAuth, tuple[x509.Certificate, ...]]:
        local = conn.local
        certs: list[x509.Certificate] = []
        for i, rel in enumerate(local.certs):
            try:
                certs += load_certificates(self.config.resolve(rel).read_bytes())
            except (OSError, PkiLoadError) as exc:
                self.fail(f"connections.{name}.local.certs[{i}]", rel, f"cannot load the certificate: {exc}")
        identity = local.id or self._default_local_id(name, conn, certs)
        if local.auth.startswith("eap-"):
            return self.eap_local(name, "local", local, identity), tuple(certs)
        if local.auth == "eap":  # RFC 5998: only our IDr, the mutual EAP method authenticates us
            return LocalAuth(AuthKind.EAP_ONLY, identity), ()
        if local.auth == "psk":
            return LocalAuth(AuthKind.PSK, identity, psk=self.psk_for(name, conn)), tuple(certs)
        key: PrivateKey | None = None
        if local.key is None:
            self.fail(f"connections.{name}.local.key", None, "auth = \"pubkey\" needs a private key file")
        else:
            try:
                if is_pkcs11_uri(local.key):  # RFC 7512: the key stays in the token
                    key = open_token_key(local.key, base=self.config.base_dir)
                else:
                    key = _load_key(self.config.resolve(local.key))
            except TokenError as exc:
                self.fail(f"connections.{name}.local.key", safe_uri_text(local.key), str(exc))
            except (OSError, ValueError, TypeError) as exc:
                self.fail(f"connections.{name}.local.key", local.key,
                          f"cannot load the private key ({type(exc).__name__}; "
                          "encrypted keys are not supported)")
        if local.pubkeys:  # RFC 7670: a raw public key, which must be the private key's
            self._check_own_pubkey(name, local.pubkeys[0], key)
            return LocalAuth(AuthKind.PUBKEY, identity, private_key=key, raw_public_key=True), ()
        if not certs:
            self.fail(f"connections.{name}.local.certs", None, "auth = \"pubkey\" needs a certificate")
        return LocalAuth(AuthKind.PUBKEY, identity, private_key=key, certs=tuple(certs)), tuple(certs)

    def _check_own_pubkey(self, name: str, ref: str, key: PrivateKey | None) -> None:
        try:
            pin = load_pin(ref, self.config.base_dir)
        except RawKeyError as exc:
            self.fail(f"connections.{name}.local.pubkeys[0]", ref, str(exc))
            return
        if pin.public_key is None:
            self.fail(f"connections.{name}.local.pubkeys[0]", ref, "our raw public key must be a key file, "
                      "not a fingerprint")
        elif key is not None and spki_der(key.public_key()) != spki_der(pin.public_key):
            self.fail(f"connections.{name}.local.pubkeys[0]", ref, "this public key is not the one of "
                      "local.key")

    def pins(self, name: str, conn: Connection) -> tuple[PinnedKey, ...]:
        """``remote.pubkeys``: the peer's pinned raw public keys (RFC 7670), files or fingerprints."""
        pins: list[PinnedKey] = []
        for i, ref in enumerate(conn.remote.pubkeys):
            try:
                pins.append(load_pin(ref, self.config.base_dir))
            except RawKeyError as exc:
                self.fail(f"connections.{name}.remote.pubkeys[{i}]", ref, str(exc))
        return tuple(pins)

    def eap_local(self, name: str, section: str, local: LocalAuthConfig, identity: str) -> LocalAuth:
        """Our EAP client round: the method and the password of ``[secrets.eap.*]`` with our EAP identity;
        EAP-TLS: our TLS client certificate and key instead (a key file: pyOpenSSL signs with it)."""
        eap_id = local.eap_id or identity
        if local.auth == "eap-tls":
            return self._eap_tls_local(name, section, local, identity, eap_id)
        names = [n for n, s in self.model.secrets.eap.items() if s.id == eap_id]
        secret = b""
        if len(names) != 1:
            problem = (f"no [secrets.eap.*] has id {eap_id!r}" if not names
                       else f"several [secrets.eap.*] have id {eap_id!r}: {names}")
            self.fail(f"connections.{name}.{section}.auth", local.auth, problem)
        else:
            secret_file = self.model.secrets.eap[names[0]].secret_file
            try:
                loose = self.config.resolve(secret_file).stat().st_mode & 0o077
            except OSError:
                loose = 0  # read_secret names the problem
            if loose:
                self.fail(f"secrets.eap.{names[0]}.secret_file", secret_file, "the EAP password file must be "
                          "readable only by its owner (chmod 600)")
            else:
                try:
                    secret = read_secret(self.config, names[0], "eap").value
                except PskError as exc:
                    self.fail(exc.key, None, exc.reason)
        return LocalAuth(AuthKind.EAP, identity, eap_method=local.auth.removeprefix("eap-"), eap_id=eap_id,
                         eap_secret=secret)

    def _eap_tls_local(self, name: str, section: str, local: LocalAuthConfig, identity: str,
                       eap_id: str) -> LocalAuth:
        certs: list[x509.Certificate] = []
        for i, rel in enumerate(local.certs):
            try:
                certs += load_certificates(self.config.resolve(rel).read_bytes())
            except (OSError, PkiLoadError) as exc:
                self.fail(f"connections.{name}.{section}.certs[{i}]", rel,
                          f"cannot load the certificate: {exc}")
        key: PrivateKey | None = None
        assert local.key is not None
        if is_pkcs11_uri(local.key):
            self.fail(f"connections.{name}.{section}.key", safe_uri_text(local.key),
                      "EAP-TLS needs a key file (pyOpenSSL cannot sign with a PKCS#11 token key)")
        else:
            try:
                key = _load_key(self.config.resolve(local.key))
            except (OSError, ValueError, TypeError) as exc:
                self.fail(f"connections.{name}.{section}.key", local.key,
                          f"cannot load the private key ({type(exc).__name__})")
        return LocalAuth(AuthKind.EAP, identity, private_key=key, certs=tuple(certs), eap_method="tls",
                         eap_id=eap_id)

    def _default_local_id(self, name: str, conn: Connection, certs: list[x509.Certificate]) -> str:
        """strongSwan's defaults: the certificate's subject DN, else the first local address."""
        if certs:
            return certs[0].subject.rfc4514_string()
        for addr in conn.local_addrs:
            try:
                return str(ipaddress.ip_address(addr))
            except ValueError:
                continue
        self.fail(f"connections.{name}.local.id", None, "no local.id, no certificate and no local address "
                  "to identify this gateway: set local.id")
        return "%any"

    def trust(self, name: str, conn: Connection) -> ConnectionTrust | None:
        if conn.remote.auth not in ("pubkey", "eap") or conn.remote.pubkeys:
            return None
        specs: list[AuthoritySpec] = []
        for i, ref in enumerate(conn.remote.cacerts):
            authority = self.model.authorities.get(ref)
            if authority is not None:
                specs.append(AuthoritySpec(ref, self.config.resolve(authority.cacert),
                                           tuple(self.config.resolve(c) for c in authority.crls),
                                           tuple(authority.crl_uris), tuple(authority.ocsp_uris)))
            else:
                path = self.config.resolve(ref)
                if not path.is_file():
                    self.fail(f"connections.{name}.remote.cacerts[{i}]", ref,
                              "neither an [authorities] name nor a readable certificate file")
                    continue
                specs.append(AuthoritySpec(ref, path))
        if not specs:
            self.fail(f"connections.{name}.remote.cacerts", None,
                      "auth = \"pubkey\" needs at least one authority to validate peer certificates")
            return None
        try:
            trust = build_trust(specs, fetcher=self.fetcher)
        except PkiLoadError as exc:
            self.fail(f"connections.{name}.remote.cacerts", None, str(exc))
            return None
        policy = replace(self.validation, revocation=RevocationMode(conn.remote.revocation),
                         required_oids=tuple(conn.remote.cert_policy), eku=EkuMode(conn.remote.eku))
        return ConnectionTrust(trust.anchors, trust.revocation, policy)

    def connection(self, name: str,
                   conn: Connection) -> tuple[ConnectionSettings, tuple[x509.Certificate, ...]]:
        local, certs = self.local_auth(name, conn)
        remote_id = None if conn.remote.id == "%any" else conn.remote.id
        if conn.remote.auth == "psk":
            remote = RemoteAuth(AuthKind.PSK, remote_id, psk=self.psk_for(name, conn) if local.kind is
                                AuthKind.PUBKEY else local.psk)
        elif conn.remote.auth == "eap":  # RFC 5998: the EAP-TLS server authenticates the responder
            remote = RemoteAuth(AuthKind.EAP_ONLY, remote_id)
        elif conn.remote.auth == "eap-radius":
            remote = RemoteAuth(AuthKind.EAP_RADIUS, remote_id, eap_id=conn.remote.eap_id)
        else:
            remote = RemoteAuth(AuthKind.PUBKEY, remote_id, pubkeys=self.pins(name, conn))
        second = conn.remote_2
        remote2 = (RemoteAuth(AuthKind.EAP_RADIUS, None if second.id == "%any" else second.id,
                              eap_id=second.eap_id) if second is not None else None)
        mine = conn.local_2
        local2 = (self.eap_local(name, "local-2", mine, mine.id or mine.eap_id or local.identity)
                  if mine is not None else None)
        children = tuple(_child(cname, child) for cname, child in conn.children.items())
        settings = ConnectionSettings(
            name=name,
            ike_proposals=tuple(parse_configured(p, "ike") for p in conn.proposals),
            local=local,
            remote=remote,
            children=children,
            remote_addrs=tuple(conn.remote_addrs),
            rekey_time=float(conn.rekey_time),
            reauth_time=float(conn.reauth_time),
            over_time=float(conn.over_time or 0),
            rand_time=float(conn.rand_time or 0),
            dpd_delay=float(conn.dpd_delay),
            dpd_timeout=float(conn.dpd_timeout or 0),
            mobike=conn.mobike,
            redirect_to=conn.redirect_to or "",
            fragmentation=conn.fragmentation not in (False, "no"),
            encap=conn.encap,
            unique=conn.unique,
            remote2=remote2,
            local2=local2,
            pools=tuple(PoolSettings(p, ipaddress.ip_network(self.model.pools[p].addrs),
                                     tuple(ipaddress.ip_address(d) for d in self.model.pools[p].dns))
                        for p in conn.pools),
            groups=tuple(GroupSettings(g, tuple(group.local_ts), group.cde)
                         for g, group in conn.groups.items()),
            ppk=self.ppk_for(name, conn),
            ocsp=conn.ocsp,
        )
        return settings, certs

    def ppk_for(self, name: str, conn: Connection) -> PpkSettings | None:
        """The RFC 8784 PPK of ``ppk_id``: the one ``[secrets.ppk.*]`` with that ``id`` (engine.ppk)."""
        if conn.ppk_id is None:
            if conn.ppk_required:
                self.fail(f"connections.{name}.ppk_required", "true", "ppk_required needs a ppk_id")
            return None
        names = [n for n, s in self.model.secrets.ppk.items() if s.id == conn.ppk_id]
        if len(names) != 1:
            problem = "no [secrets.ppk.*] has this id" if not names else f"several secrets have it: {names}"
            self.fail(f"connections.{name}.ppk_id", conn.ppk_id, problem)
            return None
        try:
            key = read_secret(self.config, names[0], "ppk").value
        except PskError as exc:
            self.fail(exc.key, None, exc.reason)
            return None
        return PpkSettings(conn.ppk_id.encode(), key, conn.ppk_required)

    def _radsec(self, name: str, server: RadiusServerConfig) -> RadiusServer | None:
        """A RadSec server (RFC 6614): its CA, our certificate and key (0600), the TLS context built once."""
        assert server.ca is not None and server.cert is not None and server.key is not None
        key_path = self.config.resolve(server.key)
        try:
            if key_path.stat().st_mode & 0o077:
                self.fail(f"radius.servers.{name}.key", server.key, "the RadSec private key must be readable "
                          "only by its owner (chmod 600)")
                return None
        except OSError as exc:
            self.fail(f"radius.servers.{name}.key", server.key, f"cannot read the key: {exc.strerror}")
            return None
        tls = TlsSettings(self.config.resolve(server.ca), self.config.resolve(server.cert), key_path,
                          server.server_name or str(server.address), server.tls_port)
        try:
            context = tls.context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            why = getattr(exc, "reason", None) or exc
            self.fail(f"radius.servers.{name}", None, f"cannot set up TLS: {why}")
            return None
        return RadiusServer(str(server.address), RADSEC_SECRET, server.auth_port, server.acct_port, tls=tls,
                            context=context)

    def radius(self) -> RadiusClient | None:
        """The RADIUS client of ``[radius]`` (None without servers); secrets from their files."""
        section = self.model.radius
        servers: list[RadiusServer] = []
        for name, server in section.servers.items():
            if server.transport == "tls":
                radsec = self._radsec(name, server)
                if radsec is not None:
                    servers.append(radsec)
                continue
            assert server.secret_file is not None
            key = f"radius.servers.{name}.secret_file"
            path = self.config.resolve(server.secret_file)
            try:
                if path.stat().st_mode & 0o077:
                    self.fail(key, server.secret_file, "the RADIUS secret file must be readable only by its "
                              "owner (chmod 600)")
                    continue
                secret = path.read_text().strip().encode()
            except OSError as exc:
                self.fail(key, server.secret_file, f"cannot read the RADIUS secret: {exc.strerror}")
                continue
            if not secret:
                self.fail(key, server.secret_file, "the RADIUS secret file is empty")
                continue
            servers.append(RadiusServer(server.address, secret, server.auth_port, server.acct_port))
        if not servers:
            return None
        return RadiusClient(servers, timeout=section.retransmit_timeout, retries=section.retransmit_tries,
                            nas_identifier=section.nas_identifier)


def _child(name: str, child: Child) -> ChildSettings:
    return ChildSettings(
        name=name,
        local_ts=tuple(child.local_ts),
        remote_ts=tuple(child.remote_ts),
        esp_proposals=tuple(parse_configured(p, "esp") for p in child.esp_proposals),
        mode=child.mode,
        rekey_time=float(child.rekey_time),
        life_time=float(child.life_time or 0),
        rand_time=float(child.rand_time or 0),
        rekey_bytes=child.rekey_bytes,
        life_bytes=child.life_bytes,
        rekey_packets=child.rekey_packets,
        life_packets=child.life_packets,
        replay_window=child.replay_window,
        per_resource_sas=child.per_resource_sas,
    )


def _validation_policy(profile: Profile) -> ValidationPolicy:
    """The profile's ``cert_key`` / ``cert_signature_hash`` rules as PKI validation parameters, so a peer's
    chain is held to the same rules ``check`` applies to our own certificates (ARCHITECTURE rule 5)."""
    policy = ValidationPolicy()
    for rule in profile.rules_for("cert_key"):
        curves = [str(c) for c in rule.params.get("ec_curves", [])]
        kinds = {"rsa"} | ({"ecdsa"} if curves else set())
        kinds |= {k for k in ("ed25519", "ed448") if rule.params.get(k, False)}
        policy = replace(policy, key_types=frozenset(kinds),
                         min_rsa_bits=int(rule.params.get("rsa_min_bits", policy.min_rsa_bits)),
                         min_ec_bits=min((_CURVE_BITS.get(c, 256) for c in curves),
                                         default=policy.min_ec_bits))
    for rule in profile.rules_for("cert_signature_hash"):
        policy = replace(policy, signature_hashes=frozenset(str(h) for h in rule.params.get("allowed", [])))
    return policy


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def build_plan(path: str | Path, *, now: dt.datetime, profile_override: str | None = None) -> GatewayPlan:
    """Load, enforce and translate ``path``; ConfigRefused (a ConfigError) lists every problem found."""
    try:
        config, enforcement = load_and_enforce(path, now=now, profile_override=profile_override)
    except ConfigError as exc:
        if type(exc) is not ConfigError:
            raise  # ConfigUnreadable: exit 2, not a refusal
        raise ConfigRefused(exc.findings) from None
    profile = load_profile(config.profile_name)
    builder = _Builder(config, profile)
    model = config.model
    connections: dict[str, ConnectionSettings] = {}
    trusts: dict[str, ConnectionTrust] = {}
    certificates: dict[str, tuple[x509.Certificate, ...]] = {}
    actions: dict[tuple[str, str], ChildActions] = {}
    for name in config.enabled_connections():
        conn = model.connections[name]
        connections[name], certificates[name] = builder.connection(name, conn)
        trust = builder.trust(name, conn)
        if trust is not None:
            trusts[name] = trust
        for cname, child in conn.children.items():
            actions[(name, cname)] = ChildActions(child.start_action, child.dpd_action, child.close_action)
    radius = builder.radius()
    if builder.findings:
        raise ConfigRefused(builder.findings)
    gw = model.gateway
    settings = EngineSettings(
        retransmit=RetransmitPolicy(tries=gw.retransmit_tries, timeout=gw.retransmit_timeout,
                                    base=gw.retransmit_base),
        cookie_threshold=gw.cookie_threshold if gw.dos_protection else 0,
        block_threshold=gw.block_threshold if gw.dos_protection else 0,
        nat_keepalive=float(gw.keep_alive),
        redirect_to=gw.redirect_to or "",
        ha_mid_sync=model.ha.enabled,  # RFC 6311 support announced by HA pair members (docs/ha.md)
        redirect_above=gw.redirect_above,
        profile=profile,
        # every server may use all its tries before the round counts as unreachable
        radius_timeout=max(30.0, 2 + len(model.radius.servers) * model.radius.retransmit_timeout
                           * model.radius.retransmit_tries),
    )
    try:
        sinks = tuple(SinkSpec.from_config(i, s, config.base_dir) for i, s in enumerate(model.audit.sinks))
    except ValueError as exc:
        raise ConfigRefused([_finding(config, "audit.sinks", None, str(exc))]) from None
    return GatewayPlan(
        config=config,
        enforcement=enforcement,
        engine_settings=settings,
        connections=connections,
        validator=PkiValidator(trusts, fetcher=builder.fetcher),
        selectors=InventorySelectors(config.inventories),
        child_actions=actions,
        local_addrs={n: tuple(model.connections[n].local_addrs) for n in connections},
        listen=tuple(str(a) for a in gw.listen),
        dataplane=gw.dataplane,
        state_dir=config.resolve(gw.state_dir),
        audit_sinks=sinks,
        retention_days=model.audit.retention_days,
        online_days=model.audit.online_days,
        metrics=_host_port(gw.metrics) if gw.metrics else None,
        certificates=certificates,
        radius=radius,
        radius_accounting=model.radius.accounting,
        radius_interval=float(model.radius.accounting_interval),
    )
