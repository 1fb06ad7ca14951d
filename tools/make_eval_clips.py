#!/usr/bin/env python3
"""Write labelled evaluation clips (and their label files) from a labelled photo folder, for ``facewatch eval video``.

    python tools/make_eval_clips.py --out /tmp/evalclips --people 6 --passes 3 --strangers 4 --seed 0
    facewatch eval video --dir /tmp/evalclips --profile fast,accurate,arcface --rule track,votes

What the clips show (enrolment photos never shown; several photos per pass; motion, zoom, blur, lighting change,
noise; two faces at once; strangers) and the label schema: ``stream/eval/video_clips.py``. Deterministic for a
seed. The default root is the shared dev data (``../shared/data/faces/wild_dev/ids``), one family (``es_``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stream.eval.photos import EvalError  # noqa: E402
from stream.eval.video_clips import FPS, SIZE, make_clip_set  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "faces" / "wild_dev" / "ids",
                    help="ROOT/<identity>/<i>.jpg (default: %(default)s)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the clips and label files")
    ap.add_argument("--people", type=int, default=6, help="enrolled people (default: %(default)s)")
    ap.add_argument("--passes", type=int, default=3, help="passes per enrolled person = clips (default: %(default)s)")
    ap.add_argument("--strangers", type=int, default=4, help="stranger identities, not enrolled (default: %(default)s)")
    ap.add_argument("--stranger-passes", type=int, default=1, help="passes per stranger (default: %(default)s)")
    ap.add_argument("--enroll", type=int, default=3, help="photos enrolled per person, never shown (default: %(default)s)")
    ap.add_argument("--photos-per-pass", type=int, default=3, help="photos shown in turn in a pass (default: %(default)s)")
    ap.add_argument("--only", default="es_", help="identities whose folder starts with this; '' for all "
                                                  "(default: %(default)s)")
    ap.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}", help="frame size WxH (default: %(default)s)")
    ap.add_argument("--fps", type=float, default=FPS, help="frames per second (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    a = ap.parse_args(argv)
    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size {a.size!r}: use WxH, e.g. 960x540")
    if not a.root.is_dir():
        print(f"make_eval_clips: error: --root {a.root}: not a directory", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        files = make_clip_set(a.root, a.out, people=a.people, passes=a.passes, strangers=a.strangers,
                              stranger_passes=a.stranger_passes, enroll=a.enroll, photos_per_pass=a.photos_per_pass,
                              seed=a.seed, only=a.only or None, size=(w, h), fps=a.fps)
    except EvalError as exc:
        print(f"make_eval_clips: error: {exc}", file=sys.stderr)
        return 2
    for f in files:
        print(f)
    print(f"{len(files)} clip(s) with labels in {a.out} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
