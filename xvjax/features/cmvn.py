"""Sliding-window cepstral mean (and variance) normalisation, Kaldi's `apply-cmvn-sliding`, in numpy.

Window rule of Kaldi's `SlidingWindowCmnInternal` (feat/feature-functions.cc), for frame t of an
utterance of N frames, window W = cmn_window:
- center=true: [t - W//2, t - W//2 + W), shifted right if it starts before 0, then shifted left if
  it ends after N (clipped at 0): short utterances use all their frames;
- center=false: [t - W, t] (W+1 frames) once t >= W; before that [0, max(t+1, min_cmn_window)),
  clipped to N.
`sliding_cmn_numpy` is one utterance in float64 (Kaldi's own precision); the batched float32 jnp
version is `xvjax.features.frontend.sliding_cmn`. This module does not import JAX, so
`apply-cmvn-sliding` starts without it.
"""

from __future__ import annotations

import numpy as np

from xvjax.features.options import CmnOptions


def cmn_windows(num_frames, total: int, opts: CmnOptions, xp=np):
    """(batch, total) window [start, end) for each frame (Kaldi's rule); `xp` is numpy or jnp."""
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


def sliding_cmn_numpy(feats: np.ndarray, opts: CmnOptions) -> np.ndarray:
    """One utterance (frames, dim) in float64 numpy, exactly Kaldi's double-precision computation."""
    x = np.asarray(feats, np.float64)
    n = len(x)
    start, end = cmn_windows(np.array([n]), n, opts)
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
