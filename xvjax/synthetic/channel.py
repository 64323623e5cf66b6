"""Acoustic environments for the synthetic corpus: rooms, noises, music, microphones, telephone lines.

All pure numpy/scipy, seeded by the caller's `np.random.Generator`:
- `room_impulse_response`: direct path + sparse early reflections + exponentially decaying
  two-band noise tail with a given RT60 (like the RIRS_NOISES simulated rooms, not as exact);
- `background_noise`, `music`: signals for the MUSAN-layout augmentation sets and for corrupting the
  target domain;
- `microphone`: a mild random EQ + high-pass for the clean source domain;
- `telephone`: handset EQ, 8 kHz resampling, 300-3400 Hz band limit and 8-bit mu-law companding.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from scipy import signal


def peaking_sos(freq: float, gain_db: float, q: float, rate: int) -> np.ndarray:
    """(1, 6) second-order section of a peaking EQ (RBJ audio-EQ-cookbook form)."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return np.concatenate([b / den[0], den / den[0]])[None, :]


def random_eq(rng: np.random.Generator, num_peaks: int, gain_std_db: float, lo, hi, rate):
    """(num_peaks, 6) peaking sections with log-uniform centres in [lo, hi] Hz."""
    if num_peaks == 0:
        return np.zeros((0, 6))
    return np.concatenate(
        [
            peaking_sos(
                float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
                float(rng.normal(0.0, gain_std_db)),
                float(rng.uniform(0.7, 2.5)),
                rate,
            )
            for _ in range(num_peaks)
        ]
    )


def active_power(x: np.ndarray, rate: int) -> float:
    """Mean power over the louder 20 ms frames (those within 30 dB of the loudest)."""
    n = max(1, int(0.02 * rate))
    frames = x[: len(x) // n * n].reshape(-1, n)
    p = np.mean(frames**2, axis=1)
    if p.size == 0 or p.max() <= 0:
        return float(np.mean(x**2))
    return float(np.mean(p[p > p.max() * 1e-3]))


def add_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, rate: int) -> np.ndarray:
    """speech + noise scaled so active-speech power / noise power = snr_db."""
    noise = noise[: len(speech)]
    pn = float(np.mean(noise**2)) + 1e-20
    return speech + noise * np.sqrt(active_power(speech, rate) / pn / 10 ** (snr_db / 10))


# ---------------------------------------------------------------------------------------------
# Rooms


def room_impulse_response(
    rng: np.random.Generator, rt60: float, rate: int = 16000, distance: float | None = None
) -> np.ndarray:
    """A simulated RIR (float64, peak 0.9) with the direct path at the source-mic distance delay."""
    distance = float(rng.uniform(0.8, 4.0)) if distance is None else distance
    length = int(min(1.2 * rt60 + 0.05, 1.5) * rate)
    delay = int(distance / 343.0 * rate)
    h = np.zeros(length)
    h[delay] = 1.0 / max(distance, 0.5)
    # Early reflections: a few dozen image-like taps over the first ~40 ms.
    num_early = int(rng.integers(8, 24))
    taps = delay + (rng.uniform(0.002, 0.04, num_early) * rate).astype(int)
    taps = taps[taps < length]
    h[taps] += (
        rng.choice([-1.0, 1.0], len(taps)) * rng.uniform(0.1, 0.5, len(taps)) / max(distance, 0.5)
    )
    # Late tail: high frequencies decay faster than low ones.
    start = delay + int(0.005 * rate)
    t = np.arange(length - start) / rate
    noise_lo = signal.sosfilt(
        signal.butter(2, 1500, "low", fs=rate, output="sos"), rng.standard_normal(t.size)
    )
    noise_hi = rng.standard_normal(t.size) - noise_lo
    tail = noise_lo * np.exp(-6.9 * t / rt60) + noise_hi * np.exp(-6.9 * t / (0.6 * rt60))
    # Reverberant energy grows with RT60 and distance (lower direct-to-reverberant ratio).
    tail *= 0.09 * np.sqrt(rt60 / 0.3) * np.sqrt(distance) / np.sqrt(rate / 16000)
    h[start:] += tail
    # The direct path stays the strongest tap (augmenters align on the peak, as Kaldi does).
    others = np.max(np.abs(np.delete(h, delay)))
    h[delay] = max(h[delay], 1.1 * others)
    return 0.9 * h / np.max(np.abs(h))


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """x convolved with rir, aligned on the RIR's direct path (its peak), same length and power."""
    y = signal.fftconvolve(x, rir)
    shift = int(np.argmax(np.abs(rir)))
    y = y[shift : shift + len(x)]
    return y * np.sqrt((np.mean(x**2) + 1e-20) / (np.mean(y**2) + 1e-20))


# ---------------------------------------------------------------------------------------------
# Noise and music


def colored_noise(rng: np.random.Generator, num: int, slope_db_oct: float, rate: int) -> np.ndarray:
    """Gaussian noise with a power spectrum sloping `slope_db_oct` dB per octave (unit RMS)."""
    n = sp_fft.next_fast_len(num, real=True)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec *= 10 ** (slope_db_oct * np.log2(np.maximum(f, 50.0) / 1000.0) / 20)
    x = np.fft.irfft(spec, n)[:num]
    return x / (np.std(x) + 1e-12)


