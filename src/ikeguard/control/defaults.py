"""Where the command line looks when no ``-c FILE`` / ``--socket PATH`` / ``--state-dir DIR`` is given.

As ``swanctl`` talks to charon's default vici socket and charon reads ``STRONGSWAN_CONF`` or
``/etc/strongswan.conf``, ikeguard's verbs use ``$IKEGUARD_CONFIG`` or ``/etc/ikeguard/gateway.toml`` (the
path ``packaging/ikeguard.service`` runs) and the control socket and state directory it names.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/ikeguard/gateway.toml")
CONFIG_ENV = "IKEGUARD_CONFIG"


def default_config() -> Path:
    """``$IKEGUARD_CONFIG`` when set, else ``/etc/ikeguard/gateway.toml`` (it may not exist)."""
    value = os.environ.get(CONFIG_ENV, "").strip()
    return Path(value) if value else DEFAULT_CONFIG
