"""Configuration model, peer inventory and compliance policy (profiles as data, one rule set enforced at
config load, in proposal selection and in the report). Pure: no asyncio, sockets or clock reads."""

from ikeguard.policy.errors import ConfigError, ConfigUnreadable, Finding
from ikeguard.policy.loader import LoadedConfig, load_config

__all__ = ["ConfigError", "ConfigUnreadable", "Finding", "LoadedConfig", "load_config"]
