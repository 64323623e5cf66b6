"""Audio at another sample rate than the features need: band-limited polyphase resampling.

scipy's `resample_poly` (the rates' ratio reduced by their gcd) in float64, back to float32 at the
input's int16 scale. Kaldi's recipes resample with sox, so results are close to, not bit-identical
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
