"""IKE fragment reassembly with limits on fragment count and buffered octets (RFC 7383 §2.6, §4)."""

from __future__ import annotations

from ikeguard.wire.message import Message, Screen
from ikeguard.wire.sk import Fragment, assemble_fragments


class FragmentLimitExceeded(ValueError):
    """A peer sent more fragments or octets than we buffer for one message."""


class Reassembler:
    """Collects authenticated fragments of one message ID; newer IDs discard older partial messages."""

    # one per IKE SA (issue 22, memory per SA)
    __slots__ = ("_bytes", "_message_id", "_parts", "_response", "max_bytes", "max_fragments")

    def __init__(self, max_fragments: int, max_bytes: int) -> None:
        self.max_fragments = max_fragments
        self.max_bytes = max_bytes
        self._message_id: int | None = None
        self._response: bool | None = None
        self._parts: dict[int, Fragment] = {}
        self._bytes = 0

    def add(self, fragment: Fragment, screen: Screen | None = None) -> Message | None:
        """Store ``fragment``; the whole message once every fragment 1..Total arrived, else None.

        ``screen`` sees the reassembled chain's payload types before its bodies are decoded."""
        key_id, is_response = fragment.header.message_id, fragment.header.is_response
        if fragment.total > self.max_fragments:
            raise FragmentLimitExceeded(f"{fragment.total} fragments announced, limit {self.max_fragments}")
        if not 1 <= fragment.number <= fragment.total:
            raise FragmentLimitExceeded(f"fragment number {fragment.number} outside 1..{fragment.total}")
        if (key_id, is_response) != (self._message_id, self._response):
            self._message_id, self._response = key_id, is_response
            self._parts.clear()
            self._bytes = 0
        if self._parts and next(iter(self._parts.values())).total != fragment.total:
            # RFC 7383 §2.6: a changed Total means the sender re-fragmented; start over.
            self._parts.clear()
            self._bytes = 0
        if fragment.number in self._parts:
            return None
        if self._bytes + len(fragment.plaintext) > self.max_bytes:
            self._parts.clear()
            self._bytes = 0
            raise FragmentLimitExceeded(f"reassembly buffer over {self.max_bytes} octets")
        self._parts[fragment.number] = fragment
        self._bytes += len(fragment.plaintext)
        if len(self._parts) < fragment.total:
            return None
        parts = list(self._parts.values())
        self._parts.clear()
        self._bytes = 0
        return assemble_fragments(parts, screen=screen)
