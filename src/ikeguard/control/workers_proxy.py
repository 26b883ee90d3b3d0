"""The control socket of a multi-worker gateway (``[gateway] workers`` > 1, issue 22): one socket,
``state_dir/control.sock``, answering for every worker process, each of which serves the same protocol
(:mod:`ikeguard.control.server`) on its private ``state_dir/workers/I/control.sock``.

A request is answered by the workers it concerns, with the same wire format as one gateway's:

* ``sas``: every worker's SAs, merged in uniqueid order, ``offset``/``limit`` applied to the merged list
  (with a ``limit`` each worker is asked only for its first ``offset + limit``: each answers in uniqueid
  order, so the merged page is the same; answers are read up to the CLI's ``MAX_ANSWER``).
* selections by ``uniqueid`` (``sas``, ``terminate``, ``rekey``, ``redirect``): the worker that numbered it
  (``(uniqueid - 1) % workers``, ``EngineContext.number_uniqueids``); by ``peer``/``conn``: every worker,
  the counts added (``no SA matches`` only when no worker had one). ``conns``: worker 0's list with the IKE
  SAs up added over all workers.
* ``reload`` and the inventory changes of ``peers``: every worker (each reloads the same file; a refusal by
  any is the answer); ``initiate``, ``peers list``, ``compliance``, ``ha``: worker 0, which also
  runs ``start_action`` (initiated SAs live there).
* ``events``: the streams of all workers, interleaved (:meth:`WorkerControlProxy.subscribe`: the same for a
  front end in the supervisor, the vici server of :mod:`ikeguard.control.vici_workers`, which asks through
  :meth:`WorkerControlProxy.dispatch` as a control client would, so every rule above is written once).

Who asked is checked here as on a single gateway (``SO_PEERCRED``: root or the gateway's user only) and
recorded here: one ``admin.command`` per command, naming that user and the outcome of the merged answer (PCI
DSS 10.2.1.2); the workers are told whom they act for (``on_behalf``) and record none themselves. Of the
records a change applied by every worker makes (a reload, ``peers add|disable|enable``), worker 0 writes the
one: ``peers`` changes go to the other workers first and then to worker 0 with the IKE SAs they deleted
(``terminated_elsewhere``), so its ``peer.disabled`` counts them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ikeguard.audit.events import AuditEvent, Outcome
from ikeguard.audit.service import admin_command_event
from ikeguard.control.client import MAX_ANSWER, MAX_LINE, encode
from ikeguard.control.server import Caller, command_text, peer_credentials, serve_owner_only, stop_serving

log = logging.getLogger("ikeguard.control")
ASK_TIMEOUT = 130.0  # seconds: initiate/rekey wait up to 120 s in the worker
FOLLOW_RETRY = 0.05  # seconds before a worker's event stream is opened again (the worker being restarted):
# short, because what the worker emits before the stream is open again is not seen by the subscriber
EventCallback = Callable[[int, dict[str, Any]], Awaitable[None] | None]
_ALL = frozenset({"reload"})
_FIRST = frozenset({"initiate", "compliance", "ha"})
_SELECT = frozenset({"terminate", "rekey", "redirect"})
_COUNTED = {"terminate": "terminated", "rekey": "rekeyed", "redirect": "redirected"}


class WorkerControlProxy:
    """Serve the control protocol on ``path`` for the workers whose sockets ``worker_path(i)`` names."""

    def __init__(self, path: Path, workers: int, worker_path: Callable[[int], Path],
                 record: Callable[[AuditEvent], None] | None = None) -> None:
        self.path = path
        self.record = record
        self.workers = workers
        self.worker_path = worker_path
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._followed: dict[int, asyncio.Event] = {}  # worker -> its event stream is open (subscribe)
        # called after every worker accepted a `reload` (its args): a front end refreshes its view
        self.on_reload: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    async def start(self) -> None:
        """Bind ``path`` (0600 before listening) and serve."""
        self._server = await serve_owner_only(self.path, "the control socket", self._serve, MAX_LINE)
        log.info("control socket listening on %s for %d workers", self.path, self.workers)

    async def close(self) -> None:
        """Stop serving and remove the socket."""
        await stop_serving(self._server, self._tasks, self.path)
        self._server = None

    async def ready(self, timeout: float, given_up: Callable[[], bool] = lambda: False) -> bool:
        """True once every worker answers ``conns`` (its gateway is up); False after ``timeout`` or as soon as
        ``given_up()`` says a worker ended before it was ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = set(range(self.workers))
        while pending and loop.time() < deadline and not given_up():
            for index in list(pending):
                answer = await self.ask(index, {"id": 0, "cmd": "conns"}, timeout=2.0)
                if answer.get("ok"):
                    pending.discard(index)
            if pending:
                await asyncio.sleep(0.1)
        return not pending

    async def following(self, timeout: float) -> bool:
        """True once the event stream of every worker is open for the subscriber (at start: the gateway
        is not reported ready before, so that no event of a first SA can pass unseen); False after
        ``timeout``. True at once without a subscriber."""
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._followed.values())), timeout)
        except TimeoutError:
            return False
        return True

    # -- talking to the workers -----------------------------------------------------------------
    async def ask(self, index: int, request: dict[str, Any], timeout: float = ASK_TIMEOUT) -> dict[str, Any]:
        """One request to worker ``index``; a worker that does not answer gives an error answer."""
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.worker_path(index)), limit=MAX_ANSWER), timeout)
            writer.write(encode(request))
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout)
            answer = json.loads(line) if line else None
        except (OSError, TimeoutError, ValueError):
            answer = None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        if not isinstance(answer, dict):
            return {"id": request.get("id"), "ok": False,
                    "error": f"worker {index} is not answering (being restarted?)"}
        return answer

    async def _ask_all(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self.ask(i, request) for i in range(self.workers))))

    async def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request from the workers' answers."""
        rid, cmd = request.get("id"), request.get("cmd")
        args = request.get("args") if isinstance(request.get("args"), dict) else {}
        assert isinstance(args, dict)
        uid = args.get("uniqueid")
        if isinstance(uid, int) and not isinstance(uid, bool) and uid > 0 and cmd in ("sas", *_SELECT):
            return await self.ask((uid - 1) % self.workers, request)
        if cmd == "sas":
            wanted = {k: v for k, v in args.items() if k not in ("offset", "limit")}
            offset, limit = args.get("offset", 0), args.get("limit")
            if isinstance(offset, int) and isinstance(limit, int) and offset >= 0 and limit >= 0:
                wanted["limit"] = offset + limit  # each worker's first page, in uniqueid order
            return self._merge_sas(rid, args, await self._ask_all({**request, "args": wanted}))
        if cmd in _SELECT:
            return _sum(rid, cmd, await self._ask_all(request))
        if cmd == "conns":
            return _conns(rid, await self._ask_all(request))
        if cmd == "peers" and args.get("action", "list") != "list":
            answers = list(await asyncio.gather(*(self.ask(i, request) for i in range(1, self.workers))))
            refused = next((a for a in answers if not a.get("ok")), None)
            if refused is not None:
                return {**refused, "id": rid}
            elsewhere = sum(_terminated(a) for a in answers)
            return await self.ask(0, {**request, "terminated_elsewhere": elsewhere})
        if cmd in _ALL:
            answers = await self._ask_all(request)
            refused = next((a for a in answers if not a.get("ok")), None)
            if refused is not None:
                return {**refused, "id": rid}
            first = answers[0]
            if cmd == "reload" and self.on_reload is not None:
                with contextlib.suppress(Exception):
                    await self.on_reload(args)
            if isinstance(first.get("result"), dict):
                first["result"] = {**first["result"], "workers": self.workers}
            return first
        return await self.ask(0, request)  # _FIRST, unknown commands (worker 0 words the error)

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Every worker's events (its ``events`` stream, opened again after the worker's restart),
        interleaved in arrival order: ``callback(worker, event)`` on this loop (awaited when it returns an
        awaitable, so one worker's events stay in order). Returns the unsubscribe function."""
        self._followed = {index: asyncio.Event() for index in range(self.workers)}
        tasks = [asyncio.ensure_future(self._follow(index, callback)) for index in range(self.workers)]

        def stop() -> None:
            for task in tasks:
                task.cancel()

        return stop

    async def _follow(self, index: int, callback: EventCallback) -> None:
        while True:
            writer = None
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.worker_path(index)),
                                                                    limit=MAX_LINE)
                writer.write(encode({"id": 0, "cmd": "events"}))
                await writer.drain()
                first = json.loads(await reader.readline() or b"null")
                if isinstance(first, dict) and first.get("ok"):
                    self._followed[index].set()  # the worker streams what it emits from now on
                while isinstance(first, dict) and first.get("ok") and (line := await reader.readline()):
                    event = json.loads(line)
                    if isinstance(event, dict) and "event" in event:
                        result = callback(index, event)
                        if inspect.isawaitable(result):
                            await result
            except (OSError, ValueError):
                pass
            except Exception:
                log.exception("events of worker %d: delivery failed", index)
            finally:
                self._followed[index].clear()
                if writer is not None:
                    writer.close()
            await asyncio.sleep(FOLLOW_RETRY)

    @staticmethod
    def _merge_sas(rid: Any, args: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
        failed = [a for a in answers if not a.get("ok")]
        if len(failed) == len(answers):
            return {**failed[0], "id": rid}
        sas = sorted((sa for a in answers if a.get("ok") for sa in a.get("result", [])),
                     key=lambda sa: int(sa.get("uniqueid", 0)))
        total = sum(int(a.get("total", len(a.get("result", [])))) for a in answers if a.get("ok"))
        offset, limit = args.get("offset", 0), args.get("limit")
        if not isinstance(offset, int) or offset < 0 or (limit is not None and (
                not isinstance(limit, int) or limit < 0)):
            return {"id": rid, "ok": False, "error": "offset and limit must not be negative"}
        end = None if limit is None else offset + limit
        return {"id": rid, "ok": True, "result": sas[offset:end], "total": total}

    # -- clients --------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            caller = peer_credentials(writer.get_extra_info("socket"))
            if caller.uid not in (0, os.geteuid()):
                await _write(writer, {"id": None, "ok": False,
                                      "error": "permission denied: only root and the gateway's user"})
                return
            while True:
                line = await reader.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except ValueError:
                    await _write(writer, {"id": None, "ok": False, "error": "not a JSON request"})
                    continue
                if not isinstance(request, dict):
                    await _write(writer, {"id": None, "ok": False, "error": "a request is a JSON object"})
                    continue
                request.pop("terminated_elsewhere", None)  # only the proxy says that, never a client
                request["on_behalf"] = {"pid": caller.pid, "uid": caller.uid, "gid": caller.gid}
                if request.get("cmd") == "events":
                    self._audit(request, caller, {"ok": True})
                    await self._stream(request, reader, writer)
                    return
                answer = await self.dispatch(request)
                self._audit(request, caller, answer)
                await _write(writer, answer)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("control connection failed")
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _audit(self, request: dict[str, Any], caller: Caller, answer: dict[str, Any]) -> None:
        """The one ``admin.command`` record of a command, with the merged answer's outcome."""
        if self.record is None:
            return
        cmd, args = request.get("cmd"), request.get("args")
        args = args if isinstance(args, dict) else {}
        shown = command_text(cmd, args) if isinstance(cmd, str) else json.dumps(cmd)[:64]
        error = "" if answer.get("ok") else str(answer.get("error", ""))
        conn = args.get("conn", "")
        event = admin_command_event(shown, caller.uid, outcome=Outcome.FAILURE if error else Outcome.SUCCESS,
                                    reason=error, connection=conn if isinstance(conn, str) else "")
        try:
            self.record(event)
        except Exception:
            log.exception("could not record admin.command")

    async def _stream(self, request: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        upstream: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for index in range(self.workers):
                r, w = await asyncio.open_unix_connection(str(self.worker_path(index)), limit=MAX_LINE)
                upstream.append((r, w))
                w.write(encode(request))
                await w.drain()
                first = json.loads(await r.readline() or b"null")
                if not isinstance(first, dict) or not first.get("ok"):
                    await _write(writer, first if isinstance(first, dict) else
                                 {"id": request.get("id"), "ok": False, "error": f"worker {index} refused"})
                    return
            await _write(writer, {"id": request.get("id"), "ok": True, "result": "streaming"})

            async def pump(r: asyncio.StreamReader) -> None:
                while line := await r.readline():
                    writer.write(line)
                    await writer.drain()

            pumps = [asyncio.ensure_future(pump(r)) for r, _ in upstream]
            eof = asyncio.ensure_future(reader.read(1))
            try:
                await asyncio.wait({eof, *pumps}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (eof, *pumps):
                    t.cancel()
        except (OSError, ValueError):
            with contextlib.suppress(Exception):
                await _write(writer, {"id": request.get("id"), "ok": False,
                                      "error": "a worker is not answering (being restarted?)"})
        finally:
            for _, w in upstream:
                w.close()


def _terminated(answer: dict[str, Any]) -> int:
    result = answer.get("result")
    count = result.get("terminated", 0) if isinstance(result, dict) else 0
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def _conns(rid: Any, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Worker 0's connection list with ``ike_sas_up`` added over the workers (up when any has one)."""
    if not answers[0].get("ok"):
        return {**answers[0], "id": rid}
    up: dict[str, int] = {}
    for answer in answers:
        for conn in answer.get("result", []) if answer.get("ok") else []:
            up[conn["name"]] = up.get(conn["name"], 0) + int(conn.get("ike_sas_up", 0))
    result = []
    for conn in answers[0]["result"]:
        count = up.get(conn["name"], 0)
        status = conn["status"] if conn["status"] not in ("up", "down") else ("up" if count else "down")
        result.append({**conn, "ike_sas_up": count, "status": status})
    return {"id": rid, "ok": True, "result": result}


def _sum(rid: Any, cmd: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [a for a in answers if a.get("ok")]
    if not ok:
        return {**answers[0], "id": rid}
    key = _COUNTED[cmd]
    result: dict[str, Any] = {key: sum(int(a["result"].get(key, 0)) for a in ok)}
    if cmd == "rekey":
        result["sas"] = [sa for a in ok for sa in a["result"].get("sas", [])]
    return {"id": rid, "ok": True, "result": result}


async def _write(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(encode(message))
    await writer.drain()
