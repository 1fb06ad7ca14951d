"""The report plots (ROC, FPIR vs N, detection PR), headless, as PNG. matplotlib is the ``eval`` extra."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from stream.eval.rates import RateAt, roc_curve


@contextmanager
def figure(out: Path):
    """A headless 5x4 matplotlib axis saved to ``out`` (PNG) on exit: the one setup every report plot shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    try:
        yield ax
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out, dpi=120)
    finally:
        plt.close(fig)


def plot_roc(gen: np.ndarray, imp: np.ndarray, tar_at_far: list[RateAt], auc: float, out: Path) -> None:
    far, tar, _ = roc_curve(gen, imp)
    with figure(out) as ax:
        ax.plot(np.maximum(far, 1e-5), tar, lw=1.5)
        for r in tar_at_far:
            if r.rate is not None:
                ax.plot([r.target], [r.rate], "o", label=f"TAR {r.rate:.3f} @ FAR {r.target:g} (thr {r.threshold:.4f})")
        ax.set_xscale("log")
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate")
        ax.set_title(f"ROC (AUC {auc:.4f}, {len(gen)}+{len(imp)} pairs)")
        ax.legend(fontsize=7, loc="lower right")
