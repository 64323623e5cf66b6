"""Pure-functional x-vector layers with Kaldi nnet3's exact forward semantics.

Frame-level activations are `(batch, frames, dim)` float32 ("NWC"); a TDNN layer is a valid
(unpadded) 1-D convolution over time, so output frame `j` of a layer spliced with offsets
`o_1 < ... < o_k` reads input frames `j + o_i - o_1`. Utterance-level activations are `(batch, dim)`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# ------------------------------------------------------------------------------------------------
# TDNN: splicing by time offsets + affine


def arithmetic_step(offsets: tuple[int, ...]) -> int | None:
    """The step d > 0 if `offsets` is increasing with constant step (a dilated conv), else None."""
    if len(offsets) == 1:
        return 1
    d = offsets[1] - offsets[0]
    if d <= 0 or any(b - a != d for a, b in zip(offsets, offsets[1:], strict=False)):
        return None
    return d


def tdnn_affine(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None, offsets: tuple[int, ...]
) -> jax.Array:
    """Kaldi `Append(Offset(x, o_1), ..., Offset(x, o_k))` followed by an affine map.

    x: (B, T, D); kernel: (k*D, out) with rows offset-major (Kaldi's `LinearParams.T`);
    returns (B, T - (max(o) - min(o)), out). Uses `lax.conv_general_dilated` (NWC) when the
    offsets are evenly spaced, otherwise splices explicitly.
    """
    k = len(offsets)
    d_in = x.shape[-1]
    step = arithmetic_step(offsets)
    if step is not None and k > 1:
        w = kernel.reshape(k, d_in, kernel.shape[-1])
        y = lax.conv_general_dilated(
            x,
            w,
            window_strides=(1,),
            padding="VALID",
            rhs_dilation=(step,),
            dimension_numbers=("NWC", "WIO", "NWC"),
        )
    else:
        y = frames_matmul(splice([(x, o) for o in offsets]) if k > 1 else x, kernel)
    if bias is not None:
        y = y + bias
    return y


@jax.custom_vjp
def frames_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`x @ kernel` for frames x (B, T, D), with the kernel gradient computed from the narrower of
    x and the output gradient transposed (XLA CPU otherwise transposes the output gradient: for
    tdnn5 of xvector_1a, 1500 wide against the input's 512, that copy was the largest non-matmul
    pass of the train step)."""
    return x @ kernel


def _frames_matmul_fwd(x, kernel):
    return x @ kernel, (x, kernel)


def _frames_matmul_bwd(res, dy):
    x, kernel = res
    # Sharded like the kernel (the contraction runs over the batch, split on a data-parallel mesh).
    out = jax.typeof(kernel).sharding
    if x.shape[-1] <= dy.shape[-1]:
        d_kernel = jnp.einsum("dbt,bto->do", jnp.transpose(x, (2, 0, 1)), dy, out_sharding=out)
    else:
        d_kernel = jnp.einsum("obt,btd->do", jnp.transpose(dy, (2, 0, 1)), x, out_sharding=out)
    return dy @ kernel.T, d_kernel


frames_matmul.defvjp(_frames_matmul_fwd, _frames_matmul_bwd)


def splice(parts: list[tuple[jax.Array, int]]) -> jax.Array:
    """Concatenates `x_i(t + o_i)` along features for every t where all parts exist.

    All parts are (B, T, D_i) aligned at the same time origin; returns
    (B, T - (max(o) - min(o)), sum D_i) whose frame 0 is time `-min(o)`.
    """
    lo = min(o for _, o in parts)
    hi = max(o for _, o in parts)
    length = parts[0][0].shape[1] - (hi - lo)
    return jnp.concatenate([x[:, o - lo : o - lo + length] for x, o in parts], axis=-1)


# ------------------------------------------------------------------------------------------------
# BatchNorm (Kaldi BatchNormComponent: no learnable scale/offset)


def batchnorm_test(
    x: jax.Array, mean: jax.Array, var: jax.Array, epsilon: float, target_rms: float
) -> jax.Array:
    """Test mode: `y = x * scale + offset`, scale = target_rms / sqrt(var + eps), offset = -mean*scale.

    x: (..., dim); mean, var: (block_dim,), dim a multiple of block_dim.
    """
    scale = target_rms * lax.rsqrt(var + epsilon)
    offset = -mean * scale
    reps = x.shape[-1] // mean.shape[0]
    return x * jnp.tile(scale, reps) + jnp.tile(offset, reps)


def batchnorm_train(
    x: jax.Array,
    mask: jax.Array | None,
    block_dim: int,
    epsilon: float,
    target_rms: float,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Training mode: normalise by the minibatch statistics over all (unmasked) rows/frames.

    x: (B, T, dim) or (B, dim); mask: same leading shape (1 = real frame) or None.
    Returns (y, mean, var, count) with mean/var (block_dim,) the biased minibatch moments
    (Kaldi's `E[x^2] - mean^2`). Differentiable in x, with a hand-written backward pass (two
    reductions and one element-wise pass; autodiff of the forward makes several more full-size
    passes, which dominate the non-matmul time of a training step on CPU).
    """
    lead = x.shape[:-1]
    m = jnp.ones(lead, x.dtype) if mask is None else mask.astype(x.dtype)
    # Each row holds dim / block_dim vectors of every block statistic.
    count = jnp.sum(m) * (x.shape[-1] // block_dim)
    y, mean, var = _batchnorm_train(x, m, block_dim, epsilon, target_rms)
    return y, mean, var, count


def _blocks(x: jax.Array, block_dim: int) -> jax.Array:
    """(..., dim / block, block), or x itself when the block is the whole dim (the usual case;
    the extra axis would make XLA materialise the activations once per shape)."""
    if block_dim == x.shape[-1]:
        return x
    return x.reshape(*x.shape[:-1], -1, block_dim)


def _row_weights(m, xb):
    """Per-row weights m (leading shape) broadcastable against the blocked activations xb."""
    return m.reshape(m.shape + (1,) * (xb.ndim - m.ndim))


def _batchnorm_moments(xb, m):
    axes = tuple(range(xb.ndim - 1))
    mw = _row_weights(m, xb)
    count = jnp.sum(m) * (xb.size // m.size // xb.shape[-1])
    mean = jnp.sum(xb * mw, axis=axes) / count
    var = jnp.sum(jnp.square(xb) * mw, axis=axes) / count - jnp.square(mean)
    return mean, jnp.maximum(var, 0.0), count


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _batchnorm_train(x, m, block_dim, epsilon, target_rms):
    return _batchnorm_train_fwd(x, m, block_dim, epsilon, target_rms)[0]


def _batchnorm_train_fwd(x, m, block_dim, epsilon, target_rms):
    xb = _blocks(x, block_dim)
    mean, var, count = _batchnorm_moments(xb, m)
    scale = target_rms * lax.rsqrt(var + epsilon)
    y = ((xb - mean) * scale).reshape(x.shape)
    return (y, mean, var), (x, m, mean, var, scale, count)


def _batchnorm_train_bwd(block_dim, epsilon, target_rms, res, cotangents):
    """y = (x - mean) * s with s = rms / sqrt(var + eps), var = E[m x^2] - mean^2:
    dx = gy s + m (g_mean + 2 g_var (x - mean)) / count, where g_var = g_var_out + ds/dvar
    sum(gy (x - mean)) (ds/dvar = -s^3 / (2 rms^2)) and g_mean = g_mean_out - s sum(gy)
    (sums over every row: padded rows are normalised too, only the statistics skip them)."""
    x, m, mean, var, scale, count = res
    gy, g_mean, g_var = cotangents
    xb, gyb = _blocks(x, block_dim), _blocks(gy, block_dim)
    axes = tuple(range(xb.ndim - 1))
    centred = xb - mean
    g_var = g_var - 0.5 * scale**3 / target_rms**2 * jnp.sum(gyb * centred, axis=axes)
    g_var = jnp.where(var > 0.0, g_var, 0.0)  # the forward clamps var at 0
    g_mean = g_mean - scale * jnp.sum(gyb, axis=axes)
    mw = _row_weights(m, xb)
    dx = gyb * scale + mw * (g_mean + 2.0 * g_var * centred) / count
    return dx.reshape(x.shape), jnp.zeros_like(m)


_batchnorm_train.defvjp(_batchnorm_train_fwd, _batchnorm_train_bwd)


# ------------------------------------------------------------------------------------------------
# Statistics extraction + pooling (StatisticsExtractionComponent + StatisticsPoolingComponent)


def pooling_frame_weights(ext: dict, pool: dict, start: int, length: int) -> np.ndarray:
    """How often each frame-level time enters the pooled statistics at output t=0.

    Frames are times `start .. start+length-1` of the extraction's input. Pooling at t=0 sums the
    extraction outputs at tau = -left_context, ..., right_context (step pooling input_period);
    extraction at tau sums its input at times t_blk, t_blk + input_period, ... < t_blk +
    output_period with t_blk = floor(tau / output_period) * output_period. Returns (length,) float32.
    """
    in_p, out_p = int(ext["input_period"]), int(ext["output_period"])
    lc, rc, pool_p = (
        int(pool["left_context"]),
        int(pool["right_context"]),
        int(pool["input_period"]),
    )
    t = np.arange(start, start + length)
    # Each time t lies in exactly one extraction block (start floor(t / out_p) * out_p); its
    # weight is how many pooled taus map to that block, if t is on the block's input grid.
    taus = np.arange(-lc, rc + 1, pool_p)
    blocks, reps = np.unique((taus // out_p) * out_p, return_counts=True)
    t_blk = (t // out_p) * out_p
    i = np.minimum(np.searchsorted(blocks, t_blk), len(blocks) - 1)
    hit = (blocks[i] == t_blk) & ((t - t_blk) % in_p == 0)
    w = np.where(hit, reps[i], 0).astype(np.float32)
    return w


def stats_pool(x: jax.Array, weights: jax.Array, ext: dict, pool: dict) -> jax.Array:
    """Pooled statistics `[log(count) x num_log_count, mean, stddev]` as Kaldi computes them.

    x: (B, T, D) frame-level input; weights: (B, T) per-frame counts (0 for frames outside the
    window or not computable / padding). Mean = sum(w x) / count; stddev =
    sqrt(max(sum(w (x - mean)^2) / count, variance_floor)) (biased; Kaldi's
    E[x^2] - mean^2 up to rounding). Returns (B, out_dim).
    """
    count = jnp.sum(weights, axis=1, keepdims=True)  # (B, 1)
    mean = jnp.einsum("bt,btd->bd", weights, x) / count
    parts = []
    n_log = int(pool.get("num_log_count_features", 0))
    if n_log:
        parts.append(jnp.broadcast_to(jnp.log(count), (x.shape[0], n_log)))
    parts.append(mean)
    if pool.get("output_stddevs", True) and ext.get("include_variance", True):
        # Two-pass (centred) variance: the same quantity as Kaldi's E[x^2] - mean^2, without the
        # float32 cancellation that makes that form depend on summation order.
        centred = jnp.square(x - mean[:, None, :])
        var = jnp.einsum("bt,btd->bd", weights, centred) / count
        parts.append(jnp.sqrt(jnp.maximum(var, float(pool.get("variance_floor", 1e-10)))))
    elif ext.get("include_variance", True) and not pool.get("output_stddevs", True):
        # Kaldi then outputs the raw second-moment averages after the means.
        parts.append(jnp.einsum("bt,btd->bd", weights, jnp.square(x)) / count)
    return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


# ------------------------------------------------------------------------------------------------
# Other nnet3 components


def sum_group(x: jax.Array, sizes: tuple[int, ...]) -> jax.Array:
    """SumGroupComponent: output i = sum of the i-th consecutive group of `sizes[i]` inputs."""
    seg = np.repeat(np.arange(len(sizes)), sizes)
    onehot = jnp.asarray(np.eye(len(sizes), dtype=np.float32)[seg])  # (in, out)
    return x @ onehot


def scale_offset(x: jax.Array, scales: jax.Array, offsets: jax.Array | None) -> jax.Array:
    """ScaleAndOffsetComponent: `y = x * scales + offsets`, tiled over blocks of len(scales)."""
    reps = x.shape[-1] // scales.shape[0]
    y = x * jnp.tile(scales, reps)
    if offsets is not None:
        y = y + jnp.tile(offsets, reps)
    return y
