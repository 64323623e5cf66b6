"""Batched PLDA (and cosine) scoring in jnp: Kaldi trial lists and dense blocked score matrices.

Kaldi's `Plda::LogLikelihoodRatio` for an enrolment vector u (transformed with its n) and a test
vector v (transformed with n = 1) is, per dimension with s2 = 1 + psi/(n psi + 1) and
m = n psi/(n psi + 1) u,
    llr = -1/2 sum[log s2 + (v - m)^2/s2] + 1/2 sum[log(1 + psi) + v^2/(1 + psi)].
Expanding the square it is an inner product of per-side features plus a per-enrolment constant:
    llr = <[m/s2, q], [v, v^2]> + c,   q = 1/2 (1/(1+psi) - 1/s2),
    c = 1/2 sum[log(1+psi) - log s2 - m^2/s2],
and q depends on the enrolment only through n. So a block of scores is one (rows, D) x (D, cols)
GEMM plus per-enrolment constants plus a small table q_u . v^2 (one row per distinct n), gathered
per enrolment. Features and constants are computed in float64 on the host; the GEMM runs in
`dtype`:

- `score_trials` (Kaldi trial lists) defaults to float64: equal to the double formula of Kaldi's
  `LogLikelihoodRatio` to ~1e-12 (Kaldi itself rounds the transformed vectors and the printed
  score to float32, so its files differ from exact values by up to ~5e-5 for |score| ~ 100).
- `score_matrix` / `iter_score_blocks` (dense) default to float32 (jax's default dtype, faster):
  errors up to ~5e-5 absolute for scores of magnitude ~100 (tests check < 1e-4 against Kaldi
  and float64). Pass `dtype=np.float64` for double (enabled locally with `jax.enable_x64`).
The pairwise (trial list) and dense paths use the same features, so dense scoring equals
trial-list scoring on the same pairs (to 1e-10 in float64).

Dense scoring runs over enrolment blocks x test blocks of `block_size`, each enrolment block
sharded over the available devices on a 1-D mesh (`jax.make_mesh((num_devices,), ("data",))`,
rows split with `NamedSharding(mesh, P("data", None))`), the test block replicated. Device memory
is bounded by the block shapes; only `score_matrix` materialises the full N x M result (use
`iter_score_blocks` to stream). Every block uses the same padded shape; float64 results do not
depend on the block size (< 1e-11), float32 ones only through GEMM rounding (< 1e-4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from xvjax.backend.plda import Plda, plda_transform
from xvjax.errors import XvjaxError

__all__ = [
    "EnrollFeatures",
    "enroll_features",
    "test_features",
    "prepare_enroll",
    "prepare_test",
    "score_trials",
    "score_matrix",
    "iter_score_blocks",
    "cosine_scores",
    "cosine_matrix",
    "device_mesh",
    "precision_dtype",
    "x64_scope",
    "round_up",
    "put_enroll_rows",
    "Split",
    "split_features",
    "score_block",
]


class EnrollFeatures(NamedTuple):
    """Per-enrolment scoring features (float64).

    lin: (N, D) m/s2; const: (N,) c; quad: (U, D) the q of each distinct num_utts;
    quad_idx: (N,) int32 row of `quad` for each enrolment.
    """

    lin: np.ndarray
    const: np.ndarray
    quad: np.ndarray
    quad_idx: np.ndarray


def enroll_features(plda: Plda, enroll: np.ndarray, num_utts=1) -> EnrollFeatures:
    """Features of transformed enrolment vectors (N, D) with their num_utts (int or (N,))."""
    u = np.atleast_2d(np.asarray(enroll, dtype=np.float64))
    counts = np.broadcast_to(np.asarray(num_utts, dtype=np.float64), (u.shape[0],))
    uniq, idx = np.unique(counts, return_inverse=True)
    psi = np.asarray(plda.psi, dtype=np.float64)[None, :]
    n = counts[:, None]
    var = 1.0 + psi / (n * psi + 1.0)
    mean = n * psi / (n * psi + 1.0) * u
    lin = mean / var
    const = 0.5 * (np.sum(np.log1p(psi)) - np.sum(np.log(var), axis=1) - np.sum(mean * lin, axis=1))
    var_u = 1.0 + psi / (uniq[:, None] * psi + 1.0)
    quad = 0.5 * (1.0 / (1.0 + psi) - 1.0 / var_u)
    return EnrollFeatures(lin, const, quad, idx.reshape(-1).astype(np.int32))


def test_features(test: np.ndarray) -> np.ndarray:
    """Test-side features: the transformed test vectors v themselves, (N, D) float64."""
    return np.atleast_2d(np.asarray(test, dtype=np.float64))


def prepare_enroll(
    plda: Plda, x, num_utts=1, normalize_length=True, simple_length_norm=False
) -> EnrollFeatures:
    """`plda_transform` (with num_utts) then `enroll_features`."""
    u, _ = plda_transform(plda, x, num_utts, normalize_length, simple_length_norm)
    return enroll_features(plda, u, num_utts)


def prepare_test(plda: Plda, x, normalize_length=True, simple_length_norm=False) -> np.ndarray:
    """`plda_transform` with n = 1 (as Kaldi does for test vectors) then `test_features`."""
    v, _ = plda_transform(plda, x, 1, normalize_length, simple_length_norm)
    return test_features(v)


# ----------------------------------------------------------------------------- devices
def device_mesh(devices=None):
    """1-D mesh ("data",) over `devices` (default: all of jax.devices())."""
    devs = list(devices) if devices is not None else jax.devices()
    auto = (jax.sharding.AxisType.Auto,)  # let XLA propagate the row sharding through gathers
    return jax.make_mesh((len(devs),), ("data",), axis_types=auto, devices=devs)


def precision_dtype(name: str) -> np.dtype:
    """The GEMM dtype named by a `--precision` option: float32 or float64."""
    if name not in ("float32", "float64"):
        raise XvjaxError(f"--precision must be float32 or float64, got '{name}'")
    return np.dtype(name)


def x64_scope(dtype) -> contextlib.AbstractContextManager:
    """jax's 64-bit mode for the duration of a float64 computation (a no-op for float32)."""
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


