"""LDA as Kaldi's `ivector-compute-lda` computes it, and `transform-vec`, numpy float64.

With utterance mean mu subtracted, per speaker s (N_s utterances, mean m_s):
  total = sum x x^T / N,  within = (sum x x^T - sum_s N_s m_s m_s^T) / N,  between = total - within.
M = tau * total + (1 - tau) * within (tau = --total-covariance-factor); eig M = U diag(s) U^T, s sorted
decreasing and floored at covariance_floor * s_max; T = diag(s^-1/2) U^T (so T M T^T = I).
eig of T between T^T = U2 diag(s2) U2^T sorted decreasing; L = U2[:, :dim]^T T.
Output: the affine (dim, D+1) matrix [L | -L mu] (projected within-class covariance = I for tau = 0).
Eigenvector signs are Kaldi's (`linalg.sorted_eigh`), so the rows equal Kaldi's, signs included.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from xvjax.backend.linalg import check_finite, class_means, format_vector, sorted_eigh
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

__all__ = ["compute_lda", "transform_vec"]


def compute_lda(
    vectors: np.ndarray,
    spk_ids: Sequence,
    dim: int = 100,
    total_covariance_factor: float = 0.0,
    covariance_floor: float = 1.0e-6,
) -> np.ndarray:
    """LDA transform from (N, D) vectors and N speaker labels -> (dim, D+1) float64 affine matrix.

    Errors (one line, with what to do): fewer utterances than D (total covariance singular), every
    speaker with a single utterance (no within-class scatter), dim > D, or dim >= number of speakers
    (between-class covariance has rank <= #speakers - 1, so the extra directions are noise).
    Floored eigenvalues of the normalised covariance produce Kaldi's warning.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(spk_ids) != x.shape[0]:
        raise XvjaxError(f"need (N, D) vectors and N speaker ids, got {x.shape}, {len(spk_ids)}")
    num_utt, feat_dim = x.shape
    if num_utt == 0:
        raise XvjaxError("did not read any utterances")
    if not 0 < dim <= feat_dim:
        raise XvjaxError(f"--dim={dim} must be between 1 and the vector dimension {feat_dim}")
    if covariance_floor < 0.0:
        raise XvjaxError(f"--covariance-floor must be >= 0, got {covariance_floor}")
    check_finite(x)
    num_spk = len(set(map(str, spk_ids)))
    log.info("Stats have %d speakers, %d utterances.", num_spk, num_utt)
    if num_utt == num_spk:
        raise XvjaxError(
            "every speaker has a single utterance: the within-class covariance is zero; "
            "LDA needs speakers with several utterances"
        )
    if num_utt < feat_dim:
        raise XvjaxError(
            f"too little data for the vector dimension: {num_utt} utterances < dimension "
            f"{feat_dim} (total covariance singular); use more data"
        )
    if dim > num_spk - 1:
        raise XvjaxError(
            f"--dim={dim} needs at least {dim + 1} speakers, got {num_spk}: the between-class "
            f"scatter has rank <= {num_spk - 1}; lower --dim or add speakers"
        )
    mu = x.sum(axis=0) / num_utt
    xc = x - mu
    spk_means, counts = class_means(xc, spk_ids)
    scatter = xc.T @ xc
    between_scatter = (spk_means * counts[:, None]).T @ spk_means
    total = scatter / num_utt
    within = (scatter - between_scatter) / num_utt
    between = total - within
    to_normalize = total_covariance_factor * total + (1.0 - total_covariance_factor) * within

    s, u = sorted_eigh(to_normalize)
    floor = covariance_floor * s[0]
    num_floored = int(np.sum(s < floor))
    if num_floored:
        log.warning("Floored %d eigenvalues of covariance to %g", num_floored, floor)
    s = np.maximum(s, floor)
    normalizer = (s**-0.5)[:, None] * u.T

    s2, u2 = sorted_eigh(normalizer @ between @ normalizer.T)
    log.info(
        "Singular values of between-class covariance after projecting with interpolated "
        "[total/within] covariance with a weight of %g on the total covariance, are: %s",
        total_covariance_factor,
        format_vector(s2),
    )
    linear = u2[:, :dim].T @ normalizer
    return np.concatenate([linear, (-linear @ mu)[:, None]], axis=1)


def transform_vec(transform: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """`transform-vec`: rows of (N, D) vectors through a (R, D) linear or (R, D+1) affine matrix.

    Returns (N, R) float64 (or (R,) for a single (D,) vector).
    """
    t = np.asarray(transform, dtype=np.float64)
    x = np.asarray(vectors, dtype=np.float64)
    dim = x.shape[-1]
    if t.shape[1] == dim:
        return x @ t.T
    if t.shape[1] == dim + 1:
        return x @ t[:, :dim].T + t[:, dim]
    raise XvjaxError(
        f"dimension mismatch: input vector has dimension {dim} and transform has "
        f"{t.shape[1]} columns"
    )
