"""``eval verify | identify | detect`` and ``calibrate``: accuracy on the user's own labelled photos."""
from __future__ import annotations

from pathlib import Path

import click

from stream.cli.common import (Group, UserError, emit, get_analyzer, get_config, json_option, register_error,
                               show_progress)
from stream.eval.photos import EvalError
from stream.eval.rates import DEFAULT_MARGIN, RateAt, TooFewTrials, at_threshold_line

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

    cfg = get_config(ctx)
    rep = evaluate_verify(get_analyzer(ctx), Path(pairs_file), Path(root), plot=Path(plot) if plot else None,
                          progress=show_progress(ctx), threshold=cfg.threshold,
                          far_claim=cfg.calibration.far, gallery_size=cfg.calibration.gallery_size)
    lines = [f"pairs: {rep.genuine} same + {rep.impostor} different; images {rep.images}, without a face {rep.failed_images} ({rep.failure_policy})",
             f"10-fold accuracy: {rep.accuracy_mean:.4f} +- {rep.accuracy_std:.4f}", f"ROC AUC: {rep.auc:.4f}"]
    lines += _rate_lines(rep.tar_at_far, "TAR", "FAR")
    lines.append(at_threshold_line(rep.at_threshold))
    emit(ctx, rep.to_dict(), "\n".join(lines))


@eval_group.command("identify")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--enroll", "enroll_k", default=3, show_default=True, type=click.IntRange(1, 1000), help="photos enrolled per identity")
@click.option("--only", default=None, help="use only identities whose folder name starts with this (one data family)")
@click.option("--within-families", is_flag=True, help="different-person pairs and galleries only within one family "
              "(folder-name prefix before the first '_'): for data gathered from sources that may share a person")
@click.option("--gallery-size", type=click.IntRange(1), default=None,
              help="N for FPIR at the configured threshold [default: matching.gallery_size]")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="FPIR-vs-N PNG")
@json_option
@click.pass_context
def eval_identify(ctx: click.Context, root: str, enroll_k: int, only: str | None, within_families: bool,
                  gallery_size: int | None, plot: str | None) -> None:
    """Open-set 1:N: rank-1, FNIR at FPIR 1% / 0.1%, FPIR growth with gallery size N, and TPIR / FAR / FPIR at the
    configured threshold next to the config's claim."""
    from stream.eval.identify import evaluate_identify

    cfg = get_config(ctx)
    rep = evaluate_identify(get_analyzer(ctx), Path(root), enroll=enroll_k, threshold=cfg.threshold, only=only,
                            plot=Path(plot) if plot else None, progress=show_progress(ctx),
                            gallery_size=gallery_size or cfg.calibration.gallery_size,
                            far_claim=cfg.calibration.far, within_families=within_families)
    lines = [f"identities {rep.identities}: enrolled {rep.enrolled_identities} x {rep.enroll_per_identity} photos; "
             f"mated probes {rep.mated_probes}, non-mated {rep.nonmated_probes}",
             f"rank-1 identification rate: {rep.rank1:.4f}"]
    lines += _rate_lines(rep.fnir_at_fpir, "FNIR", "FPIR")
    lines.append(f"FPIR at fixed threshold {rep.fixed_threshold:.4f} vs gallery size:")
    lines.append("      N    FPIR")
    lines += [f"  {r['N']:5d}  {r['fpir']:.4f}" for r in rep.fpir_vs_n]
    lines.append(at_threshold_line(rep.at_threshold))
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


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4%}"


def _calibrate_lines(res: dict) -> list[str]:
    lines = [f"threshold {res['threshold']:.4f}: {res['source']}",
             f"  FAR at it on the calibration data: {_pct(res['far'])} ({res['false_accepts']} of {res['impostors']} "
             f"impostor pairs), 95% interval {_pct(res['far_interval'][0])}-{_pct(res['far_interval'][1])}; "
             f"claim {_pct(res['per_comparison_far'])}"]
    f = res["fpir"]
    if f.get("fpir") is not None:
        lines.append(f"  FPIR at N={f['measured_at']}: {_pct(f['fpir'])} ({f['nonmated_probes']} non-mated probes), 95% "
                     f"interval {_pct(f['interval'][0])}-{_pct(f['interval'][1])}; formula predicts {_pct(f['claimed'])}"
                     + (f" ({f['note']})" if f["note"] else ""))
    else:
        lines.append(f"  FPIR: {f['note']}")
    lines.append(f"  1:N check at N={res['fpir_check']['gallery_size']}: {res['fpir_check']['verdict']}")
    h = res.get("holdout")
    if h:
        hf = h["fpir"]
        lines.append(f"  held-out identities ({len(h['held_out'])}, not calibrated on): FAR "
                     + (f"{_pct(h['far'])} ({h['false_accepts']} of {h['impostor_pairs']}), 95% interval "
                        f"{_pct(h['far_interval'][0])}-{_pct(h['far_interval'][1])}" if h["far"] is not None else "n/a (no pairs)")
                     + f"; TAR {_pct(h['tar'])}; "
                     + (f"FPIR at N={hf['measured_at']} {_pct(hf['fpir'])}, 95% interval {_pct(hf['interval'][0])}-"
                        f"{_pct(hf['interval'][1])} (formula {_pct(hf['claimed'])})" if hf.get("fpir") is not None
                        else f"FPIR: {hf['note']}"))
    return lines


