"""The control proxy of a multi-worker gateway follows every worker's event stream (issue 22): it says when
all streams are open (the supervisor reports ready only then, so a vici client registered at start sees the
first SA's events), notices a stream that ended and opens it again quickly.

The workers here are unix sockets speaking the control protocol's ``events`` command, as a worker's
delegated control socket does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ikeguard.control.client import encode
from ikeguard.control.workers_proxy import WorkerControlProxy


class _Worker:
    """One worker's control socket: answers ``events`` and streams what ``emit`` gets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.streams: list[asyncio.StreamWriter] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline())
        assert request["cmd"] == "events"
        writer.write(encode({"id": request["id"], "ok": True, "result": "streaming"}))
        await writer.drain()
        self.streams.append(writer)

    async def emit(self, event: dict[str, Any]) -> None:
        for writer in self.streams:
            writer.write(encode(event))
            await writer.drain()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.streams:
            writer.close()
        self.streams.clear()
        await self.server.wait_closed()
        self.path.unlink(missing_ok=True)


def test_following_waits_for_every_stream_and_follows_a_restarted_worker(tmp_path: Path) -> None:
    async def scenario() -> None:
        workers = [_Worker(tmp_path / f"w{i}.sock") for i in range(2)]
        proxy = WorkerControlProxy(tmp_path / "control.sock", 2, lambda i: workers[i].path)
        seen: list[tuple[int, str]] = []
        stop = proxy.subscribe(lambda index, event: seen.append((index, event["event"])))
        try:
            await workers[0].start()
            assert not await proxy.following(0.3)  # worker 1 is not up yet: not every stream is open
            await workers[1].start()
            assert await proxy.following(2.0)
            await workers[1].emit({"event": "ike.up"})
            await workers[0].emit({"event": "child.up"})
            for _ in range(100):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.01)
            assert sorted(seen) == [(0, "child.up"), (1, "ike.up")]
            # worker 1 restarts: its stream is open again within a few retries, and its events arrive
            await workers[1].stop()
            await asyncio.sleep(0.05)
            await workers[1].start()
            for _ in range(100):  # FOLLOW_RETRY is 50 ms: the proxy opens the new stream within a few
                if workers[1].streams:
                    break
                await asyncio.sleep(0.01)
            assert workers[1].streams and await proxy.following(1.0)
            await workers[1].emit({"event": "ike.down"})
            for _ in range(100):
                if (1, "ike.down") in seen:
                    break
                await asyncio.sleep(0.01)
            assert (1, "ike.down") in seen
        finally:
            stop()
            for worker in workers:
                if worker.server is not None and worker.server.is_serving():
                    await worker.stop()

    asyncio.run(scenario())
