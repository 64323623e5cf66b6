"""All-pairs PLDA scores within a recording, as Kaldi's `ivector-plda-scoring-dense` (speaker
diarization, `src/ivectorbin/ivector-plda-scoring-dense.cc`), in numpy float64.

Per recording with N segment vectors (N, D):
1. unless `target_energy` is 1 (within 0.001), a recording-dependent PCA: the eigenvectors of
   the vectors' (biased) covariance, sorted by eigenvalue, keeping eigenvalues while their
   cumulative share is <= target_energy plus one more (Kaldi's loop); the vectors are projected
   and the PLDA is mapped into the same space (`plda.apply_transform`);
2. every vector is transformed by the PLDA with 1 utterance (length-normalised as configured);
3. score[i, j] = the PLDA log-likelihood ratio of vector i (as enrolment, n = 1) against j.
The matrix is symmetric; rows and columns follow the reco2utt order. PCA eigenvector signs do
not change the scores (see `linalg.sorted_eigh`).
"""

from __future__ import annotations

import numpy as np

from xvjax.backend.linalg import sorted_eigh
from xvjax.backend.plda import Plda, apply_transform, plda_transform


def recording_pca(vectors: np.ndarray, target_energy: float) -> np.ndarray | None:
    """Kaldi's EstPca: the (dim, D) PCA keeping `target_energy` of the variance, or None when
    the energy is 1 (no PCA)."""
    if abs(target_energy - 1.0) <= 0.001 * max(abs(target_energy), 1.0):
        return None
    x = np.asarray(vectors, np.float64)
    mean = x.mean(axis=0)
    covar = x.T @ x / len(x) - np.outer(mean, mean)
    s, u = sorted_eigh(covar)
    total = s.sum()
    energy, dim = 0.0, 1
    while energy / total <= target_energy and dim <= len(s):
        energy += s[dim - 1]
        dim += 1
    return u[:, : min(dim, len(s))].T


def all_pairs_llr(plda: Plda, transformed: np.ndarray) -> np.ndarray:
    """(N, N) PLDA log-likelihood ratios of every transformed vector against every other
    (enrolment and test both with n = 1): Kaldi's LogLikelihoodRatio, expanded so no (N, N, D)
    array is built."""
    x = np.asarray(transformed, np.float64)
    psi = np.asarray(plda.psi, np.float64)
    gain = psi / (psi + 1.0)  # n psi / (n psi + 1) for n = 1
    var = 1.0 + gain
    m = x * gain
    const = -0.5 * np.sum(np.log(var)) + 0.5 * np.sum(np.log(1.0 + psi))
    v2 = np.sum(x * x * (1.0 / (1.0 + psi) - 1.0 / var), axis=1)  # test terms, per column
    m2 = np.sum(m * m / var, axis=1)  # enrolment terms, per row
    cross = (m / var) @ x.T
    return const + 0.5 * v2[None, :] - 0.5 * m2[:, None] + cross


def dense_plda_scores(
    plda: Plda,
    vectors: np.ndarray,
    target_energy: float = 0.5,
    normalize_length: bool = True,
    simple_length_norm: bool = False,
) -> np.ndarray:
    """The (N, N) float32 score matrix of one recording's segment vectors (module docstring)."""
    x = np.asarray(vectors, np.float64)
    pca = recording_pca(x, target_energy)
    if pca is not None:
        x = x @ pca.T
        plda = apply_transform(plda, pca)
    y, _ = plda_transform(plda, x, 1, normalize_length, simple_length_norm)
    return all_pairs_llr(plda, y).astype(np.float32)
