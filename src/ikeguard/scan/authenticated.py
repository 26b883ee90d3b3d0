"""The scan with credentials: IKE_AUTH, the certificate chain presented, the ESP suites and PFS accepted.

With a pre-shared key or a certificate the responder accepts, the scanner sets up one IKE SA (the engine as
initiator, ``scan.engine_client``) and then asks, one CREATE_CHILD_SA at a time (RFC 7296 §1.3.1), which ESP
transforms the responder's Child SA configuration accepts, the way the unauthenticated scan asks about IKE:

1. *PFS*: a Child SA offering every ESP transform and no key exchange. Accepted = the responder does not
   require PFS; NO_PROPOSAL_CHOSEN while a Child SA with a key exchange is accepted = PFS required (a
   responder whose ESP proposals all carry a group refuses an offer without one, §1.3.1 and §3.3.2).
2. *ESP_KE*: for each group ikeguard can compute, every ESP transform with that group only.
3. *ESP_ENCR, ESP_INTEG*: one transform of the class under test, every transform of the other class, the key
   exchange as the responder needs it (step 1). AEAD ciphers without INTEG (RFC 5282 §8).

Each accepted Child SA is deleted at once (INFORMATIONAL, §1.4.1); no ESP packet is ever sent. NO_PROPOSAL_
CHOSEN = refused; anything else (TS_UNACCEPTABLE, no answer) = not verified. Only transforms the engine can
negotiate can be probed (the Child SA's keys are derived, RFC 7296 §2.17): the others are named in the notes
as not probed, never reported as refused. The IKE SA offers the transforms the unauthenticated scan found
accepted. The certificate chain is recorded as the responder sends it (key type, signature algorithm,
expiry) and validated only against ``--cacert`` anchors when given (otherwise it is reported as not
validated; the AUTH signature is still checked with the end-entity key).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from ikeguard.audit.events import AuditEvent
from ikeguard.crypto import registry
from ikeguard.crypto.key_names import describe_key
from ikeguard.crypto.signatures import PrivateKey
from ikeguard.engine.events import ChildSaStateChanged, IkeSaStateChanged, InstallChildSa
from ikeguard.engine.retransmit import RetransmitPolicy
from ikeguard.engine.settings import (
    AuthKind,
    ChildSettings,
    ConnectionSettings,
    EngineSettings,
    LocalAuth,
    RemoteAuth,
)
from ikeguard.engine.states import ChildState, IkeState
from ikeguard.engine.validator import CertVerdict
from ikeguard.pki.engine_validator import ConnectionTrust, PkiValidator
from ikeguard.pki.revocation import NoRevocation
from ikeguard.pki.validation_policy import ValidationPolicy
from ikeguard.policy.profile import Profile
from ikeguard.scan.catalog import Candidate, Observation, Status, candidates
from ikeguard.scan.engine_client import EngineClient
from ikeguard.wire.iana import EsnId, ProtocolId, TransformType
from ikeguard.wire.proposal_string import ProposalSpec
from ikeguard.wire.transforms import AEAD_ENCR_IDS, Transform

CONNECTION = "scan"
PROBE_TIMEOUT_FACTOR = 6.0  # a CREATE_CHILD_SA may be retransmitted: wait this many --timeouts for its end

OPEN_PROFILE = Profile("scan", "scanner: offer anything", "no rule: the responder's answer is what is judged",
                       ())
"""The engine's profile while scanning: nothing forbidden, so weak transforms can be offered (never used:
the scan sends no ESP and deletes every Child SA it gets)."""

_ESN = (Transform(TransformType.ESN, EsnId.NO_ESN), Transform(TransformType.ESN, EsnId.ESN))


@dataclass(frozen=True)
class ScanCredentials:
    """How the scanner authenticates (``--id`` with ``--psk-file`` or ``--cert``/``--key``)."""

    identity: str
    psk: bytes = field(default=b"", repr=False)
    private_key: PrivateKey | None = field(default=None, repr=False)
    certs: tuple[x509.Certificate, ...] = ()
    remote_id: str | None = None
    cacerts: tuple[x509.Certificate, ...] = ()
    local_ts: tuple[str, ...] = ("dynamic",)
    remote_ts: tuple[str, ...] = ("0.0.0.0/0", "::/0")


@dataclass
class AuthenticatedResult:
    """What the credentialed part of a scan learned."""

    established: bool = False
    error: str | None = None
    ike_proposal: str | None = None
    remote_id: str | None = None
    chain: list[dict[str, Any]] = field(default_factory=list)
    chain_status: str = "not presented"
    child_proposal: str | None = None
    pfs: str = "not_verified"  # required | not_required | not_verified
    observations: list[Observation] = field(default_factory=list)
    not_probed: list[str] = field(default_factory=list)
    exchanges: int = 0
    datagrams: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``authenticated`` object of ``ikeguard-scan/1`` (docs/scan.md)."""
        return {"established": self.established, "error": self.error, "ike_proposal": self.ike_proposal,
                "remote_id": self.remote_id, "certificate_chain": self.chain,
                "chain_status": self.chain_status, "child_proposal": self.child_proposal, "pfs": self.pfs,
                "not_probed": self.not_probed, "exchanges": self.exchanges, "datagrams": self.datagrams}


