"""``load-conn`` / ``unload-conn`` over vici (placeholder until the swanctl.conf importer lands)."""

from __future__ import annotations

from typing import Any

from ikeguard.control.server import CommandError


async def load_connections(server: Any, message: Any, user: str) -> dict[str, Any]:
    """Refused: connections cannot be loaded over vici yet."""
    raise CommandError("load-conn is not supported yet: put the connection in the configuration file")


async def unload_connection(server: Any, name: str, user: str) -> dict[str, Any]:
    """Refused: connections cannot be unloaded over vici yet."""
    raise CommandError("unload-conn is not supported yet: remove the connection from the configuration file")
