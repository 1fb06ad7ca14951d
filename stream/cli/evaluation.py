"""``eval verify | identify | detect`` and ``calibrate``: accuracy on the user's own labelled photos."""
from __future__ import annotations

from pathlib import Path

import click

from stream.cli.common import (Group, UserError, emit, get_analyzer, get_config, json_option, register_error,
                               show_progress)
from stream.eval.photos import EvalError
from stream.eval.passes import DEFAULT_DRAWS
from stream.eval.rates import MARGINS, RateAt, TooFewTrials, at_threshold_line

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
                          far_claim=cfg.calibration.far, gallery_size=cfg.calibration.gallery_size,
                          max_clipped=cfg.quality.max_clipped)
    lines = [f"pairs: {rep.genuine} same + {rep.impostor} different; images {rep.images}, without a face or gated {rep.failed_images} ({rep.failure_policy})",
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
                            far_claim=cfg.calibration.far, within_families=within_families,
                            max_clipped=cfg.quality.max_clipped)
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


def _how(r: dict) -> str:
    check = r["fpir_check"] or {}
    raised = "overrules" in check.get("verdict", "")
    return (f"{r['threshold_before_margin']:.4f} (FAR bound {r['far_threshold']:.4f}"
            + (f", raised for FPIR at N={check['gallery_size']}" if raised else "") + f") + margin {r['margin']:g}")


def _fpir_line(f: dict, probes: str) -> str:
    if f.get("fpir") is None:
        return f"FPIR: {f['note']}"
    return (f"FPIR at N={f['measured_at']}: {_pct(f['fpir'])} ({f['nonmated_probes']} non-mated {probes}), 95% interval "
            f"{_pct(f['interval'][0])}-{_pct(f['interval'][1])}; formula predicts {_pct(f['claimed'])}"
            + (f"; TPIR {_pct(f['tpir'])}" if f.get("tpir") is not None else "") + (f" ({f['note']})" if f["note"] else ""))


def _unseen_line(h: dict, trials: str) -> str:
    """FAR / FPIR / TAR of an unseen identity half at the threshold the other half chose."""
    n_imp = h.get("impostor_pairs", h.get("impostor_passes"))
    far = (f"FAR {_pct(h['far'])} ({h['false_accepts']} of {n_imp} impostor {trials}), 95% interval "
           f"{_pct(h['far_interval'][0])}-{_pct(h['far_interval'][1])}" if h["far"] is not None else f"FAR n/a (no {trials})")
    n_gen = h.get("genuine_pairs", h.get("genuine_passes"))
    return f"{far}; TAR at the claim {_pct(h['tar'])} of {n_gen} genuine {trials}; {_fpir_line(h['fpir'], trials)}"


def _track_lines(t: dict, title: str) -> list[str]:
    p = t["passes"]
    return [f"{title} ({t['rule']}; {p['how']}): threshold {t['threshold']:.4f} = {_how(t)}",
            f"  pass FAR at it on the calibration data: {_pct(t['far'])} ({t['false_accepts']} of {t['impostors']} "
            f"impostor passes), 95% interval {_pct(t['far_interval'][0])}-{_pct(t['far_interval'][1])}; claim "
            f"{_pct(t['per_comparison_far'])} per track",
            f"  {_fpir_line(t['fpir'], 'passes')}",
            f"  1:N check at N={t['fpir_check']['gallery_size']}: {t['fpir_check']['verdict']}",
            f"  TAR: {_pct(t['tar'])} of {t['genuine_passes']} genuine passes ({p['template_identities']} identities "
            f"with a template)"]