def certificate_info(cert: x509.Certificate, now: datetime) -> dict[str, Any]:
    """What an assessor reads from one certificate of the chain."""
    sig = cert.signature_algorithm_oid
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"), "key": describe_key(cert),
            "signature_algorithm": getattr(sig, "_name", sig.dotted_string),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "days_left": (cert.not_valid_after_utc - now).days}


class RecordingValidator:
    """Records the chain the responder presents; validates it against ``--cacert`` anchors if any."""

    def __init__(self, anchors: Sequence[x509.Certificate]) -> None:
        self.chain: list[x509.Certificate] = []
        self.status = "not presented"
        self._inner = (PkiValidator({CONNECTION: ConnectionTrust(tuple(anchors), NoRevocation(),
                                                                  ValidationPolicy())})
                       if anchors else None)

    def validate(self, chain: Sequence[x509.Certificate], identity: str, connection: str,
                 now: float) -> CertVerdict:
        """Accept (and note) any chain without anchors; with anchors, RFC 5280 validation decides."""
        self.chain = list(chain)
        if self._inner is None:
            self.status = "not validated (no --cacert given)"
            return CertVerdict(True, "", chain[0].not_valid_after_utc if chain else None)
        verdict = self._inner.validate(chain, identity, connection, time.time())
        self.status = ("valid (chains to a --cacert anchor)" if verdict.accepted
                       else f"refused: {verdict.reason}")
        return verdict


def _supported(candidate: Candidate) -> bool:
    t = candidate.transform
    kind = {"ENCR": TransformType.ENCR, "INTEG": TransformType.INTEG, "KE": TransformType.KE}[candidate.cls]
    return registry.supports(kind, t.id, t.key_length)


def _esp(encr: Sequence[Transform], integ: Sequence[Transform],
         ke: Sequence[Transform]) -> tuple[ProposalSpec, ...]:
    """An AEAD proposal (no INTEG, RFC 5282 §8) and a classic one, each only if it has a cipher."""
    aead = tuple(t for t in encr if t.id in AEAD_ENCR_IDS)
    plain = tuple(t for t in encr if t.id not in AEAD_ENCR_IDS)
    out = []
    if aead:
        out.append(ProposalSpec(ProtocolId.ESP, encr=aead, ke=tuple(ke), esn=_ESN))
    if plain and integ:
        out.append(ProposalSpec(ProtocolId.ESP, encr=plain, integ=tuple(integ), ke=tuple(ke), esn=_ESN))
    return tuple(out)


@dataclass(frozen=True)
class _Probe:
    """One Child SA configuration the scan may create: its name is the key of its answer."""

    name: str
    candidate: Candidate | None
    proposals: tuple[ProposalSpec, ...]


