"""Sliding-window cepstral mean (and variance) normalisation, Kaldi's `apply-cmvn-sliding`.

Window rule of Kaldi's `SlidingWindowCmnInternal` (feat/feature-functions.cc), for frame t of an
utterance of N frames, window W = cmn_window:
- center=true: [t - W//2, t - W//2 + W), shifted right if it starts before 0, then shifted left if
  it ends after N (clipped at 0): short utterances use all their frames;
- center=false: [t - W, t] (W+1 frames) once t >= W; before that [0, max(t+1, min_cmn_window)),
  clipped to N.
Kaldi keeps running sums in double; here the batched float32 version sums each window within
blocks of W+1 frames of utterance-mean-centred features, which keeps the error near 1e-6.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.features.options import CmnOptions


def cmn_windows(num_frames, total: int, opts: CmnOptions, xp=jnp):
    """(batch, total) window [start, end) for each frame (Kaldi's rule); works for numpy and jnp."""
    n = xp.asarray(num_frames)[:, None]
    t = xp.arange(total)[None, :]
    w = opts.cmn_window
    if opts.center:
        start = t - w // 2
        end = start + w
        end = xp.where(start < 0, end - start, end)
        start = xp.maximum(start, 0)
    else:
        start = xp.maximum(t - w, 0)
        end = xp.where(t >= w, t + 1, xp.maximum(t + 1, opts.min_cmn_window))
    over = end > n
    start = xp.where(over, xp.maximum(start - (end - n), 0), start)
    end = xp.where(over, n, end)
    return start, end


def _window_sums(x, start, end, block: int):
    """Sum of x[b, start:end] for every (b, t), with start/end (batch, total); x (batch, total, dim).

    Windows are at most `block` long, so each spans at most two blocks: the sum is a difference of
    in-block prefix sums (plus one block total), never of long prefix sums.
    """
    batch, total, dim = x.shape
    nblocks = total // block + 2
    xp_ = jnp.pad(x, ((0, 0), (0, nblocks * block - total), (0, 0)))
    blocks = xp_.reshape(batch, nblocks, block, dim)
    incl = jnp.cumsum(blocks, axis=2)
    excl = (incl - blocks).reshape(batch, nblocks * block, dim)  # sum of block up to j (exclusive)
    totals = incl[:, :, -1, :]  # (batch, nblocks, dim)

    def gather(a, idx):
        return jnp.take_along_axis(a, idx[..., None], axis=1)

    c_start, c_end = gather(excl, start), gather(excl, end)
    b_start, b_end = start // block, end // block
    tot = gather(totals, b_start)
    return jnp.where((b_start == b_end)[..., None], c_end - c_start, tot - c_start + c_end)


@functools.partial(jax.jit, static_argnames=("opts",))
def sliding_cmn(feats: jax.Array, num_frames: jax.Array, opts: CmnOptions) -> jax.Array:
    """Sliding-window CMN (and CVN with `norm_vars`) of a padded batch.

    Args:
      feats: (batch, frames, dim) float32.
      num_frames: (batch,) valid frames per utterance.
      opts: `CmnOptions` (static).
    Returns:
      (batch, frames, dim) normalised features, zero past each utterance's end.
    """
    batch, total, dim = feats.shape
    num_frames = num_frames.astype(jnp.int32)
    valid = (jnp.arange(total)[None, :] < num_frames[:, None])[..., None]
    x = jnp.where(valid, feats.astype(jnp.float32), 0.0)
    offset = jnp.sum(x, axis=1, keepdims=True) / jnp.maximum(num_frames, 1)[:, None, None]
    xc = jnp.where(valid, x - offset, 0.0)
    start, end = cmn_windows(num_frames, total, opts)
    count = jnp.maximum(end - start, 1).astype(jnp.float32)[..., None]
    block = opts.cmn_window + 1
    mean = _window_sums(xc, start, end, block) / count
    out = xc - mean
    if opts.norm_vars:
        var = _window_sums(xc * xc, start, end, block) / count - mean * mean
        var = jnp.maximum(var, 1e-10)
        out = jnp.where(count == 1.0, 0.0, out * jax.lax.rsqrt(var))
    return jnp.where(valid, out, 0.0)


def sliding_cmn_numpy(feats: np.ndarray, opts: CmnOptions) -> np.ndarray:
    """One utterance in float64 numpy, exactly Kaldi's double-precision computation."""
    x = np.asarray(feats, np.float64)
    n = len(x)
    start, end = cmn_windows(np.array([n]), n, opts, xp=np)
    start, end = start[0], end[0]
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    count = (end - start)[:, None].astype(np.float64)
    mean = (csum[end] - csum[start]) / count
    out = x - mean
    if opts.norm_vars:
        csq = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x * x, axis=0)])
        var = np.maximum((csq[end] - csq[start]) / count - mean * mean, 1e-10)
        out = np.where(count == 1, 0.0, out / np.sqrt(var))
    return out.astype(np.float32)
