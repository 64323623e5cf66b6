"""Speaker-verification metrics exactly as Kaldi computes them, plus actual DCF and DET points.

- `compute_eer`: Kaldi's `compute-eer` (`src/ivectorbin/compute-eer.cc`, `ComputeEer`): scores are
  float32 (Kaldi's BaseFloat); target and nontarget scores are sorted ascending separately; for
  target_position p = 0 .. T-2, nontarget_n = floor(N p / T), q = max(0, N - 1 - nontarget_n);
  stop at the first p with nontarget[q] < target[p]. EER = p / T, threshold = target[p]. No
  interpolation, so ties and tiny sets give Kaldi's (sometimes surprising) numbers.
- `compute_min_dcf`: Kaldi's `sid/compute_min_dcf.py`: scores sorted ascending with a *stable*
  sort (so ties keep the input order), C_det evaluated after every sorted position:
  fnr_i = #targets among the first i+1 / #targets, fpr_i = 1 - #nontargets among the first i+1 /
  #nontargets, C_det = c_miss fnr p + c_fa fpr (1 - p); minDCF = min C_det / min(c_miss p,
  c_fa (1 - p)) with the threshold of the first minimum.
- `compute_act_dcf`: actual DCF of calibrated log-likelihood ratios at the Bayes threshold
  log(c_fa (1 - p) / (c_miss p)) (accept when llr > threshold), normalised like minDCF.
- `det_curve`: (fnr, fpr) at every distinct threshold, for DET plots.

Labels are booleans or 0/1 (1 = target). Everything is numpy and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from xvjax.errors import XvjaxError

__all__ = [
    "compute_eer",
    "compute_min_dcf",
    "compute_act_dcf",
    "check_costs",
    "det_curve",
    "format_eer",
    "read_eer_input",
    "read_score_lines",
    "read_scores_and_trials",
]


def _labels(labels) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.dtype != bool:
        if not np.all(np.isin(lab, (0, 1))):
            raise XvjaxError("labels must be 0/1 or booleans (1 = target)")
        lab = lab.astype(bool)
    return lab


def compute_eer(scores: Sequence[float], labels) -> tuple[float, float]:
    """Kaldi `compute-eer`: returns (eer as a proportion, threshold), both as Kaldi's floats."""
    s = np.asarray(scores, dtype=np.float32)
    lab = _labels(labels)
    if s.shape != lab.shape:
        raise XvjaxError(f"{len(s)} scores but {len(lab)} labels")
    target = np.sort(s[lab])
    nontarget = np.sort(s[~lab])
    if target.size == 0 and nontarget.size == 0:
        raise XvjaxError("empty input")
    if target.size == 0:
        raise XvjaxError("no target scores seen")
    if nontarget.size == 0:
        raise XvjaxError("no non-target scores seen")
    num_t, num_n = target.size, nontarget.size
    p = np.arange(num_t - 1)
    # floor(N * p * 1.0 / T) in double, as the C++ cast does (non-negative, so trunc == floor)
    nontarget_n = np.floor(num_n * p.astype(np.float64) / num_t).astype(np.int64)
    q = np.maximum(num_n - 1 - nontarget_n, 0)
    hits = np.nonzero(nontarget[q] < target[p])[0]
    pos = int(hits[0]) if hits.size else num_t - 1
    eer = np.float32(pos * 1.0 / num_t)
    return float(eer), float(target[pos])


def format_eer(eer: float) -> str:
    """What `compute-eer` prints on stdout: 100*EER with 4 significant digits (C++ precision 4)."""
    return f"{100.0 * eer:.4g}"


def check_costs(p_target: float, c_miss: float, c_fa: float) -> float:
    """Validates the DCF parameters (compute_min_dcf.py's checks and messages) and returns the
    normalising cost min(c_miss p_target, c_fa (1 - p_target))."""
    if c_fa <= 0:
        raise XvjaxError("--c-fa must be greater than 0")
    if c_miss <= 0:
        raise XvjaxError("--c-miss must be greater than 0")
    if not 0 < p_target < 1:
        raise XvjaxError("--p-target must be greater than 0 and less than 1")
    return min(c_miss * p_target, c_fa * (1 - p_target))