def round_up(n: int, m: int) -> int:
    """n rounded up to a multiple of m (block sizes divisible by the device count)."""
    return -(-n // m) * m


def _pad_rows(a: np.ndarray, rows: int, value: float = 0.0) -> np.ndarray:
    if a.shape[0] == rows:
        return a
    pad = [(0, rows - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return np.pad(a, pad, constant_values=value)


def put_enroll_rows(fe, ce, qi, r0: int, rows: int, mesh, dtype):
    """Enrolment rows r0 .. r0 + rows (zero-padded to `rows`, so every block has one shape) of
    (fe, ce, qi) on the devices, split over the mesh's "data" axis."""
    rows2, rows1 = NamedSharding(mesh, P("data", None)), NamedSharding(mesh, P("data"))
    return (
        jax.device_put(_pad_rows(fe[r0 : r0 + rows], rows).astype(dtype), rows2),
        jax.device_put(_pad_rows(ce[r0 : r0 + rows], rows).astype(dtype), rows1),
        jax.device_put(_pad_rows(qi[r0 : r0 + rows], rows), rows1),
    )


@jax.jit
def score_block(fe, ce, qi, ft, qt):
    """Scores of an enrolment block against a test block (see `Split`):
    (be, D), (be,), (be,), (bt, D), (U, bt) -> (be, bt)."""
    return fe @ ft.T + ce[:, None] + qt[qi]


@jax.jit
def _normalize_block(s, me, se, mt, st, wz, wt):
    """S-norm (wz = wt = 1/2), Z-norm (1, 0) or T-norm (0, 1) of a score block."""
    return wz * ((s - me[:, None]) / se[:, None]) + wt * ((s - mt[None, :]) / st[None, :])


@jax.jit
def _pair_scores(fe, ce, qi, ft, qt, ie, it):
    """Trial-list scores of a block of (ie, it) index pairs."""
    return jnp.sum(fe[ie] * ft[it], axis=1) + ce[ie] + qt[qi[ie], it]


class Split(NamedTuple):
    """Scoring operands: score(e, t) = fe[e] . ft[t] + ce[e] + qt[qi[e], t].

    fe (N_e, D) = m/s2; ce (N_e,); qi (N_e,) int32 index of the enrolment's quadratic
    coefficients among the U distinct ones (one per distinct num_utts); ft (N_t, D) = v;
    qt (U, N_t) = q_u . v^2 (float64).
    """

    fe: np.ndarray
    ce: np.ndarray
    qi: np.ndarray
    ft: np.ndarray
    qt: np.ndarray


def split_features(ef: EnrollFeatures, tf: np.ndarray) -> Split:
    """The scoring operands of enrolment features against (N_t, D) test features."""
    return Split(ef.lin, ef.const, ef.quad_idx, tf, ef.quad @ (tf * tf).T)


# ----------------------------------------------------------------------------- trial lists
def score_trials(
    plda: Plda,
    enroll: np.ndarray,
    test: np.ndarray,
    enroll_idx: np.ndarray,
    test_idx: np.ndarray,
    num_utts=1,
    *,
    normalize_length: bool = True,
    simple_length_norm: bool = False,
    block_size: int = 1 << 16,
    dtype=np.float64,
    devices=None,
    method: str = "auto",
) -> np.ndarray:
    """`ivector-plda-scoring` on a trial list, batched.

    enroll: (N_e, D) raw (not PLDA-transformed) enrolment vectors, num_utts int or (N_e,);
    test: (N_t, D) raw test vectors; enroll_idx, test_idx: (T,) int row indices of each trial.
    Each vector is transformed once; trials are scored in blocks of `block_size` (sharded over
    devices), by gathering or from dense tiles (`method`, see `score_pairs`). Returns (T,) float64
    log-likelihood ratios.
    """
    ef = prepare_enroll(plda, enroll, num_utts, normalize_length, simple_length_norm)
    tf = prepare_test(plda, test, normalize_length, simple_length_norm)
    return score_pairs(
        ef,
        tf,
        enroll_idx,
        test_idx,
        block_size=block_size,
        dtype=dtype,
        devices=devices,
        method=method,
    )


def score_pairs(
    ef: EnrollFeatures,
    tf: np.ndarray,
    enroll_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    block_size: int = 1 << 16,
    dtype=np.float64,
    devices=None,
    method: str = "auto",
    dense_block_size: int = 2048,
) -> np.ndarray:
    """Scores aligned (enroll_idx[i], test_idx[i]) pairs from prepared features -> (T,) float64.

    method: "gather" scores each trial from its two gathered rows (blocks of `block_size`
    trials); "dense" computes the GEMM tiles (of `dense_block_size`) that contain trials and picks
    the trial entries; "auto" uses "dense" when the trials cover more than 2% of the enrolment x
    test pairs (e.g. SRE-style lists, where it is much faster), else "gather". Same numbers.
    """
    ie = np.asarray(enroll_idx, dtype=np.int32)
    it = np.asarray(test_idx, dtype=np.int32)
    if ie.shape != it.shape or ie.ndim != 1:
        raise XvjaxError("enroll_idx and test_idx must be 1-D arrays of the same length")
    num = len(ie)
    if num == 0:
        return np.zeros(0)
    for idx, size, what in ((ie, len(ef.const), "enrolment"), (it, tf.shape[0], "test")):
        if idx.min() < 0 or idx.max() >= size:
            raise XvjaxError(f"trial index out of range for {size} {what} vectors")
    if method not in ("auto", "gather", "dense"):
        raise XvjaxError(f"unknown trial scoring method '{method}' (auto, gather or dense)")
    if method == "dense" or (method == "auto" and num > 0.02 * len(ef.const) * tf.shape[0]):
        return _pairs_from_tiles(ef, tf, ie, it, dense_block_size, dtype, devices)
    sp = split_features(ef, tf)
    mesh = device_mesh(devices)
    ndev = mesh.size
    block = round_up(min(block_size, round_up(num, ndev)), ndev)
    out = np.empty(num)
    with x64_scope(dtype):
        rep = NamedSharding(mesh, P())
        shard = NamedSharding(mesh, P("data"))
        ops = [jax.device_put(a.astype(dtype), rep) for a in (sp.fe, sp.ce)]
        ops.append(jax.device_put(sp.qi, rep))
        ops += [jax.device_put(a.astype(dtype), rep) for a in (sp.ft, sp.qt)]
        for start in range(0, num, block):
            stop = min(start + block, num)
            bi = jax.device_put(_pad_rows(ie[start:stop], block), shard)
            bt = jax.device_put(_pad_rows(it[start:stop], block), shard)
            out[start:stop] = np.asarray(_pair_scores(*ops, bi, bt))[: stop - start]
    return out


def _pairs_from_tiles(ef, tf, ie, it, block_size, dtype, devices) -> np.ndarray:
    """Trial scores picked from the dense tiles that contain trials (tiles without trials are
    skipped, so the cost follows the trials, not N_e x N_t)."""
    num_e, num_t = len(ef.const), tf.shape[0]
    ndev = device_mesh(devices).size
    be, bt = _block_shape(block_size, num_e, num_t, ndev)
    num_cb = -(-num_t // bt)
    key = (ie // be).astype(np.int64) * num_cb + it // bt
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    tiles = np.unique(sorted_keys)
    out = np.empty(len(ie))
    for r0, c0, blk in iter_score_blocks(
        ef, tf, block_size=(be, bt), dtype=dtype, devices=devices, tiles=tiles
    ):
        k = (r0 // be) * num_cb + c0 // bt
        lo, hi = np.searchsorted(sorted_keys, [k, k + 1])
        sel = order[lo:hi]
        out[sel] = blk[ie[sel] - r0, it[sel] - c0]
    return out


def _block_shape(block_size, num_e: int, num_t: int, ndev: int) -> tuple[int, int]:
    """(rows, cols) of the dense tiles: rows a multiple of the device count."""
    be, bt = (block_size, block_size) if isinstance(block_size, int) else block_size
    return round_up(min(be, round_up(num_e, ndev)), ndev), min(bt, num_t)


# ----------------------------------------------------------------------------- dense
def iter_score_blocks(
    ef: EnrollFeatures,
    tf: np.ndarray,
    *,
    block_size: int | tuple[int, int] = 2048,
    dtype=np.float32,
    devices=None,
    enroll_stats=None,
    test_stats=None,
    tiles=None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yields (row0, col0, scores) for every enrolment-block x test-block of the dense matrix.

    ef: `EnrollFeatures` of N_e enrolments; tf: (N_t, D) `test_features`.
    block_size: rows (and columns) per block, or (rows, cols). scores is a host (rows, cols)
    float array (`dtype`). Enrolment rows are sharded over `devices`.
    enroll_stats / test_stats: optional cohort statistics (`xvjax.backend.snorm.CohortStats`,
    (N_e,) and (N_t,)); with both the blocks are S-normalised, with one Z- or T-normalised, in a
    second jitted step on the device (kept separate from the GEMM, which XLA fuses badly on CPU).
    tiles: optional sorted tile ids (row_block * num_col_blocks + col_block) to compute; others
    are skipped (used for trial lists).
    """
    fe, ce, qi, ft, qt = split_features(ef, tf)
    num_e, num_t = fe.shape[0], ft.shape[0]
    mesh = device_mesh(devices)
    be, bt = _block_shape(block_size, num_e, num_t, mesh.size)
    num_cb = -(-num_t // bt)
    wanted = None if tiles is None else set(int(t) for t in tiles)
    wanted_rows = None if wanted is None else {t // num_cb for t in wanted}
    use_norm = enroll_stats is not None or test_stats is not None
    if use_norm:
        zeros_e, ones_e = np.zeros(num_e), np.ones(num_e)
        zeros_t, ones_t = np.zeros(num_t), np.ones(num_t)
        me, se = (
            (enroll_stats.mean, enroll_stats.std) if enroll_stats is not None else (zeros_e, ones_e)
        )
        mt, st = (test_stats.mean, test_stats.std) if test_stats is not None else (zeros_t, ones_t)
        if enroll_stats is not None and test_stats is not None:
            weights = (0.5, 0.5)
        else:
            weights = (1.0, 0.0) if enroll_stats is not None else (0.0, 1.0)
    with x64_scope(dtype):
        rows1 = NamedSharding(mesh, P("data"))
        rep = NamedSharding(mesh, P())
        test_blocks = [
            (
                t0,
                jax.device_put(_pad_rows(ft[t0 : t0 + bt], bt).astype(dtype), rep),
                jax.device_put(_pad_rows(qt[:, t0 : t0 + bt].T, bt).T.astype(dtype), rep),
            )
            for t0 in range(0, num_t, bt)
        ]
        if use_norm:
            t_stats = {
                t0: (
                    jax.device_put(_pad_rows(mt[t0 : t0 + bt], bt).astype(dtype), rep),
                    jax.device_put(_pad_rows(st[t0 : t0 + bt], bt, 1.0).astype(dtype), rep),
                )
                for t0, _, _ in test_blocks
            }
        for e0 in range(0, num_e, be):
            if wanted_rows is not None and e0 // be not in wanted_rows:
                continue
            ne = min(be, num_e - e0)
            fe_d, ce_d, qi_d = put_enroll_rows(fe, ce, qi, e0, be, mesh, dtype)
            if use_norm:
                me_d = jax.device_put(_pad_rows(me[e0 : e0 + be], be).astype(dtype), rows1)
                se_d = jax.device_put(_pad_rows(se[e0 : e0 + be], be, 1.0).astype(dtype), rows1)
            for t0, ft_d, qt_d in test_blocks:
                if wanted is not None and (e0 // be) * num_cb + t0 // bt not in wanted:
                    continue
                nt = min(bt, num_t - t0)
                blk = score_block(fe_d, ce_d, qi_d, ft_d, qt_d)
                if use_norm:
                    blk = _normalize_block(blk, me_d, se_d, *t_stats[t0], *weights)
                yield e0, t0, np.asarray(blk)[:ne, :nt]


def score_matrix(
    plda: Plda,
    enroll: np.ndarray,
    test: np.ndarray,
    num_utts=1,
    *,
    normalize_length: bool = True,
    simple_length_norm: bool = False,
    block_size: int | tuple[int, int] = 2048,
    dtype=np.float32,
    devices=None,
) -> np.ndarray:
    """Dense (N_e, N_t) PLDA score matrix of raw enrolment (N_e, D) x raw test (N_t, D) vectors.

    Same numbers as `score_trials` on every pair (up to `dtype` rounding). Computed block by block
    (see `iter_score_blocks`); the result has dtype `dtype`.
    """
    ef = prepare_enroll(plda, enroll, num_utts, normalize_length, simple_length_norm)
    tf = prepare_test(plda, test, normalize_length, simple_length_norm)
    return _dense(ef, tf, block_size, dtype, devices)


def _dense(ef: EnrollFeatures, tf: np.ndarray, block_size, dtype, devices) -> np.ndarray:
    """The full (N_e, N_t) matrix assembled from `iter_score_blocks`."""
    out = np.empty((ef.lin.shape[0], tf.shape[0]), dtype=dtype)
    for r0, c0, blk in iter_score_blocks(
        ef, tf, block_size=block_size, dtype=dtype, devices=devices
    ):
        out[r0 : r0 + blk.shape[0], c0 : c0 + blk.shape[1]] = blk
    return out


# ----------------------------------------------------------------------------- cosine
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm == 0.0, 1.0, norm)


def cosine_scores(enroll: np.ndarray, test: np.ndarray, enroll_idx, test_idx) -> np.ndarray:
    """Cosine similarity of aligned pairs (rows of enroll (N_e, D) vs test (N_t, D)) -> (T,)."""
    e, t = _unit(enroll), _unit(test)
    ie, it = np.asarray(enroll_idx), np.asarray(test_idx)
    return np.einsum("ij,ij->i", e[ie], t[it])


def cosine_matrix(
    enroll: np.ndarray,
    test: np.ndarray,
    *,
    block_size: int | tuple[int, int] = 2048,
    dtype=np.float32,
    devices=None,
) -> np.ndarray:
    """Dense (N_e, N_t) cosine similarities, blocked and sharded like `score_matrix`."""
    e, t = _unit(enroll), _unit(test)
    ef = EnrollFeatures(
        e, np.zeros(e.shape[0]), np.zeros((1, e.shape[1])), np.zeros(len(e), np.int32)
    )
    return _dense(ef, t, block_size, dtype, devices)
