"""Sans-IO IKEv2 protocol engine (RFC 7296): no sockets, no clock; outputs in the order to apply them."""
