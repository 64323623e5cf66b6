"""DET curves (miss vs false-alarm probability on normal-deviate axes) written as PNG."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm

from xvjax import metrics
from xvjax.fileutil import atomic_path

__all__ = ["det_plot"]

_TICKS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8]


def det_plot(
    systems: Sequence[tuple[str, np.ndarray, np.ndarray]],
    png_path: str,
    title: str = "DET curve",
    p_target: float | None = 0.01,
    max_prob: float = 0.5,
    min_prob: float = 0.0005,
    linestyles: Sequence[str] | None = None,
    legend_outside: bool = False,
) -> None:
    """Writes a DET plot of one or more systems to `png_path` (atomically).

    systems: (name, scores (T,), labels (T,) bool) per curve; the legend shows each system's
    EER (Kaldi's compute-eer) and, with p_target, its minDCF (compute_min_dcf.py), and marks the
    EER point. Axes span [min_prob, max_prob] on both sides (domain-mismatched systems want
    max_prob up to 0.8); `linestyles` per system; `legend_outside` puts the legend beside the axes.
    """
    eps = 1e-6
    # A bare Figure renders with Agg without pyplot (no global figure state, no GUI backend).
    fig = Figure(figsize=(10, 6) if legend_outside else (6, 6))
    ax = fig.subplots()
    for i, (name, scores, labels) in enumerate(systems):
        fnr, fpr = metrics.det_curve(scores, labels)
        eer, _ = metrics.compute_eer(scores, labels)
        label = f"{name} (EER {100 * eer:.2f}%"
        if p_target is not None:
            dcf, _ = metrics.compute_min_dcf(scores, labels, p_target)
            label += f", minDCF{p_target:g} {dcf:.3f}"
        label += ")"
        x = norm.ppf(np.clip(fpr, eps, 1 - eps))
        y = norm.ppf(np.clip(fnr, eps, 1 - eps))
        style = linestyles[i] if linestyles is not None else "-"
        (line,) = ax.plot(x, y, label=label, linestyle=style)
        e = norm.ppf(np.clip(eer, eps, 1 - eps))
        ax.plot([e], [e], "o", color=line.get_color())
    shown = [t for t in _TICKS if min_prob <= t <= max_prob]
    ticks = norm.ppf(shown)
    labels_pct = [f"{100 * t:g}" for t in shown]
    ax.set_xticks(ticks, labels_pct)
    ax.set_yticks(ticks, labels_pct)
    lim = (norm.ppf(min_prob), norm.ppf(max_prob))
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.plot(lim, lim, ":", color="grey", linewidth=0.8)
    ax.set_xlabel("False alarm probability (%)")
    ax.set_ylabel("Miss probability (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if legend_outside:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    else:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
