"""The auditor's evidence pack (`ikeguard evidence`, docs/evidence.md), made from the gateway's own records.

Modules: ``period`` (the trail's records of a period, archives included), ``inventory`` (cryptographic and
certificate inventories, PCI DSS 4.0.1 12.3.3), ``records`` (connection records for a SIEM, configuration
history, HSM access log), ``pack`` (assemble, manifest, seal, write), ``verify`` (offline check of a pack).
"""
