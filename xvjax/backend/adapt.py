"""Unsupervised PLDA adaptation, Kaldi's `PldaUnsupervisedAdaptor::UpdatePlda` (`ivector-adapt-plda`).

Given a PLDA trained out of domain and unlabelled in-domain vectors (already centred, LDA-projected
and length-normalised like the training data), the adapted model
1. takes the in-domain mean mu_a and total covariance S_a (centred, plus
   mean_diff_scale * (mu_a - mean)(mu_a - mean)^T), and replaces the PLDA mean by mu_a;
2. whitens with A' = diag((1 + psi)^-1/2) A (training total covariance -> I), where
   W = diag(1/(1+psi)), B = diag(psi/(1+psi)); eigendecomposes A' S_a A'^T = P diag(s) P^T;
3. in the P basis adds within_covar_scale * (s_i - 1) to W and between_covar_scale * (s_i - 1)
   to B for every direction with s_i > 1 (more in-domain variance than the model explains);
4. maps W, B back to the input space and re-diagonalises them into (transform, psi).
"""

from __future__ import annotations

import logging

import numpy as np

from xvjax.backend.linalg import check_finite, format_vector, sorted_eigh
from xvjax.backend.plda import Plda, plda_from_covars
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

__all__ = ["adapt_plda"]


def adapt_plda(
    plda: Plda,
    vectors: np.ndarray,
    within_covar_scale: float = 0.3,
    between_covar_scale: float = 0.7,
    mean_diff_scale: float = 1.0,
) -> Plda:
    """Adapts `plda` to the (N, D) in-domain `vectors` (each with weight 1), as Kaldi does.

    Defaults are Kaldi's; the sre16/v2 recipe uses within_covar_scale=0.75,
    between_covar_scale=0.25. Returns a new `Plda` (float64).
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise XvjaxError(f"adapt_plda needs a non-empty (N, D) matrix of vectors, got {x.shape}")
    if x.shape[1] != plda.dim:
        raise XvjaxError(f"adaptation vectors have dimension {x.shape[1]}, the PLDA has {plda.dim}")
    if mean_diff_scale < 0.0:
        raise XvjaxError(f"--mean-diff-scale must be >= 0, got {mean_diff_scale}")
    check_finite(x)
    num = x.shape[0]
    mean = x.sum(axis=0) / num
    variance = x.T @ x / num - np.outer(mean, mean)
    diff = mean - np.asarray(plda.mean)
    variance += mean_diff_scale * np.outer(diff, diff)

    psi = np.asarray(plda.psi, dtype=np.float64)
    transform_mod = np.asarray(plda.transform) / np.sqrt(1.0 + psi)[:, None]
    s, p = sorted_eigh(transform_mod @ variance @ transform_mod.T)
    log.info(
        "Eigenvalues of adaptation-data total-covariance in space where training-data "
        "total-covariance is unit, is: %s",
        format_vector(s),
    )
    within_proj = p.T @ np.diag(1.0 / (1.0 + psi)) @ p
    between_proj = p.T @ np.diag(psi / (1.0 + psi)) @ p
    excess = np.maximum(s - 1.0, 0.0)  # only directions with s_i > 1 change
    within_proj[np.diag_indices(plda.dim)] += within_covar_scale * excess
    between_proj[np.diag_indices(plda.dim)] += between_covar_scale * excess
    for i in range(plda.dim):
        log.debug(
            "For %d'th eigenvalue, value is %g, within-class covar in this direction is %g, "
            "between-class is %g",
            i,
            s[i],
            within_proj[i, i] - within_covar_scale * excess[i],
            between_proj[i, i] - between_covar_scale * excess[i],
        )
    combined_inv = np.linalg.inv(p.T @ transform_mod)
    within = combined_inv @ within_proj @ combined_inv.T
    between = combined_inv @ between_proj @ combined_inv.T
    out = plda_from_covars(mean, within, between)
    log.info(
        "Old diagonal of between-class covar was: %s, new diagonal is %s",
        format_vector(psi),
        format_vector(out.psi),
    )
    return out
