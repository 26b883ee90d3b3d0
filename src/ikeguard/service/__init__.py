"""The gateway service: the only asyncio layer (sockets, timers, engine outputs, signals, reload)."""
