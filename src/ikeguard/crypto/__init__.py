"""IKEv2 cryptography over pyca/cryptography: transform registry, key exchange, key derivation, SK protection.

Everything here is sans-IO and clock-free; randomness is injected through :class:`RandomSource`.
"""
