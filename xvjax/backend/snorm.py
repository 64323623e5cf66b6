"""Score normalisation with a cohort: S-norm, adaptive S-norm, Z-norm, T-norm.

Definitions (the fixture's and the usual ones; Kaldi has no score normalisation binary):

- Enrolment side: S_e = PLDA scores of enrolment model e (with its num_utts) against every cohort
  vector (cohort in the test role, n = 1). Test side: S_t = scores of test vector t taken as a
  one-utterance enrolment against every cohort vector.
- mu, sigma = mean and population standard deviation (ddof=0) of S_e (resp. S_t) over the whole
  cohort, or over its top_k highest scores (adaptive S-norm, the cohort adapted to each side).
- Z-norm: (s - mu_e)/sigma_e.  T-norm: (s - mu_t)/sigma_t.
- S-norm / AS-norm: 1/2 [(s - mu_e)/sigma_e + (s - mu_t)/sigma_t] (Snyder's Kaldi prototype
  `ivector-plda-scoring-snorm` sums without the 1/2; the ranking is the same).

Cohort statistics are computed once per enrolment model and once per test segment and reused for
all their trials. Over the whole cohort they need no cohort scores at all: a score is an inner
product of features plus constants (`xvjax.backend.scoring`), so its cohort mean and variance are
closed forms in the cohort feature mean and covariance (float64, O(N D^2)). With top_k the
enrolment (test) x cohort scores are computed block by block on the devices (a GEMM and a separate
jitted `lax.top_k` + moments step) and only (N,) means and stds are kept.

Scores of any scorer can be normalised from score lists as well: `cohort_stats_by_key` takes the
cohort scores of each enrolment model / test segment, `normalize_score_list` the trial scores.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from xvjax.backend.plda import Plda, plda_transform
from xvjax.backend.scoring import (
    EnrollFeatures,
    device_mesh,
    enroll_features,
    iter_score_blocks,
    prepare_enroll,
    put_enroll_rows,
    round_up,
    score_block,
    score_pairs,
    split_features,
    test_features,
    x64_scope,
)
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError

__all__ = [
    "CohortStats",
    "cohort_stats_from_scores",
    "cohort_stats",
    "normalize_scores",
    "snorm",
    "asnorm",
    "znorm",
    "tnorm",
    "SideFeatures",
    "prepare_norm",
    "norm_trials",
    "iter_norm_blocks",
    "norm_trial_scores",
    "cohort_stats_by_key",
    "normalize_score_list",
]

METHODS = ("snorm", "asnorm", "znorm", "tnorm")
ENROLL_SIDE = ("snorm", "asnorm", "znorm")  # the methods that use enrolment cohort statistics
TEST_SIDE = ("snorm", "asnorm", "tnorm")  # ... and test cohort statistics


class CohortStats(NamedTuple):
    """Cohort score mean and population std (ddof=0) per enrolment model or test segment, (N,)."""

    mean: np.ndarray
    std: np.ndarray

    def take(self, idx) -> CohortStats:
        return CohortStats(self.mean[idx], self.std[idx])


def cohort_stats_from_scores(scores: np.ndarray, top_k: int | None = None) -> CohortStats:
    """Reference statistics from an explicit (N, C) score matrix (numpy, float64).

    top_k: use the top_k highest scores of each row (None or >= C: the whole row).
    """
    s = np.asarray(scores, dtype=np.float64)
    if top_k is not None and top_k < s.shape[1]:
        s = -np.partition(-s, top_k - 1, axis=1)[:, :top_k]
    return CohortStats(s.mean(axis=1), s.std(axis=1))


def _closed_form_stats(ef: EnrollFeatures, cohort_tf: np.ndarray) -> CohortStats:
    """Whole-cohort mean/std from cohort feature moments, float64, no cohort scores."""
    fe, ce, qi, ft, qt = split_features(ef, cohort_tf)
    a = np.concatenate([fe, np.ones((fe.shape[0], 1))], axis=1)  # (N, D+1)
    mean, var = np.empty(fe.shape[0]), np.empty(fe.shape[0])
    for u in range(qt.shape[0]):  # one group per distinct num_utts
        rows = qi == u
        g = np.concatenate([ft, qt[u][:, None]], axis=1)  # (C, D+1)
        mu = g.mean(axis=0)
        gc = g - mu
        cov = gc.T @ gc / g.shape[0]
        mean[rows] = a[rows] @ mu + ce[rows]
        var[rows] = np.einsum("ij,ij->i", a[rows] @ cov, a[rows])
    return CohortStats(mean, np.sqrt(np.maximum(var, 0.0)))


@functools.partial(jax.jit, static_argnames="k")
def _top_k_moments(s, k: int):
    """Mean and population std of the k highest scores of each row of a (rows, C) block."""
    top = jax.lax.top_k(s, k)[0]
    mean = jnp.mean(top, axis=1)
    std = jnp.sqrt(jnp.mean(jnp.square(top - mean[:, None]), axis=1))
    return mean, std


def cohort_stats(
    ef: EnrollFeatures,
    cohort_tf: np.ndarray,
    top_k: int | None = None,
    *,
    block_size: int = 1024,
    dtype=np.float32,
    devices=None,
) -> CohortStats:
    """Cohort statistics of N models (`EnrollFeatures`) against C cohort vectors ((C, D) test features).

    top_k None (or >= C): whole cohort, closed form in float64. Otherwise the N x C scores are
    computed in row blocks of `block_size` (sharded over devices, in `dtype`) and reduced to the
    mean/std of each row's top_k on the device.
    """
    num_cohort = cohort_tf.shape[0]
    if num_cohort < 2:
        raise XvjaxError(f"the cohort needs at least 2 vectors, got {num_cohort}")
    if top_k is None or top_k >= num_cohort:
        return _closed_form_stats(ef, cohort_tf)
    if top_k < 1:
        raise XvjaxError(f"--top-k must be positive, got {top_k}")
    fe, ce, qi, ft, qt = split_features(ef, cohort_tf)
    num = fe.shape[0]
    mesh = device_mesh(devices)
    block = round_up(min(block_size, round_up(num, mesh.size)), mesh.size)
    mean, std = np.empty(num), np.empty(num)
    with x64_scope(dtype):
        rep = NamedSharding(mesh, P())
        ft_d = jax.device_put(ft.astype(dtype), rep)
        qt_d = jax.device_put(qt.astype(dtype), rep)
        for r0 in range(0, num, block):
            n = min(block, num - r0)
            enroll_d = put_enroll_rows(fe, ce, qi, r0, block, mesh, dtype)
            m, s = _top_k_moments(score_block(*enroll_d, ft_d, qt_d), k=top_k)
            mean[r0 : r0 + n] = np.asarray(m)[:n]
            std[r0 : r0 + n] = np.asarray(s)[:n]
    return CohortStats(mean, std)


# ----------------------------------------------------------------------------- normalisation
def _check_std(stats: CohortStats, side: str) -> None:
    if np.any(stats.std <= 0.0):
        i = int(np.argmin(stats.std))
        raise XvjaxError(
            f"{side} {i}: cohort scores have zero standard deviation; use a larger cohort"
        )


def normalize_scores(
    scores: np.ndarray,
    enroll_stats: CohortStats | None = None,
    test_stats: CohortStats | None = None,
) -> np.ndarray:
    """S-norm (both stats), Z-norm (enroll only) or T-norm (test only) of raw scores.

    scores: (T,) trial scores with stats already taken per trial ((T,) each), or an (N_e, N_t)
    matrix with (N_e,) enrolment and (N_t,) test stats.
    """
    s = np.asarray(scores, dtype=np.float64)
    if enroll_stats is None and test_stats is None:
        raise XvjaxError("normalize_scores needs enrolment and/or test cohort statistics")
    parts = []
    if enroll_stats is not None:
        me, se = enroll_stats.mean, enroll_stats.std
        if s.ndim == 2:
            me, se = me[:, None], se[:, None]
        parts.append((s - me) / se)
    if test_stats is not None:
        mt, st = test_stats.mean, test_stats.std
        if s.ndim == 2:
            mt, st = mt[None, :], st[None, :]
        parts.append((s - mt) / st)
    return parts[0] if len(parts) == 1 else 0.5 * (parts[0] + parts[1])


def snorm(scores, enroll_stats: CohortStats, test_stats: CohortStats) -> np.ndarray:
    """S-norm: 1/2 [(s - mu_e)/sigma_e + (s - mu_t)/sigma_t] (stats over the whole cohort)."""
    return normalize_scores(scores, enroll_stats, test_stats)


def asnorm(scores, enroll_stats: CohortStats, test_stats: CohortStats) -> np.ndarray:
    """Adaptive S-norm: the S-norm formula with top-K cohort statistics (`cohort_stats(top_k=K)`)."""
    return normalize_scores(scores, enroll_stats, test_stats)


def znorm(scores, enroll_stats: CohortStats) -> np.ndarray:
    """Z-norm: (s - mu_e)/sigma_e."""
    return normalize_scores(scores, enroll_stats, None)


def tnorm(scores, test_stats: CohortStats) -> np.ndarray:
    """T-norm: (s - mu_t)/sigma_t."""
    return normalize_scores(scores, None, test_stats)


# ----------------------------------------------------------------------------- score lists
def cohort_stats_by_key(
    cohort_trials: Trials,
    scores: np.ndarray,
    top_k: int | None = None,
    name: str = "cohort scores",
) -> dict[str, tuple[float, float]]:
    """Cohort (mean, std) per key of the first column of a cohort score list (`<enroll|test key>
    <cohort key> <score>` lines, `xvjax.backend.score_files.read_score_file`); top_k as in
    `cohort_stats_from_scores`. Keys need 2 or more scores with a positive std."""
    groups: dict[str, list[float]] = {}
    for key, s in zip(cohort_trials.enroll, scores, strict=True):
        groups.setdefault(key, []).append(s)
    out = {}
    for key, vals in groups.items():
        if len(vals) < 2:
            raise XvjaxError(f"{name}: '{key}' has {len(vals)} cohort score; need at least 2")
        st = cohort_stats_from_scores(np.array([vals]), top_k)
        if st.std[0] <= 0.0:
            raise XvjaxError(f"{name}: cohort scores of '{key}' have zero standard deviation")
        out[key] = (float(st.mean[0]), float(st.std[0]))
    return out


def normalize_score_list(
    trials: Trials,
    scores: np.ndarray,
    enroll_stats: dict[str, tuple[float, float]] | None = None,
    test_stats: dict[str, tuple[float, float]] | None = None,
    names: tuple[str, str] = ("the enrolment cohort scores", "the test cohort scores"),
) -> np.ndarray:
    """S-/Z-/T-norm of the (T,) scores of any scorer, with `cohort_stats_by_key` tables of the
    enrolment and/or test ids (`names` say where each table came from, for errors)."""

    def per_trial(table, ids, name):
        if table is None:
            return None
        missing = [k for k in ids if k not in table]
        if missing:
            raise XvjaxError(f"'{missing[0]}' has no cohort scores in {name}")
        vals = np.array([table[k] for k in ids])
        return CohortStats(vals[:, 0], vals[:, 1])

    return normalize_scores(
        np.array(scores),
        per_trial(enroll_stats, trials.enroll, names[0]),
        per_trial(test_stats, trials.test, names[1]),
    )


# ----------------------------------------------------------------------------- end to end
class SideFeatures(NamedTuple):
    """Everything scoring and normalisation need, computed once from raw vectors.

    enroll: `EnrollFeatures` (N_e); test: (N_t, D) test features; enroll_stats / test_stats:
    `CohortStats` or None (when the method does not use that side).
    """

    enroll: EnrollFeatures
    test: np.ndarray
    enroll_stats: CohortStats | None
    test_stats: CohortStats | None


def prepare_norm(
    plda: Plda,
    enroll: np.ndarray,
    test: np.ndarray,
    cohort: np.ndarray,
    num_utts=1,
    *,
    method: str = "snorm",
    top_k: int | None = None,
    normalize_length: bool = True,
    simple_length_norm: bool = False,
    block_size: int = 1024,
    dtype=np.float64,
    devices=None,
) -> SideFeatures:
    """Transforms raw enrolment (N_e, D), test (N_t, D) and cohort (C, D) vectors once and computes
    the cohort statistics the `method` needs ("snorm", "asnorm" (needs top_k), "znorm", "tnorm").
    """
    if method not in METHODS:
        raise XvjaxError(f"unknown score normalisation '{method}'; use one of {', '.join(METHODS)}")
    if method == "asnorm" and not top_k:
        raise XvjaxError("adaptive S-norm needs --top-k (e.g. 300)")
    if method == "snorm":
        top_k = None
    ef = prepare_enroll(plda, enroll, num_utts, normalize_length, simple_length_norm)
    v, _ = plda_transform(plda, test, 1, normalize_length, simple_length_norm)
    c, _ = plda_transform(plda, cohort, 1, normalize_length, simple_length_norm)
    tf, cf = test_features(v), test_features(c)
    kw = dict(block_size=block_size, dtype=dtype, devices=devices)
    e_stats = t_stats = None
    if method in ENROLL_SIDE:
        e_stats = cohort_stats(ef, cf, top_k, **kw)
        _check_std(e_stats, "enrolment model")
    if method in TEST_SIDE:
        t_stats = cohort_stats(enroll_features(plda, v, 1), cf, top_k, **kw)
        _check_std(t_stats, "test segment")
    return SideFeatures(ef, tf, e_stats, t_stats)


def norm_trials(
    prep: SideFeatures,
    enroll_idx,
    test_idx,
    *,
    block_size: int = 1 << 16,
    dtype=np.float64,
    devices=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw and normalised scores of a trial list -> ((T,), (T,)) float64."""
    ie, it = np.asarray(enroll_idx), np.asarray(test_idx)
    raw = score_pairs(
        prep.enroll, prep.test, ie, it, block_size=block_size, dtype=dtype, devices=devices
    )
    e = prep.enroll_stats.take(ie) if prep.enroll_stats is not None else None
    t = prep.test_stats.take(it) if prep.test_stats is not None else None
    return raw, normalize_scores(raw, e, t)


