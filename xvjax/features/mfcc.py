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
from xvjax.features import kaldi_fft
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


def _extended(waveforms: jax.Array, lengths: jax.Array, opts: FrameOptions) -> jax.Array:
    """(batch, span) samples first_sample_offset .. the last frame's end of each row, reflected
    at the edges as Kaldi's `ExtractWindow` does: frame t is ext[:, t*shift : t*shift + length]."""
    batch, total = waveforms.shape
    shift, length = opts.window_shift, opts.window_size
    nfr = int(num_frames(total, opts))
    ext_len = (max(nfr, 1) - 1) * shift + length  # samples the frames span
    first = first_sample_offset(opts)
    n = jnp.maximum(lengths.astype(jnp.int32), 1)[:, None]

    def reflected(idx):  # samples at (batch, k) indices, reflected into [0, n) as often as needed
        m = jnp.mod(idx, 2 * n)
        idx = jnp.minimum(jnp.where(m >= n, 2 * n - 1 - m, m), total - 1)
        return jnp.take_along_axis(waveforms, idx, axis=1)

    # ext[j] is sample first + j. Inside [0, n) that is a static shift of the waveform; only the
    # `-first` samples before 0 and the `reach` samples from n on (the farthest a frame of the
    # utterance reads) need reflecting: small gathers instead of one over the whole batch.
    reach = length + shift
    ext = jnp.pad(waveforms, ((0, 0), (max(0, -first), reach + max(0, ext_len - total))))
    ext = ext[:, max(0, first) : max(0, first) + ext_len + reach]
    if first < 0:
        ext = ext.at[:, :-first].set(reflected(jnp.arange(first, 0)[None, :] + 0 * n))
    tail = reflected(n + jnp.arange(reach)[None, :])
    put = jax.vmap(lambda row, values, at: jax.lax.dynamic_update_slice(row, values, (at,)))
    ext = put(ext, tail, jnp.minimum(n[:, 0] - first, ext_len))[:, :ext_len]
    return ext


def extract_frames(waveforms: jax.Array, lengths: jax.Array, opts: FrameOptions) -> jax.Array:
    """(batch, samples) -> (batch, frames, window_size) raw frames, Kaldi's edge reflection included.

    `frames = num_frames(samples)` for the padded length; rows past an utterance's own frame count
    hold reflected garbage and must be masked by the caller.
    """
    ext = _extended(waveforms, lengths, opts)
    nfr = int(num_frames(waveforms.shape[1], opts))
    rows = jnp.repeat(jnp.arange(ext.shape[0], dtype=jnp.int32), nfr)
    starts = jnp.tile(jnp.arange(nfr, dtype=jnp.int32) * opts.window_shift, ext.shape[0])
    frames = _cut_frames(ext, rows, starts, opts.window_size)
    return frames.reshape(ext.shape[0], nfr, opts.window_size)


def _cut_frames(ext, rows, starts, length: int):
    """(num, length) frames ext[rows[i], starts[i] : starts[i] + length]: one contiguous slice per
    frame, which XLA copies as whole rows (3-4x faster on CPU than concatenating shifted
    blocks, whose fused loop selects an operand per element)."""
    cut = lambda row, start: jax.lax.dynamic_slice(ext, (row, start), (1, length))[0]
    return jax.vmap(cut)(rows, starts)


def _mix32(h):
    """murmur3's 32-bit finaliser: a bijection of uint32 that scatters every input bit."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _cos_sin_2pi(u):
    """(cos, sin) of 2 pi u for u in [-1/2, 1/2]: Taylor series in x = 2 pi u to x^18 / x^19
    (truncation < 4e-9 on [-pi, pi]). XLA's CPU sin/cos are scalar library calls, 10x slower."""
    x = np.float32(2 * np.pi) * u
    x2 = x * x
    cos, sin = jnp.ones_like(x2), jnp.ones_like(x2)
    for k in range(9, 0, -1):  # Horner: 1 - x^2/(2k-1)/(2k) (1 - ...)
        cos = 1.0 - x2 * np.float32(1.0 / ((2 * k - 1) * (2 * k))) * cos
        sin = 1.0 - x2 * np.float32(1.0 / ((2 * k) * (2 * k + 1))) * sin
    return cos, x * sin


