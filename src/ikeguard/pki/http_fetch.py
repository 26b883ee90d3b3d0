"""The blocking HTTP fetcher for CRLs and OCSP (RFC 5280 §4.2.1.13, RFC 6960 Appendix A.1) over urllib.

Never imported by the engine or called on the event loop: the service runs it in a bounded thread pool
(``service/revocation_fetch.py``); offline tools (``check``) may call it directly."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

from ikeguard.pki.fetch import FetchError


class UrllibFetcher:
    """The real fetcher: http(s) only, short timeout, bounded body size (a CRL is not a download)."""

    def __init__(self, timeout: float = 3.0, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes

    def fetch(self, url: str, *, data: bytes | None = None, content_type: str | None = None) -> bytes:
        """Fetch one URI; any failure becomes ``FetchError`` naming the URI."""
        if not url.lower().startswith(("http://", "https://")):
            raise FetchError(f"{url}: only http and https URIs are fetched")
        headers = {"Content-Type": content_type} if content_type else {}
        request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body: bytes = response.read(self.max_bytes + 1)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            raise FetchError(f"{url}: {exc}") from exc
        if len(body) > self.max_bytes:
            raise FetchError(f"{url}: response larger than {self.max_bytes} bytes")
        return body
