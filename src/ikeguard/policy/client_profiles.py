"""Ready client configurations for a remote-access connection (``ikeguard client-profile``): an Apple
``.mobileconfig`` (IKEv2 VPN payload), a Windows PowerShell script (``Add-VpnConnection`` +
``Set-VpnConnectionIPsecConfiguration``) and a strongSwan ``swanctl.conf``.

Everything comes from the loaded, enforced configuration: the gateway's identity and address, the
connection's first IKE proposal and its child's first ESP proposal (so only suites the profile accepted),
the pools (ask for a virtual IP), the user's group (its ``local_ts`` as the client's remote selectors). A
proposal a platform cannot express (no matching algorithm constant) is an error, never a silent downgrade.
Hand-written: no library writes these three formats from an IKEv2 proposal.
"""

from __future__ import annotations

import plistlib
import uuid
from dataclasses import dataclass

from ikeguard.policy.model import Connection

# swanctl keyword -> Apple IKEv2 payload values (Apple's "VPN" payload reference, IKEv2 dictionary)
_APPLE_ENCR = {"aes256gcm16": "AES-256-GCM", "aes128gcm16": "AES-128-GCM", "aes256": "AES-256",
               "aes128": "AES-128", "chacha20poly1305": "ChaCha20Poly1305"}
_APPLE_INTEG = {"sha256": "SHA2-256", "sha384": "SHA2-384", "sha512": "SHA2-512",
                "prfsha256": "SHA2-256", "prfsha384": "SHA2-384", "prfsha512": "SHA2-512"}
_DH = {"modp2048": 14, "modp3072": 15, "modp4096": 16, "ecp256": 19, "ecp384": 20, "ecp521": 21,
       "curve25519": 31}
# swanctl keyword -> Windows VpnClient cmdlet constants
_WIN_IKE_ENCR = {"aes256gcm16": "GCMAES256", "aes128gcm16": "GCMAES128", "aes256": "AES256",
                 "aes128": "AES128"}
_WIN_INTEG = {"sha256": "SHA256", "sha384": "SHA384", "prfsha256": "SHA256", "prfsha384": "SHA384"}
_WIN_DH = {"modp2048": "Group14", "ecp256": "ECP256", "ecp384": "ECP384"}
_WIN_ESP = {"aes256gcm16": ("GCMAES256", "GCMAES256"), "aes128gcm16": ("GCMAES128", "GCMAES128"),
            "aes256": ("AES256", None), "aes128": ("AES128", None)}
_WIN_ESP_INTEG = {"sha256": "SHA256128", "sha1": "SHA196"}
_WIN_PFS = {"modp2048": "PFS2048", "ecp256": "ECP256", "ecp384": "ECP384", "": "None"}


class ProfileError(ValueError):
    """The connection cannot be written for that platform (the message says why)."""


@dataclass(frozen=True)
class Suite:
    """One proposal split into its swanctl keywords."""

    encr: str
    integ: str
    dh: str

    @classmethod
    def parse(cls, text: str, *, esp: bool) -> Suite:
        tokens = [t for t in text.split("-") if t]
        encr = next((t for t in tokens if t in _APPLE_ENCR or t in _WIN_IKE_ENCR), "")
        integ = next((t for t in tokens if t in _APPLE_INTEG or t in _WIN_ESP_INTEG), "")
        dh = next((t for t in tokens if t in _DH), "")
        unknown = [t for t in tokens if t not in (encr, integ, dh)]
        if not encr or unknown or (not esp and not dh):
            raise ProfileError(f"proposal {text!r}: only aes/aesgcm/chacha20poly1305 with sha2 and "
                               f"modp/ecp/curve25519 can be written into a client profile")
        return cls(encr, integ, dh)


@dataclass(frozen=True)
class Target:
    """What a profile is written for."""

    name: str
    conn: Connection
    user: str
    server: str
    gateway_id: str
    remote_ts: tuple[str, ...]
    eap: str = "ttls"
    device_id: str | None = None


def _suites(target: Target) -> tuple[Suite, Suite]:
    ike = Suite.parse(target.conn.proposals[0], esp=False)
    child = next(iter(target.conn.children.values()), None)
    esp_text = child.esp_proposals[0] if child is not None else "aes256gcm16"
    return ike, Suite.parse(esp_text, esp=True)