def iter_norm_blocks(prep: SideFeatures, *, block_size=2048, dtype=np.float32, devices=None):
    """Dense normalised score blocks (row0, col0, (rows, cols) array), see `iter_score_blocks`."""
    return iter_score_blocks(
        prep.enroll,
        prep.test,
        block_size=block_size,
        dtype=dtype,
        devices=devices,
        enroll_stats=prep.enroll_stats,
        test_stats=prep.test_stats,
    )


def norm_trial_scores(
    plda: Plda,
    enroll: np.ndarray,
    test: np.ndarray,
    cohort: np.ndarray,
    enroll_idx,
    test_idx,
    num_utts=1,
    *,
    method: str = "snorm",
    top_k: int | None = None,
    normalize_length: bool = True,
    simple_length_norm: bool = False,
    dtype=np.float64,
    devices=None,
) -> np.ndarray:
    """One call: normalised PLDA scores (T,) of a trial list (raw vectors in, see `prepare_norm`)."""
    prep = prepare_norm(
        plda,
        enroll,
        test,
        cohort,
        num_utts,
        method=method,
        top_k=top_k,
        normalize_length=normalize_length,
        simple_length_norm=simple_length_norm,
        dtype=dtype,
        devices=devices,
    )
    return norm_trials(prep, enroll_idx, test_idx, dtype=dtype, devices=devices)[1]
