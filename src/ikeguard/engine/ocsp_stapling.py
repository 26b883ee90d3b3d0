"""OCSP in IKE (RFC 4806): asking the peer for an OCSP response and stapling ours, per ``connection.ocsp``
(``never`` | ``reply`` | ``request`` | ``both``, as swanctl's ``connections.<conn>.ocsp``).

* Asking (``request``/``both``, §3.1): a CERTREQ of Cert Encoding 14 "OCSP Content". Its Certification
  Authority field may hold SHA-1 hashes of OCSP responder keys we trust; we send it empty ("zero or more"):
  we trust the CA and the delegated responders it certifies, which the response itself names. As initiator
  it goes into the IKE_AUTH request (§4.1); as responder into the IKE_SA_INIT response when any connection
  asks (the connection is not known yet).
* Stapling (``reply``/``both``, §3.2): when the peer sent such a CERTREQ, a CERT of encoding 14 with the DER
  OCSPResponse for our end-entity certificate, after our certificates, if the service holds a verified one
  that has not passed its nextUpdate (``EngineContext.ocsp_staples``, fetched off the event loop by
  service/ocsp_staple.py). Without one we send our certificates alone, as strongSwan does ("no OCSP status").
* Receiving: the peer's CERT payloads of encoding 14 go to the validator with its certificate chain
  (``engine.validator.validate_peer``), only when we asked; otherwise they are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.wire.iana import CertEncoding
from ikeguard.wire.payloads import CertPayload, CertReqPayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage
    from ikeguard.engine.settings import ConnectionSettings

ASKS = frozenset({"request", "both"})
REPLIES = frozenset({"reply", "both"})


def asks(conn: ConnectionSettings | None) -> bool:
    """The connection requests the peer's OCSP response (``request``/``both``)."""
    return conn is not None and conn.ocsp in ASKS


def ocsp_certreq() -> CertReqPayload:
    """CERTREQ "OCSP Content" (RFC 4806 §3.1) with no responder hashes."""
    return CertReqPayload(CertEncoding.OCSP_CONTENT, b"")


def peer_asks(msg: InMessage) -> bool:
    """The message carries a CERTREQ of encoding 14 (RFC 4806 §3.1)."""
    return any(p.encoding == CertEncoding.OCSP_CONTENT for p in msg.get_all(CertReqPayload))


def stapled(msg: InMessage) -> tuple[bytes, ...]:
    """The DER OCSP responses in the message's CERT payloads of encoding 14 (RFC 4806 §3.2)."""
    return tuple(p.data for p in msg.get_all(CertPayload) if p.encoding == CertEncoding.OCSP_CONTENT)


def received(sa: IkeSa, conn: ConnectionSettings, msg: InMessage) -> tuple[bytes, ...]:
    """The stapled responses to validate: only when this connection asked for them (as strongSwan, which
    ignores a response it did not request; ``ocsp_received`` in the auth records says so)."""
    staples = stapled(msg)
    if staples and not asks(conn):
        sa.auth_details["ocsp_received"] = f"not requested: ignored (ocsp = {conn.ocsp})"
        return ()
    return staples


def add_staple(sa: IkeSa, conn: ConnectionSettings, msg: OutMessage) -> None:
    """Our OCSP response in a CERT payload when the peer asked and the connection replies (RFC 4806 §3.2);
    ``ocsp_sent`` in the auth records says what we did."""
    if not sa.peer_asks_ocsp or conn.ocsp not in REPLIES or not conn.local.certs:
        return
    staple = sa.ctx.ocsp_staples.get(conn.name)
    if staple is None or (staple.next_update is not None and staple.next_update <= sa.now):
        sa.auth_details["ocsp_sent"] = "none cached"
        return
    msg.add(CertPayload(CertEncoding.OCSP_CONTENT, staple.der))
    sa.auth_details["ocsp_sent"] = staple.status
