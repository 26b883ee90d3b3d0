"""Errors the gateway service reports to the operator (one line each)."""

from __future__ import annotations


class GatewayCommandError(Exception):
    """A control command that cannot be carried out (one line shown to the operator)."""
