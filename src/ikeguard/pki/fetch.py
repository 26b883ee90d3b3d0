"""Fetching CRLs and OCSP responses: the injectable ``Fetcher`` protocol and ``DeferredFetcher``, which the
engine's validator uses (no I/O; this module imports no network code). The blocking urllib implementation is
``pki.http_fetch.UrllibFetcher``, run only in the service's worker threads (service/revocation_fetch.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class FetchError(Exception):
    """A URI could not be fetched (refused scheme, network error, HTTP error, oversized body)."""


class Fetcher(Protocol):
    """GET ``url`` (no ``data``) or POST ``data`` as ``content_type``; the body, or raise FetchError."""

    def fetch(self, url: str, *, data: bytes | None = None, content_type: str | None = None) -> bytes: ...


@dataclass(frozen=True)
class FetchRequest:
    """One revocation fetch: GET ``uri`` (a CRL, RFC 5280 §4.2.1.13) or POST an OCSP request (RFC 6960
    Appendix A.1) as ``content_type``."""

    uri: str
    data: bytes | None = None
    content_type: str | None = None


class FetchNeeded(Exception):
    """Raised by ``DeferredFetcher``: the answer to ``request`` is not at hand; fetch it elsewhere, hand it in
    with ``DeferredFetcher.answer`` and validate again."""

    def __init__(self, request: FetchRequest) -> None:
        super().__init__(f"fetch of {request.uri} needed")
        self.request = request


class DeferredFetcher:
    """A ``Fetcher`` that never does network I/O: it answers from bodies handed in with ``answer`` and raises
    ``FetchNeeded`` for anything else. The engine uses it so validation on the event loop cannot block; the
    service fetches in a thread pool (``service/revocation_fetch.py``) and hands the body in.

    An answer is used once: the ``RevocationChecker`` above caches the parsed CRL or OCSP answer until its
    nextUpdate, and a failure (``None``) becomes a ``FetchError`` that starts its failure back-off."""

    MAX_ANSWERS = 1024

    def __init__(self) -> None:
        self._answers: dict[FetchRequest, bytes | None] = {}

    def answer(self, request: FetchRequest, body: bytes | None) -> None:
        """The outcome of fetching ``request``: the body, or None when the fetch failed or timed out."""
        if len(self._answers) >= self.MAX_ANSWERS:
            self._answers.clear()
        self._answers[request] = body

    def fetch(self, url: str, *, data: bytes | None = None, content_type: str | None = None) -> bytes:
        """The handed-in answer for this request, or raise ``FetchNeeded`` (never touches the network)."""
        request = FetchRequest(url, data, content_type)
        if request not in self._answers:
            raise FetchNeeded(request)
        body = self._answers.pop(request)
        if body is None:
            raise FetchError(f"{url}: no answer (fetch failed or timed out)")
        return body
