"""PLDA domain adaptation: Kaldi's unsupervised `PldaUnsupervisedAdaptor::UpdatePlda`
(`ivector-adapt-plda`), and interpolation with an in-domain PLDA (`interpolate_plda`).

Unsupervised adaptation (`adapt_plda`):

Given a PLDA trained out of domain and unlabelled in-domain vectors (already centred, LDA-projected
and length-normalised like the training data), the adapted model
1. takes the in-domain mean mu_a and total covariance S_a (centred, plus
   mean_diff_scale * (mu_a - mean)(mu_a - mean)^T), and replaces the PLDA mean by mu_a;
2. whitens with A' = diag((1 + psi)^-1/2) A (training total covariance -> I), where
   W = diag(1/(1+psi)), B = diag(psi/(1+psi)); eigendecomposes A' S_a A'^T = P diag(s) P^T;
3. in the P basis adds within_covar_scale * (s_i - 1) to W and between_covar_scale * (s_i - 1)
   to B for every direction with s_i > 1 (more in-domain variance than the model explains);
4. maps W, B back to the input space and re-diagonalises them into (transform, psi).

Interpolation (`interpolate_plda`), for an in-domain PLDA trained on few speakers or on
pseudo-labels (`xvjax.backend.pseudo_labels`) in the same input space as the source PLDA (same
mean subtraction, LDA and length norm before it): with w the in-domain weight,
    W = (1 - w) W_src + w W_in,  B = (1 - w) B_src + w B_in,  mean = (1 - w) mu_src + w mu_in,
where W, B are each model's within- and between-class covariances in the input space (a Kaldi
`Plda` stores them diagonalised: W = A^-1 A^-T, B = A^-1 diag(psi) A^-T, `plda.plda_covars`); the
result is re-diagonalised (`plda_from_covars`). w = 0 gives the source model, w = 1 the in-domain
one (Garcia-Romero et al., "Supervised domain adaptation for i-vector based speaker recognition",
ICASSP 2014, interpolate the covariances the same way).
"""

from __future__ import annotations

import logging

import numpy as np

from xvjax.backend.linalg import check_finite, format_vector, sorted_eigh
from xvjax.backend.plda import Plda, plda_covars, plda_from_covars
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

__all__ = ["adapt_plda", "interpolate_plda"]


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


def adaptation_diagnostics(
    plda: Plda,
    unlabelled: np.ndarray,
    labelled: np.ndarray | None = None,
    spk_ids=None,
    within_covar_scale: float = 0.75,
    between_covar_scale: float = 0.25,
) -> dict:
    """Where the in-domain data sits relative to an out-of-domain PLDA, and what adaptation does.

    Inputs are prepared as for `adapt_plda` (centred, projected, length-normalised). In the PLDA's
    space (within-class covariance I, between-class diag(psi)) it reports, as averages per
    dimension:
    - model_within (1), model_between (mean psi), model_total (mean 1 + psi);
    - unlabelled_total: the in-domain total covariance (centred on its own mean);
    - excess: sum of max(s_i - 1, 0) over the eigenvalues s_i of the in-domain total covariance
      where the model's total is I (what adaptation redistributes), and how much of it
      adaptation adds to within (within_covar_scale * excess) and to between;
    - with `labelled` in-domain vectors and their `spk_ids` (for diagnosis only): the in-domain
      within- and between-class covariances, and in the same basis the excess the labels say is
      within-class vs between-class (so the scales the data would want can be read off).
    """
    x = np.asarray(unlabelled, np.float64)
    dim = plda.dim
    a = np.asarray(plda.transform)
    psi = np.asarray(plda.psi, np.float64)
    out = {
        "dim": dim,
        "model_within": 1.0,
        "model_between": float(psi.mean()),
        "model_total": float((1.0 + psi).mean()),
    }
    xc = (x - x.mean(axis=0)) @ a.T
    total = xc.T @ xc / len(xc)
    out["unlabelled_total"] = float(np.trace(total) / dim)
    whiten = 1.0 / np.sqrt(1.0 + psi)
    s, p = sorted_eigh(whiten[:, None] * total * whiten[None, :])
    excess = np.maximum(s - 1.0, 0.0)
    out["excess"] = float(excess.sum() / dim)
    out["excess_directions"] = int((s > 1.0).sum())
    out["adapt_adds_within"] = float(within_covar_scale * excess.sum() / dim)
    out["adapt_adds_between"] = float(between_covar_scale * excess.sum() / dim)
    if labelled is not None and spk_ids is not None:
        y = np.asarray(labelled, np.float64) @ a.T
        spk = np.asarray(spk_ids)
        names, inverse = np.unique(spk, return_inverse=True)
        means = np.stack([y[inverse == k].mean(axis=0) for k in range(len(names))])
        resid = y - means[inverse]
        within = resid.T @ resid / max(len(y) - len(names), 1)  # unbiased
        centred_means = means - means.mean(axis=0)
        # A speaker mean of n utterances carries within / n of noise: take it out of between.
        counts = np.bincount(inverse)
        between = centred_means.T @ centred_means / max(len(names) - 1, 1)
        between -= within * np.mean(1.0 / counts)
        out["labelled_within"] = float(np.trace(within) / dim)
        out["labelled_between"] = float(np.trace(between) / dim)
        # In the basis adaptation works in (model total = I, eigenvectors p): the in-domain
        # within/between variances minus the model's, summed over the directions it changes.
        rot = p.T * whiten[None, :]
        w_dir = np.einsum("ij,jk,ik->i", rot, within, rot)
        b_dir = np.einsum("ij,jk,ik->i", rot, between, rot)
        w_model = np.einsum("ij,j,ij->i", p.T, 1.0 / (1.0 + psi), p.T)
        b_model = np.einsum("ij,j,ij->i", p.T, psi / (1.0 + psi), p.T)
        grow = s > 1.0
        out["labels_excess_within"] = float((w_dir - w_model)[grow].sum() / dim)
        out["labels_excess_between"] = float((b_dir - b_model)[grow].sum() / dim)
    return out


def interpolate_plda(source: Plda, in_domain: Plda, weight: float) -> Plda:
    """The covariance interpolation of two PLDAs of the same input space (module docstring):
    weight in [0, 1] is the in-domain model's share. Returns a new `Plda` (float64)."""
    if not 0.0 <= weight <= 1.0:
        raise XvjaxError(f"PLDA interpolation weight must be in [0, 1], got {weight}")
    if source.dim != in_domain.dim:
        raise XvjaxError(
            f"cannot interpolate PLDAs of dimensions {source.dim} and {in_domain.dim}: train the "
            "in-domain PLDA on vectors projected like the source model's training data"
        )
    w_src, b_src = plda_covars(source)
    w_in, b_in = plda_covars(in_domain)
    mean = (1.0 - weight) * np.asarray(source.mean) + weight * np.asarray(in_domain.mean)
    out = plda_from_covars(
        mean, (1.0 - weight) * w_src + weight * w_in, (1.0 - weight) * b_src + weight * b_in
    )
    log.info(
        "Interpolated PLDA with in-domain weight %g: diagonal of between-class covariance %s",
        weight,
        format_vector(out.psi),
    )
    return out
