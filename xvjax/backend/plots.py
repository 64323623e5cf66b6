"""DET curves (miss vs false-alarm probability on normal-deviate axes) written as PNG."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xvjax import metrics

__all__ = ["det_plot"]

_TICKS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]


def det_plot(
    systems: Sequence[tuple[str, np.ndarray, np.ndarray]],
    png_path: str,
    title: str = "DET curve",
    p_target: float | None = 0.01,
) -> None:
    """Writes a DET plot of one or more systems to `png_path` (atomically).

    systems: (name, scores (T,), labels (T,) bool) per curve; the legend shows each system's
    EER (Kaldi's compute-eer) and, with p_target, its minDCF (compute_min_dcf.py), and marks the
    EER point.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from xvjax.fileutil import atomic_path

    eps = 1e-6
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, scores, labels in systems:
        fnr, fpr = metrics.det_curve(scores, labels)
        eer, _ = metrics.compute_eer(scores, labels)
        label = f"{name} (EER {100 * eer:.2f}%"
        if p_target is not None:
            dcf, _ = metrics.compute_min_dcf(scores, labels, p_target)
            label += f", minDCF{p_target:g} {dcf:.3f}"
        label += ")"
        x = norm.ppf(np.clip(fpr, eps, 1 - eps))
        y = norm.ppf(np.clip(fnr, eps, 1 - eps))
        (line,) = ax.plot(x, y, label=label)
        e = norm.ppf(np.clip(eer, eps, 1 - eps))
        ax.plot([e], [e], "o", color=line.get_color())
    ticks = norm.ppf(_TICKS)
    labels_pct = [f"{100 * t:g}" for t in _TICKS]
    ax.set_xticks(ticks, labels_pct)
    ax.set_yticks(ticks, labels_pct)
    lim = (norm.ppf(0.0005), norm.ppf(0.5))
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.plot(lim, lim, ":", color="grey", linewidth=0.8)
    ax.set_xlabel("False alarm probability (%)")
    ax.set_ylabel("Miss probability (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
