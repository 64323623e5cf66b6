"""Waveforms -> x-vector network input, as Kaldi's recipes prepare it, batched and jit-able in jnp.

Kaldi (`sid/nnet3/xvector/extract_xvectors.sh`, `prepare_feats_for_egs.sh`):
    compute-mfcc-feats | apply-cmvn-sliding --norm-vars=false --center=true --cmn-window=300
                       | select-voiced-frames (compute-vad on the raw MFCC)
`prepare_feats` does the same on a padded batch, from the pieces here: `sliding_cmn` (the window
rule of `xvjax.features.cmvn`), `compute_vad` (Kaldi's energy VAD, `xvjax.features.vad`) and
`select_voiced_frames`. Voiced-frame selection shortens utterances, so the output is compacted: the
voiced frames of each utterance are moved to the front in order (a stable sort of the frame indices
by "unvoiced"), the rest is zero, and new lengths are returned. Shapes stay static, so it can sit
inside a jitted training or extraction step. The host twin for one utterance whose MFCC and VAD
decisions are already computed is `xvjax.features.frontend_numpy.prepare_feats_numpy`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.features.cmvn import cmn_windows
from xvjax.features.mfcc import compute_mfcc
from xvjax.features.options import (
    RECIPE_CMN,
    RECIPE_VAD,
    CmnOptions,
    MfccOptions,
    VadOptions,
)


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
    """Sliding-window CMN (and CVN with `norm_vars`) of a padded batch (Kaldi's `apply-cmvn-sliding`).

    Kaldi keeps running sums in double; here each window is summed in float32 within blocks of W+1
    frames of utterance-mean-centred features, which keeps the error near 1e-6.

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
    start, end = cmn_windows(num_frames, total, opts, xp=jnp)
    count = jnp.maximum(end - start, 1).astype(jnp.float32)[..., None]
    block = opts.cmn_window + 1
    mean = _window_sums(xc, start, end, block) / count
    out = xc - mean
    if opts.norm_vars:
        var = _window_sums(xc * xc, start, end, block) / count - mean * mean
        var = jnp.maximum(var, 1e-10)
        out = jnp.where(count == 1.0, 0.0, out * jax.lax.rsqrt(var))
    return jnp.where(valid, out, 0.0)


@functools.partial(jax.jit, static_argnames=("opts",))
def compute_vad(feats: jax.Array, num_frames: jax.Array, opts: VadOptions) -> jax.Array:
    """Energy VAD of a padded batch (Kaldi's `compute-vad`).

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
    voiced: jax.Array | None = None,
):
    """MFCC -> sliding CMN -> energy-VAD voiced frames, for a padded batch of waveforms.

    Args:
      waveforms: (batch, samples) float32 in int16 scale (as Kaldi reads 16-bit WAV).
      lengths: (batch,) int valid samples per utterance.
      mfcc_opts: `MfccOptions` (static), e.g. `VOXCELEB_MFCC` or
        `MfccOptions.from_config_file("conf/mfcc.conf")`; must use energy (VAD reads column 0).
      vad_opts, cmn_opts: static; default to the x-vector recipes' settings.
      key: PRNG key, required iff `mfcc_opts.dither != 0` (Kaldi dithers by default).
      fft_impl: "kaldi" (default, Kaldi's float32 FFT replayed by a compiled host kernel via
        pure_callback: same numbers as Kaldi), "xla" (pure XLA, stays on GPU/TPU; float-rounding
        differences only; the fastest on CPU too) or "auto" (the faster: xla).
      voiced: optional (batch, frames) VAD decisions to select with instead of the VAD of these
        waveforms: augmented copies keep the clean signal's decisions, as Kaldi's recipes reuse
        the clean vad.scp for their augmented data.
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
    if voiced is None:
        voiced = compute_vad(mfcc, nf, vad_opts)
    return select_voiced_frames(cmn, nf, voiced)
