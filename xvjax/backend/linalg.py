"""Numerical steps Kaldi's LDA, PLDA and PLDA adaptation share (numpy float64).

- `sorted_eigh`: symmetric eigendecomposition with eigenvalues sorted decreasing (Kaldi's `Eig`
  followed by `SortSvd`);
- `class_means`: per-speaker means and counts of a labelled matrix;
- `check_finite`: the one-line error for a NaN or infinite vector;
- `format_vector`: a vector printed as Kaldi prints one in its logs (`[ 1 2 3 ]`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xvjax.errors import XvjaxError

__all__ = ["sorted_eigh", "class_means", "check_finite", "format_vector"]


def sorted_eigh(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (D,) sorted decreasing and eigenvectors (D, D) (columns) of the symmetric part
    of `mat` (Kaldi `Eig` + `SortSvd`)."""
    s, u = np.linalg.eigh(0.5 * (mat + mat.T))
    order = np.argsort(-s, kind="stable")
    return s[order], u[:, order]


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
