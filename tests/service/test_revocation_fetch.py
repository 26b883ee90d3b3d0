"""service/revocation_fetch.py: fetches run in worker threads, identical requests share one fetch, a URI that
failed answers at once during its back-off, and the queue is bounded (docs/pki.md, "Revocation fetching")."""

from __future__ import annotations

import asyncio
import threading

from ikeguard.engine.events import RevocationFetch
from ikeguard.pki.fetch import FetchError, FetchRequest
from ikeguard.service.revocation_fetch import RevocationFetcher

CRL = FetchRequest("http://192.0.2.80/a.crl")
OTHER = FetchRequest("http://192.0.2.81/b.crl")


class GateFetcher:
    """Blocks each fetch until released; records the calling thread (never the event loop's)."""

    def __init__(self, body: bytes | None) -> None:
        self.body = body
        self.release = threading.Event()
        self.calls: list[str] = []
        self.threads: set[int] = set()

    def fetch(self, url: str, *, data: bytes | None = None, content_type: str | None = None) -> bytes:
        self.calls.append(url)
        self.threads.add(threading.get_ident())
        self.release.wait(5)
        if self.body is None:
            raise FetchError(f"{url}: timed out")
        return self.body


def run(fetcher: GateFetcher, events: list[RevocationFetch], *, max_pending: int = 64,
        then: tuple[RevocationFetch, ...] = ()) -> list[tuple[int, bytes | None]]:
    delivered: list[tuple[int, bytes | None]] = []

    async def main() -> None:
        done = asyncio.Event()
        expected = len(events) + len(then)

        def deliver(event: RevocationFetch, body: bytes | None) -> None:
            delivered.append((event.token, body))
            if len(delivered) == expected:
                done.set()

        service = RevocationFetcher(deliver, fetcher=fetcher, workers=2, max_pending=max_pending)
        loop = asyncio.get_running_loop()
        for event in events:
            service.submit(event, loop)
        await asyncio.sleep(0.05)
        assert threading.get_ident() not in fetcher.threads
        fetcher.release.set()
        while service.pending:
            await asyncio.sleep(0.01)
        for event in then:
            service.submit(event, loop)
        await asyncio.wait_for(done.wait(), 5)
        service.close()

    asyncio.run(main())
    return delivered


def test_identical_requests_share_one_fetch() -> None:
    fetcher = GateFetcher(b"crl")
    delivered = run(fetcher, [RevocationFetch(1, 11, CRL), RevocationFetch(2, 21, CRL)])
    assert fetcher.calls == [CRL.uri]
    assert sorted(delivered) == [(11, b"crl"), (21, b"crl")]


def test_failed_uri_answers_at_once_during_its_back_off() -> None:
    fetcher = GateFetcher(None)
    delivered = run(fetcher, [RevocationFetch(1, 11, CRL)], then=(RevocationFetch(2, 21, CRL),))
    assert fetcher.calls == [CRL.uri]  # the second SA did not wait for the same dead server
    assert delivered == [(11, None), (21, None)]


def test_queue_is_bounded() -> None:
    fetcher = GateFetcher(b"crl")
    delivered = run(fetcher, [RevocationFetch(1, 11, CRL), RevocationFetch(2, 21, OTHER)], max_pending=1)
    assert fetcher.calls == [CRL.uri]
    assert sorted(delivered) == [(11, b"crl"), (21, None)]
