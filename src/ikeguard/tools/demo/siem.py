"""The demo's SIEM: a small RFC 5425 receiver (syslog over mutual TLS) that stores what the gateways forward.

Written by hand on asyncio + ssl (a receiver is a few lines; no library needed). It accepts TLS 1.2+ clients
whose certificate chains to the SIEM CA (RFC 5425 §5.2 mutual authentication), reads octet-counted frames
(RFC 5425 §4.3 ``MSG-LEN SP SYSLOG-MSG``), and appends one JSON line per message to the output file:
``{"client": <certificate CN>, "msgid": <event name>, "message": <RFC 5424 text>}``. It never sends
application data (a syslog receiver does not). Run as
``python -m ikeguard.tools.demo.siem --listen ADDR:PORT --cert F --key F --client-ca F --out F``;
prints ``listening`` once the socket is bound, stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
from pathlib import Path
from typing import IO, Any

from ikeguard.audit.sinks.syslog import SyslogParseError, parse_message

MAX_FRAME = 64 * 1024  # RFC 5425 §4.3.1: receivers must accept 2048 octets; ours are well below this


class FrameError(ValueError):
    """A byte stream that is not octet-counted syslog."""


def _peer_name(writer: asyncio.StreamWriter) -> str:
    cert: Any = writer.get_extra_info("peercert") or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "?"


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One RFC 5425 §4.3 frame's message, or None at a clean end of stream; FrameError on garbage."""
    length_text = b""
    while True:
        byte = await reader.read(1)
        if not byte:
            if length_text:
                raise FrameError("stream ended inside a frame length")
            return None
        if byte == b" ":
            break
        if not byte.isdigit() or len(length_text) >= 6:
            raise FrameError("bad frame length")
        length_text += byte
    if not length_text or length_text.startswith(b"0"):
        raise FrameError("bad frame length")
    length = int(length_text)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} octets is over the limit")
    return await reader.readexactly(length)


class Receiver:
    """Accept connections and append each received message to `out` as one JSON line."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.received = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read frames until the client closes (or sends something that is not a frame)."""
        client = _peer_name(writer)
        try:
            while True:
                message = await read_frame(reader)
                if message is None:
                    break
                text = message.decode("utf-8", "replace")
                try:
                    msgid = str(parse_message(text)["msgid"])
                except SyslogParseError:
                    msgid = "-"
                self.out.write(json.dumps({"client": client, "msgid": msgid, "message": text}) + "\n")
                self.out.flush()
                self.received += 1
        except (FrameError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            print(f"siem: {client}: {exc}", file=sys.stderr)
        finally:
            writer.close()


def server_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS server context requiring a client certificate from `client_ca` (RFC 5425 §5.2)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def serve(host: str, port: int, ctx: ssl.SSLContext, out: IO[str]) -> None:
    """Listen until SIGTERM/SIGINT."""
    receiver = Receiver(out)
    server = await asyncio.start_server(receiver.handle, host, port, ssl=ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("listening", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m ikeguard.tools.demo.siem", description=__doc__)
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT")
    parser.add_argument("--cert", required=True, type=Path)
    parser.add_argument("--key", required=True, type=Path)
    parser.add_argument("--client-ca", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    host, _, port = str(args.listen).rpartition(":")
    ctx = server_context(args.cert, args.key, args.client_ca)
    with args.out.open("a", encoding="utf-8") as out:
        asyncio.run(serve(host.strip("[]"), int(port), ctx, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
