"""A vici protocol server (strongSwan's control interface) on a second UNIX socket, so that ``swanctl``,
scripts on the ``vici`` package and other vici tools work against ikeguard unchanged.

Off unless ``[gateway] vici = "/run/ikeguard/charon.vici"`` is configured. It is another front end of the
same service layer as the control socket (:mod:`ikeguard.control.server`): the same ``sas``/``conns`` views,
``initiate``/``terminate``/``rekey`` and reload, the same owner-only socket (mode 0600, directory checks,
peers other than root and the gateway's user are refused by ``SO_PEERCRED``) and the same audit: every
command is recorded as ``admin.command`` with the local user and the outcome (PCI DSS 10.2.1.2, 10.2.2), the
command text prefixed ``vici``.

Commands (answers shaped as charon's, :mod:`ikeguard.control.vici_answers`): ``version``, ``stats``,
``list-sas`` (streams ``list-sa``), ``list-conns`` (streams ``list-conn``), ``get-conns``, ``initiate``,
``terminate`` (stream ``control-log`` while active), ``rekey``, ``reload-settings`` (a reload of the gateway's
configuration file), ``load-conn``/``unload-conn`` (the configuration file plus the vici-loaded connections is
checked exactly like a reload: a connection the profile refuses is refused with the findings as ``errmsg``),
``load-shared``/``unload-shared``/``get-shared``, ``load-authority``/``unload-authority``/``get-authorities``,
``load-pool``/``unload-pool`` (:mod:`ikeguard.control.vici_load_creds`, checked the same way),
``list-authorities``, ``get-pools``, ``redirect`` (RFC 5685, :mod:`ikeguard.control.vici_creds`).
Events: ``ike-updown``, ``child-updown``, ``ike-rekey``, ``child-rekey``, ``log``. Anything else gets
CMD_UNKNOWN / EVENT_UNKNOWN.

Hostile input (README "Transport protocol"; bounds in :mod:`ikeguard.control.vici_codec`): a segment over
512 KiB, an empty one, a malformed packet or message ends that connection (recorded once as a failed
``admin.command``); the gateway and other clients are not affected. At most ``MAX_CLIENTS`` connections at a
time; an event client that cannot keep up (``EVENT_QUEUE`` packets behind) is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import platform
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ikeguard import __version__
from ikeguard.audit.events import Outcome
from ikeguard.audit.service import admin_command_event
from ikeguard.control import vici_answers as answers
from ikeguard.control.server import (
    Caller,
    CommandError,
    ControlledGateway,
    _error_text,
    _operator_errors,
    maybe_await,
    peer_credentials,
    serve_owner_only,
    stop_serving,
)
from ikeguard.control.vici_codec import (
    PacketType,
    Section,
    ViciDecodeError,
    decode_packet,
    encode_packet,
    segment_length,
    text,
)
from ikeguard.wire.iana import ProtocolId

log = logging.getLogger("ikeguard.control.vici")

MAX_CLIENTS = 32  # connections served at once; more are closed at accept
EVENT_QUEUE = 10_000  # packets queued per client before it is cut off as too slow
MAX_INITIATE_WAIT = 120.0  # seconds; charon's timeout 0 ("wait indefinitely") is capped here
STREAM_EVENTS = frozenset({"list-sa", "list-conn", "list-authority", "control-log", "list-cert",
                           "list-policy"})
STATE_EVENTS = frozenset({"ike-updown", "child-updown", "ike-rekey", "child-rekey", "log"})
EVENTS = STREAM_EVENTS | STATE_EVENTS
_EVENT_KINDS = {"ike.up": "ike-updown", "ike.down": "ike-updown", "child.up": "child-updown",
                "child.down": "child-updown", "ike.rekeyed": "ike-rekey", "child.rekeyed": "child-rekey"}
_HALF_OPEN = ("created", "init-sent", "half-open", "auth-sent")
_SHOWN_ARGS = ("id", "ike", "child", "ike-id", "ike_id", "child-id", "child_id", "name", "timeout", "reauth",
               "gateway", "peer-ip", "peer-id")


@dataclass(eq=False)
class _Client:
    """One vici connection: who, what it registered for, its outbound queue."""

    caller: Caller
    user: str
    writer: asyncio.StreamWriter
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(EVENT_QUEUE))
    registered: set[str] = field(default_factory=set)
    control_log: Callable[[dict[str, Any]], bool] | None = None  # filter while initiate/terminate runs
    cut: bool = False

    def send(self, packet: bytes) -> None:
        if self.cut:
            return
        try:
            self.queue.put_nowait(packet)
        except asyncio.QueueFull:
            self.cut = True
            log.warning("vici client of %s reads too slowly: disconnected", self.user)
            with contextlib.suppress(Exception):
                self.writer.transport.abort()

    def event(self, name: str, message: dict[str, Any]) -> None:
        if name in self.registered:
            self.send(encode_packet(PacketType.EVENT, message, name))


class ViciServer:
    """Serves the vici protocol for one gateway on ``path``."""

    def __init__(self, gateway: ControlledGateway, path: str | Path, *,
                 config_path: str | Path | None = None, profile_override: str | None = None) -> None:
        self.gateway = gateway
        self.path = Path(path)
        self._config_path = Path(config_path) if config_path is not None else None
        self._profile_override = profile_override
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.loaded: dict[str, Section] = {}  # connections loaded over vici (load-conn), by name
        # secrets, authorities, pools loaded over vici (control.vici_load_creds), by kind and name
        self.loaded_creds: dict[str, dict[str, Any]] = {"secrets": {}, "authorities": {}, "pools": {}}
        self._commands: dict[str, Callable[[Section, _Client], Awaitable[dict[str, Any]]]] = {
            "version": self._version, "stats": self._stats, "list-sas": self._list_sas,
            "list-conns": self._list_conns, "get-conns": self._get_conns, "initiate": self._initiate,
            "terminate": self._terminate, "rekey": self._rekey, "reload-settings": self._reload_settings,
            "load-conn": self._load_conn, "unload-conn": self._unload_conn,
            "get-authorities": self._get_authorities, "list-authorities": self._list_authorities,
            "get-pools": self._get_pools, **_credential_commands(self),
        }

    # -- life cycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind ``path`` (mode 0600 before listen) and serve; subscribe to the gateway's events."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._server = await serve_owner_only(self.path, "the vici socket", self._serve)
        self._unsubscribe = self.gateway.subscribe(self._on_event)
        log.info("vici socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop accepting, disconnect clients, remove the socket file."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await stop_serving(self._server, self._tasks, self.path)
        self._server = None

    # -- audit ----------------------------------------------------------------------------------------------
    def _audit(self, command: str, caller: Caller, outcome: Outcome, reason: str,
               connection: str = "") -> None:
        event = admin_command_event(command, caller.uid, outcome=outcome, reason=reason,
                                    connection=connection)
        recorder = getattr(self.gateway, "record", None)
        try:
            (recorder if callable(recorder) else self.gateway.audit.record)(event)
        except Exception:
            log.exception("could not record admin.command")

    # -- connections ----------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        client: _Client | None = None
        sender: asyncio.Task[None] | None = None
        try:
            caller = peer_credentials(writer.get_extra_info("socket"))
            if caller.uid not in (0, os.geteuid()):
                self._audit("vici connect", caller, Outcome.FAILURE,
                            "refused: not root or the gateway's user")
                return
            if len(self._clients) >= MAX_CLIENTS:
                log.warning("vici: %d clients connected, refusing another", MAX_CLIENTS)
                return
            client = _Client(caller, admin_command_event("", caller.uid).admin, writer)
            self._clients.add(client)
            sender = asyncio.ensure_future(self._sender(client))
            await self._packets(reader, client)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("vici connection failed")
        finally:
            if client is not None:
                self._clients.discard(client)
                if not client.queue.full():
                    client.queue.put_nowait(None)
            if sender is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(sender, 2.0)
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _sender(client: _Client) -> None:
        while True:
            packet = await client.queue.get()
            if packet is None or client.cut:
                return
            client.writer.write(packet)
            await client.writer.drain()

    async def _packets(self, reader: asyncio.StreamReader, client: _Client) -> None:
        while not client.cut:
            try:
                header = await reader.readexactly(4)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self._malformed(client, "truncated segment header")
                return
            try:
                length = segment_length(header)
                data = await reader.readexactly(length)
                packet = decode_packet(data)
            except ViciDecodeError as exc:
                self._malformed(client, str(exc))
                return
            except asyncio.IncompleteReadError:
                self._malformed(client, "truncated segment")
                return
            if packet.type is PacketType.CMD_REQUEST:
                await self._command(packet.name, packet.message, client)
            elif packet.type is PacketType.EVENT_REGISTER:
                self._register(packet.name, client, register=True)
            elif packet.type is PacketType.EVENT_UNREGISTER:
                self._register(packet.name, client, register=False)
            else:  # responses and events are the server's to send
                self._malformed(client, f"a client may not send packet type {packet.type.name}")
                return

    def _malformed(self, client: _Client, why: str) -> None:
        log.info("vici: malformed input from %s: %s", client.user, why)
        self._audit("vici", client.caller, Outcome.FAILURE, f"malformed vici input: {why}")

    def _register(self, name: str, client: _Client, *, register: bool) -> None:
        if name not in EVENTS:
            client.send(encode_packet(PacketType.EVENT_UNKNOWN))
            return
        if register:
            client.registered.add(name)
            if name in STATE_EVENTS:  # a standing subscription is audited like `ikeguard events`
                self._audit(f"vici register {name}", client.caller, Outcome.SUCCESS, "")
        else:
            client.registered.discard(name)
        client.send(encode_packet(PacketType.EVENT_CONFIRM))

    async def _command(self, name: str, message: Section, client: _Client) -> None:
        shown = " ".join(f"{k}={text(message[k])}" for k in _SHOWN_ARGS if isinstance(message.get(k), bytes))
        if name in ("load-conn", "load-authority", "load-pool"):
            shown = " ".join(message)[:200]
        elif name == "load-shared":  # the id and owners; never the secret
            owners = message.get("owners")
            names = [o.decode("utf-8", "replace") for o in owners] if isinstance(owners, list) else []
            shown = (f"id={text(message.get('id'))} type={text(message.get('type'))} "
                     f"owners={','.join(names)}")[:200]
        command = f"vici {name}" + (f" {shown}" if shown else "")
        handler = self._commands.get(name)
        if handler is None:
            self._audit(command[:120], client.caller, Outcome.FAILURE, "unknown command")
            client.send(encode_packet(PacketType.CMD_UNKNOWN))
            return
        connection = text(message.get("ike")) or (text(message.get("name")) if name == "unload-conn" else "")
        try:
            reply = await handler(message, client)
        except _operator_errors() as exc:
            error = _error_text(exc)
            self._audit(command, client.caller, Outcome.FAILURE, error, connection)
            client.send(encode_packet(PacketType.CMD_RESPONSE, {"success": "no", "errmsg": _ascii(error)}))
            return
        except Exception as exc:
            log.exception("vici command %r failed", command)
            error = f"internal error ({type(exc).__name__}); see the gateway log"
            self._audit(command, client.caller, Outcome.FAILURE, error, connection)
            client.send(encode_packet(PacketType.CMD_RESPONSE, {"success": "no", "errmsg": error}))
            return
        failed = reply.get("success") == "no"
        if failed:
            reply["errmsg"] = _ascii(str(reply.get("errmsg", "")))
        self._audit(command, client.caller, Outcome.FAILURE if failed else Outcome.SUCCESS,
                    str(reply.get("errmsg", "")) if failed else "", connection)
        client.send(encode_packet(PacketType.CMD_RESPONSE, reply))

    # -- gateway events -------------------------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        """Every audit record of the gateway; may be called from another thread."""
        if not self._clients:
            return
        loop = self._loop
        if loop is None:
            return
        on_loop = threading.get_ident() == self._loop_thread
        messages = self._event_messages(event, snapshot=on_loop)
        if on_loop:
            self._deliver(event, messages)
        else:
            loop.call_soon_threadsafe(self._deliver, event, messages)

    def _deliver(self, event: dict[str, Any], messages: list[tuple[str, dict[str, Any]]]) -> None:
        logged = answers.log_message(event)
        for client in list(self._clients):
            for name, message in messages:
                client.event(name, message)
            client.event("log", logged)
            if client.control_log is not None and client.control_log(event):
                client.event("control-log", logged)

    def _wanted(self, *names: str) -> bool:
        return any(name in c.registered for c in self._clients for name in names)

    def _event_messages(self, event: dict[str, Any], *, snapshot: bool) -> list[tuple[str, dict[str, Any]]]:
        name = event.get("event")
        uid = event.get("ike_uniqueid")
        conn = str(event.get("connection") or "")
        if name not in _EVENT_KINDS:
            return []
        kind = _EVENT_KINDS[name]
        if not self._wanted(kind) or not conn:
            return []
        now = time.time()
        if "sa_view" in event:  # a multi-worker gateway fetched it from the worker (control/vici_workers.py)
            sa = event["sa_view"] if isinstance(event["sa_view"], dict) else None
        else:
            sa = self._snapshot(uid) if snapshot and isinstance(uid, int) else None
        details = event.get("details") or {}
        if name in ("ike.up", "ike.down"):
            body = (answers.ike_section(sa, now=now, children=False) if sa is not None
                    else answers.event_section(event))
            return [(kind, {"up": "yes" if name == "ike.up" else None, conn: body})]
        if name in ("child.up", "child.down"):
            body = answers.ike_section(sa, now=now) if sa is not None else answers.event_section(event)
            child = str(details.get("child", ""))
            kids = body.get("child-sas", {})
            chosen = {k: v for k, v in kids.items() if v.get("name") == child}
            if name == "child.up" and chosen:
                chosen = dict([max(chosen.items(), key=lambda kv: int(kv[1].get("uniqueid", 0)))])
            body["child-sas"] = chosen or {child: {"name": child, "state": "DELETED", "protocol": "ESP",
                                                   **answers.algorithm_fields(event.get("proposal"),
                                                                              ProtocolId.ESP)}}
            return [(kind, {"up": "yes" if name == "child.up" else None, conn: body})]
        if name == "ike.rekeyed":
            new = answers.ike_section(sa, now=now, children=False) if sa is not None else \
                answers.event_section(event)
            old_uid = details.get("old_uniqueid")
            return [(kind, {conn: {"old": {"uniqueid": old_uid}, "new": new}})]
        body = answers.ike_section(sa, now=now) if sa is not None else answers.event_section(event)
        kids = body.pop("child-sas", {})
        by_spi = {v.get("spi-in"): v for v in kids.values()}
        child = str(details.get("child", ""))
        old = by_spi.get(details.get("old_spi_in")) or {"name": child, "spi-in": details.get("old_spi_in")}
        new = by_spi.get(details.get("new_spi_in")) or {"name": child, "spi-in": details.get("new_spi_in")}
        body["child-sas"] = {child: {"old": old, "new": new}}
        return [(kind, {conn: body})]

    def wants_view(self, event: dict[str, Any]) -> bool:
        """True when a connected client registered for the vici event that ``event`` becomes."""
        kind = _EVENT_KINDS.get(str(event.get("event", "")))
        return kind is not None and self._wanted(kind)

    def _snapshot(self, uid: int) -> dict[str, Any] | None:
        try:
            views = self.gateway.sas(uniqueid=uid)
            if inspect.isawaitable(views):  # a gateway answered by workers gives the view with the event
                getattr(views, "close", lambda: None)()
                return None
            found = [s for s in views if s.get("uniqueid") == uid]
        except Exception:
            return None
        return found[0] if found else None

    # -- commands -------------------------------------------------------------------------------------------
    async def _version(self, message: Section, client: _Client) -> dict[str, Any]:
        uname = platform.uname()
        return {"daemon": "ikeguard", "version": __version__, "sysname": uname.system,
                "release": uname.release, "machine": uname.machine}

    async def _stats(self, message: Section, client: _Client) -> dict[str, Any]:
        started = getattr(self.gateway, "started_at", None) or time.time()
        sas = await maybe_await(self.gateway.sas())
        half_open = sum(1 for s in sas if s.get("state") in _HALF_OPEN)
        return {
            "uptime": {"running": _running(time.time() - started),
                       "since": time.strftime("%b %d %H:%M:%S %Y", time.localtime(started))},
            # one asyncio event loop serves IKE, not a thread pool: it is the one worker, answering this now
            # with [gateway] workers = N: N such processes
            "workers": {"total": getattr(self.gateway, "workers", 1), "idle": 0,
                        "active": {"critical": 0, "high": 0, "medium": 1, "low": 0}},
            "queues": {"critical": 0, "high": 0, "medium": 0, "low": 0},
            "scheduled": self._scheduled(),
            "ikesas": {"total": len(sas), "half-open": half_open},
            "plugins": [],
        }

    def _scheduled(self) -> int:
        engine = getattr(self.gateway, "engine", None)
        if engine is None:
            return 0
        return sum(len(getattr(sa, "timers", {})) for sa in engine.ike_sas())

    async def _list_sas(self, message: Section, client: _Client) -> dict[str, Any]:
        ike = text(message.get("ike")) or None
        ike_id = _int_arg(message, "ike-id", "ike_id")
        now = time.time()
        for sa in await maybe_await(self.gateway.sas(conn=ike, uniqueid=ike_id)):
            if ike_id is not None and sa.get("uniqueid") != ike_id:
                continue
            section = answers.ike_section(sa, now=now)
            client.event("list-sa", {sa.get("name") or "(unnamed)": section})
        return {}

    async def _list_conns(self, message: Section, client: _Client) -> dict[str, Any]:
        ike = text(message.get("ike")) or None
        status = {c["name"]: c for c in await maybe_await(self.gateway.conns())}
        for name, conn in self.gateway.plan.config.model.connections.items():
            if ike is not None and name != ike:
                continue
            client.event("list-conn", {name: answers.conn_section(name, conn, status.get(name))})
        return {}

    async def _get_conns(self, message: Section, client: _Client) -> dict[str, Any]:
        """As charon: only the connections loaded over vici (swanctl --load-conns unloads the others)."""
        if Path(self.gateway.plan.config.path).name != "vici-loaded.toml":
            self.loaded = {}
        return {"conns": list(self.loaded)}

    def _connection_of_child(self, child: str, ike: str | None) -> str:
        names = [n for n, c in self.gateway.plan.connections.items()
                 if (ike is None or n == ike) and child in {ch.name for ch in c.children}]
        if not names:
            raise CommandError(f"CHILD_SA config '{child}' not found")
        if len(names) > 1:
            raise CommandError(f"CHILD_SA config '{child}' is in {', '.join(names)}: give ike")
        return str(names[0])

    async def _initiate(self, message: Section, client: _Client) -> dict[str, Any]:
        child = text(message.get("child")) or None
        ike = text(message.get("ike")) or None
        if child is None and ike is None:
            raise CommandError("missing configuration name")
        conn = self._connection_of_child(child, ike) if child is not None else str(ike)
        timeout_ms = _int_arg(message, "timeout") or 0
        client.control_log = lambda e: e.get("connection") == conn
        try:
            if timeout_ms < 0:
                self._start_now(conn, child)
                return {"success": "yes"}
            wait = MAX_INITIATE_WAIT if timeout_ms == 0 else min(timeout_ms / 1000, MAX_INITIATE_WAIT)
            await self.gateway.initiate(conn, child, timeout=wait)
        finally:
            client.control_log = None
        return {"success": "yes"}

    def _start_now(self, conn: str, child: str | None) -> None:
        starter = getattr(self.gateway, "start_ike", None)
        if not callable(starter):
            raise CommandError("this gateway cannot start an SA without waiting")
        starter(conn, [child] if child else None)

    def _selection(self, message: Section, what: str) -> list[dict[str, Any]]:
        """(uniqueid, child name) selections for terminate/rekey from charon's arguments."""
        child = text(message.get("child")) or None
        ike = text(message.get("ike")) or None
        ike_id = _int_arg(message, "ike-id", "ike_id")
        child_id = _int_arg(message, "child-id", "child_id")
        if ike_id is not None:
            return [{"uniqueid": ike_id, "child": child}]
        if child_id is not None:
            return [{"uniqueid": child_id}]
        if ike is not None:
            return [{"conn": ike, "child": child}]
        if child is not None:
            conns = [n for n, c in self.gateway.plan.connections.items()
                     if child in {ch.name for ch in c.children}]
            if not conns:
                raise CommandError(f"no CHILD_SA named '{child}' found")
            return [{"conn": n, "child": child} for n in conns]
        raise CommandError(f"{what}: give child, ike, child-id or ike-id")

    async def _terminate(self, message: Section, client: _Client) -> dict[str, Any]:
        selections = self._selection(message, "terminate")
        count = 0
        errors = []
        for sel in selections:
            try:
                count += await maybe_await(self.gateway.terminate(
                    **sel, reason=f"terminated by admin {client.user} (vici)"))
            except _operator_errors() as exc:
                errors.append(_error_text(exc))
        if count == 0:
            return {"success": "no", "errmsg": errors[0] if errors else "no matching SA found"}
        return {"success": "yes", "matches": count, "terminated": count}

    async def _rekey(self, message: Section, client: _Client) -> dict[str, Any]:
        if text(message.get("reauth")) == "yes":
            raise CommandError("reauth through vici is not supported: terminate and initiate instead")
        count = 0
        errors = []
        for sel in self._selection(message, "rekey"):
            try:
                count += await maybe_await(self.gateway.rekey(**sel))
            except _operator_errors() as exc:
                errors.append(_error_text(exc))
        if count == 0:
            return {"success": "no", "errmsg": errors[0] if errors else "no matching SA found"}
        return {"success": "yes", "matches": count}

    async def _reload_settings(self, message: Section, client: _Client) -> dict[str, Any]:
        result = await self._reload_for(client.user)
        if result.refused:
            return {"success": "no", "errmsg": result.refused}
        self.loaded = {}  # the file is the truth again: connections loaded over vici are gone
        return {"success": "yes"}

    async def _reload_for(self, user: str, path: Path | None = None) -> Any:
        """Reload ``path`` (default: the gateway's configuration file) as ``ikeguard reload`` does."""
        from ikeguard.service.reload import reload_gateway

        target = path or self._config_path or Path(self.gateway.plan.config.path)
        reload_file = getattr(self.gateway, "reload_file", None)
        if reload_file is not None:  # a multi-worker gateway: every worker reloads (control/vici_workers.py)
            return await reload_file(target, admin=f"{user} (vici)")
        return await reload_gateway(self.gateway, target, admin=f"{user} (vici)",
                                    profile_override=self._profile_override)

    async def _load_conn(self, message: Section, client: _Client) -> dict[str, Any]:
        from ikeguard.control.vici_load import load_connections

        return await load_connections(self, message, client.user)

    async def _unload_conn(self, message: Section, client: _Client) -> dict[str, Any]:
        from ikeguard.control.vici_load import unload_connection

        return await unload_connection(self, text(message.get("name")), client.user)

    async def _get_authorities(self, message: Section, client: _Client) -> dict[str, Any]:
        """As charon: the authorities loaded over vici (swanctl --load-authorities unloads the others);
        ``list-authorities`` shows every one."""
        from ikeguard.control.vici_load import forget_if_reloaded

        forget_if_reloaded(self)
        return {"authorities": list(self.loaded_creds["authorities"])}

    async def _list_authorities(self, message: Section, client: _Client) -> dict[str, Any]:
        wanted = text(message.get("name")) or None
        for name, auth in self.gateway.plan.config.model.authorities.items():
            if wanted is not None and name != wanted:
                continue
            client.event("list-authority", {name: {"cacert": auth.cacert, "crl_uris": list(auth.crl_uris),
                                                   "ocsp_uris": list(auth.ocsp_uris)}})
        return {}

    async def _get_pools(self, message: Section, client: _Client) -> dict[str, Any]:
        from ikeguard.control.vici_creds import pools_answer

        return pools_answer(self, message)