def background_noise(rng: np.random.Generator, num: int, rate: int, kind: str | None = None):
    """One of: colored, hum, fan, babble-like (speech-shaped, syllable-rate modulated), clicks.

    Returns (signal with unit RMS, kind).
    """
    kinds = ("colored", "hum", "fan", "modulated", "clicks")
    kind = kind or kinds[int(rng.integers(len(kinds)))]
    t = np.arange(num) / rate
    if kind == "colored":
        x = colored_noise(rng, num, float(rng.uniform(-6.0, 1.0)), rate)
    elif kind == "hum":
        base = rng.choice([50.0, 60.0])
        x = sum(
            rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
            for k in range(1, 8)
        )
        x = x + 0.05 * colored_noise(rng, num, -3.0, rate)
    elif kind == "fan":
        x = colored_noise(rng, num, -4.5, rate)
        blade = rng.uniform(80.0, 400.0)
        x = x + 0.5 * np.sin(2 * np.pi * blade * t) * (1 + 0.2 * np.sin(2 * np.pi * 0.5 * t))
    elif kind == "modulated":
        x = colored_noise(rng, num, -5.0, rate)
        mod = np.interp(
            t,
            np.arange(0, t[-1] + 0.25, 0.25),
            rng.uniform(0.1, 1.0, len(np.arange(0, t[-1] + 0.25, 0.25))),
        )
        x = x * mod
    else:  # clicks
        x = 0.02 * rng.standard_normal(num)
        pos = rng.integers(0, num, max(1, int(num / rate * rng.uniform(2, 10))))
        for p in pos:
            n = min(num - p, int(0.01 * rate))
            x[p : p + n] += (
                rng.uniform(0.3, 1.0)
                * np.exp(-np.arange(n) / (0.002 * rate))
                * rng.standard_normal(n)
            )
    x = np.asarray(x, dtype=np.float64)
    return x / (np.std(x) + 1e-12), kind


def music(rng: np.random.Generator, num: int, rate: int) -> np.ndarray:
    """Chords, a bass line and percussion at a random tempo and key (unit-RMS float64)."""
    t = np.arange(num) / rate
    beat = 60.0 / rng.uniform(70, 150)
    key = 220.0 * 2 ** (rng.integers(-5, 7) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    out = np.zeros(num)
    num_beats = int(np.ceil(t[-1] / beat)) + 1
    harmonics = np.arange(1, 7)
    timbre = rng.uniform(0.3, 0.9) ** harmonics
    for b in range(num_beats):
        s = int(b * beat * rate)
        if s >= num:
            break
        n = min(num - s, int(beat * 2 * rate))
        tt = np.arange(n) / rate
        env = np.exp(-tt / (beat * rng.uniform(0.4, 1.2))) * (1 - np.exp(-tt / 0.01))
        if b % 2 == 0:  # chord every other beat
            root = scale[rng.integers(7)]
            for step in (0, 2, 4):
                idx = (np.searchsorted(scale, root) + step) % 7
                f = key * 2 ** (scale[idx] / 12)
                out[s : s + n] += (
                    env
                    * (timbre[:, None] * np.sin(2 * np.pi * f * harmonics[:, None] * tt)).sum(0)
                    * 0.3
                )
            fb = key / 2 * 2 ** (root / 12)
            out[s : s + n] += env * np.sin(2 * np.pi * fb * tt) * 0.6
        # Percussion: kick on even beats, hi-hat noise every beat.
        m = min(n, int(0.15 * rate))
        tk = np.arange(m) / rate
        if b % 2 == 0:
            out[s : s + m] += (
                0.8 * np.sin(2 * np.pi * (50 + 80 * np.exp(-tk / 0.03)) * tk) * np.exp(-tk / 0.05)
            )
        hat = rng.standard_normal(m) * np.exp(-tk / 0.01)
        out[s : s + m] += 0.15 * np.diff(hat, prepend=0.0)
    return out / (np.std(out) + 1e-12)


# ---------------------------------------------------------------------------------------------
# Microphones and telephone lines


def microphone(rng: np.random.Generator, x: np.ndarray, rate: int) -> np.ndarray:
    """A mild recording chain: high-pass at 50-120 Hz and two small random EQ peaks."""
    sos = np.concatenate(
        [
            signal.butter(2, float(rng.uniform(50, 120)), "high", fs=rate, output="sos"),
            random_eq(rng, 2, 1.5, 200.0, 6000.0, rate),
        ]
    )
    return signal.sosfilt(sos, x)


_TELEPHONE_BAND_SOS = signal.ellip(6, 0.5, 70, [300.0, 3400.0], "bandpass", fs=8000, output="sos")


def handset(rng: np.random.Generator, x: np.ndarray, rate: int, eq_db: float = 5.0) -> np.ndarray:
    """A random telephone handset: band edges varying around 300/3400 Hz and a bumpy response."""
    lo = float(rng.uniform(180.0, 450.0))
    hi = float(rng.uniform(2600.0, 3800.0))
    sos = np.concatenate(
        [
            signal.butter(int(rng.integers(1, 4)), [lo, hi], "bandpass", fs=rate, output="sos"),
            random_eq(rng, 3, eq_db, 300.0, 3400.0, rate),
        ]
    )
    return signal.sosfilt(sos, x)


def mu_law(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """8-bit mu-law companding and back (G.711-like quantisation) of x in [-1, 1]."""
    x = np.clip(x, -1.0, 1.0)
    c = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((c + 1) / 2 * mu) / mu * 2 - 1
    return np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu


def telephone(x16k: np.ndarray, level_db: float, out_rate: int = 8000) -> np.ndarray:
    """16 kHz signal -> 8 kHz, 300-3400 Hz band limit, RMS at level_db, mu-law; optionally back
    up to `out_rate` (16000) so wideband features can be computed from the narrowband call."""
    y = signal.resample_poly(x16k, 1, 2)
    y = signal.sosfilt(_TELEPHONE_BAND_SOS, y)
    y *= 10 ** (level_db / 20) / np.sqrt(active_power(y, 8000) + 1e-20)
    y = mu_law(np.clip(y, -1.0, 1.0))
    if out_rate != 8000:
        y = signal.resample_poly(y, out_rate // 8000, 1)
    return y
