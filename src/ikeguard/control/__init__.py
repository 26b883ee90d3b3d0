"""Operator-facing surface: the `ikeguard` CLI, later the control socket and metrics."""
