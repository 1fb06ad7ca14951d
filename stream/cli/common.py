"""What every command shares: the one-line error contract, ``--json`` and ``-c``, the config and models.

Bad input exits 2 with one line on stderr (``facewatch: error: ...``); known error types from the layers
below are turned into that line by ``Group`` so no command needs its own try/except.
"""
from __future__ import annotations

import json
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

EXIT_BAD_INPUT = 2


class UserError(click.ClickException):
    """Bad input: one line, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"facewatch: error: {self.message}", err=True)


class NoFaceError(ValueError):
    """A photo that must show a face shows none (or several where one is required)."""


KNOWN_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ImageError, GalleryError, ModelError, BackendUnavailable,
                                                 NoFaceError)


class Group(click.Group):
    """Turns the project's own input errors into ``UserError`` (exit 2, one line)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KNOWN_ERRORS as exc:
            raise UserError(str(exc)) from None


def emit(ctx: click.Context, payload: Any, human: str) -> None:
    """Print ``payload`` as JSON under ``--json``, else the human text."""
    if ctx.find_root().obj["json"]:
        click.echo(json.dumps(payload, default=_jsonable))
    else:
        click.echo(human)


def wants_json(ctx: click.Context) -> bool:
    return bool(ctx.find_root().obj["json"])


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
            raise UserError(str(exc)) from None
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


def one_face(analyzer: FaceAnalyzer, path: str, largest: bool = True) -> AnalyzedFace:
    """The single face of a photo (the largest one when ``largest``); NoFaceError otherwise."""
    faces = analyzer.analyze(load_image(path))
    if not faces:
        raise NoFaceError(f"{path}: no face found")
    if len(faces) > 1 and not largest:
        raise NoFaceError(f"{path}: {len(faces)} faces found, expected one (use --largest to take the largest)")
    return largest_face(faces)
