"""Virtual IP leases that survive a gateway restart: ``STATE_DIR/leases.json`` (owner-only), written
after every change in a worker thread and once more at shutdown, read at start (docs/remote-access.md).

The file maps pool names to ``{user: address}``; at start every lease comes back offline, so each user gets
its address again and new users get others first (engine/pools.py).
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

Leases = dict[str, dict[str, str]]


class LeaseStore:
    """Reads and writes the lease file; writes are serialized in one worker thread."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "leases.json"
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ikeguard-leases")
        self._last: Leases | None = None

    def load(self) -> Leases:
        """The saved leases ({} when there are none or the file is unreadable: logged)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("virtual IP leases in %s not read: %s", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(pool): {str(u): str(a) for u, a in users.items()}
                for pool, users in data.items() if isinstance(users, dict)}

    def save_soon(self, leases: Leases) -> None:
        """Write ``leases`` in the worker thread when they changed."""
        if leases == self._last:
            return
        self._last = {pool: dict(users) for pool, users in leases.items()}
        self._writer.submit(self._write, self._last)

    def save_now(self, leases: Leases) -> None:
        """Write synchronously (shutdown) after the queued writes."""
        self._writer.shutdown(wait=True)
        self._write(leases)

    def _write(self, leases: Leases) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(leases, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("virtual IP leases not saved to %s: %s", self.path, exc)