def key_words(key, rows: int) -> tuple[jax.Array, jax.Array]:
    """Two uint32 words per row for `frame_noise`: of each row's key ((rows,) keys), or of one
    key mixed with the row index."""
    words = jax.random.key_data(key).astype(jnp.uint32)
    if jnp.ndim(key) == 0:
        index = jnp.arange(rows, dtype=jnp.uint32)
        k0 = _mix32(words.ravel()[0] ^ _mix32(index + jnp.uint32(0x9E3779B9)))
        return k0, jnp.broadcast_to(words.ravel()[-1], (rows,))
    words = words.reshape(rows, -1)
    return words[:, 0], words[:, -1]


def frame_noise(k0, k1, frame, length: int) -> jax.Array:
    """Standard normal noise for Kaldi's dither, counter-based: (..., length) for the frames whose
    row words `k0`, `k1` and frame indices `frame` (uint32, broadcast together to `...`) are given.

    Sample i of frame t of a row depends only on (row words, t, i): a hash of the words and a
    counter gives two 24-bit uniforms per pair of samples, turned into two normals by Box-Muller.
    So a row's noise depends neither on its batch, nor on the padding, nor on how its frames are
    chunked. 25x cheaper on CPU than `jax.random.normal` (threefry + erfinv), which dominated
    make-features with dither on.
    """
    half = (length + 1) // 2
    pair = frame[..., None] * jnp.uint32(half) + jnp.arange(half, dtype=jnp.uint32)

    def uniform(offset):  # (..., half) in [0, 1)
        h = _mix32(_mix32((2 * pair + offset) ^ k0[..., None]) + k1[..., None])
        return (h >> 8).astype(jnp.float32) * np.float32(2.0**-24)

    radius = jnp.sqrt(-2.0 * jnp.log(uniform(0) + np.float32(2.0**-24)))
    cos, sin = _cos_sin_2pi(uniform(1) - 0.5)
    return jnp.concatenate([radius * cos, radius * sin], axis=-1)[..., :length]


def dither_noise(key, shape: tuple[int, int, int]) -> jax.Array:
    """(batch, frames, length) `frame_noise` of a padded batch: `key` is a PRNG key, or (batch,)
    keys (one per row: a row's noise then depends on its key only)."""
    batch, frames, length = shape
    k0, k1 = key_words(key, batch)
    index = jnp.arange(frames, dtype=jnp.uint32)[None, :]
    return frame_noise(k0[:, None], k1[:, None], index, length)


def _spectrum_xla(frames, opts: FrameOptions):
    """Pure-XLA `ProcessWindow` + FFT: (power, raw log-energy, windowed log-energy)."""
    if opts.remove_dc_offset:
        frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
    raw = jnp.log(jnp.maximum(jnp.sum(frames * frames, axis=-1), FLOAT_EPS))
    c = opts.preemphasis_coefficient
    if c != 0.0:
        frames = jnp.concatenate(
            [frames[..., :1] * (1.0 - c), frames[..., 1:] - c * frames[..., :-1]], axis=-1
        )
    frames = frames * jnp.asarray(melmod.window_function(opts))
    win = jnp.log(jnp.maximum(jnp.sum(frames * frames, axis=-1), FLOAT_EPS))
    pad = opts.padded_window_size - opts.window_size
    spec = jnp.fft.rfft(jnp.pad(frames, [(0, 0)] * (frames.ndim - 1) + [(0, pad)]), axis=-1)
    return jnp.real(spec) ** 2 + jnp.imag(spec) ** 2, raw, win


def resolve_fft_impl(fft_impl: str) -> str:
    """ "kaldi" or "xla"; "auto" is the faster of the two, XLA's on every backend measured: on
    accelerators the host kernel would be a round trip per batch, and on CPU the blocked XLA path
    takes ~1.7x fewer CPU cycles per frame than the host kernel (benchmarks/bench_features.py).
    Their x-vectors agree to 1 - cosine < 1e-9 (benchmarks/bench_fft_exactness.py)."""
    if fft_impl == "auto":
        return "xla"
    if fft_impl not in ("kaldi", "xla"):
        raise XvjaxError(f"fft_impl must be 'kaldi', 'xla' or 'auto', got '{fft_impl}'")
    return fft_impl


