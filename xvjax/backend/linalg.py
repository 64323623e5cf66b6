"""Numerical steps Kaldi's LDA, PLDA and PLDA adaptation share (numpy float64).

- `sorted_eigh`: symmetric eigendecomposition with eigenvalues sorted decreasing (Kaldi's `Eig`
  followed by `SortSvd`), eigenvector signs as Kaldi's own algorithm leaves them (`kaldi_signs`);
- `class_means`: per-speaker means and counts of a labelled matrix;
- `check_finite`: the one-line error for a NaN or infinite vector;
- `format_vector`: a vector printed as Kaldi prints one in its logs (`[ 1 2 3 ]`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np

from xvjax.errors import XvjaxError

__all__ = ["sorted_eigh", "kaldi_signs", "class_means", "check_finite", "format_vector"]


def sorted_eigh(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (D,) sorted decreasing and eigenvectors (D, D) (columns) of the symmetric
    `mat` (lower triangle used), as Kaldi's `SpMatrix::Eig` + `SortSvd` give them, eigenvector
    signs included (LAPACK's decomposition with the signs of Kaldi's algorithm, `kaldi_signs`)."""
    a = _symmetric(mat)
    s, u = np.linalg.eigh(a)
    order = np.argsort(-s, kind="stable")
    s, u = s[order], u[:, order]
    return s, u * kaldi_signs(a, u)[None, :]


def _symmetric(mat: np.ndarray) -> np.ndarray:
    m = np.asarray(mat, np.float64)
    return np.tril(m) + np.tril(m, -1).T


# Kaldi's symmetric eigensolver (matrix/qr.cc) is Householder tridiagonalisation from the last
# row up, then the implicit symmetric QR algorithm with Wilkinson shifts (Golub & Van Loan 8.3.1,
# 8.3.3); it has no sign convention: an eigenvector's sign is whatever that sequence of
# reflections and rotations leaves. Nothing downstream depends on it (projected scores, length
# norms and PLDA LLRs are invariant to sign flips of eigenvectors), but with Kaldi's signs the
# LDA and PLDA files equal Kaldi's. `kaldi_signs` runs the same sequence on a few probe vectors
# instead of the whole eigenvector matrix (O(D^2) rotations of 3 numbers, not of rows of D): the
# probes' coordinates in Kaldi's eigenvectors give each eigenvector's sign.

_NUM_PROBES = 3