def _calibrate_lines(res: dict) -> list[str]:
    lines = [f"per photo pair: threshold {res['threshold']:.4f} = {_how(res)}",
             f"  FAR at it on the calibration data: {_pct(res['far'])} ({res['false_accepts']} of {res['impostors']} "
             f"impostor pairs), 95% interval {_pct(res['far_interval'][0])}-{_pct(res['far_interval'][1])}; "
             f"claim {_pct(res['per_comparison_far'])}",
             f"  {_fpir_line(res['fpir'], 'probes')}",
             f"  1:N check at N={res['fpir_check']['gallery_size']}: {res['fpir_check']['verdict']}",
             f"  TAR: {_pct(res['tar'])} of {res['genuine_pairs']} same-identity pairs"]
    v = res.get("votes")
    if v and v["far"] is not None:
        lines += [f"votes rule ({v['passes']['how']}): threshold {v['threshold']:.4f} = the higher of the per-photo "
                  f"threshold and {v['own_before_margin']:.4f} (its passes' FAR bound and FPIR check) + margin "
                  f"{v['margin']:g} (set by {v['set_by']})",
                  f"  pass FAR {_pct(v['far'])} ({v['false_accepts']} of {v['impostor_passes']} impostor passes), 95% "
                  f"interval {_pct(v['far_interval'][0])}-{_pct(v['far_interval'][1])}",
                  f"  {_fpir_line(v['fpir'], 'passes')}",
                  f"  TAR: {_pct(v['tar'])} of {v['genuine_passes']} genuine passes"]
        if v.get("holdout"):
            lines.append(f"  held-out identities: {_unseen_line(v['holdout'], 'passes')}")
    t = res.get("track")
    if t:
        lines += _track_lines(t, "per track")
        lines.append(f"  promise: {t['promise']}")
    else:
        lines.append("per track: not calibrated (see the warning); the record's track_threshold is null")
    c = res.get("track_cohort_norm")
    if c:
        lines += _track_lines(c, "cohort-normalised track score (a measurement, never written)")
    h = res.get("holdout")
    if h:
        lines.append(f"held-out identities ({len(h['held_out'])}, not calibrated on), at the thresholds the other "
                     f"{res['identities']} chose:")
        lines.append(f"  per photo pair at {res['threshold']:.4f}: {_unseen_line(h, 'pairs')}")
        if t and t.get("holdout"):
            lines.append(f"  per track at {t['threshold']:.4f}: {_unseen_line(t['holdout'], 'passes')}")
        if c and c.get("holdout"):
            lines.append(f"  cohort-normalised track at {c['threshold']:.4f}: {_unseen_line(c['holdout'], 'passes')}")
    if res.get("promise"):
        lines.append(f"promise of the configured rule: {res['promise']}")
    lines.append(f"record: {res['calibration']['data']}")
    return lines


@click.command()
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False),
              help="IDS_DIR/<name>/<i>.jpg: every cross-identity photo pair is an impostor")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="LFW pairs file: its same-person pairs measure TAR (impostors still come from every cross-identity pair)")
@click.option("--target-far", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.001, show_default=True,
              help="target FAR per photo pair and per track (1:1), or target FPIR with --gallery-size; met by the 95% upper bound")
@click.option("--gallery-size", type=click.IntRange(1), default=None,
              help="1:N: gallery size N the FPIR is meant for; the formula's threshold is checked on galleries of N")
@click.option("--only", default=None, help="use only identities whose folder name starts with this (one data family)")
@click.option("--within-families", is_flag=True, help="impostor pairs, impostor passes and galleries only within one "
              "family (folder-name prefix before the first '_'): for data gathered from sources that may share a person")
@click.option("--margin", type=click.FloatRange(0, 0.5), default=None,
              help="score added above the per-photo threshold the data supports, for people it does not hold "
                   "[default: per profile, " + ", ".join(f"{k} {m.photo}" for k, m in MARGINS.items())
                   + ", from identity splits of wild_dev: README Accuracy]")
@click.option("--track-margin", type=click.FloatRange(0, 0.5), default=None,
              help="the same for the track threshold [default: " + ", ".join(f"{k} {m.track}" for k, m in MARGINS.items())
                   + ", from identity splits of wild_dev: "
                   "tools/threshold_splits.py --rule track --derive]")
@click.option("--votes-margin", type=click.FloatRange(0, 0.5), default=None,
              help="the same for the votes rule's own threshold [default: " + ", ".join(f"{k} {m.votes}" for k, m in MARGINS.items())
                   + ", tools/threshold_splits.py --rule votes --derive]")
@click.option("--pass-length", type=click.IntRange(1, 100), default=None,
              help="photos per pass, standing in for a track's embeddings [default: matching.max_embeddings_per_track]")
@click.option("--min-chips", type=click.IntRange(1, 100), default=None,
              help="embeddings a track needs before it is decided; a pass is scored by its best prefix from here on "
                   "[default: matching.votes]")
@click.option("--draws", type=click.IntRange(1, 100_000), default=DEFAULT_DRAWS, show_default=True,
              help="seeded draws of an enrolment set and a pass per identity")
@click.option("--cohort-norm", is_flag=True, help="also measure the cohort-normalised track score (off in the product: "
              "it did not win on unseen identity halves; never written)")
@click.option("--holdout-identities", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="calibrate on the other identities and report FAR / FPIR / TAR of both rules on this random fraction of them")
@click.option("--allow-weak", is_flag=True, help="when the data cannot support the target, warn and go on")
@click.option("--enroll", "enroll_k", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="photos enrolled per identity for FPIR, and per template of the pass trials")
@click.option("--max-impostors", type=click.IntRange(1000), default=5_000_000, show_default=True,
              help="above this many cross-identity pairs (or impostor passes), a seeded sample of this many")
@click.option("--seed", type=int, default=0, show_default=True, help="for sampling, the pass draws and --holdout-identities")
@click.option("--write", "write_to", type=click.Path(dir_okay=False), default=None,
              help="config file to write the calibration record (matching.calibration) into")
