"""Run the HTTP server with uvicorn: in the foreground (``facewatch serve``) or in a thread of ``facewatch run``.

Why a subclass of ``uvicorn.Server``: "serving on" is said only once the socket listens, so a script (or a
test) that waits for that line can connect at once.
"""
from __future__ import annotations

import logging
import sys
import threading

import uvicorn

from stream.api.app import create_app
from stream.config import Config

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, announce: bool) -> None:
        super().__init__(config)
        self.announce = announce
        self.app = config.app

    async def shutdown(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        self.app.state.broadcaster.close_clients()  # live streams end cleanly instead of being cancelled
        await super().shutdown(sockets=sockets)

    async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        await super().startup(sockets=sockets)
        if self.started and self.announce:
            print(f"facewatch: serving on http://{self.config.host}:{self.config.port}", file=sys.stderr, flush=True)


def make_server(cfg: Config, host: str, port: int, announce: bool = True) -> uvicorn.Server:
    config = uvicorn.Config(create_app(cfg), host=host, port=port, log_level="warning", access_log=False,
                            server_header=False, timeout_graceful_shutdown=3, lifespan="on")
    return _Server(config, announce)


def serve(cfg: Config, host: str, port: int) -> bool:
    """Serve until SIGINT/SIGTERM; False when the server could not start (e.g. the port was taken meanwhile)."""
    server = make_server(cfg, host, port)
    server.run()
    return server.started


def serve_in_thread(cfg: Config) -> tuple[uvicorn.Server, threading.Thread]:
    """Start the server beside a running pipeline; ``server.should_exit = True`` and ``join`` stop it."""
    server = make_server(cfg, cfg.api.host, cfg.api.port)
    thread = threading.Thread(target=server.run, name="facewatch-api", daemon=True)
    thread.start()
    return server, thread
