"""Vector tables as the backend binaries read and write them (numpy, float32 like Kaldi's tables).

- `read_vectors`: a table -> (keys, (N, D) float32), with the checks Kaldi's binaries make or
  that save a confusing failure later: duplicate keys, dimension mismatches, NaN/inf, each error
  naming the key and the table;
- `read_finite_vectors`: the same for tools that work key by key (length normalisation, mean
  subtraction, transforms, speaker means, trial scoring): a vector with NaN or infinite values is
  skipped with a warning naming it, as those tools skip a key they cannot use, and counted. Tools
  that estimate a model from the whole table (LDA, PLDA, adaptation, the global mean) use
  `read_vectors`: a broken vector there is an error, not something to estimate around;
- `write_vectors`: keys and rows -> a table;
- `enroll_num_utts`: the `--num-utts` table of `ivector-plda-scoring` applied to enrolment vectors;
- `write_block_rows`: a dense score matrix computed in blocks, written one row vector per
  enrolment key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import tables

log = logging.getLogger("xvjax")

__all__ = [
    "read_vectors",
    "read_finite_vectors",
    "write_vectors",
    "read_num_utts",
    "enroll_num_utts",
    "write_block_rows",
]


def read_vectors(rspec: str, what: str = "vector", dim: int | None = None):
    """Reads a vector table -> (keys, (N, D) float32). Errors name the key: duplicate keys,
    dimension mismatches (with `dim` or the first vector's), NaN/inf values."""
    return _read(rspec, what, dim, None)


def read_finite_vectors(rspec: str, what: str = "vector", dim: int | None = None):
    """`read_vectors` that skips vectors with NaN or infinite values (a warning names each)
    -> (keys, (N, D) float32, keys skipped)."""
    skipped: list[str] = []
    keys, mat = _read(rspec, what, dim, skipped)
    return keys, mat, skipped


def _read(rspec: str, what: str, dim: int | None, skipped: list[str] | None):
    keys, rows, seen = [], [], set()
    for key, vec in tables.read(rspec, kind="vector", dtype=np.float32):
        vec = np.asarray(vec, dtype=np.float32)
        if key in seen:
            raise XvjaxError(f"duplicate {what} '{key}' in '{rspec}'")
        seen.add(key)
        want = dim if dim is not None else (rows[0].shape[0] if rows else None)
        if want is not None and vec.shape[0] != want:
            raise XvjaxError(
                f"{what} '{key}' in '{rspec}' has dimension {vec.shape[0]}, expected {want}"
                + (
                    " (the model's dimension: apply the same transforms as its training data)"
                    if dim
                    else ""
                )
            )
        if not np.all(np.isfinite(vec)):
            if skipped is None:
                raise XvjaxError(f"{what} '{key}' in '{rspec}' contains NaN or infinite values")
            log.warning("%s '%s' in '%s' has NaN or infinite values; skipping it", what, key, rspec)
            skipped.append(key)
            continue
        keys.append(key)
        rows.append(vec)
    if not rows:
        return keys, np.zeros((0, dim or 0), dtype=np.float32)
    return keys, np.stack(rows)


def write_vectors(wspec: str, keys: Sequence[str], mat) -> None:
    """One float32 vector per key, rows of `mat` (N, D)."""
    with tables.Writer(wspec) as w:
        for key, row in zip(keys, np.asarray(mat, dtype=np.float32), strict=True):
            w[key] = row


def read_num_utts(rspec: str) -> dict[str, int]:
    """A `num_utts.ark` table (speaker -> number of utterances averaged, as `ivector-mean` writes)."""
    return {k: int(v) for k, v in tables.read_dict(rspec, kind="int32").items()}


def enroll_num_utts(keys: Sequence[str], vecs: np.ndarray, num_utts_rspec: str):
    """num_utts of each enrolment key (1 each without a table). As in Kaldi, a key missing from
    the table is skipped with a warning -> (keys, vecs, (N',) float64 counts, number skipped)."""
    if not num_utts_rspec:
        return keys, vecs, np.ones(len(keys)), 0
    table = read_num_utts(num_utts_rspec)
    keep = []
    for i, key in enumerate(keys):
        if key in table:
            keep.append(i)
        else:
            log.warning("Number of utterances not given for speaker %s", key)
    counts = np.array([table[keys[i]] for i in keep], dtype=np.float64)
    if np.any(counts <= 0):
        bad = keys[keep[int(np.argmin(counts))]]
        raise XvjaxError(f"--num-utts={num_utts_rspec}: speaker '{bad}' has a non-positive count")
    return [keys[i] for i in keep], vecs[keep], counts, len(keys) - len(keep)


def write_block_rows(
    wspec: str,
    keys: Sequence[str],
    blocks: Iterable[tuple[int, int, np.ndarray]],
    num_cols: int,
) -> None:
    """Writes a dense matrix given as (row0, col0, block) tiles, in row-block order (as
    `xvjax.backend.scoring.iter_score_blocks` yields them), one float32 row vector per key."""
    with tables.Writer(wspec) as w:
        buf, row0 = None, None
        for r0, c0, blk in blocks:
            if r0 != row0:
                if buf is not None:
                    for i, row in enumerate(buf):
                        w[keys[row0 + i]] = row
                buf, row0 = np.empty((blk.shape[0], num_cols), dtype=np.float32), r0
            buf[:, c0 : c0 + blk.shape[1]] = blk
        if buf is not None:
            for i, row in enumerate(buf):
                w[keys[row0 + i]] = row
