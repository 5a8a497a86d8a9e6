"""A notification worker running in a thread for the length of a test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from tocsin import settings
from tocsin.notify.worker import Worker
from tocsin.web.websub import StoreFeeds


@contextmanager
def delivering(engine: Engine, config: settings.Settings | None = None) -> Iterator[Worker]:
    """Run a worker (`tocsin worker`'s loop, with the WebSub feeds) until the block ends."""
    config = config or settings.read()
    worker = Worker(engine, config, feeds=StoreFeeds(engine, config))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(stop),),
                              daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
