"""Logistic-regression calibration of scores to log-likelihood ratios (numpy float64).

llr = scale * score + offset, trained on a labelled trial list by minimising the prior-weighted
cross-entropy (the BOSARIS/FoCal objective) at the target prior p:
    C = p/N_t sum_tar log(1 + e^-(llr + logit p)) + (1-p)/N_n sum_non log(1 + e^(llr + logit p)),
with Newton's method (two parameters, convex). Calibrated scores make the actual DCF (Bayes
decisions at threshold log(c_fa (1-p) / (c_miss p))) meaningful, not only the minDCF.

The model file is a Kaldi text vector `[ scale offset ]` (readable by `copy-vector`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import tables

__all__ = [
    "Calibration",
    "train_calibration",
    "apply_calibration",
    "cllr",
    "save_calibration",
    "load_calibration",
]


class Calibration(NamedTuple):
    """llr = scale * score + offset."""

    scale: float
    offset: float


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _objective(params, s, y, w, logit_p):
    a, b = params
    z = a * s + b + logit_p
    return float(np.sum(w * np.where(y, _softplus(-z), _softplus(z))))


def train_calibration(
    scores, labels, p_target: float = 0.01, max_iters: int = 100, tol: float = 1e-12
) -> Calibration:
    """Fits (scale, offset) on scores (T,) with boolean labels (T,) at the prior `p_target`."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise XvjaxError("calibration needs 1-D scores and labels of the same length")
    if not np.all(np.isfinite(s)):
        raise XvjaxError("calibration scores contain NaN or infinite values")
    num_t, num_n = int(y.sum()), int((~y).sum())
    if num_t == 0 or num_n == 0:
        raise XvjaxError("calibration needs both target and nontarget trials")
    if not 0.0 < p_target < 1.0:
        raise XvjaxError(f"--p-target must be in (0, 1), got {p_target}")
    logit_p = math.log(p_target / (1.0 - p_target))
    w = np.where(y, p_target / num_t, (1.0 - p_target) / num_n)
    # start: standardise the scores
    std = float(np.std(s)) or 1.0
    params = np.array([1.0 / std, -float(np.mean(s)) / std])
    obj = _objective(params, s, y, w, logit_p)
    x = np.stack([s, np.ones_like(s)], axis=1)
    for _ in range(max_iters):
        z = x @ params + logit_p
        sig = _sigmoid(z)
        grad = x.T @ (w * (sig - y))
        hess = (x * (w * sig * (1.0 - sig))[:, None]).T @ x + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtracking keeps every step a descent step
            cand = params - t * step
            new = _objective(cand, s, y, w, logit_p)
            if new <= obj or t < 1e-10:
                break
            t *= 0.5
        done = abs(obj - new) <= tol * max(1.0, abs(obj))
        params, obj = cand, new
        if done:
            break
    return Calibration(float(params[0]), float(params[1]))


def apply_calibration(cal: Calibration, scores) -> np.ndarray:
    """Calibrated LLRs: scale * scores + offset."""
    return cal.scale * np.asarray(scores, dtype=np.float64) + cal.offset


def cllr(llrs, labels) -> float:
    """Cost of log-likelihood ratio in bits (0 = perfect, 1 = uninformative at p = 1/2)."""
    s = np.asarray(llrs, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    c_t = np.mean(_softplus(-s[y])) if y.any() else 0.0
    c_n = np.mean(_softplus(s[~y])) if (~y).any() else 0.0
    return float((c_t + c_n) / (2.0 * math.log(2.0)))


def save_calibration(cal: Calibration, wxfilename: str) -> None:
    tables.write_vector(wxfilename, np.array([cal.scale, cal.offset]), binary=False)


def load_calibration(rxfilename: str) -> Calibration:
    v = np.asarray(tables.read_vector(rxfilename, dtype=np.float64))
    if v.shape != (2,):
        raise XvjaxError(f"{rxfilename}: a calibration is a vector [ scale offset ], got {v.shape}")
    return Calibration(float(v[0]), float(v[1]))
