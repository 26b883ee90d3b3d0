"""Enumerating what an IKEv2 responder accepts in IKE_SA_INIT, one transform class at a time.

Evidence (RFC 7296 §2.7, §1.2, §3.10.1): a responder that finds no acceptable proposal answers
NO_PROPOSAL_CHOSEN; one that accepts a proposal but got a KE payload of another group answers
INVALID_KE_PAYLOAD naming the group it selected; otherwise it answers with its SA, KE and Nonce (and keeps a
half-open IKE SA until its timeout). The scanner uses the second answer wherever it can, so that almost no
probe leaves state behind:

1. *Decoy*: a full offer (every ENCR, PRF, INTEG) with a single weak group ``d`` (MODP-768 first) and a
   real KE value of ``d``. NO_PROPOSAL_CHOSEN proves ``d`` refused; ``d`` becomes the decoy. (If the
   responder accepts ``d`` the answer is a full SA, one half-open SA, and the next candidate is tried.)
2. *KE*: for each group ``g``: offer every ENCR/PRF/INTEG with the KE list ``[d, g]`` and a KE payload of
   ``d`` (the first listed group, as §1.2 asks). INVALID_KE_PAYLOAD(g) = ``g`` accepted, NO_PROPOSAL_CHOSEN
   = refused. No KE value of ``g`` is ever needed, so groups we cannot compute are probed too.
3. *ENCR, PRF, INTEG*: the class under test holds one transform, every other class the full list, the KE
   list ``[d, accepted groups...]``: INVALID_KE_PAYLOAD = accepted, NO_PROPOSAL_CHOSEN = refused. AEAD
   ciphers go in a proposal without INTEG (RFC 5282 §8), the others in one with every INTEG.
4. *Preference*: the group INVALID_KE_PAYLOAD names for the accepted groups in our order and reversed
   tells whether the responder applies its own order, and then that order.
5. *Additional key exchanges* (RFC 9370, ML-KEM): first one complete IKE_SA_INIT with the accepted
   transforms that *requires* ADDKE1 to be one of the ML-KEM candidates (no NONE) and says
   INTERMEDIATE_EXCHANGE_SUPPORTED (RFC 9242 §3): NO_PROPOSAL_CHOSEN = none accepted; an answer whose
   proposal carries no ADDKE1 = the responder ignored the transform type (no RFC 9370), none accepted;
   otherwise the chosen one is accepted and each other candidate is probed like a class in 3
   (INVALID_KE_PAYLOAD = accepted). Without the first step a responder that skips unknown transform types
   would look as if it accepted every candidate. This probe leaves a half-open SA, as the next one does.
6. *Behaviours*: one complete IKE_SA_INIT with the accepted transforms and a real KE of the preferred group
   (the only probe meant to leave a half-open SA), carrying NAT_DETECTION_*, IKEV2_FRAGMENTATION_SUPPORTED,
   SIGNATURE_HASH_ALGORITHMS and INTERMEDIATE_EXCHANGE_SUPPORTED; the answer's notifies, Vendor IDs and
   CERTREQ are reported. Then a decoy probe to UDP 4500 (non-ESP marker, RFC 3948 §2.2).

"Accepted" means: some proposal the responder would negotiate contains the transform (it is the union over
the responder's configured proposals, which is what a policy judges). A probe with no usable answer leaves
its transform "not verified", never refused.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ikeguard.crypto import registry
from ikeguard.scan.authenticated import AuthenticatedResult, AuthenticatedScan, ScanCredentials
from ikeguard.scan.catalog import CLASSES, Candidate, Observation, Status, candidates
from ikeguard.scan.ikev1 import Ikev1Prober
from ikeguard.scan.keyex import can_generate, public_value
from ikeguard.scan.transport import Reply, Transport, nat_detection_hash
from ikeguard.wire.iana import HashAlgorithm, KeId, NotifyType, ProtocolId, TransformType, name_of
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import CertReqPayload, NotifyPayload, VendorIdPayload
from ikeguard.wire.proposal_string import describe_proposal
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.transforms import AEAD_ENCR_IDS, Transform, transform_display_name

DECOY_ORDER: tuple[KeId, ...] = (
    KeId.MODP_768, KeId.ECP_192, KeId.MODP_1024, KeId.MODP_1536, KeId.ECP_224, KeId.MODP_8192,
    KeId.CURVE448, KeId.BRAINPOOL_P512R1,
)
"""Groups tried as the decoy, the least likely to be accepted first; each needs a real KE value."""

KNOWN_VENDOR_IDS: dict[bytes, str] = {
    hashlib.md5(b"strongSwan", usedforsecurity=False).digest(): "strongSwan",
    hashlib.md5(b"CISCO-DELETE-REASON", usedforsecurity=False).digest(): "Cisco delete reason",
    hashlib.md5(b"CISCO-DYNAMIC-ROUTE", usedforsecurity=False).digest(): "Cisco dynamic route",
    hashlib.md5(b"FRAGMENTATION", usedforsecurity=False).digest(): "Cisco fragmentation",
}
"""Vendor IDs whose value is the MD5 of a known string (what strongSwan's vendor_id list matches)."""

_FEATURE_NOTIFIES: dict[int, str] = {
    NotifyType.IKEV2_FRAGMENTATION_SUPPORTED: "fragmentation",
    NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED: "intermediate_exchange",
    NotifyType.CHILDLESS_IKEV2_SUPPORTED: "childless",
    NotifyType.MULTIPLE_AUTH_SUPPORTED: "multiple_auth",
    NotifyType.REDIRECT_SUPPORTED: "redirect",
}


@dataclass
class ScanOptions:
    """How to scan: pacing, timeouts, how much state we may leave at the responder."""

    rate: float = 10.0
    timeout: float = 2.0
    retries: int = 1
    max_half_open: int = 2
    probe_udp4500: bool = True
    probe_ikev1: bool = True
    ikev1_identity: str | None = None
    """ID_FQDN sent in the Aggressive Mode probe (default: our IP address, ID_IPV4_ADDR/ID_IPV6_ADDR)."""
    credentials: ScanCredentials | None = None
    """With credentials: IKE_AUTH, the chain presented, the ESP suites and PFS (``scan.authenticated``)."""


@dataclass
class ScanResult:
    """Everything one scan learned, for the verdicts (``scan.verdict``) and the report."""

    host: str
    address: tuple[str, int]
    observations: list[Observation] = field(default_factory=list)
    decoy: int | None = None
    ke_preference: list[int] = field(default_factory=list)
    ke_order: str | None = None
    chosen: str | None = None
    behaviours: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    probes: int = 0
    datagrams: int = 0
    half_open_left: int = 0
    garbage: int = 0
    cookies: int = 0
    duration: float = 0.0
    notes: list[str] = field(default_factory=list)
    authenticated: AuthenticatedResult | None = None

    def by_class(self, cls: str) -> list[Observation]:
        """Observations of one transform class, in catalog order."""
        return [o for o in self.observations if o.candidate.cls == cls]

    def accepted(self, cls: str | None = None) -> list[Candidate]:
        """Accepted candidates (of one class)."""
        return [o.candidate for o in self.observations
                if o.status == "accepted" and (cls is None or o.candidate.cls == cls)]

    @property
    def answered(self) -> bool:
        """Whether the responder ever gave an IKEv2 answer."""
        return any(o.evidence in ("INVALID_KE_PAYLOAD", "NO_PROPOSAL_CHOSEN", "IKE_SA_INIT response")
                   for o in self.observations)

    @property
    def complete(self) -> bool:
        """Every transform verified (accepted or refused)."""
        return bool(self.observations) and all(o.status != "not_verified" for o in self.observations)


def _proposals(encr: Sequence[Transform], prf: Sequence[Transform], integ: Sequence[Transform],
               ke: Sequence[Transform]) -> tuple[Proposal, ...]:
    """An AEAD proposal (no INTEG, RFC 5282 §8) and a classic one, each only if it has a cipher."""
    aead = [t for t in encr if t.id in AEAD_ENCR_IDS]
    plain = [t for t in encr if t.id not in AEAD_ENCR_IDS]
    out: list[Proposal] = []
    if aead and prf and ke:
        out.append(Proposal(len(out) + 1, ProtocolId.IKE, b"", (*aead, *prf, *ke)))
    if plain and prf and integ and ke:
        out.append(Proposal(len(out) + 1, ProtocolId.IKE, b"", (*plain, *prf, *integ, *ke)))
    return tuple(out)


def _with_addke(proposals: tuple[Proposal, ...], addke: Sequence[Transform]) -> tuple[Proposal, ...]:
    """The proposals with ADDKE1 = one of ``addke`` required (no NONE: RFC 9370 §2.2.1)."""
    if not addke:
        return proposals
    return tuple(replace(p, transforms=(*p.transforms, *addke)) for p in proposals)


def _evidence(reply: Reply) -> str:
    if reply.kind == "sa":
        return "IKE_SA_INIT response"
    if reply.kind == "notify" and reply.notify is not None:
        return name_of(NotifyType, reply.notify)
    return {"timeout": "no answer", "garbage": "unparsable answer", "unreachable": "ICMP unreachable",
            "skipped": "not probed (scan stopped)"}.get(reply.kind, reply.kind)


def _ke(group: int) -> Transform:
    return Transform(TransformType.KE, group)


class Scanner:
    """Runs the probe plan of the module docstring against one responder."""

    def __init__(self, host: str, address: tuple[str, int], options: ScanOptions | None = None) -> None:
        self.options = options or ScanOptions()
        self.result = ScanResult(host, address)
        self.transport = Transport(address, rate=self.options.rate, timeout=self.options.timeout,
                                   retries=self.options.retries, max_half_open=self.options.max_half_open)
        self.catalog = candidates()
        self.full: dict[str, list[Transform]] = {c: [x.transform for x in self.catalog[c]] for c in CLASSES}
        self._status: dict[Candidate, Observation] = {}
        # ADDKE1 every probe must carry: set when the responder refuses every classic-only offer (it requires
        # a post-quantum key exchange, RFC 9370); the probes then also say INTERMEDIATE_EXCHANGE_SUPPORTED
        self._pq_context: list[Transform] = []

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def _record(self, candidate: Candidate, status: Status, evidence: str) -> None:
        self._status[candidate] = Observation(candidate, status, evidence)

    def _ke_candidate(self, group: int) -> Candidate:
        return next(c for c in self.catalog["KE"] if c.transform.id == group)

    def _probe(self, proposals: tuple[Proposal, ...], group: int, data: bytes, extra: Sequence[Payload] = (),
               *, addke: Sequence[Transform] = (), **kwargs: Any) -> Reply:
        """One IKE_SA_INIT probe, in the post-quantum context when the responder needs it."""
        addke = addke or self._pq_context
        if addke:
            proposals = _with_addke(proposals, addke)
            extra = [*extra, NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED, b"")]
        return self.transport.probe(proposals, group, data, extra, **kwargs)

    def _decoy_probe(self, encr: Sequence[Transform], prf: Sequence[Transform], integ: Sequence[Transform],
                     groups: Sequence[int], *, port: int | None = None,
                     addke: Sequence[Transform] = ()) -> Reply:
        assert self.result.decoy is not None
        decoy = self.result.decoy
        proposals = _proposals(encr, prf, integ, [_ke(decoy), *(_ke(g) for g in groups)])
        if not proposals:
            return Reply("skipped")
        data = public_value(decoy)
        assert data is not None
        return self._probe(proposals, decoy, data, addke=addke, port=port)

    @staticmethod
    def _judge(reply: Reply, want: int | None = None) -> tuple[Status, str]:
        """INVALID_KE_PAYLOAD (naming ``want`` when given) = accepted; NO_PROPOSAL_CHOSEN = refused."""
        evidence = _evidence(reply)
        if reply.kind == "notify" and reply.notify == NotifyType.NO_PROPOSAL_CHOSEN:
            return "refused", evidence
        if reply.kind == "notify" and reply.notify == NotifyType.INVALID_KE_PAYLOAD:
            group = reply.requested_group
            if want is None or group == want:
                return "accepted", evidence
            return "not_verified", f"INVALID_KE_PAYLOAD asking for {name_of(KeId, group or 0)}"
        if reply.kind == "sa":
            return "accepted", evidence
        return "not_verified", evidence

    # -- phases --------------------------------------------------------------------------------------------
    def _find_decoy(self) -> None:
        for group in DECOY_ORDER:
            data = public_value(group)
            if data is None:
                continue
            proposals = _proposals(self.full["ENCR"], self.full["PRF"], self.full["INTEG"], [_ke(group)])
            reply = self._probe(proposals, group, data, expect_half_open=True)
            status, evidence = self._judge(reply, group)
            if reply.kind == "notify" and reply.notify == NotifyType.INVALID_KE_PAYLOAD:
                status, evidence = "not_verified", "INVALID_KE_PAYLOAD for the only group offered"
            if reply.kind == "skipped" and self.transport.stop_reason is None:
                self.transport.stop_reason = (
                    f"the responder accepts every group usable as a decoy up to the half-open limit "
                    f"({self.options.max_half_open}); further probes would each leave a half-open SA")
            self._record(self._ke_candidate(group), status, evidence)
            if status == "refused":
                self.result.decoy = group
                return
            if self.transport.stop_reason is not None:
                return

    def _scan_ke(self) -> list[int]:
        assert self.result.decoy is not None
        for cand in self.catalog["KE"]:
            if cand in self._status:
                continue
            reply = self._decoy_probe(self.full["ENCR"], self.full["PRF"], self.full["INTEG"],
                                      [cand.transform.id])
            self._record(cand, *self._judge(reply, cand.transform.id))
        return [c.transform.id for c in self.catalog["KE"]
                if self._status[c].status == "accepted"]

    def _scan_class(self, cls: str, groups: Sequence[int]) -> None:
        for cand in self.catalog[cls]:
            lists = {c: self.full[c] for c in ("ENCR", "PRF", "INTEG")}
            lists[cls] = [cand.transform]
            if cls == "INTEG":  # an AEAD proposal carries no INTEG (RFC 5282 §8): would accept regardless
                lists["ENCR"] = [t for t in lists["ENCR"] if t.id not in AEAD_ENCR_IDS]
            reply = self._decoy_probe(lists["ENCR"], lists["PRF"], lists["INTEG"], groups)
            if reply.kind == "skipped" and self.transport.stop_reason is None:
                # e.g. INTEG with no classic cipher: nothing to offer it with; judged by the wire instead
                self._record(cand, "not_verified", "no proposal can carry it")
                continue
            self._record(cand, *self._judge(reply))

    def _ke_preference(self, groups: Sequence[int]) -> None:
        if len(groups) < 2:
            self.result.ke_preference = list(groups)
            return
        encr = [c.transform for c in self.result_accepted("ENCR")] or self.full["ENCR"]
        prf = [c.transform for c in self.result_accepted("PRF")] or self.full["PRF"]
        integ = [c.transform for c in self.result_accepted("INTEG")] or self.full["INTEG"]
        first = self._decoy_probe(encr, prf, integ, groups).requested_group
        last = self._decoy_probe(encr, prf, integ, list(reversed(groups))).requested_group
        if first is None or last is None:
            return
        if first != last:
            self.result.ke_order = "initiator"
            return
        self.result.ke_order = "responder"
        order, left = [first], [g for g in groups if g != first]
        while len(left) > 1:
            nxt = self._decoy_probe(encr, prf, integ, left).requested_group
            if nxt is None or nxt not in left:
                return
            order.append(nxt)
            left.remove(nxt)
        self.result.ke_preference = order + left

    def result_accepted(self, cls: str) -> list[Candidate]:
        """Accepted candidates of ``cls`` so far."""
        return [c for c in self.catalog[cls] if c in self._status and self._status[c].status == "accepted"]

    def _scan_addke(self, groups: Sequence[int]) -> None:
        cands = self.catalog["ADDKE"]
        preferred = [g for g in (self.result.ke_preference or groups) if can_generate(g)]
        encr = [c.transform for c in self.result_accepted("ENCR")]
        prf = [c.transform for c in self.result_accepted("PRF")]
        integ = [c.transform for c in self.result_accepted("INTEG")]
        base = _proposals(encr, prf, integ, [_ke(preferred[0])]) if preferred else ()
        if not base:
            for cand in cands:
                self._record(cand, "not_verified", "no accepted group we can compute a KE for")
            return
        data = public_value(preferred[0])
        assert data is not None
        every = [c.transform for c in cands]
        reply = self._probe(base, preferred[0], data, addke=every, expect_half_open=True)
        status, evidence = self._judge(reply)
        if status == "refused":
            for cand in cands:
                self._record(cand, "refused", "NO_PROPOSAL_CHOSEN with an ML-KEM ADDKE1 required")
            return
        sa = reply.message.get(SaPayload) if reply.kind == "sa" and reply.message is not None else None
        if sa is None or not sa.proposals:
            for cand in cands:
                self._record(cand, "not_verified", evidence)
            return
        chosen = [t.id for t in sa.proposals[0].transforms if t.type == TransformType.ADDKE1]
        if not chosen:
            for cand in cands:
                self._record(cand, "refused", "IKE_SA_INIT response without ADDKE1: RFC 9370 not supported")
            return
        for cand in cands:
            if cand.transform.id in chosen:
                self._record(cand, "accepted", "IKE_SA_INIT response choosing it")
                continue
            probe = self._decoy_probe(self.full["ENCR"], self.full["PRF"], self.full["INTEG"], groups,
                                      addke=[cand.transform])
            self._record(cand, *self._judge(probe))

    def _behaviours(self, groups: Sequence[int]) -> None:
        b = self.result.behaviours
        b.update({"fragmentation": None, "nat_t": None, "signature_hash_algorithms": None,
                  "vendor_ids": [], "intermediate_exchange": None, "childless": None,
                  "multiple_auth": None, "certificate_request": None, "udp_4500": "not probed"})
        preferred = [g for g in (self.result.ke_preference or groups) if can_generate(g)]
        encr = [c.transform for c in self.result_accepted("ENCR")]
        prf = [c.transform for c in self.result_accepted("PRF")]
        integ = [c.transform for c in self.result_accepted("INTEG")]
        proposals = _proposals(encr, prf, integ, [_ke(preferred[0])]) if preferred else ()
        if proposals:
            import os

            group = preferred[0]
            data = public_value(group)
            assert data is not None
            spi_i = os.urandom(8)
            local = self.transport.local_endpoint()
            remote = self.transport.address
            extra: list[Payload] = [
                NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP,
                              nat_detection_hash(spi_i, bytes(8), *local)),
                NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP,
                              nat_detection_hash(spi_i, bytes(8), *remote)),
                NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED, b""),
                NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS,
                              b"".join(int(h).to_bytes(2, "big") for h in HashAlgorithm)),
                NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED, b""),
                NotifyPayload(NotifyType.REDIRECT_SUPPORTED, b""),
            ]
            reply = self._probe(proposals, group, data, extra, expect_half_open=True, spi_i=spi_i)
            if reply.kind == "sa" and reply.message is not None:
                self._read_behaviours(reply, spi_i, local, remote)
            else:
                self.result.notes.append(f"behaviour probe: {_evidence(reply)}")
        elif not groups:
            self.result.notes.append("behaviour probe not sent: no group accepted")
        else:
            self.result.notes.append("behaviour probe not sent: no accepted group we can compute a KE for")
        if self.options.probe_udp4500 and self.transport.address[1] == 500 and self.result.decoy is not None:
            reply = self._decoy_probe(self.full["ENCR"], self.full["PRF"], self.full["INTEG"], groups,
                                      port=4500)
            answered = reply.kind in ("notify", "sa")
            b["udp_4500"] = "answers" if answered else ("not probed" if reply.kind == "skipped"
                                                        else "no answer")
            if not answered and self.transport.stop_reason and self.transport.stats.answered:
                self.transport.stop_reason = None  # 4500 silence is a finding about 4500, not a stop
            self.transport._silent = 0

    def _read_behaviours(self, reply: Reply, spi_i: bytes, local: tuple[str, int],
                         remote: tuple[str, int]) -> None:
        assert reply.message is not None
        msg, b = reply.message, self.result.behaviours
        spi_r = msg.header.spi_r
        sa = msg.get(SaPayload)
        if sa is not None and sa.proposals:
            try:
                self.result.chosen = describe_proposal(sa.proposals[0].to_spec())
            except ValueError:
                self.result.chosen = "/".join(transform_display_name(int(t.type), t.id)
                                              for t in sa.proposals[0].transforms)
        notifies = msg.get_all(NotifyPayload)
        types = {int(n.notify_type) for n in notifies}
        for ntype, key in _FEATURE_NOTIFIES.items():
            b[key] = ntype in types
        src = msg.notify(NotifyType.NAT_DETECTION_SOURCE_IP)
        dst = msg.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
        if src is None and dst is None:
            b["nat_t"] = {"supported": False, "nat_in_front_of_us": None, "nat_in_front_of_responder": None}
        else:
            sources = [n.data for n in notifies if n.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]
            b["nat_t"] = {
                "supported": True,
                "nat_in_front_of_us": None if dst is None
                else dst.data != nat_detection_hash(spi_i, spi_r, *local),
                "nat_in_front_of_responder": None if not sources
                else nat_detection_hash(spi_i, spi_r, *remote) not in sources,
            }
        sig = msg.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
        if sig is None:
            b["signature_hash_algorithms"] = []
        else:
            data = sig.data[: 2 * 64]
            b["signature_hash_algorithms"] = [name_of(HashAlgorithm, int.from_bytes(data[i:i + 2], "big"))
                                              for i in range(0, len(data) - 1, 2)]
        b["vendor_ids"] = [{"hex": v.data.hex(), "name": KNOWN_VENDOR_IDS.get(v.data)}
                           for v in msg.get_all(VendorIdPayload)[:20]]
        b["certificate_request"] = msg.get(CertReqPayload) is not None

    def _ikev1(self) -> None:
        """Main Mode and Aggressive Mode (PSK) probes on the same port (``scan.ikev1``)."""
        if not self.options.probe_ikev1 or self.transport.address[1] != 500:
            self.result.behaviours["ikev1"] = None
            return
        prober = Ikev1Prober(self.transport.address, self.options.timeout, self.options.ikev1_identity)
        v1 = prober.run()
        self.result.behaviours["ikev1"] = {"main_mode": v1.main_mode, "main_mode_choice": v1.main_mode_choice,
                                           "aggressive_psk": v1.aggressive_psk,
                                           "aggressive_choice": v1.aggressive_choice}
        self.transport.stats.probes += v1.probes
        self.transport.stats.datagrams += v1.datagrams
        self.transport.stats.half_open += v1.half_open

    def _classic_or_post_quantum(self) -> list[int]:
        """Phases 1-2; when every classic-only offer is refused, again with ADDKE1 = ML-KEM required: a
        responder configured with only hybrid proposals (``ecp384-ke1_mlkem768``) refuses anything else."""
        self._find_decoy()
        groups = self._scan_ke() if self.result.decoy is not None else []
        every_refused = all(c in self._status and self._status[c].status == "refused"
                            for c in self.catalog["KE"])
        if groups or not every_refused or self.transport.stop_reason is not None:
            return groups
        self._pq_context = [c.transform for c in self.catalog["ADDKE"]]
        self._status = {c: o for c, o in self._status.items() if c.cls != "KE"}
        self.result.decoy = None
        self._find_decoy()
        groups = self._scan_ke() if self.result.decoy is not None else []
        if groups:
            self.result.notes.append("every classic offer was refused: probed again with an ML-KEM "
                                     "additional key exchange (RFC 9370 ADDKE1) required, which it accepts")
        return groups

    def _ike_offer(self) -> tuple[Proposal, ...]:
        """What the credentialed IKE SA offers: every accepted transform ikeguard can run, the groups in the
        responder's preference order, ML-KEM required when only hybrid offers were accepted."""
        def usable(cls: str, kind: TransformType) -> list[Transform]:
            return [c.transform for c in self.result.accepted(cls)
                    if registry.supports(kind, c.transform.id, c.transform.key_length)]

        ke = usable("KE", TransformType.KE)
        order = {g: i for i, g in enumerate(self.result.ke_preference)}
        ke.sort(key=lambda t: order.get(t.id, len(order)))
        proposals = _proposals(usable("ENCR", TransformType.ENCR), usable("PRF", TransformType.PRF),
                               usable("INTEG", TransformType.INTEG), ke)
        addke = [c.transform for c in self.result.accepted("ADDKE")
                 if registry.supports(TransformType.KE, c.transform.id)]
        return _with_addke(proposals, addke) if self._pq_context and addke else proposals

    def _authenticated(self, credentials: ScanCredentials) -> None:
        """IKE_AUTH and the Child SA probes (``scan.authenticated``), with the accepted IKE transforms."""
        offer = self._ike_offer()
        if not offer:
            self.result.notes.append("no credentialed scan: no accepted IKE proposal ikeguard can run")
            return
        specs = tuple(p.to_spec() for p in offer)
        auth = AuthenticatedScan(self.transport.address, credentials, specs, self.result.ke_preference,
                                 timeout=self.options.timeout, pace=self.transport.pace)
        self.result.authenticated = auth.run()
        self.result.observations.extend(self.result.authenticated.observations)
        if self.result.authenticated.not_probed:
            self.result.notes.append(
                "Child SA transforms ikeguard cannot negotiate, so not probed: "
                + ", ".join(self.result.authenticated.not_probed))

    # -- run -----------------------------------------------------------------------------------------------
    def run(self) -> ScanResult:
        """The whole plan; always returns a result (partial when the scan stopped)."""
        started = time.monotonic()
        try:
            groups = self._classic_or_post_quantum()
            if self.result.decoy is not None:
                every_ke_refused = all(self._status[c].status == "refused" for c in self.catalog["KE"])
                if groups:
                    for cls in ("ENCR", "PRF", "INTEG"):
                        self._scan_class(cls, groups)
                elif every_ke_refused:
                    for cls in ("ENCR", "PRF", "INTEG"):
                        for cand in self.catalog[cls]:
                            self._record(cand, "refused", "NO_PROPOSAL_CHOSEN for every key exchange method")
                    self.result.notes.append("the responder accepted no proposal we offered")
                self._ke_preference(groups)
                if groups:
                    self._scan_addke(groups)
                    self._behaviours(groups)
            self._ikev1()
        finally:
            self.transport.close()
        for cls in CLASSES:
            for cand in self.catalog[cls]:
                if cand not in self._status:
                    self._record(cand, "not_verified", "not probed (scan stopped)")
                self.result.observations.append(self._status[cand])
        if self.options.credentials is not None:
            self._authenticated(self.options.credentials)
        stats = self.transport.stats
        self.result.stop_reason = self.transport.stop_reason
        self.result.probes, self.result.datagrams = stats.probes, stats.datagrams
        self.result.half_open_left, self.result.garbage = stats.half_open, stats.garbage
        self.result.cookies = stats.cookies
        self.result.behaviours["cookie_requested"] = stats.cookies > 0
        self.result.duration = time.monotonic() - started
        return self.result


def scan(host: str, address: tuple[str, int], options: ScanOptions | None = None) -> ScanResult:
    """Scan one responder (``address`` is the resolved IP and port, ``host`` as the user wrote it)."""
    return Scanner(host, address, options).run()
