"""Batched PLDA (and cosine) scoring in jnp: Kaldi trial lists and dense blocked score matrices.

Kaldi's `Plda::LogLikelihoodRatio` for an enrolment vector u (transformed with its n) and a test
vector v (transformed with n = 1) is, per dimension with s2 = 1 + psi/(n psi + 1) and
m = n psi/(n psi + 1) u,
    llr = -1/2 sum[log s2 + (v - m)^2/s2] + 1/2 sum[log(1 + psi) + v^2/(1 + psi)].
Expanding the square it is an inner product of per-side features plus a per-enrolment constant:
    llr = <[m/s2, q], [v, v^2]> + c,   q = 1/2 (1/(1+psi) - 1/s2),
    c = 1/2 sum[log(1+psi) - log s2 - m^2/s2],
so a block of scores is one GEMM of (rows, 2D) x (2D, cols) (or (rows, D) x (D, cols) plus a
per-test term when every enrolment has the same n). Features and constants are computed in
float64 on the host; the GEMM runs in `dtype`:

- `score_trials` (Kaldi trial lists) defaults to float64: identical to Kaldi's double
  `LogLikelihoodRatio` up to ~1e-12 (Kaldi rounds the transformed vectors and the score to float32).
- `score_matrix` / `iter_score_blocks` (dense) default to float32: about 2x faster; the error is
  ~1e-5 absolute for scores of magnitude ~100 (tests check < 1e-4 against float64). Pass
  `dtype=np.float64` for double.

Dense scoring runs over enrolment blocks x test blocks of `block_size`, each enrolment block
sharded over the available devices on a 1-D mesh (`jax.make_mesh((num_devices,), ("data",))`,
rows split with `NamedSharding(mesh, P("data", None))`), the test block replicated. Device memory
is bounded by the block shapes; only `score_matrix` materialises the full N x M result (use
`iter_score_blocks` to stream). Every block uses the same padded shape, so results do not depend on
the block size beyond GEMM rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

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
]


class EnrollFeatures(NamedTuple):
    """Per-enrolment scoring features (float64): lin (N, D) = m/s2, quad (N, D) = q, const (N,)."""

    lin: np.ndarray
    quad: np.ndarray
    const: np.ndarray

    @property
    def shared_quad(self) -> bool:
        """True when every row has the same quadratic coefficients (all n equal)."""
        return bool(np.all(self.quad == self.quad[:1]))


def enroll_features(plda: Plda, enroll: np.ndarray, num_utts=1) -> EnrollFeatures:
    """Features of transformed enrolment vectors (N, D) with their num_utts (int or (N,))."""
    u = np.atleast_2d(np.asarray(enroll, dtype=np.float64))
    n = np.broadcast_to(np.asarray(num_utts, dtype=np.float64), (u.shape[0],))[:, None]
    psi = np.asarray(plda.psi, dtype=np.float64)[None, :]
    shrink = n * psi / (n * psi + 1.0)
    var = 1.0 + psi / (n * psi + 1.0)
    mean = shrink * u
    lin = mean / var
    quad = 0.5 * (1.0 / (1.0 + psi) - 1.0 / var)
    const = 0.5 * (np.sum(np.log1p(psi)) - np.sum(np.log(var), axis=1) - np.sum(mean * lin, axis=1))
    return EnrollFeatures(lin, np.broadcast_to(quad, u.shape).copy(), const)


def test_features(test: np.ndarray) -> np.ndarray:
    """[v, v^2] (N, 2D) float64 for transformed test vectors (N, D)."""
    v = np.atleast_2d(np.asarray(test, dtype=np.float64))
    return np.concatenate([v, v * v], axis=1)


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
    import jax

    devs = list(devices) if devices is not None else jax.devices()
    auto = (jax.sharding.AxisType.Auto,)  # let XLA propagate the row sharding through gathers
    return jax.make_mesh((len(devs),), ("data",), axis_types=auto, devices=devs)


def _x64(dtype) -> contextlib.AbstractContextManager:
    import jax

    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _pad_rows(a: np.ndarray, rows: int, value: float = 0.0) -> np.ndarray:
    if a.shape[0] == rows:
        return a
    pad = [(0, rows - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return np.pad(a, pad, constant_values=value)


_JIT: dict[str, object] = {}


def _jitted(name: str):
    """Lazily built jitted kernels (keeps `import xvjax.backend.scoring` free of jax)."""
    if name not in _JIT:
        import jax
        import jax.numpy as jnp

        def block(fe, ce, ft, ct):  # (be, K), (be,), (bt, K), (bt,) -> (be, bt)
            return fe @ ft.T + ce[:, None] + ct[None, :]

        def normalize(s, me, se, mt, st, wz, wt):  # S-norm (wz=wt=1/2), Z-norm (1, 0), T (0, 1)
            return wz * ((s - me[:, None]) / se[:, None]) + wt * ((s - mt[None, :]) / st[None, :])

        def pairs(fe, ce, ft, ie, it):  # trial-list scores for index blocks
            return jnp.sum(fe[ie] * ft[it], axis=1) + ce[ie]

        _JIT["block"] = jax.jit(block)
        _JIT["pairs"] = jax.jit(pairs)
        _JIT["normalize"] = jax.jit(normalize)
    return _JIT[name]


def _split_features(ef: EnrollFeatures, tf: np.ndarray):
    """(fe, ce, ft, ct) for the GEMM: K = D with a per-test constant when quad is shared."""
    dim = ef.lin.shape[1]
    if ef.shared_quad:
        ct = tf[:, dim:] @ ef.quad[0]
        return ef.lin, ef.const, tf[:, :dim], ct
    fe = np.concatenate([ef.lin, ef.quad], axis=1)
    return fe, ef.const, tf, np.zeros(tf.shape[0])


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
) -> np.ndarray:
    """`ivector-plda-scoring` on a trial list, batched.

    enroll: (N_e, D) raw (not PLDA-transformed) enrolment vectors, num_utts int or (N_e,);
    test: (N_t, D) raw test vectors; enroll_idx, test_idx: (T,) int row indices of each trial.
    Each vector is transformed once; trials are scored in blocks of `block_size` (sharded over
    devices). Returns (T,) float64 log-likelihood ratios.
    """
    ef = prepare_enroll(plda, enroll, num_utts, normalize_length, simple_length_norm)
    tf = prepare_test(plda, test, normalize_length, simple_length_norm)
    return score_pairs(
        ef, tf, enroll_idx, test_idx, block_size=block_size, dtype=dtype, devices=devices
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
) -> np.ndarray:
    """Scores aligned (enroll_idx[i], test_idx[i]) pairs from prepared features -> (T,) float64."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

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
    fe = np.concatenate([ef.lin, ef.quad], axis=1)
    mesh = device_mesh(devices)
    ndev = mesh.size
    block = _round_up(min(block_size, _round_up(num, ndev)), ndev)
    out = np.empty(num)
    with _x64(dtype):
        rep = NamedSharding(mesh, P())
        shard = NamedSharding(mesh, P("data"))
        fe_d = jax.device_put(fe.astype(dtype), rep)
        ce_d = jax.device_put(ef.const.astype(dtype), rep)
        ft_d = jax.device_put(tf.astype(dtype), rep)
        fn = _jitted("pairs")
        for start in range(0, num, block):
            stop = min(start + block, num)
            bi = jax.device_put(_pad_rows(ie[start:stop], block), shard)
            bt = jax.device_put(_pad_rows(it[start:stop], block), shard)
            out[start:stop] = np.asarray(fn(fe_d, ce_d, ft_d, bi, bt))[: stop - start]
    return out


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
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yields (row0, col0, scores) for every enrolment-block x test-block of the dense matrix.

    ef: `EnrollFeatures` of N_e enrolments; tf: (N_t, 2D) `test_features`.
    block_size: rows (and columns) per block, or (rows, cols). scores is a host (rows, cols)
    float array (`dtype`). Enrolment rows are sharded over `devices`.
    enroll_stats / test_stats: optional cohort statistics (`xvjax.backend.snorm.CohortStats`,
    (N_e,) and (N_t,)); with both the blocks are S-normalised, with one Z- or T-normalised, in a
    second jitted step on the device (kept separate from the GEMM, which XLA fuses badly on CPU).
    """
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    be, bt = (block_size, block_size) if isinstance(block_size, int) else block_size
    fe, ce, ft, ct = _split_features(ef, tf)
    num_e, num_t = fe.shape[0], ft.shape[0]
    mesh = device_mesh(devices)
    ndev = mesh.size
    be = _round_up(min(be, _round_up(num_e, ndev)), ndev)
    bt = min(bt, num_t)
    fn = _jitted("block")
    norm_fn = _jitted("normalize")
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
    with _x64(dtype):
        rows = NamedSharding(mesh, P("data", None))
        rows1 = NamedSharding(mesh, P("data"))
        rep = NamedSharding(mesh, P())
        test_blocks = [
            (
                t0,
                jax.device_put(_pad_rows(ft[t0 : t0 + bt], bt).astype(dtype), rep),
                jax.device_put(_pad_rows(ct[t0 : t0 + bt], bt).astype(dtype), rep),
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
            ne = min(be, num_e - e0)
            fe_d = jax.device_put(_pad_rows(fe[e0 : e0 + be], be).astype(dtype), rows)
            ce_d = jax.device_put(_pad_rows(ce[e0 : e0 + be], be).astype(dtype), rows1)
            if use_norm:
                me_d = jax.device_put(_pad_rows(me[e0 : e0 + be], be).astype(dtype), rows1)
                se_d = jax.device_put(_pad_rows(se[e0 : e0 + be], be, 1.0).astype(dtype), rows1)
            for t0, ft_d, ct_d in test_blocks:
                nt = min(bt, num_t - t0)
                blk = fn(fe_d, ce_d, ft_d, ct_d)
                if use_norm:
                    blk = norm_fn(blk, me_d, se_d, *t_stats[t0], *weights)
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
    ef = EnrollFeatures(e, np.zeros_like(e), np.zeros(e.shape[0]))
    tf = np.concatenate([t, t * t], axis=1)
    out = np.empty((e.shape[0], t.shape[0]), dtype=dtype)
    for r0, c0, blk in iter_score_blocks(
        ef, tf, block_size=block_size, dtype=dtype, devices=devices
    ):
        out[r0 : r0 + blk.shape[0], c0 : c0 + blk.shape[1]] = blk
    return out
