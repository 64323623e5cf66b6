"""Audio at another sample rate than the features need: band-limited polyphase resampling.

`kaldi_resample` is Kaldi's own ResampleWaveform (what compute-mfcc-feats does with
--allow-downsample/--allow-upsample). `resample` is scipy's `resample_poly` (the rates' ratio
reduced by their gcd) in float64, back to float32 at the input's int16 scale. Kaldi's recipes resample with sox, so results are close to, not bit-identical
with, theirs. 8 kHz telephone audio upsampled to 16 kHz keeps its 0-4 kHz content and has (almost)
nothing above, which is how a wideband model sees narrowband data.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(n,) samples at `rate` Hz -> float32 samples at `target` Hz (the input itself if equal)."""
    rate, target = int(rate), int(target)
    if rate == target:
        return samples
    g = math.gcd(rate, target)
    out = signal.resample_poly(np.asarray(samples).astype(np.float64), target // g, rate // g)
    return out.astype(np.float32)


def _filter(t: np.ndarray, cutoff: float, num_zeros: int) -> np.ndarray:
    """LinearResample::FilterFunc: a Hann-windowed sinc low-pass at `cutoff` Hz (t in seconds)."""
    t = t.astype(np.float32).astype(np.float64)  # Kaldi passes the offset as a float
    inside = np.abs(t) < num_zeros / (2.0 * cutoff)
    window = np.where(inside, 0.5 * (1 + np.cos(2 * np.pi * cutoff / num_zeros * t)), 0.0)
    safe = np.where(t == 0, 1.0, t)
    sinc = np.where(t == 0, 2 * cutoff, np.sin(2 * np.pi * cutoff * t) / (np.pi * safe))
    return sinc.astype(np.float32) * window.astype(np.float32)


def kaldi_resample(samples: np.ndarray, rate: int, target: int, num_zeros: int = 6) -> np.ndarray:
    """Kaldi's ResampleWaveform (feat/resample.cc, LinearResample with flush), as
    `compute-mfcc-feats --allow-downsample/--allow-upsample` resamples: a windowed-sinc filter
    with cutoff 0.99 x half the lower rate, output samples at exact multiples of the output
    period, zeros outside the input. (n,) -> float32 at `target` Hz."""
    rate, target = int(rate), int(target)
    if rate == target:
        return np.asarray(samples, np.float32)
    x = np.asarray(samples, np.float64)
    cutoff = float(np.float32(0.99 * 0.5 * min(rate, target)))
    g = math.gcd(rate, target)
    in_unit, out_unit = rate // g, target // g
    # GetNumOutputSamples(flush=true): the last output sample strictly inside the input span
    tick = rate * target // g
    ticks = len(x) * (tick // rate)
    per_out = tick // target
    last = ticks // per_out
    if last * per_out == ticks:
        last -= 1
    num_out = max(last + 1, 0) if ticks > 0 else 0
    width = num_zeros / (2.0 * cutoff)
    firsts, weights = [], []
    for i in range(out_unit):
        t_out = i / target
        lo = math.ceil((t_out - width) * rate)
        hi = math.floor((t_out + width) * rate)
        idx = np.arange(lo, hi + 1)
        firsts.append(lo)
        weights.append(_filter(idx / rate - t_out, cutoff, num_zeros) / np.float32(rate))
    taps = max(len(w) for w in weights)
    w = np.zeros((out_unit, taps), np.float64)
    for i, wi in enumerate(weights):
        w[i, : len(wi)] = wi.astype(np.float32)
    s = np.arange(num_out)
    unit, wrapped = s // out_unit, s % out_unit
    first = np.asarray(firsts)[wrapped] + unit * in_unit
    pos = first[:, None] + np.arange(taps)[None, :]
    valid = (pos >= 0) & (pos < len(x))
    gathered = np.where(valid, x[np.clip(pos, 0, max(len(x) - 1, 0))], 0.0)
    return np.einsum("nt,nt->n", gathered, w[wrapped]).astype(np.float32)