def _use_kaldi_kernel(opts: FrameOptions, fft_impl: str) -> bool:
    n_fft = opts.padded_window_size
    return resolve_fft_impl(fft_impl) == "kaldi" and n_fft >= 8 and not n_fft & (n_fft - 1)


def _log_energies(raw, win):
    return jnp.log(jnp.maximum(raw, FLOAT_EPS)), jnp.log(jnp.maximum(win, FLOAT_EPS))


def _need_key(opts: FrameOptions, key) -> None:
    if opts.dither != 0.0 and key is None:
        raise XvjaxError("dither != 0 needs an explicit PRNG key (or pass dither=0)")


def _kaldi_spectrum(waveforms, lengths, opts: FrameOptions, key):
    """(power, raw log-energy, windowed log-energy) of every frame of a padded batch, from the
    host kernel (framing included: no frame copies)."""
    frames = int(num_frames(waveforms.shape[1], opts))
    noise = None
    if opts.dither != 0.0:
        noise = opts.dither * dither_noise(key, (waveforms.shape[0], frames, opts.window_size))
    nf = num_frames(lengths.astype(jnp.int32), opts)
    power, raw, win = kaldi_fft.kaldi_spectrum(
        waveforms, lengths, nf, frames, first_sample_offset(opts), opts, noise
    )
    return power, *_log_energies(raw, win)


def _batch_features(waveforms, lengths, opts: MfccOptions | FbankOptions, key, fft_impl: str):
    """(batch, frames, dim) features of a padded batch (unmasked)."""
    _need_key(opts, key)
    if _use_kaldi_kernel(opts, fft_impl):
        return _features(*_kaldi_spectrum(waveforms, lengths, opts, key), opts)
    batch, total = waveforms.shape[0], int(num_frames(waveforms.shape[1], opts))
    ext = _extended(waveforms, lengths, opts)
    k0 = k1 = jnp.zeros((batch,), jnp.uint32)
    if opts.dither != 0.0:
        k0, k1 = key_words(key, batch)
    rows = jnp.repeat(jnp.arange(batch, dtype=jnp.int32), total)
    index = jnp.tile(jnp.arange(total, dtype=jnp.uint32), batch)

    def frames_of(rows, index):  # cut inside each block: no (batch, frames, length) array
        starts = index.astype(jnp.int32) * opts.window_shift
        return _cut_frames(ext, rows, starts, opts.window_size)

    k0, k1 = jnp.repeat(k0, total), jnp.repeat(k1, total)
    feats = _frame_features((rows, index), k0, k1, index, opts, fft_impl, frames_of)
    return feats.reshape(batch, total, feats.shape[-1])


def _frame_features(frames, k0, k1, index, opts, fft_impl: str, frames_of=None, block=1024):
    """(num, dim) features of raw frames (`features_of_frames`); `frames_of(*frames)` makes the
    frames of a block when given (then `frames` is a tuple of per-frame arrays). XLA's path runs
    in blocks of `block` frames (lax.map), so its intermediates (frames, FFT input and output,
    power) stay in cache instead of streaming through memory once each: 2.5x fewer CPU cycles
    per frame than whole-batch arrays."""
    frames_of = frames_of or (lambda frames: frames)
    per_frame = (frames if isinstance(frames, tuple) else (frames,)) + (k0, k1, index)
    count = len(per_frame) - 3

    def run(*args):
        spectrum = _frames_spectrum(frames_of(*args[:count]), *args[count:], opts, fft_impl)
        return _features(*spectrum, opts)

    num = k0.shape[0]
    if _use_kaldi_kernel(opts, fft_impl) or num <= block:
        return run(*per_frame)
    pad = -num % block
    blocks = [
        jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(-1, block, *a.shape[1:])
        for a in per_frame
    ]
    out = jax.lax.map(lambda args: run(*args), blocks)
    return out.reshape(-1, out.shape[-1])[:num]


