"""Constant matrices of Kaldi's front end, built once in numpy: window, mel banks, DCT, lifter.

Formulas follow Kaldi's `FeatureWindowFunction` (feature-window.cc), `MelBanks` (mel-computations.cc,
computed in float32 like Kaldi's `BaseFloat` code), `ComputeDctMatrix` (matrix-functions.cc) and
`ComputeLifterCoeffs`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.features.options import FrameOptions, MelOptions


@functools.lru_cache(maxsize=32)
def window_function(opts: FrameOptions) -> np.ndarray:
    """(window_size,) float32 window, computed in double as Kaldi does."""
    n = opts.window_size
    a = 2.0 * math.pi / (n - 1)
    i = np.arange(n, dtype=np.float64)
    kind = opts.window_type
    if kind == "hanning":
        w = 0.5 - 0.5 * np.cos(a * i)
    elif kind == "sine":
        w = np.sin(0.5 * a * i)
    elif kind == "hamming":
        w = 0.54 - 0.46 * np.cos(a * i)
    elif kind == "povey":
        w = (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    elif kind == "rectangular":
        w = np.ones(n)
    elif kind == "blackman":
        c = float(np.float32(opts.blackman_coeff))
        w = c - 0.5 * np.cos(a * i) + (0.5 - c) * np.cos(2 * a * i)
    else:
        raise XvjaxError(f"invalid window type {kind}")
    return w.astype(np.float32)


def mel_scale(freq):
    """Kaldi's `MelScale` in float32: 1127 ln(1 + f/700)."""
    freq = np.asarray(freq, dtype=np.float32)
    return np.float32(1127.0) * np.log(np.float32(1.0) + freq / np.float32(700.0))


def inverse_mel_scale(mel):
    mel = np.asarray(mel, dtype=np.float32)
    return np.float32(700.0) * (np.exp(mel / np.float32(1127.0)) - np.float32(1.0))


def _vtln_warp_freq(vtln_low, vtln_high, low_freq, high_freq, warp, freq):
    """Kaldi's piecewise-linear `VtlnWarpFreq` (scalar, float32)."""
    f32 = np.float32
    if freq < low_freq or freq > high_freq:
        return freq
    if not (vtln_low > low_freq and vtln_high < high_freq):
        raise XvjaxError("vtln-low must be > low-freq and vtln-high < high-freq")
    one = f32(1.0)
    lo = f32(vtln_low * max(one, warp))
    hi = f32(vtln_high * min(one, warp))
    scale = f32(1.0 / warp)
    f_lo, f_hi = f32(scale * lo), f32(scale * hi)
    scale_left = f32((f_lo - low_freq) / (lo - low_freq))
    scale_right = f32((high_freq - f_hi) / (high_freq - hi))
    if freq < lo:
        return f32(low_freq + scale_left * (freq - low_freq))
    if freq < hi:
        return f32(scale * freq)
    return f32(high_freq + scale_right * (freq - high_freq))


@functools.lru_cache(maxsize=32)
def mel_banks(opts: MelOptions, vtln_warp: float = 1.0) -> np.ndarray:
    """(padded_window_size // 2 + 1, num_mel_bins) float32 triangular weights on the power spectrum.

    The last (Nyquist) row is zero: Kaldi's bins only cover FFT bins 0 .. N/2 - 1.
    """
    f32 = np.float32
    num_bins = opts.num_mel_bins
    if num_bins < 3:
        raise XvjaxError("must have at least 3 mel bins (--num-mel-bins)")
    sample_freq = f32(opts.sample_frequency)
    padded = opts.padded_window_size
    num_fft_bins = padded // 2
    nyquist = f32(0.5) * sample_freq
    low_freq = f32(opts.low_freq)
    high_freq = f32(opts.high_freq) if opts.high_freq > 0 else f32(nyquist + f32(opts.high_freq))
    if (
        low_freq < 0
        or low_freq >= nyquist
        or high_freq <= 0
        or high_freq > nyquist
        or high_freq <= low_freq
    ):
        raise XvjaxError(
            f"bad values in options: low-freq {float(low_freq):g} and high-freq "
            f"{float(high_freq):g} vs. nyquist {float(nyquist):g}"
        )
    fft_bin_width = f32(sample_freq / f32(padded))
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = f32((mel_high - mel_low) / f32(num_bins + 1))
    vtln_low = f32(opts.vtln_low)
    vtln_high = f32(opts.vtln_high)
    if vtln_high < 0:
        vtln_high = f32(vtln_high + nyquist)
    warp = f32(vtln_warp)
    if warp != 1.0 and (
        vtln_low < 0 or vtln_low <= low_freq or vtln_low >= high_freq or vtln_high <= 0
        or vtln_high >= high_freq or vtln_high <= vtln_low
    ):  # fmt: skip
        raise XvjaxError(
            f"bad values in options: vtln-low {vtln_low:g} and vtln-high {vtln_high:g}, "
            f"versus low-freq {low_freq:g} and high-freq {high_freq:g}"
        )
    freqs = fft_bin_width * np.arange(num_fft_bins, dtype=np.float32)
    mels = mel_scale(freqs)
    out = np.zeros((num_fft_bins + 1, num_bins), np.float32)
    for b in range(num_bins):
        left = f32(mel_low + f32(b) * delta)
        center = f32(mel_low + f32(b + 1) * delta)
        right = f32(mel_low + f32(b + 2) * delta)
        if warp != 1.0:
            left, center, right = (
                mel_scale(_vtln_warp_freq(vtln_low, vtln_high, low_freq, high_freq, warp,
                                          inverse_mel_scale(m)))
                for m in (left, center, right)
            )  # fmt: skip
        inside = (mels > left) & (mels < right)
        up = (mels - left) / f32(center - left)
        down = (right - mels) / f32(right - center)
        weights = np.where(mels <= center, up, down).astype(np.float32)
        if not inside.any():
            raise XvjaxError(
                f"mel bin {b} is empty: --num-mel-bins={num_bins} is too large for this FFT size"
            )
        out[:num_fft_bins, b] = np.where(inside, weights, 0.0)
    return out


@functools.lru_cache(maxsize=32)
def dct_matrix(num_ceps: int, num_bins: int) -> np.ndarray:
    """(num_bins, num_ceps) float32: the first `num_ceps` rows of Kaldi's orthonormal DCT-II, transposed."""
    n = np.arange(num_bins, dtype=np.float64)
    k = np.arange(num_ceps, dtype=np.float64)[:, None]
    m = math.sqrt(2.0 / num_bins) * np.cos(math.pi / num_bins * (n + 0.5) * k)
    m[0, :] = math.sqrt(1.0 / num_bins)
    return m.T.astype(np.float32)


@functools.lru_cache(maxsize=32)
def lifter_coeffs(num_ceps: int, cepstral_lifter: float) -> np.ndarray:
    """(num_ceps,) float32: 1 + Q/2 sin(pi i / Q)."""
    q = float(np.float32(cepstral_lifter))
    i = np.arange(num_ceps, dtype=np.float64)
    return (1.0 + 0.5 * q * np.sin(math.pi * i / q)).astype(np.float32)
