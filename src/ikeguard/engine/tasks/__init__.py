"""Role-aware tasks: each builds and processes only its own payloads of an exchange (strongSwan's model)."""
