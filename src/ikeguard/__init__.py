"""ikeguard: a compliance-first IKEv2/IPsec VPN gateway."""

__version__ = "0.1.0"