class _Plan:
    """Every Child SA the scan may ask for (the engine's connection is fixed before the IKE SA starts)."""

    def __init__(self, preferred_groups: Sequence[int]) -> None:
        pool = candidates()
        self.encr = [Candidate("ESP_ENCR", c.transform) for c in pool["ENCR"] if _supported(c)]
        self.integ = [Candidate("ESP_INTEG", c.transform) for c in pool["INTEG"] if _supported(c)]
        kes = [c for c in pool["KE"] if _supported(c)]
        order = {g: i for i, g in enumerate(preferred_groups)}
        kes.sort(key=lambda c: order.get(c.transform.id, len(order)))
        self.ke = [Candidate("ESP_KE", c.transform) for c in kes]
        self.not_probed = sorted({c.label for cls in ("ENCR", "INTEG", "KE") for c in pool[cls]
                                  if not _supported(c)})
        encr = [c.transform for c in self.encr]
        integ = [c.transform for c in self.integ]
        groups = [c.transform for c in self.ke]
        self.probes: dict[str, _Probe] = {}
        self._add("auth", None, _esp(encr, integ, ()))
        self._add("pfs-none", None, _esp(encr, integ, ()))
        for c in self.ke:
            self._add(f"ke-{c.transform.id}", c, _esp(encr, integ, (c.transform,)))
        for pfs, ke in (("none", ()), ("pfs", groups)):
            for i, c in enumerate(self.encr):
                self._add(f"encr-{i}-{pfs}", c, _esp([c.transform], integ, ke))
            for i, c in enumerate(self.integ):
                self._add(f"integ-{i}-{pfs}", c, _esp([t for t in encr if t.id not in AEAD_ENCR_IDS],
                                                      [c.transform], ke))

    def _add(self, name: str, candidate: Candidate | None, proposals: tuple[ProposalSpec, ...]) -> None:
        if proposals:
            self.probes[name] = _Probe(name, candidate, proposals)

    def children(self, local_ts: tuple[str, ...], remote_ts: tuple[str, ...]) -> tuple[ChildSettings, ...]:
        """The engine's Child SA settings: one per probe."""
        return tuple(ChildSettings(p.name, local_ts, remote_ts, p.proposals, rekey_time=86400.0)
                     for p in self.probes.values())


def connection_settings(credentials: ScanCredentials, ike: tuple[ProposalSpec, ...],
                        children: tuple[ChildSettings, ...]) -> ConnectionSettings:
    """The scanner's one connection: our credentials, the IKE proposals to offer, the probe children."""
    if credentials.private_key is not None:
        local = LocalAuth(AuthKind.PUBKEY, credentials.identity, private_key=credentials.private_key,
                          certs=credentials.certs)
        remote = RemoteAuth(AuthKind.PUBKEY, credentials.remote_id)
    else:
        local = LocalAuth(AuthKind.PSK, credentials.identity, psk=credentials.psk)
        remote = RemoteAuth(AuthKind.PSK, credentials.remote_id, psk=credentials.psk)
    return ConnectionSettings(CONNECTION, ike, local, remote, children, rekey_time=86400.0, mobike=False)


