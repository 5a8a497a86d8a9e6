"""A webhook receiver for benchmarks: a small HTTP/1.1 keep-alive server that answers every
POST with 204 and counts it, one process, one event loop (uvloop when installed).

It is the far end of both measurements in `bench/notify.py` (tocsin's worker, and wrk: the
loopback limit), so it does as little as it honestly can: it parses each request line and
headers, reads the body by its Content-Length, and remembers the wall-clock time
(`time.time()`) of the first and last POST since the last reset, the bytes, and each
distinct `webhook-id` (to count duplicates). Everything else is answered on the side:

    GET /stats   JSON: posts, distinct ids, body bytes, first and last (epoch seconds)
    GET /sample  JSON: the first few POSTs since the reset (path, headers, body as text)
    GET /reset   forget everything counted so far

    python bench/receiver.py --port 0 [--host 127.0.0.1 ...]

prints `listening PORT` on its first line once it accepts connections, and runs until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any, cast

SAMPLES = 3
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
NO_CONTENT_CLOSE = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
MAX_HEAD = 64 * 1024


class Counts:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.posts = 0
        self.body_bytes = 0
        self.first: float | None = None
        self.last: float | None = None
        self.ids: set[bytes] = set()
        self.samples: list[dict[str, Any]] = []
        self.bad = 0

    def as_json(self) -> dict[str, Any]:
        return {"posts": self.posts, "distinct_ids": len(self.ids),
                "body_bytes": self.body_bytes, "first": self.first, "last": self.last,
                "bad_requests": self.bad}


COUNTS = Counts()


def answer(status: str, body: bytes, *, close: bool = False) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "")
            + "\r\n")
    return head.encode() + body


class Http(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = bytearray()
        close = False
        while not close:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._fail(out)
                    return
                break
            head = bytes(self.buffer[:end])
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self._fail(out)
                return
            method, path = parts[0], parts[1]
            length = 0
            hook_id = None
            wants_close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value) if value.strip().isdigit() else -1
                elif name == b"webhook-id":
                    hook_id = value.strip()
                elif name == b"connection" and value.strip().lower() == b"close":
                    wants_close = True
            if length < 0:
                self._fail(out)
                return
            total = end + 4 + length
            if len(self.buffer) < total:
                break
            close = wants_close
            body = bytes(self.buffer[end + 4:total])
            del self.buffer[:total]
            if method == b"POST":
                out += self._post(path, lines[1:], hook_id, body, close)
            else:
                out += self._get(path, close)
        if out and self.transport is not None:
            self.transport.write(bytes(out))
        if close and self.transport is not None:
            self.transport.close()

    def _post(self, path: bytes, headers: list[bytes], hook_id: bytes | None, body: bytes,
              close: bool) -> bytes:
        c = COUNTS
        now = time.time()
        if c.first is None:
            c.first = now
        c.last = now
        c.posts += 1
        c.body_bytes += len(body)
        if hook_id is not None:
            c.ids.add(hook_id)
        if len(c.samples) < SAMPLES:
            c.samples.append({
                "path": path.decode(errors="replace"),
                "headers": [h.decode(errors="replace") for h in headers],
                "body": body.decode(errors="replace")})
        return NO_CONTENT_CLOSE if close else NO_CONTENT

    def _get(self, path: bytes, close: bool) -> bytes:
        if path == b"/stats":
            return answer("200 OK", json.dumps(COUNTS.as_json()).encode(), close=close)
        if path == b"/sample":
            return answer("200 OK", json.dumps(COUNTS.samples).encode(), close=close)
        if path == b"/reset":
            COUNTS.reset()
            return answer("200 OK", b"{}", close=close)
        return answer("404 Not Found", b"{}", close=close)

    def _fail(self, out: bytearray) -> None:
        COUNTS.bad += 1
        if self.transport is not None:
            self.transport.write(bytes(out) + b"HTTP/1.1 400 Bad Request\r\n"
                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()


async def serve(hosts: list[str], port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, hosts, port, backlog=4096, reuse_address=True)
    chosen = server.sockets[0].getsockname()[1]
    print(f"listening {chosen}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", action="append",
                        help="address to listen on (repeatable); default 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio")
    args = parser.parse_args()
    hosts = args.host or ["127.0.0.1"]
    runner: Any = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop
            runner = uvloop.run
    runner(serve(hosts, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
