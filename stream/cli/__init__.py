"""``facewatch`` command line: one module per command group, each thin (parse, call, print).

Every command takes ``--json`` and ``-c``; bad input exits 2 with one line on stderr saying what is wrong.
"""
from __future__ import annotations

import logging
import sys

import click

from stream.media.native_logs import quiet_native_logs

from stream.cli.common import MODE, Group, json_option
from stream.cli.evaluation import calibrate, eval_group
from stream.cli import eval_video as _eval_video  # noqa: F401  (registers `eval video` on eval_group)
from stream.cli.gallery import gallery
from stream.cli.models import models
from stream.cli.photos import identify, verify
from stream.cli.pipeline import demo, events, run, scan
from stream.cli.serve import serve


@click.group(cls=Group)
@click.option("-v", "--verbose", count=True, help="more log output (-v info, -vv debug)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bars or status lines (errors still show)")
@json_option
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """facewatch: real-time face recognition for video surveillance.

    Exit statuses: 0 ok, 1 failure at run time, 2 bad usage / input / config (nothing changed), 3 partial result.
    """
    MODE["quiet"] = quiet
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    quiet_native_logs(debug=verbose >= 2)
    obj = ctx.ensure_object(dict)
    obj.setdefault("json", False)
    obj.setdefault("config_path", None)


for command in (verify, identify, gallery, models, eval_group, calibrate, run, events, scan, demo, serve):
    main.add_command(command)

__all__ = ["main"]
