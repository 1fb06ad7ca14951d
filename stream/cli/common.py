"""What every command shares: exit statuses, the one-line error contract, ``--json``/``-q``/``-c``, config, models.

Exit statuses (README "Exit statuses"): 0 ok; 1 a failure at run time (the pipeline could not keep running,
a check found a problem); 2 bad usage, bad input or bad config, nothing was changed; 3 a partial result (e.g. a
scan where some file could not be read completely; the report is still printed). 130 interrupted.

Errors are one line on stderr, ``facewatch: error: <what is wrong, naming the file or field>``; under ``--json``
they are one JSON object on stdout, ``{"error": {"code": ..., "message": ...}, "exit_status": N}``, with a stable
``code``. Known error types from the layers below become that line in ``Group``; anything unexpected is a bug,
reported in one line too (the traceback only with ``-vv``).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from engines.analyzer import AnalyzedFace, FaceAnalyzer, largest_face
from engines.backends.base import BackendUnavailable
from engines.model_store import ModelError
from stream.config import Config, ConfigError, load_config
from stream.media.images import ImageError, load_image
from stream.store.gallery import GalleryError

log = logging.getLogger("facewatch")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

# Process-wide output mode, set while parsing (``--json``, ``-q``) and read when an error is shown.
MODE = {"json": False, "quiet": False}


class UserError(click.ClickException):
    """Bad input (exit 2 by default): one line naming the file or field; ``code`` is stable for ``--json``."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, code: str = "bad_input", exit_code: int | None = None,
                 details: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or []
        if exit_code is not None:
            self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        show_error(self.code, self.message, self.exit_code, self.details)


def show_error(code: str, message: str, exit_status: int, details: list[str] | None = None) -> None:
    """The one way an error reaches the user: a line per problem on stderr, or one JSON object on stdout."""
    if MODE["json"]:
        err: dict[str, Any] = {"code": code, "message": message}
        if details:
            err["problems"] = details
        click.echo(json.dumps({"error": err, "exit_status": exit_status}))
        return
    lines = details or [message]
    for line in lines:
        click.echo(f"facewatch: error: {line}", err=True)


class NoFaceError(ValueError):
    """A photo that must show a face shows none (or several where one is required)."""


#: The project's own input errors and their stable ``--json`` codes (all exit 2).
KNOWN_ERRORS: dict[type[BaseException], str] = {ConfigError: "config", ImageError: "image", GalleryError: "gallery",
                                                ModelError: "model", BackendUnavailable: "backend", NoFaceError: "no_face"}


def register_error(exc_type: type[BaseException], code: str) -> None:
    """Let a layer's own error type become a one-line exit-2 error (e.g. the event store's)."""
    KNOWN_ERRORS[exc_type] = code


class Group(click.Group):
    """Turns the project's own input errors into ``UserError`` (exit 2, one line), and owns the process exit:
    usage errors, interrupts and unexpected exceptions are shown the same way, never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except tuple(KNOWN_ERRORS) as exc:
            code = next(c for t, c in KNOWN_ERRORS.items() if isinstance(exc, t))
            raise UserError(str(exc), code=code) from None

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        MODE["json"], MODE["quiet"] = "--json" in argv, False
        extra.pop("standalone_mode", None)
        try:
            rv = super().main(args=argv, prog_name=prog_name or "facewatch", standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except UserError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            show_error("usage", exc.format_message() + hint, EXIT_BAD_INPUT)
            sys.exit(EXIT_BAD_INPUT)
        except click.ClickException as exc:
            show_error("bad_input", exc.format_message(), exc.exit_code)
            sys.exit(exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            show_error("interrupted", "interrupted", EXIT_INTERRUPTED)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug: one line for the user, the traceback in the debug log
            log.debug("unexpected error", exc_info=True)
            show_error("internal", f"internal error: {type(exc).__name__}: {exc} (run with -vv for the traceback)",
                       EXIT_FAILURE)
            sys.exit(EXIT_FAILURE)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def emit(ctx: click.Context, payload: Any, human: str) -> None:
    """Print ``payload`` as JSON under ``--json``, else the human text."""
    if wants_json(ctx):
        click.echo(json.dumps(payload, default=_jsonable))
    else:
        click.echo(human)


def wants_json(ctx: click.Context) -> bool:
    return bool(ctx.find_root().obj["json"])


def show_progress(ctx: click.Context) -> bool:
    """Progress bars (on stderr) are on unless ``-q`` or stderr is not a terminal; ``--json`` leaves them on,
    since they never touch stdout."""
    return not MODE["quiet"] and sys.stderr.isatty()


def note(message: str) -> None:
    """A progress or status line for a person: stderr, silenced by ``-q``."""
    if not MODE["quiet"]:
        click.echo(message, err=True)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    raise TypeError(type(o).__name__)


def json_option(f):
    """``--json`` and ``-c/--config`` accepted on every command (and on the group)."""

    def cb(ctx: click.Context, _p: click.Parameter, value: bool) -> None:
        if value:
            ctx.find_root().ensure_object(dict)["json"] = True
            MODE["json"] = True

    def cfg_cb(ctx: click.Context, _p: click.Parameter, value: str | None) -> None:
        if value:
            ctx.find_root().ensure_object(dict)["config_path"] = value

    f = click.option("--json", "as_json", is_flag=True, expose_value=False, callback=cb, help="machine-readable output")(f)
    return click.option("-c", "--config", "sub_config", type=click.Path(dir_okay=False), default=None, expose_value=False,
                        callback=cfg_cb, is_eager=True, help="YAML config file")(f)


def get_config(ctx: click.Context) -> Config:
    obj = ctx.find_root().obj
    if "config" not in obj:
        try:
            obj["config"] = load_config(obj.get("config_path"))
        except ConfigError as exc:
            raise UserError(str(exc), code="config") from None
    return obj["config"]


def get_analyzer(ctx: click.Context) -> FaceAnalyzer:
    from stream.loaders import photo_analyzer

    obj = ctx.find_root().obj
    if "analyzer" not in obj:
        obj["analyzer"] = photo_analyzer(get_config(ctx))
    return obj["analyzer"]


def gallery_dir(ctx: click.Context, given: str | None) -> Path:
    cfg = get_config(ctx)
    return Path(given) if given else cfg.resolve(cfg.matching.gallery)


gallery_option = click.option("--gallery", "gallery", type=click.Path(file_okay=False), default=None, help="gallery directory")


def one_face(analyzer: FaceAnalyzer, path: str, largest: bool = True, image: np.ndarray | None = None) -> AnalyzedFace:
    """The single face of a photo (the largest one when ``largest``); NoFaceError otherwise."""
    faces = analyzer.analyze(load_image(path) if image is None else image)
    if not faces:
        raise NoFaceError(f"{path}: no face found")
    if len(faces) > 1 and not largest:
        raise NoFaceError(f"{path}: {len(faces)} faces found, expected one (use --largest to take the largest)")
    return largest_face(faces)