@click.command()
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False),
              help="IDS_DIR/<name>/<i>.jpg: every cross-identity photo pair is an impostor")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="LFW pairs file: its same-person pairs measure TAR (impostors still come from every cross-identity pair)")
@click.option("--target-far", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.001, show_default=True,
              help="target FAR (1:1), or target FPIR with --gallery-size; met by the 95% upper bound")
@click.option("--gallery-size", type=click.IntRange(1), default=None,
              help="1:N: gallery size N the FPIR is meant for; the formula's threshold is checked on galleries of N")
@click.option("--only", default=None, help="use only identities whose folder name starts with this (one data family)")
@click.option("--within-families", is_flag=True, help="impostor pairs and galleries only within one family "
              "(folder-name prefix before the first '_'): for data gathered from sources that may share a person")
@click.option("--margin", type=click.FloatRange(0, 0.5), default=None,
              help="score added above the threshold the data supports, for people it does not hold "
                   f"[default: {DEFAULT_MARGIN}, from identity splits of wild_dev: README Accuracy]")
@click.option("--holdout-identities", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="calibrate on the other identities and report FAR / FPIR on this random fraction of them")
@click.option("--allow-weak", is_flag=True, help="when the data cannot support the target, warn and go on")
@click.option("--enroll", "enroll_k", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="photos enrolled per identity for FPIR")
@click.option("--max-impostors", type=click.IntRange(1000), default=5_000_000, show_default=True,
              help="above this many cross-identity pairs, a seeded uniform sample of this many")
@click.option("--seed", type=int, default=0, show_default=True, help="for sampling and --holdout-identities")
@click.option("--write", "write_to", type=click.Path(dir_okay=False), default=None, help="config file to write the threshold into")
@json_option
@click.pass_context
def calibrate(ctx: click.Context, root: str, pairs_file: str | None, target_far: float, gallery_size: int | None,
              only: str | None, within_families: bool, margin: float | None, holdout_identities: float | None,
              allow_weak: bool, enroll_k: int, max_impostors: int, seed: int, write_to: str | None) -> None:
    """Pick the threshold whose false-accept rate (or FPIR at gallery size N) keeps the target with 95%
    confidence, and write it with its record into a config."""
    from stream.eval.calibrate import calibrate_threshold, check_writable, describe, holdout_check, write_threshold
    from stream.eval.photos import (EmbeddingCache, embed_labelled, list_identities, pair_scores, parse_pairs,
                                    require_photos)

    pairs = parse_pairs(Path(pairs_file)) if pairs_file else None
    list_identities(Path(root), only)  # an empty or one-person folder fails here, before the models load
    if write_to:
        check_writable(Path(write_to))
    cfg = get_config(ctx)
    analyzer = get_analyzer(ctx)
    cache = EmbeddingCache(analyzer, Path(root))
    genuine = None
    if pairs is not None:
        require_photos(cache, pairs)
        same = [p for p in pairs if p.same]
        genuine = pair_scores(cache, same, show_progress(ctx))
    ls = embed_labelled(cache, Path(root), only, progress=show_progress(ctx))
    kw = dict(gallery_size=gallery_size, check_gallery_size=cfg.calibration.gallery_size,
              margin=DEFAULT_MARGIN if margin is None else margin, enroll=enroll_k, within_families=within_families,
              max_pairs=max_impostors, seed=seed, allow_weak=allow_weak)
    try:
        if holdout_identities:
            res = holdout_check(ls, holdout_identities, target_far, **kw)
        else:
            res = calibrate_threshold(ls, target_far, genuine=genuine, **kw)
    except TooFewTrials as exc:  # the data cannot support the target: say what it can
        raise UserError(str(exc), code="eval_input") from None
    command = (f"facewatch calibrate --root {root}" + (f" --only {only}" if only else "")
               + (" --within-families" if within_families else "") + f" --target-far {target_far:g}"
               + (f" --gallery-size {gallery_size}" if gallery_size else "")
               + (f" --holdout-identities {holdout_identities:g} --seed {seed}" if holdout_identities else ""))
    res["source"] = describe(res, command)
    if genuine is not None:
        res["tar_pairs_file"] = str(pairs_file)
    for w in res["warnings"]:  # loud: on stderr even with -q, and in the JSON
        click.echo(f"facewatch: WARNING: {w}", err=True)
    if write_to:
        write_threshold(Path(write_to), res)
        res["written_to"] = write_to
    emit(ctx, res, "\n".join(_calibrate_lines(res)) + (f"\nwritten to {write_to}" if write_to else ""))
