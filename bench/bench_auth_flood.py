"""IKE_AUTH flood of bad signatures (issue 22, "Floods"): what one attempt costs the responder.

Run: `.venv/bin/python -m bench bench_auth_flood` (IKG_AUTH_FLOOD_N attempts per case, default 200).

Engine only, in one process (bench/bench_engine.py's peers, no sockets): an initiator whose certificate is
valid (issued by the CA the responder trusts) but whose AUTH payload is signed with another key (ECDSA
P-384, aes256gcm16-prfsha384-ecp384), and, for comparison, the same exchange with the right key, and a PSK
initiator with the wrong secret (ECP-256). Every attempt is a full IKE_SA_INIT (the attacker must answer a
cookie from a real address first, RFC 7296 §2.6, so this is the flood that passes the cookie check) and one
IKE_AUTH request. Only the responder's ``receive_datagram`` / ``handle_timer`` CPU is counted (process time),
split into IKE_SA_INIT and IKE_AUTH. After the run the responder must hold no IKE SA of a failed attempt
(``retained()`` counts what it keeps). The responder's validator checks the issuer signature only (what
bench_engine uses); the gateway's real one adds path building and revocation from its caches.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric import ec

from bench.bench_engine import A, B, _conns
from ikeguard.crypto.random import SystemRandom
from ikeguard.engine.events import AuditEvent, SendDatagram
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.settings import ConnectionSettings

COUNT = int(os.environ.get("IKG_AUTH_FLOOD_N", "200"))
NOW = 1_800_000_000.0


def _initiator(kind: str) -> tuple[ConnectionSettings, ConnectionSettings, object]:
    a_conn, b_conn, validator = _conns("cert" if kind.startswith("cert") else "psk")
    if kind == "cert-bad-signature":  # the certificate is good, the AUTH signature made with another key
        other = ec.generate_private_key(ec.SECP384R1())
        a_conn = replace(a_conn, local=replace(a_conn.local, private_key=other))
    elif kind == "psk-wrong-secret":
        wrong = b"not the secret the responder has, but long"
        a_conn = replace(a_conn, local=replace(a_conn.local, psk=wrong))
    return a_conn, b_conn, validator


def attempts(kind: str, count: int) -> tuple[list[float], list[float], int, int, list[str]]:
    """Per attempt: responder CPU in IKE_SA_INIT, in IKE_AUTH; IKE SAs up at the responder, SAs it retains,
    the failure reasons it audited."""
    a_conn, b_conn, validator = _initiator(kind)
    a = IkeManager([a_conn], random=SystemRandom(), validator=validator)  # type: ignore[arg-type]
    b = IkeManager([b_conn], random=SystemRandom(), validator=validator)  # type: ignore[arg-type]
    init_cpu: list[float] = []
    auth_cpu: list[float] = []
    reasons: list[str] = []
    up = 0
    for _ in range(count):
        a.initiate("bench", local=A, remote=B, now=NOW)
        spent = {34: 0.0, 35: 0.0}
        pending = True
        while pending:
            pending = False
            for src, dst in ((a, b), (b, a)):
                while (event := src.next_event()) is not None:
                    if isinstance(event, AuditEvent) and src is b and event.outcome.value == "failure":
                        reasons.append(event.reason)
                    if not isinstance(event, SendDatagram):
                        continue
                    pending = True
                    if dst is b:
                        start = time.process_time()
                        b.receive_datagram(event.data, event.remote, event.local, NOW)
                        spent[event.data[18]] = spent.get(event.data[18], 0.0) + time.process_time() - start
                    else:
                        dst.receive_datagram(event.data, event.remote, event.local, NOW)
        init_cpu.append(spent[34])
        auth_cpu.append(spent[35])
    up = sum(1 for sa in b.ike_sas() if sa.state.value == "established")
    return init_cpu, auth_cpu, up, len(b.ike_sas()), reasons


def main() -> None:
    print(f"IKE_AUTH flood: {COUNT} attempts per case, responder CPU per attempt (median / 99th percentile), "
          f"load average {os.getloadavg()[0]:.2f}")
    for kind in ("cert-good", "cert-bad-signature", "psk-wrong-secret"):
        init_cpu, auth_cpu, up, kept, reasons = attempts(kind, COUNT)
        total = [i + a for i, a in zip(init_cpu, auth_cpu, strict=True)]
        p99 = statistics.quantiles(total, n=100)[98]
        reason = max(set(reasons), key=reasons.count) if reasons else "-"
        print(f"  {kind}: IKE_SA_INIT {statistics.median(init_cpu) * 1000:.2f} ms + IKE_AUTH "
              f"{statistics.median(auth_cpu) * 1000:.2f} ms = {statistics.median(total) * 1000:.2f} ms "
              f"(p99 {p99 * 1000:.2f} ms, max {max(total) * 1000:.2f} ms); established {up}/{COUNT}, IKE SAs "
              f"kept by the responder {kept}; audited: {reason} ({len(reasons)}x)")


if __name__ == "__main__":
    main()
