"""High availability (issue 20, docs/ha.md): SA state sealed with the pair's key, replicated through etcd,
restored by the standby when keepalived makes it MASTER."""
