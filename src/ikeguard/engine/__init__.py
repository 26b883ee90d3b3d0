"""Sans-IO IKEv2 protocol engine (RFC 7296): no sockets, no clock; outputs in the order to apply them.

Entry point: :class:`IkeManager` (``receive_datagram`` / ``handle_timer`` / ``get_timer`` / ``next_event`` and
commands); configuration: :mod:`ikeguard.engine.settings`; outputs: :mod:`ikeguard.engine.events`.
"""

from ikeguard.engine.errors import EngineError, LocalProtocolError, RemoteProtocolError
from ikeguard.engine.events import (
    AuditEvent,
    ChildSaSpec,
    ChildSaStateChanged,
    DatagramDropped,
    DeleteChildSa,
    Direction,
    Endpoint,
    EngineEvent,
    IkeSaStateChanged,
    InstallChildSa,
    SendDatagram,
    SendNatKeepalive,
    UpdateSaAddresses,
)
from ikeguard.engine.info import ike_sa_info
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.settings import (
    AuthKind,
    ChildSettings,
    ConnectionSettings,
    EngineSettings,
    LocalAuth,
    PeerSelectors,
    RemoteAuth,
)
from ikeguard.engine.states import ChildState, IkeState
from ikeguard.engine.validator import CertificateValidator, CertVerdict

__all__ = [
    "AuditEvent",
    "AuthKind",
    "CertVerdict",
    "CertificateValidator",
    "ChildSaSpec",
    "ChildSaStateChanged",
    "ChildSettings",
    "ChildState",
    "ConnectionSettings",
    "DatagramDropped",
    "DeleteChildSa",
    "Direction",
    "Endpoint",
    "EngineError",
    "EngineEvent",
    "EngineSettings",
    "IkeManager",
    "IkeSaStateChanged",
    "IkeState",
    "InstallChildSa",
    "LocalAuth",
    "LocalProtocolError",
    "PeerSelectors",
    "RemoteAuth",
    "RemoteProtocolError",
    "SendDatagram",
    "SendNatKeepalive",
    "UpdateSaAddresses",
    "ike_sa_info",
]
