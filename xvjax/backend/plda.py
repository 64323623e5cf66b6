"""PLDA exactly as Kaldi defines it (`src/ivector/plda.{h,cc}`), in numpy float64.

The model is Kaldi's two-covariance PLDA stored in a simultaneously diagonalised basis:
`transform` (A, D x D) maps a mean-subtracted vector to a space where the within-class covariance
is I and the between-class covariance is diag(psi), psi sorted decreasing. Only full-rank models
exist (as in Kaldi).

Functions here are pure, take and return numpy arrays, and compute in float64 like Kaldi's double
code. The batched/dense scorers built on the same formulas live in `xvjax.backend.scoring` (jnp).

    plda = train_plda(vectors, spk_ids, num_em_iters=10)          # ivector-compute-plda
    u, _ = plda_transform(plda, enroll, num_utts=n_enroll)        # Plda::TransformIvector
    v, _ = plda_transform(plda, test)                              # (test: n = 1)
    scores = plda_llr(plda, u[e_idx], v[t_idx], n_enroll[e_idx])  # Plda::LogLikelihoodRatio
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from xvjax.backend.linalg import check_finite, class_means, format_vector, sorted_eigh
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

__all__ = [
    "Plda",
    "plda_transform",
    "plda_llr",
    "normalization_factor",
    "smooth_within_class_covar",
    "apply_transform",
    "train_plda",
    "PldaStats",
    "compute_plda_stats",
    "estimate_plda",
    "plda_from_covars",
    "plda_covars",
]


class Plda(NamedTuple):
    """Kaldi PLDA parameters (a pytree, so it can be passed to jitted functions).

    mean: (D,) float64, subtracted before `transform`.
    transform: (D, D) float64, A: within-class covariance -> I, between-class -> diag(psi).
    psi: (D,) float64, between-class variances in the transformed space, decreasing.
    """

    mean: np.ndarray
    transform: np.ndarray
    psi: np.ndarray

    @property
    def dim(self) -> int:
        return int(np.shape(self.mean)[0])

    @property
    def offset(self) -> np.ndarray:
        """`-transform @ mean` (Kaldi's derived `offset_`), recomputed on every access."""
        return -np.asarray(self.transform) @ np.asarray(self.mean)


def _as_counts(num_utts, n: int) -> np.ndarray:
    counts = np.broadcast_to(np.asarray(num_utts, dtype=np.float64), (n,))
    if np.any(counts <= 0):
        raise XvjaxError(f"num_utts must be positive, got min {counts.min():g}")
    return counts


def normalization_factor(plda: Plda, u: np.ndarray, num_utts=1) -> np.ndarray:
    """Kaldi's `GetNormalizationFactor`: sqrt(D / sum_i u_i^2 / (psi_i + 1/n)), per row of u (N, D)."""
    u = np.atleast_2d(u)
    n = _as_counts(num_utts, u.shape[0])
    inv_covar = 1.0 / (np.asarray(plda.psi)[None, :] + 1.0 / n[:, None])
    dot = np.sum(u * u * inv_covar, axis=1)
    return np.sqrt(plda.dim / dot)


def plda_transform(
    plda: Plda,
    x: np.ndarray,
    num_utts=1,
    normalize_length: bool = True,
    simple_length_norm: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi's `Plda::TransformIvector` on rows of x.

    x: (N, D) or (D,) vectors (any float dtype; computed in float64).
    num_utts: int or (N,) number of utterances averaged in each row (enrolment); 1 for test.
    normalize_length: scale the result by the factor (Kaldi `--normalize-length`, default true).
    simple_length_norm: factor = sqrt(D)/||u|| instead of the PLDA-aware one
      (`--simple-length-normalization`).
    Returns (y, factor): y (N, D) or (D,) float64, factor (N,) or () the normalisation factor
    (returned even when not applied, like Kaldi).
    """
    x = np.asarray(x, dtype=np.float64)
    single = x.ndim == 1
    x2 = np.atleast_2d(x)
    if x2.shape[1] != plda.dim:
        raise XvjaxError(
            f"vector dimension {x2.shape[1]} does not match the PLDA dimension {plda.dim}"
        )
    u = x2 @ np.asarray(plda.transform).T + plda.offset[None, :]
    if simple_length_norm:
        factor = np.sqrt(plda.dim) / np.linalg.norm(u, axis=1)
    else:
        factor = normalization_factor(plda, u, num_utts)
    y = u * factor[:, None] if normalize_length else u
    if single:
        return y[0], factor[0]
    return y, factor


def plda_llr(plda: Plda, enroll: np.ndarray, test: np.ndarray, num_utts=1) -> np.ndarray:
    """Kaldi's `Plda::LogLikelihoodRatio` for aligned pairs (row i of enroll vs row i of test).

    enroll: (N, D) transformed enrolment vectors (`plda_transform` with their num_utts).
    test: (N, D) transformed test vectors (`plda_transform` with num_utts=1).
    num_utts: int or (N,), the n used for the enrolment vector.
    Returns (N,) float64:
      -1/2 [sum log s2 + sum (v - m)^2 / s2] + 1/2 [sum log(1 + psi) + sum v^2 / (1 + psi)],
      m = n psi / (n psi + 1) u,  s2 = 1 + psi / (n psi + 1).
    """
    u = np.atleast_2d(np.asarray(enroll, dtype=np.float64))
    v = np.atleast_2d(np.asarray(test, dtype=np.float64))
    n = _as_counts(num_utts, u.shape[0])[:, None]
    psi = np.asarray(plda.psi)[None, :]
    mean = n * psi / (n * psi + 1.0) * u
    var = 1.0 + psi / (n * psi + 1.0)
    given = -0.5 * (np.sum(np.log(var), axis=1) + np.sum((v - mean) ** 2 / var, axis=1))
    without = -0.5 * (np.sum(np.log(1.0 + psi)) + np.sum(v * v / (1.0 + psi), axis=1))
    return given - without


def smooth_within_class_covar(plda: Plda, smoothing: float) -> Plda:
    """Kaldi's `SmoothWithinClassCovariance` (`ivector-copy-plda --smoothing`).

    In the transformed space the within-class covariance I becomes I + smoothing * diag(psi):
    psi <- psi / (1 + smoothing psi) and row i of the transform is scaled by (1 + smoothing psi_i)^-1/2.
    """
    if not 0.0 <= smoothing <= 1.0:
        raise XvjaxError(f"--smoothing must be in [0, 1], got {smoothing}")
    psi = np.asarray(plda.psi, dtype=np.float64)
    within = 1.0 + smoothing * psi
    log.info(
        "Smoothing within-class covariance by %g, Psi is initially: %s",
        smoothing,
        format_vector(psi),
    )
    new_psi = psi / within
    log.info("New value of Psi is %s", format_vector(new_psi))
    transform = np.asarray(plda.transform) * (within**-0.5)[:, None]
    return Plda(mean=np.array(plda.mean, dtype=np.float64), transform=transform, psi=new_psi)


def _cholesky(mat: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(0.5 * (mat + mat.T))
    except np.linalg.LinAlgError:
        raise XvjaxError(
            f"{what} is not positive definite (singular): too little data for dimension "
            f"{mat.shape[0]}; use more utterances per speaker or reduce the dimension (LDA --dim)"
        ) from None


def plda_from_covars(mean: np.ndarray, within: np.ndarray, between: np.ndarray) -> Plda:
    """Kaldi's `PldaEstimator::GetOutput`: diagonalise (within, between) into (transform, psi).

    C = chol(within), T1 = C^-1; T1 between T1^T = U diag(s) U^T (s floored at 0, sorted
    decreasing); transform = U^T T1, psi = s.
    """
    chol = _cholesky(within, "within-class covariance")
    t1 = np.linalg.inv(chol)
    s, u = sorted_eigh(t1 @ between @ t1.T)
    num_floored = int(np.sum(s < 0.0))
    if num_floored:
        log.warning("Floored %d eigenvalues of between-class variance to zero.", num_floored)
        s = np.maximum(s, 0.0)
    return Plda(mean=np.asarray(mean, dtype=np.float64), transform=u.T @ t1, psi=s)


def plda_covars(plda: Plda) -> tuple[np.ndarray, np.ndarray]:
    """(within, between) (D, D) covariances of the model in the input space (the inverse of
    `plda_from_covars`): W = A^-1 A^-T, B = A^-1 diag(psi) A^-T, as `Plda::ApplyTransform` has it."""
    a_inv = np.linalg.inv(np.asarray(plda.transform, dtype=np.float64))
    return a_inv @ a_inv.T, a_inv @ np.diag(np.asarray(plda.psi, dtype=np.float64)) @ a_inv.T


def apply_transform(plda: Plda, transform: np.ndarray) -> Plda:
    """Kaldi's `Plda::ApplyTransform`: the PLDA of `transform @ x` (e.g. a PCA, rows <= D)."""
    t = np.asarray(transform, dtype=np.float64)
    within, between = plda_covars(plda)
    return plda_from_covars(t @ plda.mean, t @ within @ t.T, t @ between @ t.T)


# ----------------------------------------------------------------------------- training
class PldaStats(NamedTuple):
    """Kaldi's `PldaStats` (all weights 1), classes sorted by num_examples.

    class_means: (S, D); num_examples: (S,) int; offset_scatter: (D, D) sum over classes of
    sum_x (x - m_s)(x - m_s)^T; sum: (D,) sum of class means.
    """

    class_means: np.ndarray
    num_examples: np.ndarray
    offset_scatter: np.ndarray
    sum: np.ndarray


def compute_plda_stats(vectors: np.ndarray, spk_ids: Sequence) -> PldaStats:
    """Accumulates `PldaStats` from (N, D) vectors and their speaker labels (length N)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(spk_ids) != x.shape[0]:
        raise XvjaxError(f"need (N, D) vectors and N speaker ids, got {x.shape}, {len(spk_ids)}")
    check_finite(x)
    means, counts = class_means(x, spk_ids)
    scatter = x.T @ x - (means * counts[:, None]).T @ means
    order = np.argsort(counts, kind="stable")
    return PldaStats(
        class_means=means[order],
        num_examples=counts[order],
        offset_scatter=0.5 * (scatter + scatter.T),
        sum=means.sum(axis=0),
    )


def estimate_plda(stats: PldaStats, num_em_iters: int = 10) -> Plda:
    """Kaldi's `PldaEstimator::Estimate` (EM from W = B = I) then `GetOutput`."""
    means, counts = stats.class_means, stats.num_examples
    num_classes, dim = means.shape
    num_examples = float(counts.sum())
    if num_examples == num_classes:
        raise XvjaxError(
            "no speakers with multiple utterances, unable to estimate PLDA (every speaker has "
            "one utterance; the within-class covariance is unobservable)"
        )
    centred = means - stats.sum / num_classes
    within, between = np.eye(dim), np.eye(dim)
    unique_n = np.unique(counts)
    for it in range(num_em_iters):
        log.info("Plda estimation iteration %d of %d", it, num_em_iters)
        within_stats = stats.offset_scatter.copy()
        within_count = num_examples - num_classes
        between_stats = np.zeros((dim, dim))
        within_inv = _sym_inv(within, "within-class covariance")
        between_inv = _sym_inv(between, "between-class covariance")
        for n in unique_n:
            m = centred[counts == n]  # (S_n, D)
            mixed = _sym_inv(between_inv + n * within_inv, "PLDA posterior covariance")
            w = (n * m @ within_inv) @ mixed  # rows: mixed @ n W^-1 m (both symmetric)
            m_w = m - w
            s_n = m.shape[0]
            between_stats += s_n * mixed + w.T @ w
            within_stats += n * (s_n * mixed + m_w.T @ m_w)
        within_count += num_classes
        within = within_stats / within_count
        between = between_stats / num_classes
        within = 0.5 * (within + within.T)
        between = 0.5 * (between + between.T)
        log.info("Trace of within-class variance is %g", np.trace(within))
        log.info("Trace of between-class variance is %g", np.trace(between))
    mean = stats.sum / num_classes
    log.info("Norm of mean of iVector distribution is %g", np.linalg.norm(mean))
    plda = plda_from_covars(mean, within, between)
    log.info(
        "Diagonal of between-class variance in normalized space is %s", format_vector(plda.psi)
    )
    return plda


def _sym_inv(mat: np.ndarray, what: str) -> np.ndarray:
    try:
        inv = np.linalg.inv(mat)
    except np.linalg.LinAlgError:
        raise XvjaxError(f"{what} is singular; too little data for dimension {len(mat)}") from None
    return 0.5 * (inv + inv.T)


def train_plda(vectors: np.ndarray, spk_ids: Sequence, num_em_iters: int = 10) -> Plda:
    """`ivector-compute-plda`: EM-trained PLDA from (N, D) vectors and N speaker labels.

    Speakers with one utterance contribute to the between-class statistics only; at least one
    speaker needs two or more utterances (else an error, as in Kaldi).
    """
    return estimate_plda(compute_plda_stats(vectors, spk_ids), num_em_iters)
