"""Correlation alignment (CORAL) of x-vectors between domains, numpy float64: an affine map that
whitens with one set's covariance and re-colours with the other's (Sun, Feng and Saenko, "Return
of frustratingly easy domain adaptation", AAAI 2016; for speaker recognition Alam et al.,
"Speaker verification in mismatched conditions with frustratingly easy domain adaptation",
Odyssey 2018).

    coral = fit_coral(source (N, D), target (M, D), eps=1.0)
    aligned = coral.apply(source)          # the source vectors with the target's mean and covariance

The map is x -> mu_t + C_t^(1/2) C_s^(-1/2) (x - mu_s), with the symmetric square roots (eigh) of
the regularised covariances
    C = Sigma + eps * (trace(Sigma) / D) I,    Sigma = E[(x - mu)(x - mu)^T] (divided by N),
so both are invertible whatever N, and in directions where the sets vary much less than on
average the map stays close to the identity. The ridge is relative to the mean variance, so eps
does not depend on the vectors' scale; eps = 1 on unit-variance features is the paper's C + I.
The map sends the regularised source covariance exactly to the regularised target one; with
eps = 0 (full-rank covariances) the aligned source set has the target's mean and covariance.

Use as the cheap baseline of issue #15: fit on the source training x-vectors and the unlabelled
in-domain set, apply to the source training vectors, train the usual backend on the aligned
vectors; in-domain vectors are scored untouched. (To move in-domain vectors towards the source
instead and keep a source backend, fit with the arguments swapped.) `Coral.affine` is a (D, D+1)
matrix that `transform-vec` applies.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from xvjax.backend.lda import transform_vec
from xvjax.backend.linalg import check_finite
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

__all__ = ["Coral", "fit_coral", "regularized_covariance"]


@dataclasses.dataclass(frozen=True)
class Coral:
    """A fitted alignment: affine (D, D+1) float64 [L | b], x -> L x + b; eps its ridge."""

    affine: np.ndarray
    eps: float

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The map on (N, D) (or (D,)) vectors -> float64 of the same shape."""
        return transform_vec(self.affine, x)


def regularized_covariance(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), Sigma + eps * (trace(Sigma) / D) I (D, D)) of (N, D) vectors, float64."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / x.shape[0]
    cov += eps * np.trace(cov) / x.shape[1] * np.eye(x.shape[1])
    return mean, 0.5 * (cov + cov.T)


def _sqrt_and_inv_sqrt(cov: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    s, u = np.linalg.eigh(cov)
    if s[0] <= 1e-12 * max(s[-1], 0.0) or s[-1] <= 0.0:
        raise XvjaxError(
            f"the covariance of the {what} vectors is singular (fewer vectors than dimensions, "
            "or a constant direction): use eps > 0"
        )
    return (u * np.sqrt(s)) @ u.T, (u / np.sqrt(s)) @ u.T


def fit_coral(source: np.ndarray, target: np.ndarray, eps: float = 1.0) -> Coral:
    """The CORAL map from the source (N, D) to the target (M, D) distribution (module docstring)."""
    if eps < 0.0:
        raise XvjaxError(f"CORAL regularisation eps must be >= 0, got {eps}")
    xs = np.asarray(source, dtype=np.float64)
    xt = np.asarray(target, dtype=np.float64)
    for x, what in ((xs, "source"), (xt, "target")):
        if x.ndim != 2 or x.shape[0] < 2:
            raise XvjaxError(
                f"CORAL needs at least 2 {what} vectors as an (N, D) matrix, got {x.shape}"
            )
        check_finite(x)
    if xs.shape[1] != xt.shape[1]:
        raise XvjaxError(
            f"source vectors have dimension {xs.shape[1]}, target vectors {xt.shape[1]}"
        )
    mu_s, cov_s = regularized_covariance(xs, eps)
    mu_t, cov_t = regularized_covariance(xt, eps)
    _, whiten = _sqrt_and_inv_sqrt(cov_s, "source")
    colour, _ = _sqrt_and_inv_sqrt(cov_t, "target")
    linear = colour @ whiten
    log.info(
        "CORAL: %d source and %d target vectors of dimension %d, eps %g; source/target total "
        "variance %g / %g",
        xs.shape[0],
        xt.shape[0],
        xs.shape[1],
        eps,
        np.trace(cov_s),
        np.trace(cov_t),
    )
    return Coral(np.concatenate([linear, (mu_t - linear @ mu_s)[:, None]], axis=1), float(eps))
