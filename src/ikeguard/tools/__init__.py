"""What `ikeguard demo` runs on: network-namespace labs, a throwaway certificate factory, gateway processes.

These ship in the installed product only because the demo needs them; the test suite reuses them. Test-only
helpers (strongSwan/libreswan peers, config writers, fixtures) live under ``tests/harness``.
"""
