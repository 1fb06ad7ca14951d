"""Open-set 1:N evaluation through the real gallery (SQLite + HNSW): rank-1, FNIR at FPIR, FPIR vs N."""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stream.eval.photos import EmbeddingCache, EvalError, require_plotting
from stream.eval.plots import figure
from stream.eval.rates import RateAt, fnir_at_fpir
from stream.store.gallery import Gallery, accepts


@dataclass
class IdentifyReport:
    identities: int
    enrolled_identities: int
    enroll_per_identity: int
    mated_probes: int
    nonmated_probes: int
    rank1: float
    fnir_at_fpir: list[RateAt]
    fpir_vs_n: list[dict] = field(default_factory=list)
    fixed_threshold: float = 0.0
    failed_images: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_identify(analyzer, root: Path, enroll: int = 3, fpirs=(1e-2, 1e-3), threshold: float = 0.9,
                      only: str | None = None, plot: Path | None = None, progress: bool = True, seed: int = 0,
                      workdir: Path | None = None) -> IdentifyReport:
    """Open-set 1:N through the real Gallery (SQLite + HNSW): every other identity (sorted) is enrolled with
    its first ``enroll`` photos; probes are the rest of their photos (mated) and all photos of the others
    (non-mated). FPIR at ``threshold`` is then measured on galleries of growing size N."""
    require_plotting(plot)
    cache = EmbeddingCache(analyzer, root)
    names = sorted(d.name for d in Path(root).iterdir() if d.is_dir() and (only is None or d.name.startswith(only)))
    photos = {n: sorted(Path(root, n).glob("*.jpg"), key=lambda p: (len(p.stem), p.stem)) for n in names}
    enrolled = [n for k, n in enumerate(names) if k % 2 == 0 and len(photos[n]) > enroll]
    others = [n for n in names if n not in enrolled]
    which = f" starting with {only!r}" if only else ""
    if len(names) < 2:
        raise EvalError(f"--root {root}: needs folders of at least 2 identities{which} (ROOT/<name>/<i>.jpg), found {len(names)}")
    if not enrolled:
        raise EvalError(f"--root {root}: no identity{which} has more than --enroll {enroll} photos, so none can be "
                        "enrolled and still probed")
    if not others:
        raise EvalError(f"--root {root}: every identity{which} would be enrolled; none is left to probe as a stranger")
    all_paths = [p for n in names for p in photos[n]]
    for p in tqdm(all_paths, desc="embedding", unit="img", disable=not progress):
        cache.get(p)
    tmp = tempfile.TemporaryDirectory(dir=workdir)
    gal = Gallery(Path(tmp.name) / "g")
    for n in enrolled:
        emb = [cache.get(p) for p in photos[n][:enroll]]
        emb = [e for e in emb if e is not None]
        if emb:
            gal.enroll(n, np.stack(emb))

    def probe(gallery, paths):
        embs = [cache.get(p) for p in paths]
        ok = [e for e in embs if e is not None]
        cands = gallery.search(np.stack(ok)) if ok else []
        it = iter(cands)
        return [next(it) if e is not None else None for e in embs]

    mated = [(n, p) for n in enrolled for p in photos[n][enroll:]]
    m_c = probe(gal, [p for _, p in mated])
    m_scores = np.array([c.score if c else -2.0 for c in m_c])
    m_correct = np.array([bool(c) and c.identity == n for c, (n, _) in zip(m_c, mated)])
    non = [p for n in others for p in photos[n]]
    n_scores = np.array([c.score if c else -2.0 for c in probe(gal, non)])
    report = IdentifyReport(
        identities=len(names), enrolled_identities=len(enrolled), enroll_per_identity=enroll,
        mated_probes=len(mated), nonmated_probes=len(non), rank1=float(m_correct.mean()) if len(mated) else 0.0,
        fnir_at_fpir=[fnir_at_fpir(m_scores, m_correct, n_scores, f) for f in fpirs], fixed_threshold=threshold,
        failed_images=len(cache.failures),
    )
    # FPIR at a fixed threshold as the gallery grows: random nested subsets of the enrolled identities.
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(enrolled))
    sizes = sorted({max(1, len(order) * k // 8) for k in range(1, 9)})
    for n_size in sizes:
        sub = Gallery(Path(tmp.name) / f"g{n_size}")
        for n in order[:n_size]:
            sub.enroll(n, np.stack([e for e in (cache.get(p) for p in photos[n][:enroll]) if e is not None]))
        s = np.array([c.score if c else -2.0 for c in probe(sub, non)])
        report.fpir_vs_n.append({"N": n_size, "fpir": float(np.mean(accepts(s, threshold))), "nonmated": len(non)})
        sub.close()
    gal.close()
    tmp.cleanup()
    if plot is not None:
        with figure(plot) as ax:
            ax.plot([r["N"] for r in report.fpir_vs_n], [r["fpir"] for r in report.fpir_vs_n], "o-")
            ax.set_xlabel("gallery size N (identities)")
            ax.set_ylabel(f"FPIR at threshold {threshold:.4f}")
    return report
