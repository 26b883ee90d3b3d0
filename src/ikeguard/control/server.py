"""The gateway's control socket: a UNIX stream socket (owner-only), JSON lines, request/response and an
event stream (format in :mod:`ikeguard.control.client`).

Who asked is taken from the kernel (``SO_PEERCRED``), never from the request; every command, queries
included, is recorded as ``admin.command`` with that user and the outcome (PCI DSS 10.2.1.2, 10.2.2).
Only root and the gateway's own user may talk to it (the socket is mode 0600 in a directory that is not
world-writable). A bad request gets a one-line error; a traceback never reaches the client.

``sas`` at a processor's scale (100,000 IKE SAs, issue 22): the gateway selects and pages the SAs first and
builds their views a chunk at a time; the answer, still one JSON line for the client, is written chunk by
chunk with the event loop free to serve IKE between chunks (a full answer of ~100 MB never blocks it for
seconds, and is never held whole in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ikeguard.audit.events import AuditEvent, Outcome
from ikeguard.audit.service import admin_command_event
from ikeguard.control.client import MAX_LINE, encode

log = logging.getLogger("ikeguard.control")

EVENT_QUEUE = 10_000  # events buffered per stream client before it is cut off as too slow
LOADED_FILE = "vici-loaded.toml"  # state_dir's configuration plus what was loaded over vici (vici_load.py)


class AuditRecorder(Protocol):
    """The part of the audit service the control socket uses."""

    def record(self, event: AuditEvent) -> None: ...


class ControlledGateway(Protocol):
    """What the control socket needs of a running gateway (CONTRACTS.md §2)."""

    plan: Any
    audit: Any
    stats: Any

    def sas(self, *, conn: str | None = None, peer: str | None = None,
            uniqueid: int | None = None) -> list[dict[str, Any]]: ...

    def sa_page(self, *, conn: str | None = None, peer: str | None = None, uniqueid: int | None = None,
                offset: int = 0, limit: int | None = None) -> tuple[list[dict[str, Any]], int]: ...

    def sa_chunks(self, *, conn: str | None = None, peer: str | None = None, uniqueid: int | None = None,
                  offset: int = 0, limit: int | None = None,
                  size: int = 256) -> tuple[Iterator[list[dict[str, Any]]], int]: ...

    def sa_uniqueids(self, *, conn: str | None = None, peer: str | None = None,
                     uniqueid: int | None = None) -> list[int]: ...

    def conns(self) -> list[dict[str, Any]]: ...

    async def initiate(self, conn: str, child: str | None = None, timeout: float = 15.0) -> list[int]: ...

    def terminate(self, *, uniqueid: int | None = None, peer: str | None = None, conn: str | None = None,
                  child: str | None = None, reason: str = "terminated by admin") -> int: ...

    def rekey(self, *, uniqueid: int | None = None, peer: str | None = None, conn: str | None = None,
              child: str | None = None) -> int: ...

    async def rekey_sas(self, *, uniqueid: int | None = None, peer: str | None = None,
                        conn: str | None = None, child: str | None = None, ike: bool = False,
                        timeout: float = 10.0) -> list[dict[str, Any]]: ...

    def redirect(self, gateway: str, *, uniqueid: int | None = None, peer: str | None = None,
                 conn: str | None = None, reason: str = "redirected by admin") -> int: ...

    def apply_plan(self, plan: Any) -> None: ...

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]: ...


class ControlSocketError(Exception):
    """The control socket cannot be opened safely (another gateway owns it, unsafe directory)."""


class CommandError(Exception):
    """A request the gateway refuses; ``str(exc)`` is what the operator sees."""


def _operator_errors() -> tuple[type[Exception], ...]:
    """Exceptions whose message is meant for the operator; anything else is an internal error."""
    from ikeguard.policy.errors import ConfigError
    from ikeguard.service.errors import GatewayCommandError

    return (CommandError, GatewayCommandError, ConfigError, ValueError, LookupError)


def _error_text(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line


@dataclass(frozen=True)
class Caller:
    """The local user behind a control connection (from SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> Caller:
    """The connecting process's pid/uid/gid, as the kernel reports them (``SO_PEERCRED``, Linux)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Caller(pid, uid, gid)


def prepare_socket_path(path: Path, what: str) -> None:
    """Make ``path``'s directory (0700) and remove a stale socket; refuse a world-writable directory, one
    owned by someone else, a non-socket at ``path`` and a socket another gateway still answers on."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
    info = directory.stat()
    if info.st_mode & stat.S_IWOTH:
        raise ControlSocketError(f"{directory} is world-writable: refusing to put {what} there")
    if info.st_uid not in (0, os.geteuid()):
        raise ControlSocketError(f"{directory} belongs to uid {info.st_uid}, not to root or the "
                                 f"gateway's user: refusing to put {what} there")
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ControlSocketError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale socket of a gateway that is gone
        else:
            raise ControlSocketError(f"another gateway is running: {path} answers")
        finally:
            probe.close()


ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve_owner_only(path: Path, what: str, serve: ClientHandler,
                           limit: int | None = None) -> asyncio.Server:
    """Serve a Unix socket at ``path`` that only its owner can connect to: the directory checked
    (:func:`prepare_socket_path`), the socket bound and made 0600 before listen() (nobody can connect to a
    socket that does not listen), removed again if serving fails. The control, workers' and vici sockets."""
    prepare_socket_path(path, what)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        if limit is None:
            return await asyncio.start_unix_server(serve, sock=sock)
        return await asyncio.start_unix_server(serve, sock=sock, limit=limit)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            path.unlink()
        raise


async def stop_serving(server: asyncio.AbstractServer | None, connections: Iterable[asyncio.Task[Any]],
                       path: Path) -> None:
    """Stop accepting, cancel the open connections' tasks, remove the socket file."""
    if server is not None:
        server.close()
        for task in list(connections):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
    with contextlib.suppress(OSError):
        path.unlink()


# -- argument checking -----------------------------------------------------------------------------
_STR, _INT, _NUM, _LIST, _BOOL = "a string", "an integer", "a number", "a list of strings", "true or false"
_SELECT = {"uniqueid": _INT, "peer": _STR, "conn": _STR, "child": _STR}
COMMAND_ARGS: dict[str, dict[str, str]] = {
    "sas": {"conn": _STR, "peer": _STR, "uniqueid": _INT, "offset": _INT, "limit": _INT},
    "conns": {},
    "peers": {"action": _STR, "conn": _STR, "id": _STR, "ts": _LIST, "ticket": _STR},
    "initiate": {"conn": _STR, "child": _STR, "timeout": _NUM},
    "terminate": dict(_SELECT),
    "rekey": {**_SELECT, "ike": _BOOL, "timeout": _NUM},
    "reload": {"wait": _BOOL, "file": _STR},  # file: the configuration file or state_dir/vici-loaded.toml
    "events": {},
    "compliance": {},  # `ikeguard check --socket`: the facts the runtime rules judge (read-only)
    "ha": {"action": _STR, "role": _STR},  # `ikeguard ha status|role` (docs/ha.md)
    "acme": {"action": _STR},  # `ikeguard pki acme status|renew` (docs/pki.md)
    "scep": {"action": _STR},  # `ikeguard pki scep status|renew`
    # RFC 5685 §5 redirect of established IKE SAs; what a multi-worker gateway's vici `redirect` sends
    "redirect": {"gateway": _STR, "uniqueid": _INT, "peer": _STR, "conn": _STR},
}


async def maybe_await(value: Any) -> Any:
    """``value``, awaited when a gateway answers asynchronously (a multi-worker gateway's workers,
    control/vici_workers.py)."""
    return await value if inspect.isawaitable(value) else value


def _check_args(cmd: str, args: Any) -> dict[str, Any]:
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise CommandError("args must be a JSON object")
    allowed = COMMAND_ARGS[cmd]
    for key, value in args.items():
        kind = allowed.get(key)
        if kind is None:
            expected = ", ".join(allowed) or "none"
            raise CommandError(f"unknown argument {key!r} for {cmd} (expected: {expected})")
        ok = {
            _STR: isinstance(value, str),
            _INT: isinstance(value, int) and not isinstance(value, bool),
            _NUM: isinstance(value, int | float) and not isinstance(value, bool),
            _LIST: isinstance(value, list) and all(isinstance(v, str) for v in value),
            _BOOL: isinstance(value, bool),
        }[kind]
        if not ok:
            raise CommandError(f"argument {key!r} of {cmd} must be {kind}")
    return dict(args)


def _on_behalf(request: dict[str, Any], caller: Caller) -> Caller:
    """The operator the supervisor's proxy asks for (its ``on_behalf``), else the connecting process."""
    named = request.get("on_behalf")
    if isinstance(named, dict):
        pid, uid, gid = (named.get(k) for k in ("pid", "uid", "gid"))
        if type(pid) is int and type(uid) is int and type(gid) is int and min(pid, uid, gid) >= 0:
            return Caller(pid, uid, gid)
    return caller


def command_text(cmd: str, args: dict[str, Any]) -> str:
    """What the audit record shows as the command, e.g. ``terminate peer=m1.example conn=merchants``."""
    parts = [cmd]
    if "action" in args:
        parts.append(str(args["action"]))
    for key, value in args.items():
        if key == "action":
            continue
        shown = ",".join(value) if isinstance(value, list) else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def _selection(args: dict[str, Any]) -> dict[str, Any]:
    selection: dict[str, Any] = {k: args[k] for k in ("uniqueid", "peer", "conn") if k in args}
    if not selection:
        raise CommandError("select the SAs: give uniqueid, peer or conn")
    return selection


class ControlServer:
    """Serves the control protocol for one gateway on ``path`` (``<state_dir>/control.sock``)."""

    def __init__(self, gateway: ControlledGateway, path: str | Path, *,
                 config_path: str | Path | None = None, profile_override: str | None = None,
                 delegated: bool = False) -> None:
        self.gateway = gateway
        # a worker's private socket (issue 22): only the supervisor's proxy connects (SO_PEERCRED still
        # checked); it names the operator it asks for (``on_behalf``) and records ``admin.command`` itself,
        # once per command, so the worker records none
        self.delegated = delegated
        self.path = Path(path)
        self._config_path = Path(config_path) if config_path is not None else None
        self._profile_override = profile_override  # `ikeguard run --profile NAME` applies to reloads too
        self._server: asyncio.AbstractServer | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._collector: Any = None  # control.metrics.GatewayCollector, made at the first `metrics`
        self._handlers: dict[str, Callable[[dict[str, Any], Caller, str], Awaitable[Any]]] = {
            "sas": self._sas, "conns": self._conns, "peers": self._peers, "initiate": self._initiate,
            "terminate": self._terminate, "rekey": self._rekey, "reload": self._reload,
            "compliance": self._compliance, "ha": self._ha, "acme": self._acme,
            "scep": self._scep, "redirect": self._redirect,
        }

    # -- life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind ``path`` (mode 0600 before anyone can connect) and start serving."""
        self._server = await serve_owner_only(self.path, "the control socket", self._serve, MAX_LINE)
        log.info("control socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop accepting, end event streams, remove the socket file."""
        await stop_serving(self._server, self._streams, self.path)
        self._server = None

    # -- connections ------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            caller = peer_credentials(writer.get_extra_info("socket"))
            if caller.uid not in (0, os.geteuid()):
                self._audit("connect", caller, Outcome.FAILURE, "refused: not root or the gateway's user")
                await self._write(writer, {"id": None, "ok": False,
                                           "error": "permission denied: only root and the gateway's user"})
                return
            await self._requests(reader, writer, caller)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("control connection failed")
        finally:
            if task is not None:
                self._streams.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        caller: Caller) -> None:
        while True:
            try:
                line = await reader.readline()
            except (asyncio.LimitOverrunError, ValueError):
                await self._write(writer, {"id": None, "ok": False, "error": "request line too long"})
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                await self._write(writer, {"id": None, "ok": False, "error": "not a JSON request"})
                continue
            if not isinstance(request, dict):
                await self._write(writer, {"id": None, "ok": False, "error": "a request is a JSON object"})
                continue
            if request.get("cmd") == "events":
                await self._stream_events(request, reader, writer, caller)
                return
            if request.get("cmd") == "metrics":  # a supervisor's scrape: read-only, not audited (as HTTP)
                await self._write(writer, await self._metrics(request))
                continue
            response = await self._respond(request, caller)
            result = response.get("result")
            if isinstance(result, _Paged):
                await self._write_paged(writer, response, result)
            else:
                await self._write(writer, response)

    async def handle(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Answer one request (also the unit under test); records ``admin.command``. A paged answer
        (``sas``) is built whole here; the connection loop writes it chunk by chunk instead."""
        response = await self._respond(request, caller)
        result = response.get("result")
        if isinstance(result, _Paged):
            items: list[Any] = []
            for chunk in result.chunks:
                items.extend(chunk)
                await asyncio.sleep(0)
            response["result"], response["total"] = items, result.total
        return response

    async def _respond(self, request: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """The answer to one request, ``result`` still a :class:`_Paged` for ``sas``."""
        if self.delegated:
            caller = _on_behalf(request, caller)
        request_id = request.get("id")
        cmd = request.get("cmd")
        if not isinstance(cmd, str) or cmd not in self._handlers:
            names = ", ".join([*self._handlers, "events"])
            shown = (cmd if isinstance(cmd, str) else json.dumps(cmd))[:64]
            self._audit(shown, caller, Outcome.FAILURE, "unknown command")
            error = f"unknown command {shown!r} (expected one of: {names})"
            return {"id": request_id, "ok": False, "error": error}
        try:
            args = _check_args(cmd, request.get("args"))
        except CommandError as exc:
            self._audit(cmd, caller, Outcome.FAILURE, str(exc))
            return {"id": request_id, "ok": False, "error": str(exc)}
        text = command_text(cmd, args)
        elsewhere = request.get("terminated_elsewhere")
        if self.delegated and type(elsewhere) is int and elsewhere > 0:
            args["terminated_elsewhere"] = elsewhere  # peers disable: the SAs the other workers deleted
        user = self._user(caller)
        try:
            result = await self._handlers[cmd](args, caller, user)
        except _operator_errors() as exc:
            message = _error_text(exc)
            self._audit(text, caller, Outcome.FAILURE, message, args.get("conn", ""))
            return {"id": request_id, "ok": False, "error": message}
        except Exception as exc:
            log.exception("control command %r failed", text)
            message = f"internal error ({type(exc).__name__}); see the gateway log"
            self._audit(text, caller, Outcome.FAILURE, message, args.get("conn", ""))
            return {"id": request_id, "ok": False, "error": message}
        self._audit(text, caller, Outcome.SUCCESS, "", args.get("conn", ""))
        return {"id": request_id, "ok": True, "result": result}

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        writer.write(encode(message))
        await writer.drain()

    @staticmethod
    async def _write_paged(writer: asyncio.StreamWriter, response: dict[str, Any], paged: _Paged) -> None:
        """One protocol line, ``{"id":..,"ok":true,"total":N,"result":[...]}``, written a chunk of views at a
        time: each chunk is built, encoded and drained before the next, the loop running in between. If
        building fails half way the line is left unfinished and the connection closed (the client reports
        a lost connection, never a truncated list)."""
        head = {key: value for key, value in response.items() if key != "result"}
        head["total"] = paged.total
        writer.write(encode(head)[:-2] + b',"result":[')
        first = True
        try:
            for chunk in paged.chunks:
                if chunk:
                    body = json.dumps(chunk, separators=(",", ":"), default=str).encode()[1:-1]
                    writer.write(body if first else b"," + body)
                    first = False
                await writer.drain()
                await asyncio.sleep(0)  # let the loop serve IKE before the next chunk is built
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("building the sas answer failed")
            raise ConnectionError("sas answer not completed") from None
        writer.write(b"]}\n")
        await writer.drain()

    # -- audit --------------------------------------------------------------------------------------
    @staticmethod
    def _user(caller: Caller) -> str:
        return admin_command_event("", caller.uid).admin

    def _audit(self, command: str, caller: Caller, outcome: Outcome, reason: str,
               connection: str = "") -> None:
        if self.delegated:
            return
        event = admin_command_event(command, caller.uid, outcome=outcome, reason=reason,
                                    connection=connection)
        recorder = getattr(self.gateway, "record", None)  # the gateway's record() also feeds the event stream
        try:
            (recorder if callable(recorder) else self.gateway.audit.record)(event)
        except Exception:
            log.exception("could not record admin.command")

    # -- commands ---------------------------------------------------------------------------------
    async def _sas(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        offset, limit = args.get("offset", 0), args.get("limit")
        if offset < 0 or (limit is not None and limit < 0):
            raise CommandError("offset and limit must not be negative")
        chunks, total = self.gateway.sa_chunks(conn=args.get("conn"), peer=args.get("peer"),
                                               uniqueid=args.get("uniqueid"), offset=offset, limit=limit)
        return _Paged(chunks, total)

    async def _conns(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        return self.gateway.conns()

    async def _ha(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        service = getattr(self.gateway, "ha", None)
        if service is None:
            raise CommandError("high availability is not enabled ([ha] enabled = true)")
        if args.get("action", "status") == "status":
            return service.status()
        if args.get("action") != "role" or not args.get("role"):
            raise CommandError('ha: action is "status" or "role" with a role')
        try:
            return await service.set_role(args["role"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    async def _acme(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        return await self._renewal("acme", args)

    async def _scep(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        return await self._renewal("scep", args)

    async def _renewal(self, name: str, args: dict[str, Any]) -> Any:
        renewer = getattr(self.gateway, name, None)
        if renewer is None or not renewer.configured():
            raise CommandError(f"no [{name}] section: the certificate is not managed by {name.upper()}")
        action = args.get("action", "status")
        if action == "status":
            return renewer.status()
        if action != "renew":
            raise CommandError(f'{name}: action is "status" or "renew"')
        result = await renewer.renew_now()
        if not result["renewed"]:
            raise CommandError(f"renewal failed: {result['last_error']}")
        return result

    async def _compliance(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        from ikeguard.service.compliance import runtime_facts

        return runtime_facts(self.gateway)

    async def _initiate(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        if "conn" not in args:
            raise CommandError("initiate needs conn")
        timeout = float(args.get("timeout", 15.0))
        if not 0 < timeout <= 120:
            raise CommandError("timeout must be between 0 and 120 seconds")
        before = set(self.gateway.sa_uniqueids(conn=args["conn"]))
        ids = await self.gateway.initiate(args["conn"], args.get("child"), timeout=timeout)
        # reused: the connection's IKE SA existed (up or being set up) and no second one was started
        return {"ike_uniqueids": list(ids), "reused": bool(ids) and ids[0] in before}

    async def _terminate(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        count = self.gateway.terminate(**_selection(args), child=args.get("child"),
                                       reason=f"terminated by admin {user}")
        if count == 0:
            raise CommandError("no SA matches the selection")
        return {"terminated": count}

    async def _rekey(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        timeout = float(args.get("timeout", 10.0))
        if not 0 <= timeout <= 120:
            raise CommandError("timeout must be between 0 and 120 seconds")
        sas = await self.gateway.rekey_sas(**_selection(args), child=args.get("child"),
                                           ike=bool(args.get("ike", False)), timeout=timeout)
        if not sas:
            raise CommandError("no SA matches the selection")
        return {"rekeyed": len(sas), "sas": sas}

    async def _redirect(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        if not args.get("gateway"):
            raise CommandError("redirect needs gateway")
        count = self.gateway.redirect(args["gateway"], **_selection(args),
                                      reason=f"redirected by admin {user}")
        if count == 0:
            raise CommandError("no SA matches the selection")
        return {"redirected": count}

    async def _peers(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        action = args.get("action", "list")
        if action not in ("list", "add", "disable", "enable"):
            raise CommandError(f"unknown peers action {action!r} (expected list, add, disable or enable)")
        from ikeguard.service import peers
        from ikeguard.service.reload import reload_lock

        if action == "list":
            return peers.list_peers(self.gateway, conn=args.get("conn"))
        if "id" not in args:
            raise CommandError(f"peers {action} needs id")
        async with reload_lock(self.gateway):
            return self._change_peer(peers, action, args, user)

    def _change_peer(self, peers: Any, action: str, args: dict[str, Any], user: str) -> Any:
        elsewhere = args.get("terminated_elsewhere", 0)
        if action == "add":
            return peers.add_peer(self.gateway, args["id"], args.get("ts", []), conn=args.get("conn"),
                                  ticket=args.get("ticket"), admin=user)
        if action == "disable":
            return peers.disable_peer(self.gateway, args["id"], conn=args.get("conn"),
                                      ticket=args.get("ticket"), admin=user,
                                      terminated_elsewhere=elsewhere)
        return peers.enable_peer(self.gateway, args["id"], conn=args.get("conn"),
                                 ticket=args.get("ticket"), admin=user)

    async def _reload(self, args: dict[str, Any], caller: Caller, user: str) -> Any:
        from ikeguard.service.reload import reload_gateway

        path = self._config_path or Path(self.gateway.plan.config.path)
        if "file" in args:  # a multi-worker gateway's vici server: load-conn's merged file (vici_load.py)
            plan = self.gateway.plan
            allowed = {path.resolve(), (Path(plan.config.resolve(plan.config.model.gateway.state_dir))
                                        / LOADED_FILE).resolve()}
            if Path(args["file"]).resolve() not in allowed:
                raise CommandError(f"reload: file must be {path} or the state directory's {LOADED_FILE}")
            path = Path(args["file"])
        result = await reload_gateway(self.gateway, path, admin=user, wait=bool(args.get("wait", False)),
                                      profile_override=self._profile_override)
        if result.refused:
            raise CommandError(result.refused)
        return result.as_dict()

    async def _metrics(self, request: dict[str, Any]) -> dict[str, Any]:
        """This gateway's Prometheus exposition and process id, for the supervisor of a multi-worker
        gateway (:mod:`ikeguard.control.metrics_workers`) which merges the workers' answers into its one
        endpoint. Like that HTTP endpoint a scrape is not an ``admin.command`` (one record per worker per
        scrape would flood the trail); the socket is owner-only as for every command."""
        from ikeguard.control.metrics import GatewayCollector, build_metrics, exposition

        if self._collector is None:
            self._collector = GatewayCollector(self.gateway, asyncio.get_running_loop())
        try:
            snap = await self._collector.snapshot_here()
        except Exception as exc:
            log.exception("metrics snapshot failed")
            return {"id": request.get("id"), "ok": False, "error": f"metrics snapshot failed ({exc})"}
        return {"id": request.get("id"), "ok": True,
                "result": {"pid": os.getpid(), "text": exposition(build_metrics(snap))}}

    # -- event stream -------------------------------------------------------------------------------
    async def _stream_events(self, request: dict[str, Any], reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter, caller: Caller) -> None:
        request_id = request.get("id")
        try:
            _check_args("events", request.get("args"))
        except CommandError as exc:
            self._audit("events", caller, Outcome.FAILURE, str(exc))
            await self._write(writer, {"id": request_id, "ok": False, "error": str(exc)})
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(EVENT_QUEUE)

        def put(event: dict[str, Any] | None) -> None:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                overflowed.set()

        def on_event(event: dict[str, Any]) -> None:  # may be called from another thread
            loop.call_soon_threadsafe(put, event)

        overflowed = asyncio.Event()
        unsubscribe = self.gateway.subscribe(on_event)
        self._audit("events", caller, Outcome.SUCCESS, "")
        try:
            await self._write(writer, {"id": request_id, "ok": True, "result": "streaming"})
            eof = asyncio.ensure_future(reader.read(1))
            try:
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    overflow = asyncio.ensure_future(overflowed.wait())
                    done, _ = await asyncio.wait({getter, eof, overflow}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                    if overflow not in done:
                        overflow.cancel()
                    if getter in done:
                        event = getter.result()
                        if event is not None:
                            await self._write(writer, event)
                    if overflow in done:
                        await self._write(writer, {"id": request_id, "ok": False,
                                                   "error": "event stream cut: the client reads too slowly"})
                        return
                    if eof in done:
                        return
            finally:
                eof.cancel()
        finally:
            unsubscribe()


@dataclass(frozen=True)
class _Paged:
    """A slice of a longer list, its items built a chunk at a time as ``chunks`` is advanced; the response
    carries ``total`` next to ``result``."""

    chunks: Iterator[list[Any]]
    total: int
