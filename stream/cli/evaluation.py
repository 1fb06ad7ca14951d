"""``eval verify | identify | detect`` and ``calibrate``: accuracy on the user's own labelled photos."""
from __future__ import annotations

from pathlib import Path

import click

from stream.cli.common import (Group, UserError, emit, get_analyzer, get_config, json_option, register_error,
                               show_progress)
from stream.eval.photos import EvalError
from stream.eval.rates import RateAt

register_error(EvalError, "eval_input")


def _rate_lines(rates: list[RateAt], kind: str, false: str) -> list[str]:
    out = []
    for r in rates:
        if r.rate is None:
            out.append(f"  {kind} @ {false} {r.target:g}: n/a ({r.note})")
        else:
            out.append(f"  {kind} @ {false} {r.target:g}: {r.rate:.4f}  threshold {r.threshold:.4f}  (measured {false} {r.achieved:.4%})")
    return out


@click.group("eval", cls=Group)
def eval_group() -> None:
    """Measure accuracy on your own labelled photos."""


@eval_group.command("verify")
@click.option("--pairs", "pairs_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False), help="IDS_DIR/<name>/<i>.jpg")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="ROC curve PNG")
@json_option
@click.pass_context
def eval_verify(ctx: click.Context, pairs_file: str, root: str, plot: str | None) -> None:
    """LFW protocol: 10-fold accuracy, ROC AUC, TAR at FAR 1e-2/1e-3/1e-4 with thresholds."""
    from stream.eval.verify import evaluate_verify

    rep = evaluate_verify(get_analyzer(ctx), Path(pairs_file), Path(root), plot=Path(plot) if plot else None,
                          progress=show_progress(ctx))
    lines = [f"pairs: {rep.genuine} same + {rep.impostor} different; images {rep.images}, without a face {rep.failed_images} ({rep.failure_policy})",
             f"10-fold accuracy: {rep.accuracy_mean:.4f} +- {rep.accuracy_std:.4f}", f"ROC AUC: {rep.auc:.4f}"]
    lines += _rate_lines(rep.tar_at_far, "TAR", "FAR")
    emit(ctx, rep.to_dict(), "\n".join(lines))


@eval_group.command("identify")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--enroll", "enroll_k", default=3, show_default=True, type=click.IntRange(1, 1000), help="photos enrolled per identity")
@click.option("--only", default=None, help="use only identities whose folder name starts with this (one data family)")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="FPIR-vs-N PNG")
@json_option
@click.pass_context
def eval_identify(ctx: click.Context, root: str, enroll_k: int, only: str | None, plot: str | None) -> None:
    """Open-set 1:N: rank-1, FNIR at FPIR 1% / 0.1%, and FPIR growth with gallery size N."""
    from stream.eval.identify import evaluate_identify

    cfg = get_config(ctx)
    rep = evaluate_identify(get_analyzer(ctx), Path(root), enroll=enroll_k, threshold=cfg.matching.threshold, only=only,
                            plot=Path(plot) if plot else None, progress=show_progress(ctx))
    lines = [f"identities {rep.identities}: enrolled {rep.enrolled_identities} x {rep.enroll_per_identity} photos; "
             f"mated probes {rep.mated_probes}, non-mated {rep.nonmated_probes}",
             f"rank-1 identification rate: {rep.rank1:.4f}"]
    lines += _rate_lines(rep.fnir_at_fpir, "FNIR", "FPIR")
    lines.append(f"FPIR at fixed threshold {rep.fixed_threshold:.4f} vs gallery size:")
    lines.append("      N    FPIR")
    lines += [f"  {r['N']:5d}  {r['fpir']:.4f}" for r in rep.fpir_vs_n]
    emit(ctx, rep.to_dict(), "\n".join(lines))


@eval_group.command("detect")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--truth", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="precision/recall PNG")
@json_option
@click.pass_context
def eval_detect(ctx: click.Context, images: str, truth: str, plot: str | None) -> None:
    """Detection rate, miss rate, false-detection rate (IoU >= 0.5), PR curve, mean latency."""
    from stream.eval.detect import evaluate_detect

    rep = evaluate_detect(get_analyzer(ctx).detector, Path(images), Path(truth), plot=Path(plot) if plot else None)
    human = (f"{rep['images']} images, {rep['faces']} faces, threshold {rep['threshold']}\n"
             f"detection rate {rep['detection_rate']:.4f}  miss rate {rep['miss_rate']:.4f}  "
             f"false-detection rate {rep['false_detection_rate']:.4f} ({rep['false_per_image']:.2f} per image)\n"
             f"images with every face found: {rep['images_all_found']:.2%}; mean latency {rep['mean_latency_ms']:.1f} ms")
    emit(ctx, rep, human)


@click.command()
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False), required=True,
              help="LFW pairs file; the impostor pairs set the threshold")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--target-far", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.001, show_default=True,
              help="target FAR (1:1), or target FPIR with --gallery-size")
@click.option("--gallery-size", type=click.IntRange(1), default=None, help="1:N: gallery size N the FPIR is meant for")
@click.option("--write", "write_to", type=click.Path(dir_okay=False), default=None, help="config file to write the threshold into")
@json_option
@click.pass_context
def calibrate(ctx: click.Context, pairs_file: str, root: str, target_far: float, gallery_size: int | None, write_to: str | None) -> None:
    """Pick the threshold for a target false-accept rate (at gallery size N) and write it into a config."""
    from stream.eval.calibrate import calibrate_from_pairs, write_threshold

    try:
        res = calibrate_from_pairs(get_analyzer(ctx), Path(pairs_file), Path(root), target_far, gallery_size,
                                   progress=show_progress(ctx))
    except EvalError:
        raise
    except ValueError as exc:  # the data cannot support the target (too few impostors)
        raise UserError(str(exc), code="eval_input") from None
    if write_to:
        write_threshold(Path(write_to), res)
        res["written_to"] = write_to
    emit(ctx, res, f"threshold {res['threshold']}: {res['source']}" + (f"\nwritten to {write_to}" if write_to else ""))
