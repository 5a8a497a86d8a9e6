"""Running the server: uvicorn, one process or several."""

from __future__ import annotations

import errno
import os
import socket

import uvicorn
from sqlalchemy import Engine

from tocsin.domain.errors import InvalidInput
from tocsin.web.app import create_app


def check_port(host: str, port: int) -> None:
    """Refuse early, with the fix, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise InvalidInput(f"port {port} on {host} is already in use",
                                   "stop what uses it, or pick another with --port") from None
            raise InvalidInput(f"cannot listen on {host}:{port}: {error.strerror}",
                               "check --host and --port") from None


def serve_http(engine: Engine, *, host: str, port: int, workers: int) -> None:
    """Serve until interrupted. Several workers each hold their own snapshot."""
    check_port(host, port)
    print(f"tocsin is serving on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    if workers == 1:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="warning",
                    access_log=False, lifespan="on")
        return
    os.environ["TOCSIN_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    uvicorn.run("tocsin.web.app:app_from_environment", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False, lifespan="on")