_Handler = Callable[[Section, _Client], Awaitable[dict[str, Any]]]


def _credential_commands(server: ViciServer) -> dict[str, _Handler]:
    from ikeguard.control import vici_creds
    from ikeguard.control import vici_load_creds as creds

    commands: dict[str, _Handler] = {
        name: (lambda message, client, f=fn: f(server, message, client))  # type: ignore[misc]
        for name, fn in (("list-certs", vici_creds.list_certs), ("load-cert", vici_creds.load_cert),
                         ("load-key", vici_creds.load_key), ("list-policies", vici_creds.list_policies),
                         ("redirect", vici_creds.redirect), ("get-keys", vici_creds.get_keys),
                         ("unload-key", vici_creds.unload))}
    for name, fn in (("load-shared", creds.load_shared), ("unload-shared", creds.unload_shared),
                     ("load-authority", creds.load_authority), ("unload-authority", creds.unload_authority),
                     ("load-pool", creds.load_pool), ("unload-pool", creds.unload_pool)):
        commands[name] = lambda message, client, f=fn: f(server, message, client.user)  # type: ignore[misc]

    async def get_shared(message: Section, client: _Client) -> dict[str, Any]:
        return {"keys": creds.shared_ids(server)}

    commands["get-shared"] = get_shared
    return commands


def _int_arg(message: Section, *names: str) -> int | None:
    for name in names:
        raw = text(message.get(name)).strip()
        if raw:
            try:
                return int(raw)
            except ValueError:
                raise CommandError(f"{name} must be a number") from None
    return None


def _ascii(message: str) -> str:
    """An ``errmsg`` libvici prints: ``vici_find_str`` returns only printable ASCII (else swanctl shows an
    empty message), so ``§`` becomes ``sect. `` and anything else outside ASCII ``?``."""
    return message.replace("§", "sect. ").encode("ascii", "replace").decode("ascii")


def _running(seconds: float) -> str:
    """charon's relative time (``%V``): the largest unit, e.g. ``5 minutes``."""
    s = int(max(0, seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size:
            n = s // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{s} second{'s' if s != 1 else ''}"
