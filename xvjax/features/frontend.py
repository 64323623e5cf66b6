"""Waveforms -> x-vector network input, as Kaldi's recipes prepare it, in one jit-able function.

Kaldi (`sid/nnet3/xvector/extract_xvectors.sh`, `prepare_feats_for_egs.sh`):
    compute-mfcc-feats | apply-cmvn-sliding --norm-vars=false --center=true --cmn-window=300
                       | select-voiced-frames (compute-vad on the raw MFCC)
`prepare_feats` does the same on a padded batch. Voiced-frame selection shortens utterances, so
the output is compacted: the voiced frames of each utterance are moved to the front in order (a
stable sort of the frame indices by "unvoiced"), the rest is zero, and new lengths are returned.
Shapes stay static, so it can sit inside a jitted training or extraction step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from xvjax.features.cmvn import sliding_cmn
from xvjax.features.mfcc import compute_mfcc, num_frames
from xvjax.features.options import (
    RECIPE_CMN,
    RECIPE_VAD,
    CmnOptions,
    MfccOptions,
    VadOptions,
)
from xvjax.features.vad import compute_vad


def select_voiced_frames(feats: jax.Array, num_frames: jax.Array, voiced: jax.Array):
    """Compacts the voiced frames of each utterance to the front (Kaldi's `select-voiced-frames`).

    Args:
      feats: (batch, frames, dim).
      num_frames: (batch,) valid frames.
      voiced: (batch, frames) VAD decisions (> 0.5 is voiced).
    Returns:
      feats (batch, frames, dim) with voiced frames first (zero after), and (batch,) int32 counts.
    """
    total = feats.shape[1]
    keep = (voiced > 0.5) & (jnp.arange(total)[None, :] < num_frames[:, None])
    order = jnp.argsort(jnp.where(keep, 0, 1), axis=1, stable=True)
    out = jnp.take_along_axis(feats, order[..., None], axis=1)
    counts = jnp.sum(keep, axis=1).astype(jnp.int32)
    out = jnp.where((jnp.arange(total)[None, :] < counts[:, None])[..., None], out, 0.0)
    return out, counts


def waveform_ok(waveforms: jax.Array, lengths: jax.Array) -> jax.Array:
    """(batch,) bool: every valid sample is finite (NaN/inf audio must not give features)."""
    valid = jnp.arange(waveforms.shape[1])[None, :] < lengths[:, None]
    return jnp.all(jnp.isfinite(waveforms) | ~valid, axis=1)


@functools.partial(jax.jit, static_argnames=("mfcc_opts", "vad_opts", "cmn_opts", "fft_impl"))
def prepare_feats(
    waveforms: jax.Array,
    lengths: jax.Array,
    mfcc_opts: MfccOptions,
    vad_opts: VadOptions = RECIPE_VAD,
    cmn_opts: CmnOptions = RECIPE_CMN,
    key: jax.Array | None = None,
    fft_impl: str = "kaldi",
):
    """MFCC -> sliding CMN -> energy-VAD voiced frames, for a padded batch of waveforms.

    Args:
      waveforms: (batch, samples) float32 in int16 scale (as Kaldi reads 16-bit WAV).
      lengths: (batch,) int valid samples per utterance.
      mfcc_opts: `MfccOptions` (static), e.g. `VOXCELEB_MFCC` or
        `MfccOptions.from_config_file("conf/mfcc.conf")`; must use energy (VAD reads column 0).
      vad_opts, cmn_opts: static; default to the x-vector recipes' settings.
      key: PRNG key, required iff `mfcc_opts.dither != 0` (Kaldi dithers by default).
      fft_impl: "kaldi" (default, Kaldi's float32 FFT replayed on the host via pure_callback:
        same numbers as Kaldi) or "xla" (pure XLA, for GPU/TPU; float-rounding differences only).
    Returns:
      feats: (batch, frames, num_ceps) float32, frames = `num_frames(samples, mfcc_opts)`; the
        voiced frames of utterance b are feats[b, :lengths[b]], the rest is zero.
      lengths: (batch,) int32 voiced frames per utterance. 0 means "no usable frames": no voiced
        frame (Kaldi logs and skips it), shorter than one frame, or non-finite samples.
    """
    lengths = lengths.astype(jnp.int32)
    ok = waveform_ok(waveforms, lengths)
    clean = jnp.where(jnp.isfinite(waveforms), waveforms, 0.0)
    mfcc, nf = compute_mfcc(clean, lengths, mfcc_opts, key, fft_impl)
    nf = jnp.where(ok, nf, 0)
    cmn = sliding_cmn(mfcc, nf, cmn_opts)
    voiced = compute_vad(mfcc, nf, vad_opts)
    return select_voiced_frames(cmn, nf, voiced)


def max_frames(num_samples: int, mfcc_opts: MfccOptions) -> int:
    """Frames axis length of `prepare_feats` for a waveform batch padded to `num_samples`."""
    return int(num_frames(num_samples, mfcc_opts))