class AuthenticatedScan:
    """Runs the credentialed part against one target with the IKE proposals to offer."""

    def __init__(self, target: tuple[str, int], credentials: ScanCredentials, ike: tuple[ProposalSpec, ...],
                 preferred_groups: Sequence[int], *, timeout: float, pace: Callable[[], None]) -> None:
        self.plan = _Plan(preferred_groups)
        self.validator = RecordingValidator(credentials.cacerts)
        conn = connection_settings(credentials, ike,
                                   self.plan.children(credentials.local_ts, credentials.remote_ts))
        retransmit = RetransmitPolicy(tries=2, timeout=timeout, base=1.5)
        settings = EngineSettings(retransmit=retransmit, profile=OPEN_PROFILE)
        self.client = EngineClient(target, conn, settings, self.validator, pace=pace)
        self.timeout = timeout
        self.result = AuthenticatedResult(not_probed=self.plan.not_probed)
        self.uid = 0

    # ------------------------------------------------------------------ engine outcomes
    def _ike_closed(self) -> str | None:
        for e in self.client.events:
            if isinstance(e, IkeSaStateChanged) and e.new is IkeState.CLOSED:
                return e.reason or "IKE SA closed"
        return None

    def _child_outcome(self, name: str) -> tuple[Status, str] | None:
        """('accepted', proposal) / ('refused'|'not_verified', reason) once the probe ``name`` has ended."""
        for e in self.client.events:
            if isinstance(e, InstallChildSa) and e.child_name == name:
                return "accepted", e.proposal
            if isinstance(e, AuditEvent) and e.event == "child.failed" and e.details.get("child") == name:
                refused = "NO_PROPOSAL_CHOSEN" in e.reason
                return ("refused" if refused else "not_verified"), e.reason
        return None

    def _child_uid(self, name: str) -> int | None:
        for e in self.client.events:
            if isinstance(e, InstallChildSa) and e.child_name == name:
                return e.child_uniqueid
        return None

    # ------------------------------------------------------------------ steps
    def _establish(self) -> bool:
        self.uid = self.client.initiate()

        def up() -> bool:
            return self._ike_closed() is not None or any(
                isinstance(e, IkeSaStateChanged) and e.new is IkeState.ESTABLISHED
                for e in self.client.events)

        finished = self.client.run_until(up, self.timeout * PROBE_TIMEOUT_FACTOR * 2)
        closed = self._ike_closed()
        sa = self.client.manager.get(self.uid)
        if sa is not None:
            self.result.remote_id = sa.remote_id or None
            self.result.ike_proposal = sa.proposal_text or None
        self.result.chain = [certificate_info(c, datetime.now(UTC)) for c in self.validator.chain]
        self.result.chain_status = self.validator.status
        if closed is not None or not finished:
            self.result.error = closed or "no IKE_AUTH answer (timeout)"
            return False
        self.result.established = True
        outcome = self._child_outcome("auth")
        if outcome is not None:
            self.result.child_proposal = outcome[1] if outcome[0] == "accepted" else None
            self._delete_child("auth")
        return True

    def _delete_child(self, name: str) -> None:
        uid = self._child_uid(name)
        if uid is None:
            return
        self.client.manager.terminate_child(self.uid, uid, time.monotonic(), "scan: probe done")
        self.client.events.clear()
        self.client.run_until(lambda: self._child_gone(uid) or self._ike_closed() is not None,
                              self.timeout * PROBE_TIMEOUT_FACTOR)

    def _child_gone(self, child_uid: int) -> bool:
        return any(isinstance(e, ChildSaStateChanged) and e.child_uniqueid == child_uid
                   and e.new is ChildState.DELETED for e in self.client.events)

    def probe(self, name: str) -> tuple[Status, str]:
        """Create the probe Child SA ``name``; delete it if accepted; the answer."""
        self.client.events.clear()
        self.result.exchanges += 1
        self.client.manager.create_child(self.uid, name, time.monotonic())
        self.client.run_until(lambda: self._child_outcome(name) is not None or self._ike_closed() is not None,
                              self.timeout * PROBE_TIMEOUT_FACTOR)
        outcome = self._child_outcome(name)
        if outcome is None:
            return "not_verified", self._ike_closed() or "no answer to CREATE_CHILD_SA"
        if outcome[0] == "accepted":
            self._delete_child(name)
        return outcome

    def _record(self, candidate: Candidate, outcome: tuple[Status, str]) -> None:
        status, detail = outcome
        evidence = "CREATE_CHILD_SA response" if status == "accepted" else detail.rpartition(": ")[2]
        self.result.observations.append(Observation(candidate, status, evidence))

    def run(self) -> AuthenticatedResult:
        """IKE_AUTH, then the PFS, ESP_KE, ESP_ENCR and ESP_INTEG probes; the IKE SA deleted at the end."""
        try:
            if not self._establish():
                return self.result
            without = self.probe("pfs-none")
            kes = [(c, self.probe(f"ke-{c.transform.id}")) for c in self.plan.ke]
            for c, outcome in kes:
                self._record(c, outcome)
            with_ke = any(o[0] == "accepted" for _, o in kes)
            if without[0] == "accepted":
                self.result.pfs = "not_required"
            elif without[0] == "refused" and with_ke:
                self.result.pfs = "required"
            variant = "pfs" if self.result.pfs == "required" else "none"
            for i, c in enumerate(self.plan.encr):
                self._record(c, self.probe(f"encr-{i}-{variant}"))
            for i, c in enumerate(self.plan.integ):
                self._record(c, self.probe(f"integ-{i}-{variant}"))
            self.client.manager.terminate_ike(self.uid, time.monotonic(), "scan done")
            self.client.run_until(lambda: self._ike_closed() is not None, self.timeout * 2)
        finally:
            self.result.datagrams = self.client.datagrams
            self.client.close()
        return self.result
