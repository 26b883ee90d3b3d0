"""Revocation fetches for the engine, off the event loop (docs/pki.md, "Revocation fetching").

The engine's validator never does network I/O: it asks with a ``RevocationFetch`` output. Here each fetch
runs in a bounded thread pool (``UrllibFetcher``: http(s) only, a per-URI timeout, a size cap); identical
requests in flight share one fetch; a URI that just failed answers ``None`` at once for ``failure_backoff``
seconds (a hanging server costs one timeout, not one per peer); at most ``max_pending`` distinct fetches
queue, beyond that a request fails at once instead of piling up. The result goes back to the engine on the
event loop (``IkeManager.revocation_fetched``). Parsed CRLs and OCSP answers are cached by the validator's
``RevocationChecker`` until their nextUpdate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ikeguard.engine.events import RevocationFetch
from ikeguard.pki.fetch import Fetcher, FetchError, FetchRequest
from ikeguard.pki.http_fetch import UrllibFetcher

log = logging.getLogger(__name__)

Deliver = Callable[[RevocationFetch, bytes | None], None]


class RevocationFetcher:
    """Runs the engine's ``RevocationFetch`` requests in worker threads and delivers the bodies."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        fetcher: Fetcher | None = None,
        workers: int = 4,
        max_pending: int = 64,
        failure_backoff: float = 30.0,
    ) -> None:
        self._deliver = deliver
        self._fetcher: Fetcher = fetcher or UrllibFetcher()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ikeguard-revocation")
        self._max_pending = max_pending
        self._failure_backoff = failure_backoff
        self._inflight: dict[FetchRequest, list[RevocationFetch]] = {}
        self._failed_until: dict[str, float] = {}
        self._closed = False

    @property
    def pending(self) -> int:
        """Distinct fetches queued or running."""
        return len(self._inflight)

    def submit(self, event: RevocationFetch, loop: asyncio.AbstractEventLoop) -> None:
        """Start (or join) the fetch ``event`` asks for; ``deliver`` is called on ``loop`` when it ends."""
        request = event.request
        waiting = self._inflight.get(request)
        if waiting is not None:
            waiting.append(event)
            return
        blocked = self._failed_until.get(request.uri)
        if self._closed or (blocked is not None and time.monotonic() < blocked):
            loop.call_soon(self._deliver, event, None)
            return
        if len(self._inflight) >= self._max_pending:
            log.warning("revocation fetch of %s refused: %d fetches already pending", request.uri,
                        len(self._inflight))
            loop.call_soon(self._deliver, event, None)
            return
        self._inflight[request] = [event]
        log.info("revocation fetch of %s for IKE SA %d started", request.uri, event.ike_uniqueid)
        future = loop.run_in_executor(self._pool, self._fetch, request)
        future.add_done_callback(lambda done: self._done(request, done))

    def _fetch(self, request: FetchRequest) -> bytes | None:
        """In a worker thread: the blocking fetch; None on any failure."""
        try:
            return self._fetcher.fetch(request.uri, data=request.data, content_type=request.content_type)
        except FetchError as exc:
            log.info("revocation fetch failed: %s", exc)
            return None

    def _done(self, request: FetchRequest, done: asyncio.Future[bytes | None]) -> None:
        """On the event loop: hand the outcome to every waiting IKE SA."""
        body = None if done.cancelled() or done.exception() is not None else done.result()
        if body is None:
            self._failed_until[request.uri] = time.monotonic() + self._failure_backoff
        else:
            self._failed_until.pop(request.uri, None)
        for event in self._inflight.pop(request, []):
            self._deliver(event, body)

    def close(self) -> None:
        """Stop taking fetches; running ones end by their own timeout (threads cannot be interrupted)."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
