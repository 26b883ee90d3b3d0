"""SIEM sinks: RFC 5424 syslog over RFC 5425 TLS and ECS-style JSON lines, fed from the store (the spool)."""
