"""``serve``: the HTTP server (REST API, live stream, web UI) on its own, e.g. beside ``run`` or to review events."""
from __future__ import annotations

import click

from stream.cli.common import EXIT_FAILURE, UserError, get_config, json_option, note
from stream.cli.pipeline import refuse_on_problems


@click.command()
@click.option("--host", default=None, help="bind address (default api.host, 127.0.0.1); any other needs an API token")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="TCP port (default api.port)")
@json_option
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the REST API (/api, OpenAPI at /api/docs), the live alert stream and the web UI until stopped.

    It reads and writes the stores of the config (event store, gallery, live state), so it can run beside
    `facewatch run` or alone. Refuses to listen beyond this machine without an API token.
    """
    from stream.api.server import serve as run_server
    from stream.preflight import api_problems, event_store_problems

    cfg = get_config(ctx)
    host = cfg.api.host if host is None else host
    port = cfg.api.port if port is None else port
    refuse_on_problems(api_problems(cfg, host, port)
                       + event_store_problems(cfg.resolve(cfg.alerts.store), "alerts.store"))
    note(f"facewatch: starting the HTTP server on http://{host}:{port} (Ctrl-C to stop)")
    if not run_server(cfg, host, port):
        raise UserError(f"the HTTP server did not start on {host}:{port}", code="serve_failed", exit_code=EXIT_FAILURE)
