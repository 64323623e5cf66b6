"""Cepstral mean and variance statistics: Kaldi's `compute-cmvn-stats` and `apply-cmvn`
(`src/transform/cmvn.cc`), in numpy with Kaldi's arithmetic.

Statistics are a (2, dim + 1) float64 matrix: row 0 the weighted sum of the features and the
total weight (last column), row 1 the weighted sum of squares. Each frame adds `x * w` and
`x * x * w` computed in float32 to the float64 sums, in frame order (frames of weight 0 are
skipped, count included), so per-speaker statistics equal Kaldi's bit for bit.

Applying them (ApplyCmvn): without variance normalisation the float32 offset `-sum / count` is
added; with it each dim is mapped `x * scale + offset`, `scale = 1 / sqrt(var)` (var floored at
1e-20 with a warning), `offset = -mean * scale`, computed in float64 and rounded to float32.
`reverse=True` maps normalised features back (`x * sqrt(var) + mean`). Counts below 1 are an
error, as in Kaldi. No JAX import.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")
_F32 = np.float32


def init_cmvn_stats(dim: int) -> np.ndarray:
    """Empty statistics for `dim` features: (2, dim + 1) zeros."""
    if dim <= 0:
        raise XvjaxError(f"cannot accumulate CMVN stats of dimension {dim}")
    return np.zeros((2, dim + 1), np.float64)


def acc_cmvn_stats(stats: np.ndarray, feats: np.ndarray, weights: np.ndarray | None = None) -> None:
    """AccCmvnStats: adds (frames, dim) `feats` (optionally weighted per frame) to `stats`."""
    feats = np.asarray(feats, _F32)
    dim = stats.shape[1] - 1
    if feats.ndim != 2 or feats.shape[1] != dim:
        raise XvjaxError(f"features of shape {feats.shape} do not match CMVN stats of dim {dim}")
    if weights is None:
        w = np.ones(len(feats), _F32)
    else:
        w = np.asarray(weights, _F32)
        if w.shape != (len(feats),):
            raise XvjaxError(f"weights have dimension {w.size} vs. {len(feats)} frames")
    keep = w != 0
    feats, w = feats[keep], w[keep]
    mean_terms = (feats * w[:, None]).astype(_F32)
    var_terms = ((feats * feats).astype(_F32) * w[:, None]).astype(_F32)
    for row, terms in ((0, mean_terms), (1, var_terms)):
        # sequential float64 sums continuing from the stored ones (Kaldi's frame loop)
        stats[row, :dim] = np.cumsum(np.vstack([stats[row, :dim], terms]), axis=0)[-1]
    stats[0, dim] = np.cumsum(np.concatenate([[stats[0, dim]], w.astype(np.float64)]))[-1]


def cmvn_stats(feats: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The statistics of one feature matrix."""
    stats = init_cmvn_stats(np.shape(feats)[1])
    acc_cmvn_stats(stats, feats, weights)
    return stats


def fake_stats_for_dims(stats: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    """FakeStatsForSomeDims (`apply-cmvn --skip-dims`): zero mean, unit variance for `dims`."""
    stats = np.array(stats, np.float64)
    dim = stats.shape[1] - 1
    for d in dims:
        if not 0 <= d < dim:
            raise XvjaxError(f"--skip-dims: dimension {d} is outside 0..{dim - 1}")
        stats[0, d] = 0.0
        stats[1, d] = stats[0, dim]
    return stats


def _check(stats: np.ndarray, feats: np.ndarray, norm_vars: bool) -> float:
    dim = stats.shape[1] - 1
    if stats.ndim != 2 or not 1 <= stats.shape[0] <= 2 or feats.shape[1] != dim:
        raise XvjaxError(
            f"dim mismatch: cmvn {stats.shape[0]}x{stats.shape[1]}, feats "
            f"{feats.shape[0]}x{feats.shape[1]}"
        )
    if stats.shape[0] == 1 and norm_vars:
        raise XvjaxError("you requested variance normalization but no variance stats are supplied")
    count = float(stats[0, dim])
    if count < 1.0:
        raise XvjaxError(
            f"insufficient stats for cepstral mean and variance normalization: count = {count:g}"
        )
    return count


def _variance(stats: np.ndarray, count: float) -> tuple[np.ndarray, np.ndarray]:
    dim = stats.shape[1] - 1
    mean = stats[0, :dim] / count
    var = stats[1, :dim] / count - mean * mean
    low = var < 1.0e-20
    for v in var[low]:
        log.warning("Flooring cepstral variance from %g to %g", v, 1.0e-20)
    return mean, np.where(low, 1.0e-20, var)


def apply_cmvn(
    stats: np.ndarray, feats: np.ndarray, norm_vars: bool = False, reverse: bool = False
) -> np.ndarray:
    """ApplyCmvn / ApplyCmvnReverse on (frames, dim) features; returns float32."""
    stats = np.asarray(stats, np.float64)
    feats = np.array(feats, _F32)
    count = _check(stats, feats, norm_vars)
    dim = stats.shape[1] - 1
    if reverse:
        mean, var = _variance(stats, count) if norm_vars else (stats[0, :dim] / count, None)
        if norm_vars:
            feats *= np.sqrt(var).astype(_F32)
        return (feats + mean.astype(_F32)).astype(_F32)
    if not norm_vars:
        offset = (np.float64(_F32(-1.0 / count)) * stats[0, :dim]).astype(_F32)
        return (feats + offset).astype(_F32)
    mean, var = _variance(stats, count)
    scale = 1.0 / np.sqrt(var)
    if not np.all(np.isfinite(scale)) or np.any(1.0 / scale == 0.0):
        raise XvjaxError("NaN or infinity in cepstral mean/variance computation")
    offset = -(mean * scale)
    return (feats * scale.astype(_F32) + offset.astype(_F32)).astype(_F32)
