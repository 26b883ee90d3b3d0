"""Test harness reused by interop and service tests: namespaces, a real strongSwan peer, pytest fixtures."""
