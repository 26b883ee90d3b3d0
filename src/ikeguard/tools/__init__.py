"""Reusable tools: network-namespace labs and a test/demo certificate factory."""
