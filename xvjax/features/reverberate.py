"""Kaldi's `wav-reverberate` (`src/featbin/wav-reverberate.cc`) on one waveform, in numpy.

For each output channel:
1. `power_before` = mean square of the input channel;
2. with `--impulse-response` (samples / 2^15): the input is convolved with the RIR (full length
   n + rir_len - 1); the signal power used for SNRs becomes the *early reverberation* energy,
   the mean square of the input convolved with the RIR from 1 ms before its peak to 50 ms after;
   with `--shift-output` the output starts at the RIR's peak index;
3. each `--additive-signals` noise is scaled to `--snrs[i]` dB below that signal power (noise
   power over the noise's own length, plus FLT_EPSILON) and added from `--start-times[i]`
   seconds, never extending the signal;
4. `--volume` > 0 scales the result, else `--normalize-output` scales it back to `power_before`
   (power over the whole, possibly longer, reverberated signal);
5. the output has `--duration` seconds if > 0 (trimmed, or the signal repeated to fill it),
   else the input's length with `--shift-output`, else n + rir_len - 1 (Kaldi then repeats the
   first n reverberated samples to fill it, rather than keeping the reverberation tail; without
   a RIR that length is n - 1).

The scalar formulas (`snr_gain`, `power_gain`) and the FFT convolution are the ones the batched
augmentation (`augment.py`, jnp) uses, passed `xp=jnp` there. Samples stay at the 16-bit scale;
Kaldi's float32 arithmetic is followed where it decides sample positions (the early-reverb window,
noise offsets), the FFT is computed in float64.
"""

from __future__ import annotations

import numpy as np

from xvjax.errors import XvjaxError

FLT_EPSILON = float(np.finfo(np.float32).eps)
RIR_SCALE = 1.0 / (1 << 15)  # Kaldi scales RIR samples (read as int16 values) by 2^-15
_F32 = np.float32


def fft_size(n: int) -> int:
    """The power of two >= n used for an FFT convolution of total length n."""
    return 1 << max(int(n) - 1, 1).bit_length()


def fft_convolve(x, h, size: int, xp=np):
    """Linear convolution of x and h through FFTs of `size` (>= len(x) + len(h) - 1 for the full
    convolution); returns `size` samples."""
    return xp.fft.irfft(xp.fft.rfft(x, size) * xp.fft.rfft(h, size), size)


def snr_gain(signal_power, noise_power, snr_db, xp=np):
    """The gain that puts a noise of `noise_power` `snr_db` dB below `signal_power`."""
    return xp.sqrt(10.0 ** (-snr_db / 10.0) * signal_power / noise_power)


def power_gain(power_before, power_after, xp=np):
    """The gain that brings a signal of `power_after` back to `power_before`."""
    return xp.sqrt(power_before / power_after)


def mean_square(x: np.ndarray) -> np.float32:
    """Kaldi's `VecVec(x, x) / x.Dim()` (float)."""
    x = np.asarray(x, np.float64)
    return _F32(_F32(x @ x) / _F32(len(x)))


def convolve(signal: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """FFTbasedBlockConvolveSignals: the full convolution, float32 (len n + len(rir) - 1)."""
    n = len(signal) + len(rir) - 1
    out = fft_convolve(np.asarray(signal, np.float64), np.asarray(rir, np.float64), fft_size(n))
    return out[:n].astype(_F32)


def early_reverb_energy(rir: np.ndarray, signal: np.ndarray, rate: float) -> np.float32:
    """Power of the signal convolved with the RIR's early part (1 ms before to 50 ms after the
    peak), Kaldi's reference power for SNRs after reverberation."""
    peak = int(np.argmax(rir))
    start = int(_F32(peak) - _F32(0.001) * _F32(rate))
    end = int(_F32(peak) + _F32(0.05) * _F32(rate))
    start, end = max(start, 0), min(end, len(rir))
    return mean_square(convolve(signal, rir[start:end]))


def add_noise(signal: np.ndarray, noise: np.ndarray, snr_db: float, start_time: float,
              rate: float, signal_power: float) -> None:  # fmt: skip
    """AddNoise: `noise` scaled to `snr_db` below `signal_power`, added in place from
    `start_time` seconds (clipped at the end of `signal`)."""
    noise_power = _F32(mean_square(noise) + _F32(FLT_EPSILON))
    gain = _F32(snr_gain(float(signal_power), float(noise_power), float(_F32(snr_db))))
    offset = int(_F32(start_time) * _F32(rate))
    length = min(len(signal) - offset, len(noise))
    if length > 0:
        signal[offset : offset + length] += (noise[:length] * gain).astype(_F32)


def reverberate_channel(
    signal: np.ndarray,
    rate: float,
    rir: np.ndarray | None = None,
    rir_rate: float | None = None,
    noises: list[np.ndarray] = (),
    snrs: list[float] = (),
    start_times: list[float] = (),
    shift_output: bool = True,
    normalize_output: bool = True,
    volume: float = 0.0,
    num_output: int | None = None,
) -> np.ndarray:
    """One output channel of wav-reverberate (module docstring). `rir` in 16-bit sample units
    (scaled by 2^-15 here), `num_output` samples (default: as wav-reverberate picks)."""
    x = np.asarray(signal, _F32).copy()
    n = len(x)
    power_before = mean_square(x)
    early = power_before
    shift = 0
    if rir is not None:
        h = (np.asarray(rir, _F32) * _F32(RIR_SCALE)).astype(_F32)
        early = early_reverb_energy(h, x, rir_rate if rir_rate is not None else rate)
        x = convolve(x, h)
        if shift_output:
            shift = int(np.argmax(h))
    if not len(noises) == len(snrs) == len(start_times):
        raise XvjaxError(
            f"{len(noises)} additive signals need as many --snrs and --start-times "
            f"(got {len(snrs)} and {len(start_times)})"
        )
    for noise, snr, start in zip(noises, snrs, start_times, strict=True):
        add_noise(x, np.asarray(noise, _F32), snr, start, rate, early)
    power_after = mean_square(x)
    if volume > 0:
        x = (x * _F32(volume)).astype(_F32)
    elif normalize_output:
        x = (x * _F32(power_gain(float(power_before), float(power_after)))).astype(_F32)
    if num_output is None:
        rir_length = 0 if rir is None else len(rir)
        num_output = output_length(n, rate, 0.0, shift_output, rir_length)
    if num_output <= n:
        return x[shift : shift + num_output].copy()
    base = x[shift : shift + n]
    reps = -(-num_output // max(len(base), 1))
    return np.tile(base, reps)[:num_output].astype(_F32)


def output_length(num_input: int, rate: float, duration: float, shift_output: bool,
                  rir_length: int) -> int:  # fmt: skip
    """wav-reverberate's output length: `--duration` seconds if > 0, else the input's length
    with --shift-output, else input + RIR - 1 (one sample less than the input without a RIR, as
    Kaldi computes it)."""
    if duration > 0:
        return int(_F32(rate) * _F32(duration))
    return num_input if shift_output else num_input + rir_length - 1
