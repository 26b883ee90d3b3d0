"""JSON Schema export of the configuration and peer inventory files (for editors, e.g. Taplo/Even Better
TOML `#:schema` or VS Code settings). Exposed as ``ikeguard check --schema`` / ``--peers-schema``."""

from __future__ import annotations

from typing import Any

from ikeguard.policy.model import ConfigModel, PeerFile

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of the gateway configuration file."""
    schema = ConfigModel.model_json_schema(mode="validation")
    return {**schema, "$schema": SCHEMA_DIALECT, "title": "ikeguard configuration"}


def peers_json_schema() -> dict[str, Any]:
    """JSON Schema of a peer inventory file (``[[peer]]`` tables)."""
    schema = PeerFile.model_json_schema(mode="validation")
    return {**schema, "$schema": SCHEMA_DIALECT, "title": "ikeguard peer inventory"}