def _minutes(seconds: int) -> int:
    return max(10, seconds // 60)


def mobileconfig(target: Target) -> bytes:
    """An Apple configuration profile (XML plist) with one IKEv2 VPN payload: device certificate +
    EAP (``ExtendedAuthEnabled``) for ``user``."""
    ike, esp = _suites(target)
    for suite in (ike, esp):
        if suite.encr not in _APPLE_ENCR:
            raise ProfileError(f"Apple devices have no {suite.encr}")

    def params(suite: Suite, lifetime: int) -> dict[str, object]:
        out: dict[str, object] = {"EncryptionAlgorithm": _APPLE_ENCR[suite.encr],
                                  "IntegrityAlgorithm": _APPLE_INTEG.get(suite.integ, "SHA2-384"),
                                  "LifeTimeInMinutes": _minutes(lifetime)}
        if suite.dh:
            out["DiffieHellmanGroup"] = _DH[suite.dh]
        return out

    child = next(iter(target.conn.children.values()), None)
    ikev2: dict[str, object] = {
        "RemoteAddress": target.server,
        "RemoteIdentifier": target.gateway_id,
        "LocalIdentifier": target.device_id or target.user,
        "AuthenticationMethod": "Certificate",
        "ExtendedAuthEnabled": 1,
        "AuthName": target.user,
        "EnablePFS": 1 if esp.dh else 0,
        "IKESecurityAssociationParameters": params(ike, target.conn.rekey_time),
        "ChildSecurityAssociationParameters": params(esp, child.rekey_time if child is not None else 3600),
        "DeadPeerDetectionRate": "Medium",
    }
    payload_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{target.gateway_id}/{target.name}/{target.user}"))
    vpn = {"PayloadType": "com.apple.vpn.managed", "PayloadVersion": 1, "PayloadUUID": payload_id,
           "PayloadIdentifier": f"net.ikeguard.vpn.{target.name}.{target.user}",
           "PayloadDisplayName": f"VPN {target.name}", "UserDefinedName": target.name, "VPNType": "IKEv2",
           "IKEv2": ikev2}
    top_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"profile/{payload_id}"))
    profile = {"PayloadContent": [vpn], "PayloadType": "Configuration", "PayloadVersion": 1,
               "PayloadUUID": top_id, "PayloadIdentifier": f"net.ikeguard.{target.name}.{target.user}",
               "PayloadDisplayName": f"{target.name} VPN for {target.user}"}
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)


def powershell(target: Target) -> str:
    """``Add-VpnConnection`` and ``Set-VpnConnectionIPsecConfiguration`` with the connection's suites."""
    ike, esp = _suites(target)
    try:
        encr, integ, dh = _WIN_IKE_ENCR[ike.encr], _WIN_INTEG[ike.integ or "sha384"], _WIN_DH[ike.dh]
        cipher, auth = _WIN_ESP[esp.encr]
        pfs = _WIN_PFS[esp.dh]
    except KeyError as exc:
        raise ProfileError(f"Windows has no IPsec constant for {exc.args[0]}") from None
    if auth is None:
        auth = _WIN_ESP_INTEG.get(esp.integ)
        if auth is None:
            raise ProfileError(f"Windows has no ESP integrity constant for {esp.integ}")
    name = target.name.replace('"', "")
    lines = [
        f"# ikeguard client profile: {name} for {target.user} (IKEv2, machine certificate + EAP)",
        f'Add-VpnConnection -Name "{name}" -ServerAddress "{target.server}" -TunnelType Ikev2 '
        f"-AuthenticationMethod MachineCertificate,Eap -EncryptionLevel Maximum "
        f"-SplitTunneling ${'false' if _full(target) else 'true'} -RememberCredential -PassThru",
        f'Set-VpnConnectionIPsecConfiguration -ConnectionName "{name}" '
        f"-AuthenticationTransformConstants {auth} -CipherTransformConstants {cipher} "
        f"-EncryptionMethod {encr} -IntegrityCheckMethod {integ} -DHGroup {dh} -PfsGroup {pfs} -Force",
    ]
    if not _full(target):
        lines += [f'Add-VpnConnectionRoute -ConnectionName "{name}" -DestinationPrefix "{ts}"'
                  for ts in target.remote_ts]
    return "\n".join(lines) + "\n"


def _full(target: Target) -> bool:
    return any(ts in ("0.0.0.0/0", "::/0") for ts in target.remote_ts)


def swanctl(target: Target) -> str:
    """A strongSwan road-warrior ``swanctl.conf``: device certificate (``device.pem``) then EAP; ESP in UDP
    always (``encap``: road warriors sit behind NATs, and kernel-libipsec clients need it)."""
    _suites(target)  # refuse what cannot be written
    child_name, child = next(iter(target.conn.children.items()), ("net", None))
    esp = child.esp_proposals[0] if child is not None else "aes256gcm16"
    vips = "\n        vips = 0.0.0.0" if target.conn.pools else ""
    device = f"\n            id = {target.device_id}" if target.device_id else ""
    return f"""connections {{
    {target.name} {{
        remote_addrs = {target.server}{vips}
        encap = yes
        proposals = {target.conn.proposals[0]}
        local {{
            auth = pubkey
            certs = device.pem{device}
        }}
        local-2 {{
            auth = eap-{target.eap}
            eap_id = {target.user}
        }}
        remote {{
            auth = pubkey
            id = {target.gateway_id}
        }}
        children {{
            {child_name} {{
                remote_ts = {",".join(target.remote_ts)}
                esp_proposals = {esp}
            }}
        }}
    }}
}}
"""
