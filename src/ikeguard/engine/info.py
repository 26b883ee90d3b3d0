"""Snapshots of IKE and Child SAs in the shape of ``ikeguard sas --json`` (docs/reference.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.ike_sa import IkeSa
from ikeguard.engine.intermediate import additional_key_exchanges
from ikeguard.engine.timers import Timer
from ikeguard.wire.iana import KeId, name_of
from ikeguard.wire.proposal_string import ProposalSpec


def _rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


def key_exchanges(spec: ProposalSpec | None) -> list[str]:
    """The negotiated key exchanges in order: the KE method, then RFC 9370 ADDKE1..7 other than NONE
    (IANA names, e.g. ``["ECP_384", "ML_KEM_768"]``); empty without any (a Child SA without PFS)."""
    if spec is None:
        return []
    out = [name_of(KeId, int(t.id)) for t in spec.ke if t.id != 0]
    out += [name_of(KeId, m) for m in additional_key_exchanges(spec)]
    return out


def child_info(child: ChildSa) -> dict[str, Any]:
    """One Child SA; byte/packet counters come from the data plane (the service fills them in)."""
    return {
        "name": child.name,
        "uniqueid": child.uniqueid,
        "state": child.state.value,
        "mode": child.mode,
        "spi_in": f"{child.spi_in:08x}",
        "spi_out": f"{child.spi_out:08x}",
        "proposal": child.proposal_text,
        "key_exchanges": key_exchanges(child.proposal),
        "local_ts": [str(t) for t in child.local_ts],
        "remote_ts": [str(t) for t in child.remote_ts],
        "bytes_in": 0,
        "bytes_out": 0,
        "packets_in": 0,
        "packets_out": 0,
        "installed_at": _rfc3339(child.installed_at or None),  # vici's install-time
        "rekey_at": _rfc3339(child.rekey_at),
        "expires_at": _rfc3339(child.expire_at),
    }


def ike_sa_info(sa: IkeSa) -> dict[str, Any]:
    """One IKE SA with its Child SAs; times (engine ``now`` = epoch seconds) as RFC 3339 UTC."""
    return {
        "name": sa.name,
        "uniqueid": sa.uniqueid,
        "state": sa.state.value,
        "local_addr": str(sa.local.address),
        "local_port": sa.local.port,
        "remote_addr": str(sa.remote.address),
        "remote_port": sa.remote.port,
        "local_id": sa.local_id,
        "remote_id": sa.remote_id,
        "user": sa.eap_identity,  # the EAP identity of the user (remote access), "" without EAP
        "virtual_ip": str(sa.virtual_ip) if sa.virtual_ip is not None else "",
        "initiator": sa.initiator,
        "proposal": sa.proposal_text,
        "key_exchanges": key_exchanges(sa.proposal),
        "post_quantum": any(n.startswith("ML_KEM") for n in key_exchanges(sa.proposal)),
        "ppk": sa.ppk_used,
        "established_at": _rfc3339(sa.established_at),
        "rekey_at": _rfc3339(sa.timers.get(Timer.IKE_REKEY)),
        "reauth_at": _rfc3339(sa.timers.get(Timer.REAUTH)),
        "spi_i": sa.spi_i.hex(),
        "spi_r": sa.spi_r.hex(),
        "nat_local": sa.nat_local,
        "nat_remote": sa.nat_remote,
        "encap": sa.encap,
        "children": [child_info(c) for c in sa.children.values()],
    }