def _frames_spectrum(frames, k0, k1, index, opts: FrameOptions, fft_impl: str):
    """(power, raw log-energy, windowed log-energy) of raw frames (num, window_size),
    dithered by `frame_noise(k0, k1, index)`."""
    if opts.dither != 0.0:
        frames = frames + opts.dither * frame_noise(k0, k1, index, opts.window_size)
    if not _use_kaldi_kernel(opts, fft_impl):
        return _spectrum_xla(frames, opts)
    power, raw, win = kaldi_fft.kaldi_frames_spectrum(frames, opts)
    return power, *_log_energies(raw, win)


def _features(power, raw, win, opts: MfccOptions | FbankOptions):
    """The per-frame rest of `MfccComputer`/`FbankComputer::Compute`: mel banks, log, DCT,
    lifter and energy (power (..., n_fft//2 + 1), log-energies (...)) -> features (..., dim)."""
    log_energy = raw if opts.raw_energy else win
    if isinstance(opts, FbankOptions) and not opts.use_power:
        power = jnp.sqrt(power)
    banks = jnp.asarray(melmod.mel_banks(opts, float(opts.vtln_warp)))
    mel_energies = jnp.matmul(power, banks, precision=jax.lax.Precision.HIGHEST)
    if opts.use_energy and opts.energy_floor > 0.0:
        log_energy = jnp.maximum(log_energy, float(np.log(np.float32(opts.energy_floor))))
    if isinstance(opts, FbankOptions):
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
        return feats
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
    return feats


def _mask_frames(feats, lengths, opts):
    nf = num_frames(lengths.astype(jnp.int32), opts)
    valid = jnp.arange(feats.shape[1])[None, :] < nf[:, None]
    return jnp.where(valid[..., None], feats, 0.0), nf


@functools.partial(jax.jit, static_argnames=("opts", "fft_impl"))
def compute_mfcc(
    waveforms: jax.Array, lengths: jax.Array, opts: MfccOptions, key=None, fft_impl: str = "kaldi"
):
    """MFCCs of a padded batch.

    Args:
      waveforms: (batch, samples) float32, int16 scale.
      lengths: (batch,) int valid samples per utterance.
      opts: `MfccOptions` (static).
      key: PRNG key, required iff `opts.dither != 0`; or one key per row, (batch,) (a row's
        dither then does not depend on its batch: `stream.extract_features` keys utterances).
      fft_impl: "kaldi" (default): framing, frame processing and FFT replay Kaldi's float32
        operations exactly, in a compiled host kernel via `jax.pure_callback` (vs
        compute-mfcc-feats on the fixtures: 99% of values within 1e-4, max ~2e-3 in low-energy
        frames);
        "xla": pure XLA (jnp.fft, in blocks of 1024 frames), stays on any accelerator and is
        the fastest on CPU too; differs from Kaldi by float32 rounding only (<1e-2 max, ~99.5%
        of values within 1e-3);
        "auto": the faster, "xla" (`resolve_fft_impl`).
    Returns:
      feats (batch, frames, num_ceps) float32 (zero past each utterance's end) and
      num_frames (batch,) int32.
    """
    feats = _batch_features(waveforms.astype(jnp.float32), lengths, opts, key, fft_impl)
    return _mask_frames(feats, lengths, opts)


@functools.partial(jax.jit, static_argnames=("opts", "fft_impl"))
def compute_fbank(
    waveforms: jax.Array, lengths: jax.Array, opts: FbankOptions, key=None, fft_impl: str = "kaldi"
):
    """Log-mel filterbanks (`compute-fbank-feats`) of a padded batch; same contract as `compute_mfcc`.

    Returns feats (batch, frames, num_mel_bins [+1 with use_energy]) and num_frames (batch,).
    """
    feats = _batch_features(waveforms.astype(jnp.float32), lengths, opts, key, fft_impl)
    return _mask_frames(feats, lengths, opts)


def compute_features(
    waveforms, lengths, opts: MfccOptions | FbankOptions, key=None, fft_impl: str = "kaldi"
):
    """Dispatches on the options type: MFCC or fbank."""
    opts.check()
    if isinstance(opts, FbankOptions):
        return compute_fbank(waveforms, lengths, opts, key, fft_impl)
    return compute_mfcc(waveforms, lengths, opts, key, fft_impl)


