"""Kaldi-exact MFCC and log-mel filterbank features in jnp, batched over padded waveforms.

The algorithm is Kaldi's (`OfflineFeatureTpl::Compute`, `ExtractWindow`, `ProcessWindow`,
`MfccComputer::Compute`, `FbankComputer::Compute`), vectorised over (utterance, frame):

1. frames of `window_size` samples every `window_shift` samples; with `snip_edges=False` frame f is
   centred on `f*shift + shift//2` and samples outside [0, n) are reflected (`-1 -> 0`, `n -> n-1`);
2. optional dither (Gaussian, explicit PRNG key), DC removal, raw log-energy (floored at float eps),
   pre-emphasis (`x[0] -= c*x[0]`), window;
3. zero-padded real FFT, power spectrum, triangular mel banks, log (floored at float eps);
4. MFCC: orthonormal DCT, lifter, C0 replaced by log-energy (`use_energy`), HTK ordering.

Waveforms are float32 in int16 scale (as Kaldi reads 16-bit WAV), shape (batch, samples), with
`lengths` (batch,) giving each utterance's number of valid samples. Output frames past an
utterance's `num_frames` are zero.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.errors import XvjaxError
from xvjax.features import mel as melmod
from xvjax.features.options import FbankOptions, FrameOptions, MfccOptions

FLOAT_EPS = float(np.finfo(np.float32).eps)


def num_frames(num_samples, opts: FrameOptions):
    """Kaldi's `NumFrames(num_samples, opts, flush=true)`; works on ints, numpy or jnp arrays."""
    shift, length = opts.window_shift, opts.window_size
    xp = jnp if isinstance(num_samples, jax.Array) else np
    n = xp.asarray(num_samples)
    if opts.snip_edges:
        return xp.where(n < length, 0, 1 + (n - length) // shift)
    return (n + shift // 2) // shift


def first_sample_offset(opts: FrameOptions) -> int:
    """Index of the first sample of frame 0 (negative with snip_edges=False)."""
    if opts.snip_edges:
        return 0
    return opts.window_shift // 2 - opts.window_size // 2


def extract_frames(waveforms: jax.Array, lengths: jax.Array, opts: FrameOptions) -> jax.Array:
    """(batch, samples) -> (batch, frames, window_size) raw frames, Kaldi's edge reflection included.

    `frames = num_frames(samples)` for the padded length; rows past an utterance's own frame count
    hold reflected garbage and must be masked by the caller.
    """
    batch, total = waveforms.shape
    shift, length = opts.window_shift, opts.window_size
    nfr = int(num_frames(total, opts))
    pieces = -(-length // shift)  # blocks of `shift` samples one frame spans
    ext_len = (nfr + pieces - 1) * shift
    n = jnp.maximum(lengths.astype(jnp.int32), 1)[:, None]
    idx = jnp.arange(ext_len, dtype=jnp.int32)[None, :] + first_sample_offset(opts)
    m = jnp.mod(idx, 2 * n)
    idx = jnp.where(m >= n, 2 * n - 1 - m, m)
    idx = jnp.minimum(idx, total - 1)
    ext = jnp.take_along_axis(waveforms, idx, axis=1)
    blocks = ext.reshape(batch, nfr + pieces - 1, shift)
    frames = jnp.concatenate([blocks[:, p : p + nfr] for p in range(pieces)], axis=-1)
    return frames[..., :length]


def _process_frames(frames, opts: FrameOptions, key, want_raw_energy: bool):
    """Dither, DC removal, raw log-energy, pre-emphasis, window (Kaldi `ProcessWindow`)."""
    if opts.dither != 0.0:
        if key is None:
            raise XvjaxError("dither != 0 needs an explicit PRNG key (or pass dither=0)")
        frames = frames + opts.dither * jax.random.normal(key, frames.shape, frames.dtype)
    if opts.remove_dc_offset:
        frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
    raw_log_energy = None
    if want_raw_energy:
        raw_log_energy = jnp.log(jnp.maximum(jnp.sum(frames * frames, axis=-1), FLOAT_EPS))
    c = opts.preemphasis_coefficient
    if c != 0.0:
        frames = jnp.concatenate(
            [frames[..., :1] * (1.0 - c), frames[..., 1:] - c * frames[..., :-1]], axis=-1
        )
    frames = frames * jnp.asarray(melmod.window_function(opts))
    return frames, raw_log_energy


@functools.lru_cache(maxsize=16)
def _kaldi_twiddles(n_fft: int) -> np.ndarray:
    """(2, n_fft//4) float32 twiddles exp(-2 pi i k/N), k = 1.., accumulated like Kaldi's real FFT.

    Kaldi's `SplitRadixRealFft` (and `RealFft`) build exp(-2 pi i k/N) by repeated float32 complex
    multiplication; their rounding drift is the main difference between Kaldi's spectrum and an
    exact one, so it is reproduced here bit for bit.
    """
    f32 = np.float32
    angle = f32(-2.0 * np.pi / n_fft)
    root_re, root_im = f32(np.cos(angle)), f32(np.sin(angle))
    k_re, k_im = f32(1.0), f32(0.0)
    out = []
    for _ in range(1, n_fft // 4 + 1):
        tmp = f32(f32(k_re * root_re) - f32(k_im * root_im))
        k_im = f32(f32(k_re * root_im) + f32(k_im * root_re))
        k_re = tmp
        out.append((k_re, k_im))
    return np.asarray(out, np.float32).T


def _kaldi_power_spectrum(frames: jax.Array, n_fft: int) -> jax.Array:
    """(..., n_fft) real -> (..., n_fft//2 + 1) power, via Kaldi's real-FFT recombination.

    A complex FFT of half length over z[n] = x[2n] + i x[2n+1] gives B; the spectrum is
    A_k = C_k + w_k D_k with C_k = (B_k + B*_{N/2-k})/2, D_k = -i (B_k - B*_{N/2-k})/2, and
    A_{N/2-k} = conj(C_k - w_k D_k), with Kaldi's float32 twiddles w_k.
    """
    half = n_fft // 2
    z = jax.lax.complex(frames[..., 0::2], frames[..., 1::2])
    b = jnp.fft.fft(z, axis=-1)
    b_re, b_im = jnp.real(b), jnp.imag(b)
    num_k = half // 2
    k = np.arange(1, num_k + 1)
    tw = _kaldi_twiddles(n_fft)
    w_re, w_im = jnp.asarray(tw[0, :num_k]), jnp.asarray(tw[1, :num_k])
    bk_re, bk_im = b_re[..., k], b_im[..., k]
    bm_re, bm_im = b_re[..., half - k], b_im[..., half - k]
    c_re = 0.5 * (bk_re + bm_re)
    c_im = 0.5 * (bk_im - bm_im)
    d_re = 0.5 * (bk_im + bm_im)
    d_im = -0.5 * (bk_re - bm_re)
    a_re = c_re + (w_re * d_re - w_im * d_im)
    a_im = c_im + (w_re * d_im + w_im * d_re)
    ad_re = c_re + ((-w_re) * d_re - w_im * (-d_im))
    ad_im = -c_im + ((-w_re) * (-d_im) + w_im * d_re)
    lower = a_re * a_re + a_im * a_im  # bins 1 .. num_k
    upper = ad_re * ad_re + ad_im * ad_im  # bins half-1 .. half-num_k
    if half - num_k == num_k:  # the middle bin was computed once, as A_k
        upper = upper[..., :-1]
    first = (b_re[..., :1] + b_im[..., :1]) ** 2
    last = (b_re[..., :1] - b_im[..., :1]) ** 2
    return jnp.concatenate([first, lower, upper[..., ::-1], last], axis=-1)


def _power_spectrum(frames, opts: FrameOptions):
    """(..., window_size) windowed frames -> (..., padded//2 + 1) |FFT|^2, as Kaldi computes it."""
    n_fft = opts.padded_window_size
    pad = n_fft - opts.window_size
    if pad:
        frames = jnp.pad(frames, [(0, 0)] * (frames.ndim - 1) + [(0, pad)])
    if n_fft % 4 == 0:
        return _kaldi_power_spectrum(frames, n_fft)
    spec = jnp.fft.rfft(frames, axis=-1)
    return jnp.real(spec) ** 2 + jnp.imag(spec) ** 2


def _log_mel(frames, opts, key, want_raw_energy):
    frames, raw = _process_frames(frames, opts, key, want_raw_energy)
    log_energy = raw
    if opts.use_energy and not opts.raw_energy:
        log_energy = jnp.log(jnp.maximum(jnp.sum(frames * frames, axis=-1), FLOAT_EPS))
    power = _power_spectrum(frames, opts)
    if isinstance(opts, FbankOptions) and not opts.use_power:
        power = jnp.sqrt(power)
    banks = jnp.asarray(melmod.mel_banks(opts, float(opts.vtln_warp)))
    mel_energies = jnp.matmul(power, banks, precision=jax.lax.Precision.HIGHEST)
    if opts.use_energy and opts.energy_floor > 0.0:
        log_energy = jnp.maximum(log_energy, float(np.log(np.float32(opts.energy_floor))))
    return mel_energies, log_energy


def _mask_frames(feats, lengths, opts):
    nf = num_frames(lengths.astype(jnp.int32), opts)
    valid = jnp.arange(feats.shape[1])[None, :] < nf[:, None]
    return jnp.where(valid[..., None], feats, 0.0), nf


@functools.partial(jax.jit, static_argnames=("opts",))
def compute_mfcc(waveforms: jax.Array, lengths: jax.Array, opts: MfccOptions, key=None):
    """MFCCs of a padded batch.

    Args:
      waveforms: (batch, samples) float32, int16 scale.
      lengths: (batch,) int valid samples per utterance.
      opts: `MfccOptions` (static).
      key: PRNG key, required iff `opts.dither != 0`.
    Returns:
      feats (batch, frames, num_ceps) float32 (zero past each utterance's end) and
      num_frames (batch,) int32.
    """
    frames = extract_frames(waveforms.astype(jnp.float32), lengths, opts)
    mel_energies, log_energy = _log_mel(frames, opts, key, opts.use_energy and opts.raw_energy)
    log_mel = jnp.log(jnp.maximum(mel_energies, FLOAT_EPS))
    dct = jnp.asarray(melmod.dct_matrix(opts.num_ceps, opts.num_mel_bins))
    feats = jnp.matmul(log_mel, dct, precision=jax.lax.Precision.HIGHEST)
    if opts.cepstral_lifter != 0.0:
        feats = feats * jnp.asarray(melmod.lifter_coeffs(opts.num_ceps, opts.cepstral_lifter))
    if opts.use_energy:
        feats = feats.at[..., 0].set(log_energy)
    if opts.htk_compat:
        c0 = feats[..., :1] if opts.use_energy else feats[..., :1] * np.sqrt(2.0)
        feats = jnp.concatenate([feats[..., 1:], c0], axis=-1)
    return _mask_frames(feats, lengths, opts)


@functools.partial(jax.jit, static_argnames=("opts",))
def compute_fbank(waveforms: jax.Array, lengths: jax.Array, opts: FbankOptions, key=None):
    """Log-mel filterbanks (`compute-fbank-feats`) of a padded batch; same contract as `compute_mfcc`.

    Returns feats (batch, frames, num_mel_bins [+1 with use_energy]) and num_frames (batch,).
    """
    frames = extract_frames(waveforms.astype(jnp.float32), lengths, opts)
    mel_energies, log_energy = _log_mel(frames, opts, key, opts.use_energy and opts.raw_energy)
    feats = mel_energies
    if opts.use_log_fbank:
        feats = jnp.log(jnp.maximum(mel_energies, FLOAT_EPS))
    if opts.use_energy:
        energy = log_energy[..., None]
        feats = (
            jnp.concatenate([feats, energy], -1)
            if opts.htk_compat
            else jnp.concatenate([energy, feats], -1)
        )
    return _mask_frames(feats, lengths, opts)


def compute_features(waveforms, lengths, opts: MfccOptions | FbankOptions, key=None):
    """Dispatches on the options type: MFCC or fbank."""
    opts.check()
    if isinstance(opts, FbankOptions):
        return compute_fbank(waveforms, lengths, opts, key)
    return compute_mfcc(waveforms, lengths, opts, key)
