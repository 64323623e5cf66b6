"""Kaldi's energy VAD (`compute-vad`, `ComputeVadEnergy` in ivector/voice-activity-detection.cc).

Frame t is voiced iff, among the frames t-context .. t+context inside the utterance, at least
`proportion_threshold` of them have log-energy (feature column 0) above
`vad_energy_threshold + vad_energy_mean_scale * mean(log-energy of the utterance)`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.features.options import VadOptions


@functools.partial(jax.jit, static_argnames=("opts",))
def compute_vad(feats: jax.Array, num_frames: jax.Array, opts: VadOptions) -> jax.Array:
    """Energy VAD of a padded batch.

    Args:
      feats: (batch, frames, dim) features whose column 0 is log-energy (MFCC with use_energy).
      num_frames: (batch,) valid frames per utterance.
      opts: `VadOptions` (static).
    Returns:
      (batch, frames) float32 decisions, 1.0 voiced / 0.0 unvoiced, 0 past each utterance's end.
    """
    batch, total = feats.shape[:2]
    valid = jnp.arange(total)[None, :] < num_frames[:, None]
    log_energy = jnp.where(valid, feats[..., 0].astype(jnp.float32), 0.0)
    threshold = jnp.full((batch,), np.float32(opts.vad_energy_threshold))
    if opts.vad_energy_mean_scale != 0.0:
        count = jnp.maximum(num_frames, 1).astype(jnp.float32)
        # Kaldi: threshold += scale * sum / T, evaluated left to right in float
        scaled = np.float32(opts.vad_energy_mean_scale) * jnp.sum(log_energy, axis=1)
        threshold = threshold + scaled / count
    above = ((log_energy > threshold[:, None]) & valid).astype(jnp.int32)
    c = opts.vad_frames_context
    window = jnp.ones((2 * c + 1,), jnp.int32)
    conv = jax.vmap(lambda row: jnp.convolve(row, window, mode="same"))
    num_count = conv(above)
    den_count = conv(valid.astype(jnp.int32))
    voiced = num_count.astype(jnp.float32) >= den_count.astype(jnp.float32) * np.float32(
        opts.vad_proportion_threshold
    )
    return jnp.where(valid & voiced, 1.0, 0.0).astype(jnp.float32)


def compute_vad_numpy(feats: np.ndarray, opts: VadOptions) -> np.ndarray:
    """One utterance, plain numpy (reference and CLI fallback); (frames, dim) -> (frames,)."""
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