@functools.partial(jax.jit, static_argnames=("opts", "fft_impl"))
def features_of_frames(
    frames: jax.Array,
    k0: jax.Array,
    k1: jax.Array,
    index: jax.Array,
    opts: MfccOptions | FbankOptions,
    fft_impl: str = "kaldi",
):
    """MFCC or fbank features of raw frames of any utterances (`frames_numpy` cuts them): one
    compiled shape for every utterance length (`stream.extract_features` packs frames in chunks).

    Args:
      frames: (num, window_size) float32 raw frames, int16 scale.
      k0, k1: (num,) uint32 dither words of each frame's utterance (`key_words`); index: (num,)
        uint32 frame index within its utterance. A frame's features equal those of its frame
        in `compute_mfcc`/`compute_fbank` with the utterance's key (same noise and operations).
      opts: `MfccOptions` or `FbankOptions` (static); fft_impl: as `compute_mfcc`'s.
    Returns:
      (num, dim) float32 features.
    """
    return _frame_features(frames.astype(jnp.float32), k0, k1, index, opts, fft_impl)


def uses_host_kernel(opts: FrameOptions, fft_impl: str) -> bool:
    """Whether `fft_impl` computes these options' spectra with the host kernel (Kaldi's FFT
    needs a power-of-two size; other sizes take XLA's path)."""
    return _use_kaldi_kernel(opts, fft_impl)


@functools.partial(jax.jit, static_argnames=("opts",))
def _scaled_noise(k0, k1, index, opts: FrameOptions):
    return opts.dither * frame_noise(k0, k1, index, opts.window_size)


@functools.partial(jax.jit, static_argnames=("opts",))
def _features_of_spectrum(power, raw, win, opts: MfccOptions | FbankOptions):
    return _features(power, *_log_energies(raw, win), opts)


def features_of_frames_host(frames, k0, k1, index, opts: MfccOptions | FbankOptions) -> np.ndarray:
    """`features_of_frames(..., fft_impl="kaldi")` on the host, numpy in and out: the kernel is
    called directly instead of through `jax.pure_callback`, whose copies of every operand and
    result cost ~4 us per frame on CPU (2-3x the kernel's own time). The dither noise is
    `compute_mfcc`'s (scaled in XLA, added in float32 as its kernel adds it)."""
    frames = np.asarray(frames, np.float32)
    if opts.dither != 0.0:
        frames = frames + np.asarray(_scaled_noise(k0, k1, index, opts))
    power, raw, win = kaldi_fft.process_and_power(
        frames, melmod.window_function(opts), opts.padded_window_size, opts.remove_dc_offset,
        opts.preemphasis_coefficient,
    )  # fmt: skip
    return np.asarray(_features_of_spectrum(power, raw, win, opts))


def frames_numpy(samples: np.ndarray, opts: FrameOptions) -> np.ndarray:
    """(num_frames, window_size) float32 raw frames of one utterance, cut on the host as
    `extract_frames` cuts them (Kaldi's `ExtractWindow`, reflection at the edges): a read-only
    strided view (frames overlap in memory; copy it to write)."""
    n = len(samples)
    nf = int(num_frames(n, opts))
    shift, length = opts.window_shift, opts.window_size
    first = first_sample_offset(opts)
    if nf == 0:
        return np.zeros((0, length), np.float32)
    end = (nf - 1) * shift + first + length  # the frames cover samples first .. end - 1
    samples = np.asarray(samples, np.float32)
    ext = samples[max(first, 0) : min(end, n)]
    if first < 0 or end > n:  # reflect only the indices outside [0, n) (as often as needed)

        def reflected(idx):
            m = np.mod(idx, 2 * n)
            return samples[np.where(m >= n, 2 * n - 1 - m, m)]

        left = reflected(np.arange(first, min(0, end)))
        right = reflected(np.arange(max(n, first), end))
        ext = np.concatenate([left, ext, right])
    view = np.lib.stride_tricks.sliding_window_view(ext, length)[::shift]
    return view[:nf]