def _house_backward(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Householder vector v (v[-1] = 1) and beta with (I - beta v v^T) x = ||x|| e_last."""
    scale = 1.0 / max(float(np.max(np.abs(x))), np.finfo(np.float64).tiny)
    v = x * scale
    sigma = float(v[:-1] @ v[:-1])
    v[-1] = 1.0
    if sigma == 0.0:
        return v, 0.0
    x1 = float(x[-1]) * scale
    mu = float(np.sqrt(x1 * x1 + sigma))
    v1 = x1 - mu if x1 <= 0 else -sigma / (x1 + mu)
    v[-1] = v1
    return v / v1, 2 * v1 * v1 / (sigma + v1 * v1)


def _tridiagonalize(a: np.ndarray, probes: np.ndarray):
    """SpMatrix::Tridiagonalize: (diagonal, off-diagonal, Q @ probes) with Q A Q^T tridiagonal."""
    a, w = a.copy(), probes.copy()
    n = a.shape[0]
    for k in range(n - 1, 1, -1):
        row = a[k, :k].copy()
        v, beta = _house_backward(row)
        p = beta * (a[:k, :k] @ v)
        p -= 0.5 * beta * float(p @ v) * v
        a[k, k - 1] = a[k - 1, k] = np.sqrt(row @ row)
        a[k, : k - 1] = a[: k - 1, k] = 0.0
        a[:k, :k] -= np.outer(v, p) + np.outer(p, v)
        w[:k] -= beta * np.outer(v, v @ w[:k])
    return np.diag(a).tolist(), np.diag(a, -1).tolist(), w.tolist()


def _qr_step(d: list, e: list, y: list, lo: int, n: int) -> None:
    """One implicit QR step with Wilkinson shift on the unreduced block d[lo:lo+n] (QrStep, with
    the Givens rotations of GVL 5.1.3 inline), rotating the probe rows y[k], y[k+1] as Kaldi
    rotates the eigenvector rows."""
    dd = (d[lo + n - 2] - d[lo + n - 1]) / 2.0
    t = e[lo + n - 2]
    inv_scale = max(abs(dd), abs(t), sys.float_info.min)
    ds, ts = dd / inv_scale, t / inv_scale
    sgn = 1.0 if dd > 0.0 else -1.0
    mu = d[lo + n - 1] - inv_scale * ts * ts / (ds + sgn * math.sqrt(ds * ds + ts * ts))
    x, z = d[lo] - mu, e[lo]
    sqrt = math.sqrt
    for k in range(lo, lo + n - 1):
        if z == 0:
            c, s = 1.0, 0.0
        elif abs(z) > abs(x):
            tau = -x / z
            s = 1 / sqrt(1 + tau * tau)
            c = s * tau
        else:
            tau = -z / x
            c = 1 / sqrt(1 + tau * tau)
            s = c * tau
        p, r, off = d[k], d[k + 1], e[k]
        cp_sq, cq_sr = c * p - s * off, c * off - s * r
        d[k] = c * cp_sq - s * cq_sr
        e[k] = s * cp_sq + c * cq_sr
        d[k + 1] = s * (s * p + c * off) + c * (s * off + c * r)
        if k > lo:
            e[k - 1] = c * e[k - 1] - s * z
        (a0, a1, a2), (b0, b1, b2) = y[k], y[k + 1]
        y[k] = (c * a0 - s * b0, c * a1 - s * b1, c * a2 - s * b2)
        y[k + 1] = (s * a0 + c * b0, s * a1 + c * b1, s * a2 + c * b2)
        if k < lo + n - 2:
            z = -s * e[k + 1]
            e[k + 1] = c * e[k + 1]
            x = e[k]


def _kaldi_qr(a: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaldi's Eig on symmetric `a`, carrying 3 probe vectors (D, 3) instead of the eigenvector
    matrix: (eigenvalues (D,) unsorted, (D, 3) with row i = Kaldi's eigenvector i . probes).

    QrInternal zeroes negligible off-diagonals and steps on the lowest unreduced block; only
    that block changes in a step, so only it is re-checked (the same zeros as checking all)."""
    n = a.shape[0]
    d, e, y = _tridiagonalize(a, probes)
    y = [tuple(row) for row in y]
    eps = 2.0**-52
    large = 100 + 2 * n
    lo, hi = 0, n - 1  # off-diagonals that may have changed since the last check
    for counter in range(500 + 4 * n):
        if counter >= large and (counter - large) % 50 == 0:
            eps *= 2.0  # as Kaldi, after too many iterations (it warns)
            lo, hi = 0, n - 1
        for i in range(lo, hi):
            if abs(e[i]) <= eps * (abs(d[i]) + abs(d[i + 1])):
                e[i] = 0.0
        end = n - 1
        while end > 0 and e[end - 1] == 0.0:
            end -= 1
        if end == 0:
            break
        start = end - 1
        while start > 0 and e[start - 1] != 0.0:
            start -= 1
        _qr_step(d, e, y, start, end - start + 1)
        lo, hi = start, end
    return np.asarray(d), np.asarray(y)


def kaldi_signs(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(D,) +-1: the signs that turn the columns of `u` (eigenvectors of symmetric `a`, sorted by
    decreasing eigenvalue) into Kaldi's (`SpMatrix::Eig` + `SortSvd`)."""
    n = a.shape[0]
    if n == 1:
        return np.ones(1)
    probes = np.random.default_rng(0).standard_normal((n, _NUM_PROBES))
    values, coords = _kaldi_qr(a, probes)
    coords = coords[np.argsort(-values, kind="stable")]
    ours = u.T @ probes  # (D, P): our eigenvector i . probes
    best = np.argmax(np.abs(ours), axis=1)
    rows = np.arange(n)
    return np.where(coords[rows, best] * ours[rows, best] < 0, -1.0, 1.0)


def class_means(x: np.ndarray, spk_ids: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Per-speaker means of (N, D) float64 rows -> ((S, D) means, (S,) counts), speakers in
    sorted label order."""
    _, inverse, counts = np.unique(
        np.asarray(spk_ids, dtype=object).astype(str), return_inverse=True, return_counts=True
    )
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, inverse.reshape(-1), x)
    return sums / counts[:, None], counts


def check_finite(x: np.ndarray, keys: Sequence[str] | None = None) -> None:
    """Raises an error naming the first row of (N, D) `x` (its key, if given) with NaN or inf."""
    bad = ~np.all(np.isfinite(x), axis=1)
    if np.any(bad):
        i = int(np.argmax(bad))
        name = f"'{keys[i]}'" if keys is not None else f"row {i}"
        raise XvjaxError(f"vector {name} contains NaN or infinite values; remove or fix it")


def format_vector(v: np.ndarray) -> str:
    """`[ v0 v1 ... ]` with `%g` numbers, as Kaldi's log lines print a vector."""
    return "[ " + " ".join(f"{x:g}" for x in v) + " ]"