@json_option
@click.pass_context
def calibrate(ctx: click.Context, root: str, pairs_file: str | None, target_far: float, gallery_size: int | None,
              only: str | None, within_families: bool, margin: float | None, track_margin: float | None,
              votes_margin: float | None, pass_length: int | None, min_chips: int | None, draws: int, cohort_norm: bool,
              holdout_identities: float | None, allow_weak: bool, enroll_k: int, max_impostors: int, seed: int,
              write_to: str | None) -> None:
    """Pick the per-photo, the votes and the track thresholds whose false-accept rates (or FPIR at gallery size N)
    keep the target with 95% confidence, and write them as one calibration record into a config."""
    from engines.profiles import profile
    from stream.eval.calibrate import (calibrate as calibrate_both, calibration_record, check_writable, describe,
                                       holdout_check, votes_promise, write_calibration)
    from stream.eval.passes import PassError, pass_trials
    from stream.eval.photos import (EmbeddingCache, embed_labelled, list_identities, pair_scores, parse_pairs,
                                    require_photos)

    if cohort_norm and write_to:
        raise UserError("--cohort-norm is a measurement: the live track rule does not normalise scores, so its "
                        "threshold is never written; drop --write or --cohort-norm", code="usage")
    pairs = parse_pairs(Path(pairs_file)) if pairs_file else None
    list_identities(Path(root), only)  # an empty or one-person folder fails here, before the models load
    if write_to:
        check_writable(Path(write_to))
    cfg = get_config(ctx)
    length = pass_length or cfg.matching.max_embeddings_per_track
    chips = min(min_chips or cfg.matching.votes, length)  # the match stage decides from min(votes, max embeddings)
    analyzer = get_analyzer(ctx)
    cache = EmbeddingCache(analyzer, Path(root), cfg.quality.max_clipped)
    genuine = None
    if pairs is not None:
        require_photos(cache, pairs)
        same = [p for p in pairs if p.same]
        genuine = pair_scores(cache, same, show_progress(ctx))
    ls = embed_labelled(cache, Path(root), only, progress=show_progress(ctx))
    warnings: list[str] = []
    try:
        trials = pass_trials(ls, enroll=enroll_k, length=length, min_chips=chips, draws=draws, seed=seed,
                             within_families=within_families, max_passes=max_impostors)
    except PassError as exc:
        if not allow_weak:
            raise UserError(f"{exc} (--allow-weak calibrates the per-photo threshold alone)", code="eval_input") from None
        trials = None
        warnings.append(f"WEAK: the track rule is not calibrated: {exc}")
    votes_trials = None
    if trials is not None:  # the same passes, scored by the votes rule (matching.votes looks of one person)
        votes_trials = pass_trials(ls, enroll=enroll_k, length=length, min_chips=chips, draws=draws, seed=seed,
                                   within_families=within_families, max_passes=max_impostors, rule="votes")
    kw = dict(gallery_size=gallery_size, check_gallery_size=cfg.calibration.gallery_size,
              margin=MARGINS[cfg.recognition.profile].photo if margin is None else margin, enroll=enroll_k, within_families=within_families,
              max_pairs=max_impostors, seed=seed, allow_weak=allow_weak, trials=trials, cohort_norm=cohort_norm,
              votes_trials=votes_trials,
              votes_margin=MARGINS[cfg.recognition.profile].votes if votes_margin is None else votes_margin,
              track_margin=MARGINS[cfg.recognition.profile].track if track_margin is None else track_margin)
    try:
        if holdout_identities:
            res = holdout_check(ls, holdout_identities, target_far, **kw)
        else:
            res = calibrate_both(ls, target_far, genuine=genuine, **kw)
    except (TooFewTrials, PassError) as exc:  # the data cannot support the target: say what it can
        raise UserError(str(exc), code="eval_input") from None
    command = (f"facewatch calibrate --root {root}" + (f" --only {only}" if only else "")
               + (" --within-families" if within_families else "") + f" --target-far {target_far:g}"
               + (f" --gallery-size {gallery_size}" if gallery_size else "")
               + (f" --holdout-identities {holdout_identities:g} --seed {seed}" if holdout_identities else ""))
    res["source"] = describe(res, command)
    if genuine is not None:
        res["tar_pairs_file"] = str(pairs_file)
    res["warnings"] = warnings + res["warnings"] + (res["track"]["warnings"] if res["track"] else [])
    res["weak"] = bool(res["warnings"])
    prof = cfg.recognition.profile
    res["calibration"] = calibration_record(res, prof, profile(prof).id)
    if cfg.recognition.rule == "track" and res["track"]:
        res["promise"] = res["track"]["promise"]
    elif res["votes"]:
        res["promise"] = votes_promise(res)
    for w in res["warnings"]:  # loud: on stderr even with -q, and in the JSON
        click.echo(f"facewatch: WARNING: {w}", err=True)
    if write_to:
        write_calibration(Path(write_to), res["calibration"])
        res["written_to"] = write_to
    emit(ctx, res, "\n".join(_calibrate_lines(res)) + (f"\nwritten to {write_to}" if write_to else ""))
