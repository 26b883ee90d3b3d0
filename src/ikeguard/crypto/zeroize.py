"""Overwriting secrets in memory when they are no longer needed (docs/key-hygiene.md).

Python gives no guarantee here; this module does what CPython allows and nothing more:

- ``bytearray`` (and writable buffers): overwritten in place with zeros by :func:`wipe`. Every long-lived
  key container is a ``bytearray`` (``crypto.keymat.IkeKeys``/``ChildKeys``, the data plane's SA keys).
- ``bytes`` are immutable, and ``cryptography`` returns every PRF/HMAC output as ``bytes``: the blocks of
  prf+ (RFC 7296 §2.13) *are* the key stream. :func:`scrub_owned` overwrites such an object in place through
  ``ctypes``, and only one that the caller created itself and never handed out (a fresh ``finalize()``
  result, or a concatenation made for one PRF call): CPython shares only the empty and the one-octet bytes
  objects, which are skipped. On another interpreter it does nothing (``SCRUBS_BYTES`` is False).

What remains out of reach is listed in docs/key-hygiene.md (OpenSSL's own copies are cleansed by OpenSSL when
cryptography frees its contexts; copies the garbage collector moved or the kernel swapped out are not ours).
No library offers this for Python's immutable objects; the ctypes call is the whole of it.
"""

from __future__ import annotations

import ctypes
import platform

SCRUBS_BYTES = platform.python_implementation() == "CPython"
# PyBytesObject's header; ob_sval (the octets) follows it (CPython's Include/cpython/bytesobject.h)
_BYTES_DATA_OFFSET = bytes.__basicsize__ - 1


def wipe(*buffers: bytearray | memoryview) -> None:
    """Zero writable buffers in place."""
    for buf in buffers:
        view = memoryview(buf).cast("B")
        view[:] = bytes(len(view))


def scrub_owned(*objects: bytes) -> None:
    """Zero ``bytes`` objects the caller owns exclusively (see the module docstring); no-op elsewhere."""
    if not SCRUBS_BYTES:
        return
    for obj in objects:
        if type(obj) is bytes and len(obj) > 1:
            ctypes.memset(id(obj) + _BYTES_DATA_OFFSET, 0, len(obj))
