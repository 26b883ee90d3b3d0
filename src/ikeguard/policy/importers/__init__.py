"""Importers from strongSwan configuration files (``swanctl.conf``) to ikeguard's TOML, with a migration
report: every key that has no equivalent, and what the compliance profile says about the result."""