def compute_min_dcf(
    scores: Sequence[float],
    labels,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Kaldi `sid/compute_min_dcf.py`: returns (minDCF, threshold). Order matters for tied scores."""
    c_def = check_costs(p_target, c_miss, c_fa)
    s = np.asarray(scores, dtype=np.float64)
    lab = _labels(labels).astype(np.int64)
    if s.size == 0:
        raise XvjaxError("no scores")
    order = np.argsort(s, kind="stable")
    thresholds = s[order]
    sorted_labels = lab[order]
    num_target = int(sorted_labels.sum())
    num_nontarget = len(sorted_labels) - num_target
    if num_target == 0 or num_nontarget == 0:
        raise XvjaxError("need both target and nontarget trials")
    fnrs = np.cumsum(sorted_labels) / float(num_target)
    fprs = 1 - np.cumsum(1 - sorted_labels) / float(num_nontarget)
    c_det = c_miss * fnrs * p_target + c_fa * fprs * (1 - p_target)
    best = int(np.argmin(c_det))  # first minimum, like the script's strict '<'
    return float(c_det[best] / c_def), float(thresholds[best])


def compute_act_dcf(
    llrs: Sequence[float],
    labels,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Actual (normalised) DCF of calibrated LLRs, deciding 'target' when llr > log(c_fa(1-p)/(c_miss p))."""
    c_def = check_costs(p_target, c_miss, c_fa)
    s = np.asarray(llrs, dtype=np.float64)
    lab = _labels(labels)
    if s.size == 0:
        raise XvjaxError("no scores")
    if not lab.any() or lab.all():
        raise XvjaxError("need both target and nontarget trials")
    threshold = math.log(c_fa * (1 - p_target) / (c_miss * p_target))
    p_miss = float(np.mean(s[lab] <= threshold))
    p_fa = float(np.mean(s[~lab] > threshold))
    c_det = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    return c_det / c_def


def det_curve(scores: Sequence[float], labels) -> tuple[np.ndarray, np.ndarray]:
    """Miss and false-alarm rates when rejecting scores <= each distinct score -> (fnr, fpr)."""
    s = np.asarray(scores, dtype=np.float64)
    lab = _labels(labels)
    if s.size == 0:
        raise XvjaxError("no scores")
    order = np.argsort(s, kind="stable")
    s, lab = s[order], lab[order]
    last = np.r_[s[1:] != s[:-1], True]  # end of every run of tied scores
    fnr = np.cumsum(lab)[last] / max(lab.sum(), 1)
    fpr = 1.0 - np.cumsum(~lab)[last] / max((~lab).sum(), 1)
    return np.r_[0.0, fnr], np.r_[1.0, fpr]


# ----------------------------------------------------------------------------- file formats
def read_eer_input(lines: Sequence[str], name: str = "input") -> tuple[np.ndarray, np.ndarray]:
    """Parses `compute-eer` input lines `<score> target|nontarget` -> (float32 scores, labels)."""
    scores, labels = [], []
    for num, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            raise XvjaxError(f"{name}:{num}: invalid input line (must have two fields): ''")
        if len(fields) != 2:
            raise XvjaxError(
                f"{name}:{num}: invalid input line (must have two fields): {line.strip()}"
            )
        try:
            score = float(fields[0])
        except ValueError:
            raise XvjaxError(
                f"{name}:{num}: invalid input line (first field must be float): {line.strip()}"
            ) from None
        if fields[1] not in ("target", "nontarget"):
            raise XvjaxError(
                f"{name}:{num}: invalid input line (second field must be 'target' or 'nontarget')"
            )
        if not math.isfinite(score):
            raise XvjaxError(f"{name}:{num}: score '{fields[0]}' is not a finite number")
        scores.append(score)
        labels.append(fields[1] == "target")
    return np.asarray(scores, dtype=np.float32), np.asarray(labels, dtype=bool)


def read_score_lines(
    lines: Sequence[str], name: str = "scores"
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """`<enroll> <test> <score>` lines (blank lines skipped) -> (pairs, float64 scores)."""
    pairs, scores = [], []
    for num, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise XvjaxError(
                f"{name}:{num}: expected '<enroll> <test> <score>', got '{line.strip()}'"
            )
        try:
            score = float(fields[2])
        except ValueError:
            raise XvjaxError(f"{name}:{num}: bad score '{fields[2]}'") from None
        if not math.isfinite(score):  # would sort anywhere and move every threshold
            raise XvjaxError(f"{name}:{num}: score '{fields[2]}' is not a finite number")
        scores.append(score)
        pairs.append((fields[0], fields[1]))
    return pairs, np.asarray(scores, dtype=np.float64)


def read_scores_and_trials(
    score_lines: Sequence[str], trial_lines: Sequence[str], scores_name: str = "scores"
) -> tuple[np.ndarray, np.ndarray]:
    """compute_min_dcf.py's pairing: every `<e> <t> <score>` line needs an `<e> <t> <label>` trial.

    Returns (scores float64 in score-file order, labels bool).
    """
    trials: dict[tuple[str, str], bool] = {}
    for num, line in enumerate(trial_lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise XvjaxError(f"trials line {num}: expected '<enroll> <test> target|nontarget'")
        trials[(fields[0], fields[1])] = fields[2] == "target"
    pairs, scores = read_score_lines(score_lines, scores_name)
    labels = []
    for key in pairs:
        if key not in trials:
            raise XvjaxError(f"Missing entry for {key[0]} and {key[1]} {scores_name}")
        labels.append(trials[key])
    return scores, np.asarray(labels, dtype=bool)
