"""Gateway configurations (TOML text) for the service tests: one connection, PSK or certificates."""

from __future__ import annotations

from dataclasses import dataclass, field

IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"


@dataclass
class GwConfig:
    """A one-connection ikeguard config; ``text()`` renders it."""

    local_addr: str
    remote_addr: str  # or "%any"
    local_id: str
    remote_id: str
    local_ts: str
    remote_ts: str
    psk: str | None = None
    dataplane: str = "none"
    profile: str = "baseline"
    listen: list[str] = field(default_factory=list)
    start_action: str = "none"
    dpd_action: str = "clear"
    close_action: str = "none"
    dpd_delay: str = "0s"
    ike_proposal: str = IKE_PROPOSAL
    esp_proposal: str = ESP_PROPOSAL
    extra_gateway: str = ""
    extra_connection: str = ""
    extra_child: str = ""
    certs: tuple[str, str, str] | None = None  # (cert file, key file, ca file)

    def text(self) -> str:
        listen = ", ".join(f'"{a}"' for a in (self.listen or [self.local_addr]))
        if self.certs is not None:
            cert, key, ca = self.certs
            local_auth = f'auth = "pubkey"\nid = "{self.local_id}"\ncerts = ["{cert}"]\nkey = "{key}"'
            remote_auth = (f'auth = "pubkey"\nid = "{self.remote_id}"\ncacerts = ["{ca}"]\n'
                           'revocation = "relaxed"')
            secrets = ""
        else:
            assert self.psk is not None
            local_auth = f'auth = "psk"\nid = "{self.local_id}"'
            remote_auth = f'auth = "psk"\nid = "{self.remote_id}"'
            secrets = (f'[secrets.ike.peer]\nids = ["{self.remote_id}", "{self.local_id}"]\n'
                       f'secret_file = "psk.txt"\n')
        return f"""
[gateway]
profile = "{self.profile}"
state_dir = "state"
dataplane = "{self.dataplane}"
listen = [{listen}]
{self.extra_gateway}

[connections.ikg]
local_addrs = ["{self.local_addr}"]
remote_addrs = ["{self.remote_addr}"]
proposals = ["{self.ike_proposal}"]
dpd_delay = "{self.dpd_delay}"
{self.extra_connection}

[connections.ikg.local]
{local_auth}

[connections.ikg.remote]
{remote_auth}

[connections.ikg.children.net]
local_ts = ["{self.local_ts}"]
remote_ts = ["{self.remote_ts}"]
esp_proposals = ["{self.esp_proposal}"]
start_action = "{self.start_action}"
dpd_action = "{self.dpd_action}"
close_action = "{self.close_action}"
{self.extra_child}

{secrets}
"""

    def files(self) -> dict[str, bytes | str]:
        return {"psk.txt": self.psk + "\n"} if self.psk is not None else {}
