"""Kaldi's energy VAD (`compute-vad`, `ComputeVadEnergy` in ivector/voice-activity-detection.cc), numpy.

Frame t is voiced iff, among the frames t-context .. t+context inside the utterance, at least
`proportion_threshold` of them have log-energy (feature column 0) above
`vad_energy_threshold + vad_energy_mean_scale * mean(log-energy of the utterance)`.
`compute_vad_numpy` is one utterance; the batched jnp version is `xvjax.features.frontend.compute_vad`.
This module does not import JAX, so `compute-vad` starts without it.
"""

from __future__ import annotations

import numpy as np

from xvjax.features.options import VadOptions


def compute_vad_numpy(feats: np.ndarray, opts: VadOptions) -> np.ndarray:
    """One utterance, (frames, dim) -> (frames,) float32 decisions, 1.0 voiced / 0.0 unvoiced."""
    log_energy = feats[:, 0].astype(np.float32)
    t = len(log_energy)
    if t == 0:
        return np.zeros(0, np.float32)
    threshold = np.float32(opts.vad_energy_threshold)
    if opts.vad_energy_mean_scale != 0.0:
        threshold = np.float32(
            threshold
            + np.float32(np.float32(opts.vad_energy_mean_scale) * log_energy.sum()) / np.float32(t)
        )
    above = (log_energy > threshold).astype(np.int64)
    c = opts.vad_frames_context
    csum = np.concatenate([[0], np.cumsum(above)])
    lo = np.maximum(np.arange(t) - c, 0)
    hi = np.minimum(np.arange(t) + c + 1, t)
    num = csum[hi] - csum[lo]
    den = hi - lo
    voiced = num.astype(np.float32) >= den.astype(np.float32) * np.float32(
        opts.vad_proportion_threshold
    )
    return voiced.astype(np.float32)
