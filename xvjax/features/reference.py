"""Plain numpy front end, one utterance at a time, in float64: an independent reference for the
tests and the "numpy loop" baseline of benchmarks/bench_features.py.

It follows Kaldi's per-frame loop literally (ExtractWindow with scalar reflection, ProcessWindow,
real FFT, mel banks, log, DCT, lifter, energy), without any of the batching tricks of `mfcc.py`.
"""

from __future__ import annotations

import numpy as np

from xvjax.features import mel as melmod
from xvjax.features.options import FbankOptions, MfccOptions

EPS = float(np.finfo(np.float32).eps)


def _frame(wave: np.ndarray, f: int, opts) -> np.ndarray:
    shift, length = opts.window_shift, opts.window_size
    if opts.snip_edges:
        start = f * shift
    else:
        start = f * shift + shift // 2 - length // 2
    n = len(wave)
    if start >= 0 and start + length <= n:
        return wave[start : start + length].astype(np.float64)
    out = np.empty(length)
    for s in range(length):
        j = start + s
        while j < 0 or j >= n:
            j = -j - 1 if j < 0 else 2 * n - 1 - j
        out[s] = wave[j]
    return out


def num_frames(n: int, opts) -> int:
    shift, length = opts.window_shift, opts.window_size
    if opts.snip_edges:
        return 0 if n < length else 1 + (n - length) // shift
    return (n + shift // 2) // shift


def features_numpy(
    wave: np.ndarray, opts: MfccOptions | FbankOptions, rng: np.random.Generator | None = None
) -> np.ndarray:
    """(samples,) int16-scale waveform -> (frames, dim) float32 MFCC or fbank, Kaldi's algorithm."""
    is_fbank = isinstance(opts, FbankOptions)
    window = melmod.window_function(opts).astype(np.float64)
    banks = melmod.mel_banks(opts, float(opts.vtln_warp)).astype(np.float64)
    n_fft = opts.padded_window_size
    rows = []
    for f in range(num_frames(len(wave), opts)):
        x = _frame(wave, f, opts)
        if opts.dither != 0.0:
            x = x + opts.dither * (rng or np.random.default_rng(0)).standard_normal(len(x))
        if opts.remove_dc_offset:
            x = x - x.mean()
        log_energy = np.log(max(float(x @ x), EPS))
        c = opts.preemphasis_coefficient
        if c != 0.0:
            x = np.concatenate([[x[0] * (1 - c)], x[1:] - c * x[:-1]])
        x = x * window
        if opts.use_energy and not opts.raw_energy:
            log_energy = np.log(max(float(x @ x), EPS))
        power = np.abs(np.fft.rfft(x, n_fft)) ** 2
        if is_fbank and not opts.use_power:
            power = np.sqrt(power)
        mel = power @ banks
        if opts.use_energy and opts.energy_floor > 0:
            log_energy = max(log_energy, np.log(opts.energy_floor))
        if is_fbank:
            row = np.log(np.maximum(mel, EPS)) if opts.use_log_fbank else mel
            if opts.use_energy:
                row = (
                    np.append(row, log_energy) if opts.htk_compat else np.insert(row, 0, log_energy)
                )
        else:
            dct = melmod.dct_matrix(opts.num_ceps, opts.num_mel_bins).astype(np.float64)
            row = np.log(np.maximum(mel, EPS)) @ dct
            if opts.cepstral_lifter != 0:
                row = row * melmod.lifter_coeffs(opts.num_ceps, opts.cepstral_lifter)
            if opts.use_energy:
                row[0] = log_energy
            if opts.htk_compat:
                c0 = row[0] if opts.use_energy else row[0] * np.sqrt(2.0)
                row = np.append(row[1:], c0)
        rows.append(row)
    dim = opts.dim
    return np.asarray(rows, np.float32).reshape(-1, dim)
