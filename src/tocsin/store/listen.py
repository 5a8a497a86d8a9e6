"""Waking up on PostgreSQL NOTIFY: a thread that LISTENs and sets an asyncio event."""

from __future__ import annotations

import asyncio
import logging
import threading

from sqlalchemy import Engine

log = logging.getLogger("tocsin.store")
NOTIFY_CHANNEL = "tocsin_changes"
"""Every change to the store NOTIFYs this channel on PostgreSQL."""


def listen(engine: Engine, channel: str, loop: asyncio.AbstractEventLoop,
           woken: asyncio.Event, stopping: threading.Event) -> None:
    """LISTEN on `channel` and set `woken` (in `loop`) on every NOTIFY; reconnect on failure.
    Runs until `stopping` is set; meant for a daemon thread."""
    import psycopg  # here: a server on SQLite never needs it

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    while not stopping.is_set():
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"LISTEN {channel}")
                while not stopping.is_set():
                    for _ in conn.notifies(timeout=1.0):
                        if stopping.is_set():
                            return
                        try:
                            loop.call_soon_threadsafe(woken.set)
                        except RuntimeError:  # the loop has closed: nobody waits any more
                            return
        except psycopg.Error:
            log.warning("lost the LISTEN connection; retrying", exc_info=True)
            stopping.wait(1.0)
