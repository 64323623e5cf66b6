"""Kaldi's float32 real FFT (`SplitRadixRealFft<float>`, matrix/srfft.cc), operation for operation.

Why not `np.fft.rfft`? Kaldi's MFCCs carry the rounding of its own float32 FFT: the split-radix
butterflies with float tables, and real-FFT twiddles built by repeated float32 complex
multiplication (whose drift reaches ~1e-5). In low-energy mel bins of loud frames that rounding
moves cepstra by ~1e-3, so an exact (or differently rounded) FFT misses Kaldi's numbers by more
than the fixtures' tolerance. This module replays the same float32 operations in the same order.

Two replays give the same bits:
- `waveform_power` / `process_and_power` (what the front end runs): Kaldi's per-frame loop
  compiled by numba (strict IEEE float32: numba, unlike XLA, never contracts a*b+c into a fused
  multiply-add), 16 frames per SIMD lane group, one thread per core;
- `process_and_power_numpy`: the readable reference, vectorised over frames in numpy (arrays are
  (fft_axis, frames); every butterfly stage is a slice operation on all frames at once), checked
  against a literal transcription of Kaldi's recursion in the tests.
Sums (DC offset, energies) follow numpy's pairwise float32 order in both.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os

import jax
import numba
import numpy as np

from xvjax.features.mel import window_function
from xvjax.features.options import FrameOptions

f32 = np.float32


def _cosf(x) -> np.float32:
    return f32(np.cos(np.float64(f32(x))))


def _sinf(x) -> np.float32:
    return f32(np.sin(np.float64(f32(x))))


@functools.lru_cache(maxsize=16)
def _tables(logn: int) -> tuple[np.ndarray, ...]:
    """Kaldi's `ComputeTables` for one level: cn, -(s+c), s-c, c3n, -(s3+c3), s3-c3 (float32).

    Arrays have m/4 - 1 entries for n = 1 .. m/4-1 (the n = m/8 entry is unused, set to 0).
    """
    m = 1 << logn
    m4, m8 = m // 4, m // 8
    out = np.zeros((6, m4 - 1), np.float32)
    for n in range(1, m4):
        if n == m8:
            continue
        c, s = _cosf(n * 2 * np.pi / m), _sinf(n * 2 * np.pi / m)
        c3, s3 = _cosf(3 * n * 2 * np.pi / m), _sinf(3 * n * 2 * np.pi / m)
        out[:, n - 1] = [c, -f32(s + c), f32(s - c), c3, -f32(s3 + c3), f32(s3 - c3)]
    return tuple(out)


def _bcast(v, like):
    return np.asarray(v).reshape((-1,) + (1,) * (like.ndim - 1))


def _level_step(xr, xi, logn: int):
    """The non-recursive part of `ComputeRecursive` for k same-size problems: (k, 2^logn, M)."""
    if logn == 1:
        r0, r1, i0, i1 = xr[:, 0], xr[:, 1], xi[:, 0], xi[:, 1]
        return np.stack([r0 + r1, r0 - r1], 1), np.stack([i0 + i1, i0 - i1], 1)
    if logn == 2:
        r0, r1, r2, r3 = (xr[:, j] for j in range(4))
        i0, i1, i2, i3 = (xi[:, j] for j in range(4))
        r0, r2 = r0 + r2, r0 - r2
        i0, i2 = i0 + i2, i0 - i2
        r1, r3 = r1 + r3, r1 - r3
        i1, i3 = i1 + i3, i1 - i3
        r0, r1 = r0 + r1, r0 - r1
        i0, i1 = i0 + i1, i0 - i1
        r2, i3, i2, r3 = r2 + i3, i2 + r3, i2 - r3, r2 - i3
        return np.stack([r0, r1, r2, r3], 1), np.stack([i0, i1, i2, i3], 1)
    m = 1 << logn
    m2, m4, m8 = m // 2, m // 4, m // 8
    a, b = xr[:, :m2], xr[:, m2:]
    xr = np.concatenate([a + b, a - b], 1)
    a, b = xi[:, :m2], xi[:, m2:]
    xi = np.concatenate([a + b, a - b], 1)
    ar, br = xr[:, m2 : m2 + m4], xr[:, m2 + m4 :]
    ai, bi = xi[:, m2 : m2 + m4], xi[:, m2 + m4 :]
    ar, bi, ai, br = ar + bi, ai + br, ai - br, ar - bi
    sq = f32(np.sqrt(0.5))
    r1, i1, r2, i2 = ar[:, 1:], ai[:, 1:], br[:, 1:], bi[:, 1:]
    sp_r1, sp_i1 = sq * (r1 + i1), sq * (i1 - r1)
    sp_r2, sp_i2 = sq * (i2 - r2), -sq * (r2 + i2)
    if logn >= 4:
        cn, spcn, smcn, c3n, spc3n, smc3n = (t[None, :, None] for t in _tables(logn))
        t2 = cn * (r1 + i1)
        g_i1 = spcn * r1 + t2
        g_r1 = smcn * i1 + t2
        t2 = c3n * (r2 + i2)
        g_i2 = spc3n * r2 + t2
        g_r2 = smc3n * i2 + t2
        special = (np.arange(1, m4) == m8)[None, :, None]
        r1, i1 = np.where(special, sp_r1, g_r1), np.where(special, sp_i1, g_i1)
        r2, i2 = np.where(special, sp_r2, g_r2), np.where(special, sp_i2, g_i2)
    else:
        r1, i1, r2, i2 = sp_r1, sp_i1, sp_r2, sp_i2
    xr[:, m2 + 1 : m2 + m4], xi[:, m2 + 1 : m2 + m4] = r1, i1
    xr[:, m2 + m4 + 1 :], xi[:, m2 + m4 + 1 :] = r2, i2
    xr[:, m2], xi[:, m2] = ar[:, 0], ai[:, 0]
    xr[:, m2 + m4], xi[:, m2 + m4] = br[:, 0], bi[:, 0]
    return xr, xi


def _breadth_first(xr, xi, logn: int):
    """Kaldi's `ComputeRecursive` (decimation in frequency, bit-reversed output) on axis 0,
    reorganised by problem size: all sub-FFTs of one size in one array op.

    Each sub-problem only touches its own contiguous segment and its children are smaller, so
    processing sizes from large to small performs exactly the same float operations.
    """
    xr, xi = np.array(xr), np.array(xi)
    buckets: dict[int, list[int]] = {logn: [0]}
    for level in range(logn, 0, -1):
        offsets = buckets.get(level)
        if not offsets:
            continue
        m = 1 << level
        idx = np.asarray(offsets)[:, None] + np.arange(m)[None, :]
        xr[idx], xi[idx] = _level_step(xr[idx], xi[idx], level)
        if level >= 3:
            m2, m4 = m // 2, m // 4
            buckets.setdefault(level - 1, []).extend(offsets)
            quarters = buckets.setdefault(level - 2, [])
            quarters.extend(o + m2 for o in offsets)
            quarters.extend(o + m2 + m4 for o in offsets)
    return xr, xi


@functools.lru_cache(maxsize=16)
def _bit_reverse(logn: int) -> np.ndarray:
    n = 1 << logn
    idx = np.arange(n)
    rev = np.zeros(n, np.int64)
    for b in range(logn):
        rev |= ((idx >> b) & 1) << (logn - 1 - b)
    return rev


@functools.lru_cache(maxsize=16)
def real_fft_twiddles(n_fft: int) -> np.ndarray:
    """(2, n_fft//4) float32 exp(-2 pi i k/N), k = 1.., by Kaldi's repeated float32 multiplication."""
    angle = f32(-2.0 * np.pi / n_fft)
    root_re, root_im = _cosf(angle), _sinf(angle)
    k_re, k_im = f32(1.0), f32(0.0)
    out = []
    for _ in range(1, n_fft // 4 + 1):
        tmp = f32(f32(k_re * root_re) - f32(k_im * root_im))
        k_im = f32(f32(k_re * root_im) + f32(k_im * root_re))
        k_re = tmp
        out.append((k_re, k_im))
    return np.asarray(out, np.float32).T


def power_spectrum_numpy(frames: np.ndarray, n_fft: int) -> np.ndarray:
    """(..., n_fft) float32 real frames (n_fft a power of two >= 8) -> (..., n_fft//2 + 1) power.

    Same numbers as Kaldi's `SplitRadixRealFft<float>::Compute` + `ComputePowerSpectrum`.
    """
    frames = np.asarray(frames, np.float32)
    half = n_fft // 2
    logn = half.bit_length() - 1
    assert 1 << logn == half and logn >= 2, n_fft
    lead = frames.shape[:-1]
    x = np.ascontiguousarray(frames.reshape(-1, n_fft).T)  # (n_fft, M)
    br, bi = _breadth_first(x[0::2], x[1::2], logn)
    perm = _bit_reverse(logn)
    br, bi = br[perm], bi[perm]
    # Real-FFT recombination (k = 1 .. half/2), Kaldi's operation order.
    num_k = half // 2
    k = np.arange(1, num_k + 1)
    tw = real_fft_twiddles(n_fft)
    w_re, w_im = _bcast(tw[0, :num_k], br[:num_k]), _bcast(tw[1, :num_k], br[:num_k])
    bk_re, bk_im, bm_re, bm_im = br[k], bi[k], br[half - k], bi[half - k]
    c_re = f32(0.5) * (bk_re + bm_re)
    c_im = f32(0.5) * (bk_im - bm_im)
    d_re = f32(0.5) * (bk_im + bm_im)
    d_im = f32(-0.5) * (bk_re - bm_re)
    a_re = c_re + (w_re * d_re - w_im * d_im)
    a_im = c_im + (w_re * d_im + w_im * d_re)
    ad_re = c_re + ((-w_re) * d_re - w_im * (-d_im))
    ad_im = -c_im + ((-w_re) * (-d_im) + w_im * d_re)
    lower = a_re * a_re + a_im * a_im  # bins 1 .. num_k
    upper = ad_re * ad_re + ad_im * ad_im  # bins half-1 .. half-num_k
    if half - num_k == num_k:
        upper = upper[:-1]
    first = (br[:1] + bi[:1]) ** 2
    last = (br[:1] - bi[:1]) ** 2
    power = np.concatenate([first, lower, upper[::-1], last])
    return np.moveaxis(power, 0, -1).reshape(*lead, half + 1)


def _process_and_power_chunk(
    frames: np.ndarray,
    window: np.ndarray,
    n_fft: int,
    remove_dc_offset: bool,
    preemph: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.array(frames, np.float32)
    length = x.shape[-1]
    if remove_dc_offset:
        mean = np.add.reduce(x, axis=-1, dtype=np.float32, keepdims=True) / f32(length)
        x = x - mean
    raw_energy = np.add.reduce(x * x, axis=-1)
    if preemph != 0.0:
        c = f32(preemph)
        x[..., 1:] = x[..., 1:] - c * x[..., :-1]
        x[..., 0] = x[..., 0] - c * x[..., 0]
    x *= window
    win_energy = np.add.reduce(x * x, axis=-1)
    if n_fft > length:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (n_fft - length,), np.float32)], -1)
    return power_spectrum_numpy(x, n_fft), raw_energy.astype(f32), win_energy.astype(f32)


def process_and_power_numpy(
    frames: np.ndarray,
    window: np.ndarray,
    n_fft: int,
    remove_dc_offset: bool,
    preemph: float,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kaldi's `ProcessWindow` (after dither) + FFT + power spectrum, in strict float32.

    Args:
      frames: (..., window_size) raw (dithered) frames; processed `chunk` frames at a time so
        the butterfly temporaries stay in cache.
    Returns:
      power (..., n_fft//2 + 1), raw energy (...) (sum of squares after DC removal, before
      pre-emphasis), windowed energy (...) (of the windowed frame, for raw_energy=false); the
      caller takes the floored log.
    """
    lead = frames.shape[:-1]
    flat = np.asarray(frames, np.float32).reshape(-1, frames.shape[-1])
    power = np.empty((flat.shape[0], n_fft // 2 + 1), np.float32)
    raw = np.empty(flat.shape[0], np.float32)
    win = np.empty(flat.shape[0], np.float32)

    def work(s):
        part = _process_and_power_chunk(
            flat[s : s + chunk], window, n_fft, remove_dc_offset, preemph
        )
        power[s : s + chunk], raw[s : s + chunk], win[s : s + chunk] = part

    starts = range(0, flat.shape[0], chunk)
    workers = min(len(starts), os.cpu_count() or 1)
    if workers > 1:  # numpy releases the GIL inside its array operations
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, starts))
    else:
        for s in starts:
            work(s)
    return power.reshape(*lead, -1), raw.reshape(lead), win.reshape(lead)


# --- The compiled replay: Kaldi's per-frame loop, same operations as the numpy reference above.


@functools.lru_cache(maxsize=16)
def _plan(n_fft: int) -> tuple[np.ndarray, ...]:
    """Constants of one FFT size for `_frames_power`: the sub-problems of Kaldi's recursion as
    (level, offset) rows in the breadth-first order of `_breadth_first`, the level tables
    (level, 6, m/4) indexed by n, the real-FFT twiddles and the bit-reversal permutation."""
    logn = (n_fft // 2).bit_length() - 1
    buckets: dict[int, list[int]] = {logn: [0]}
    order = []
    for level in range(logn, 0, -1):
        offsets = buckets.get(level, [])
        order += [(level, o) for o in offsets]
        if level >= 3:
            m2, m4 = 1 << (level - 1), 1 << (level - 2)
            buckets.setdefault(level - 1, []).extend(offsets)
            buckets.setdefault(level - 2, []).extend(
                [o + m2 for o in offsets] + [o + m2 + m4 for o in offsets]
            )
    tables = np.zeros((logn + 1, 6, max(1, (1 << logn) // 4)), np.float32)
    for level in range(4, logn + 1):
        t = np.stack(_tables(level))
        tables[level, :, 1 : t.shape[1] + 1] = t
    schedule = np.asarray(order, np.int64).reshape(-1, 2)
    return schedule, tables, real_fft_twiddles(n_fft), _bit_reverse(logn)


# Frames are processed in groups of LANES: every buffer is (rows, LANES) and every operation an
# inner loop over the lanes, which LLVM turns into SIMD instructions (one frame per lane).
LANES = 16


@numba.njit(nogil=True, cache=True)
def _block_sum(a, lo, n, acc, out):
    """out[g] = numpy's float32 sum of a[lo:lo+n, g], n <= 128: 8 accumulators, then the rest."""
    lanes = a.shape[1]
    if n < 8:
        for g in range(lanes):
            out[g] = np.float32(0.0)
        for i in range(lo, lo + n):
            for g in range(lanes):
                out[g] += a[i, g]
        return
    for k in range(8):
        for g in range(lanes):
            acc[k, g] = a[lo + k, g]
    full = n - n % 8
    for i in range(lo + 8, lo + full, 8):
        for k in range(8):
            for g in range(lanes):
                acc[k, g] += a[i + k, g]
    for g in range(lanes):
        out[g] = ((acc[0, g] + acc[1, g]) + (acc[2, g] + acc[3, g])) + (
            (acc[4, g] + acc[5, g]) + (acc[6, g] + acc[7, g])
        )
    for i in range(lo + full, lo + n):
        for g in range(lanes):
            out[g] += a[i, g]


@numba.njit(nogil=True, cache=True)
def _pairwise_sum(a, n, acc, sums):
    """sums[0, g] = numpy's float32 `add.reduce` of a[:n, g]: halves (rounded down to a multiple
    of 8) until blocks of <= 128. Iterative (numba's cache cannot hold recursive functions)."""
    lanes = a.shape[1]
    todo = np.empty((64, 3), np.int64)  # (lo, n, children done?) of pending halvings
    todo[0, 0], todo[0, 1], todo[0, 2] = 0, n, 0
    top, depth = 1, 0
    while top:
        top -= 1
        lo, size, done = todo[top, 0], todo[top, 1], todo[top, 2]
        if size <= 128:
            _block_sum(a, lo, size, acc, sums[depth])
            depth += 1
        elif done:  # both halves are the last two sums (addition commutes bit for bit)
            depth -= 1
            for g in range(lanes):
                sums[depth - 1, g] = sums[depth - 1, g] + sums[depth, g]
        else:
            half = size // 2
            half -= half % 8
            todo[top, 2] = 1
            todo[top + 1, 0], todo[top + 1, 1], todo[top + 1, 2] = lo + half, size - half, 0
            todo[top + 2, 0], todo[top + 2, 1], todo[top + 2, 2] = lo, half, 0
            top += 3


@numba.njit(nogil=True, cache=True)
def _srfft(xr, xi, schedule, tables):
    """Kaldi's `ComputeRecursive` on (half, lanes) frames, in place, sub-problem by sub-problem."""
    lanes = xr.shape[1]
    sq = np.float32(np.sqrt(0.5))
    for s in range(schedule.shape[0]):
        logn, o = schedule[s, 0], schedule[s, 1]
        if logn == 1:
            for g in range(lanes):
                r0, r1, i0, i1 = xr[o, g], xr[o + 1, g], xi[o, g], xi[o + 1, g]
                xr[o, g], xr[o + 1, g] = r0 + r1, r0 - r1
                xi[o, g], xi[o + 1, g] = i0 + i1, i0 - i1
            continue
        if logn == 2:
            for g in range(lanes):
                r0, r1, r2, r3 = xr[o, g], xr[o + 1, g], xr[o + 2, g], xr[o + 3, g]
                i0, i1, i2, i3 = xi[o, g], xi[o + 1, g], xi[o + 2, g], xi[o + 3, g]
                r0, r2 = r0 + r2, r0 - r2
                i0, i2 = i0 + i2, i0 - i2
                r1, r3 = r1 + r3, r1 - r3
                i1, i3 = i1 + i3, i1 - i3
                r0, r1 = r0 + r1, r0 - r1
                i0, i1 = i0 + i1, i0 - i1
                r2, i3, i2, r3 = r2 + i3, i2 + r3, i2 - r3, r2 - i3
                xr[o, g], xr[o + 1, g], xr[o + 2, g], xr[o + 3, g] = r0, r1, r2, r3
                xi[o, g], xi[o + 1, g], xi[o + 2, g], xi[o + 3, g] = i0, i1, i2, i3
            continue
        m2, m4, m8 = 1 << (logn - 1), 1 << (logn - 2), 1 << (logn - 3)
        for j in range(o, o + m2):
            for g in range(lanes):
                a, b = xr[j, g], xr[j + m2, g]
                xr[j, g], xr[j + m2, g] = a + b, a - b
                a, b = xi[j, g], xi[j + m2, g]
                xi[j, g], xi[j + m2, g] = a + b, a - b
        q1, q2 = o + m2, o + m2 + m4
        for j in range(m4):
            if j == 0:  # (ar, ai, br, bi) <- (ar + bi, ai - br, ar - bi, ai + br)
                for g in range(lanes):
                    ar, br, ai, bi = xr[q1, g], xr[q2, g], xi[q1, g], xi[q2, g]
                    xr[q1, g], xi[q1, g] = ar + bi, ai - br
                    xr[q2, g], xi[q2, g] = ar - bi, ai + br
            elif j == m8:
                for g in range(lanes):
                    ar, br, ai, bi = xr[q1 + j, g], xr[q2 + j, g], xi[q1 + j, g], xi[q2 + j, g]
                    ar, bi, ai, br = ar + bi, ai + br, ai - br, ar - bi
                    xr[q1 + j, g], xi[q1 + j, g] = sq * (ar + ai), sq * (ai - ar)
                    xr[q2 + j, g], xi[q2 + j, g] = sq * (bi - br), -sq * (br + bi)
            else:
                t = tables[logn]
                cn, spcn, smcn = t[0, j], t[1, j], t[2, j]
                c3n, spc3n, smc3n = t[3, j], t[4, j], t[5, j]
                for g in range(lanes):
                    ar, br, ai, bi = xr[q1 + j, g], xr[q2 + j, g], xi[q1 + j, g], xi[q2 + j, g]
                    ar, bi, ai, br = ar + bi, ai + br, ai - br, ar - bi
                    t2 = cn * (ar + ai)
                    xi[q1 + j, g] = spcn * ar + t2
                    xr[q1 + j, g] = smcn * ai + t2
                    t2 = c3n * (br + bi)
                    xi[q2 + j, g] = spc3n * br + t2
                    xr[q2 + j, g] = smc3n * bi + t2


@numba.njit(nogil=True, cache=True)
def _group_power(x, length, window, remove_dc, preemph, plan, work, power, energies):
    """Kaldi's `ProcessWindow` + `SplitRadixRealFft::Compute` + `ComputePowerSpectrum` of a group
    of frames x (n_fft, lanes) (rows past `length` are zero; x is overwritten): writes power
    (n_fft/2 + 1, lanes) and energies (2, lanes) = raw and windowed energy."""
    schedule, tables, twiddles, perm = plan
    sq, xr, xi, acc, sums = work
    lanes = x.shape[1]
    half = power.shape[0] - 1
    c = np.float32(preemph)
    h = np.float32(0.5)
    if remove_dc:
        _pairwise_sum(x, length, acc, sums)
        for g in range(lanes):
            sums[0, g] = sums[0, g] / np.float32(length)
        for i in range(length):
            for g in range(lanes):
                x[i, g] = x[i, g] - sums[0, g]
    for i in range(length):
        for g in range(lanes):
            sq[i, g] = x[i, g] * x[i, g]
    _pairwise_sum(sq, length, acc, sums)
    energies[0, :] = sums[0, :]
    if c != 0:
        for i in range(length - 1, 0, -1):
            for g in range(lanes):
                x[i, g] = x[i, g] - c * x[i - 1, g]
        for g in range(lanes):
            x[0, g] = x[0, g] - c * x[0, g]
    for i in range(length):
        w = window[i]
        for g in range(lanes):
            x[i, g] = x[i, g] * w
            sq[i, g] = x[i, g] * x[i, g]
    _pairwise_sum(sq, length, acc, sums)
    energies[1, :] = sums[0, :]
    for i in range(half):
        for g in range(lanes):
            xr[i, g] = x[2 * i, g]
            xi[i, g] = x[2 * i + 1, g]
    _srfft(xr, xi, schedule, tables)
    # Real-FFT recombination (k = 1 .. half/2) and power, Kaldi's operation order.
    p0 = perm[0]
    for g in range(lanes):
        r0, i0 = xr[p0, g], xi[p0, g]
        power[0, g] = (r0 + i0) * (r0 + i0)
        power[half, g] = (r0 - i0) * (r0 - i0)
    for k in range(1, half // 2 + 1):
        pk, pm = perm[k], perm[half - k]
        w_re, w_im = twiddles[0, k - 1], twiddles[1, k - 1]
        for g in range(lanes):
            bk_re, bk_im, bm_re, bm_im = xr[pk, g], xi[pk, g], xr[pm, g], xi[pm, g]
            c_re = h * (bk_re + bm_re)
            c_im = h * (bk_im - bm_im)
            d_re = h * (bk_im + bm_im)
            d_im = -h * (bk_re - bm_re)
            a_re = c_re + (w_re * d_re - w_im * d_im)
            a_im = c_im + (w_re * d_im + w_im * d_re)
            power[k, g] = a_re * a_re + a_im * a_im
            if half - k != k:
                ad_re = c_re + ((-w_re) * d_re - w_im * (-d_im))
                ad_im = -c_im + ((-w_re) * (-d_im) + w_im * d_re)
                power[half - k, g] = ad_re * ad_re + ad_im * ad_im


@numba.njit(nogil=True, cache=True)
def _workspace(length, half):
    """x (n_fft, lanes), power (half + 1, lanes), energies (2, lanes) and `_group_power`'s work."""
    return (
        np.zeros((2 * half, LANES), np.float32),
        np.empty((half + 1, LANES), np.float32),
        np.empty((2, LANES), np.float32),
        (
            np.empty((length, LANES), np.float32),
            np.empty((half, LANES), np.float32),
            np.empty((half, LANES), np.float32),
            np.empty((8, LANES), np.float32),
            np.empty((64, LANES), np.float32),
        ),
    )


@numba.njit(nogil=True, cache=True)
def _frames_power(frames, window, remove_dc, preemph, plan, power, energies):
    """`_group_power` of frames (num, length) -> power (num, n_fft/2 + 1), energies (num, 2)."""
    num, length = frames.shape
    half = power.shape[1] - 1
    x, pw, en, work = _workspace(length, half)
    for f0 in range(0, num, LANES):
        lanes = min(LANES, num - f0)
        x[:] = 0.0
        for g in range(lanes):
            for i in range(length):
                x[i, g] = frames[f0 + g, i]
        _group_power(x, length, window, remove_dc, preemph, plan, work, pw, en)
        for g in range(lanes):
            power[f0 + g, :] = pw[:, g]
            energies[f0 + g, 0], energies[f0 + g, 1] = en[0, g], en[1, g]


@numba.njit(nogil=True, cache=True)
def _waveform_power(waves, lengths, num_frames, first, last, shift, offset, noise, window,
                    remove_dc, preemph, plan, power, energies):  # fmt: skip
    """Frames first .. last-1 of the flattened (utterance, frame) grid of `waves` (batch, samples),
    cut as Kaldi's `ExtractWindow` does (frame t starts at t*shift + offset; samples outside
    [0, n) reflect: -1 -> 0, n -> n-1), plus `noise` (batch, frames, length) when it has frames
    (dither), then `_group_power`. Frames past an utterance's `num_frames` are zero."""
    total = waves.shape[1]
    per_row = power.shape[1]
    length = window.shape[0]
    half = power.shape[2] - 1
    dither = noise.shape[1] > 0
    x, pw, en, work = _workspace(length, half)
    f0 = first
    while f0 < last:
        lanes = 0
        rows = np.empty(LANES, np.int64)
        cols = np.empty(LANES, np.int64)
        x[:] = 0.0
        while lanes < LANES and f0 < last:  # the group: the next LANES frames that have audio
            b, t = f0 // per_row, f0 % per_row
            f0 += 1
            if t >= num_frames[b]:
                power[b, t] = 0.0
                energies[b, t] = 0.0
                continue
            n = max(lengths[b], 1)
            start = t * shift + offset
            if start >= 0 and start + length <= min(n, total):
                for i in range(length):
                    x[i, lanes] = waves[b, start + i]
            else:
                for i in range(length):
                    m = (start + i) % (2 * n)
                    if m >= n:
                        m = 2 * n - 1 - m
                    x[i, lanes] = waves[b, min(m, total - 1)]
            if dither:
                for i in range(length):
                    x[i, lanes] = x[i, lanes] + noise[b, t, i]
            rows[lanes], cols[lanes] = b, t
            lanes += 1
        if lanes == 0:
            continue
        _group_power(x, length, window, remove_dc, preemph, plan, work, pw, en)
        for g in range(lanes):
            power[rows[g], cols[g], :] = pw[:, g]
            energies[rows[g], cols[g], 0], energies[rows[g], cols[g], 1] = en[0, g], en[1, g]


def _on_all_cores(work, num: int, min_chunk: int) -> None:
    """work(first, last) over [0, num) in one contiguous share per core (>= min_chunk each)."""
    workers = max(1, min(os.cpu_count() or 1, num // max(min_chunk, 1)))
    bounds = [num * i // workers for i in range(workers + 1)]
    if workers > 1:  # the kernels release the GIL (nogil)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, bounds[:-1], bounds[1:]))
    else:
        work(0, num)


def process_and_power(
    frames: np.ndarray,
    window: np.ndarray,
    n_fft: int,
    remove_dc_offset: bool,
    preemph: float,
    min_chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`process_and_power_numpy`'s contract and bits, compiled (numba), on every core.

    Args:
      frames: (..., window_size) raw (dithered) frames, n_fft a power of two >= 8.
      min_chunk: fewest frames per thread.
    Returns:
      power (..., n_fft//2 + 1), raw energy (...), windowed energy (...), float32.
    """
    half = n_fft // 2
    assert half & (half - 1) == 0 and half >= 4, n_fft
    lead = frames.shape[:-1]
    flat = np.ascontiguousarray(np.asarray(frames, np.float32).reshape(-1, frames.shape[-1]))
    window = np.ascontiguousarray(window, np.float32)
    power = np.empty((flat.shape[0], half + 1), np.float32)
    energies = np.empty((flat.shape[0], 2), np.float32)
    plan = _plan(n_fft)

    def work(s, e):
        _frames_power(flat[s:e], window, bool(remove_dc_offset), float(preemph), plan,
                      power[s:e], energies[s:e])  # fmt: skip

    _on_all_cores(work, flat.shape[0], min_chunk)
    return power.reshape(*lead, -1), energies[:, 0].reshape(lead), energies[:, 1].reshape(lead)


def waveform_power(
    waveforms: np.ndarray,
    lengths: np.ndarray,
    num_frames: np.ndarray,
    frames: int,
    shift: int,
    offset: int,
    window: np.ndarray,
    n_fft: int,
    remove_dc_offset: bool,
    preemph: float,
    noise: np.ndarray | None = None,
    min_chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Framing + `process_and_power` of a padded batch in one compiled pass (no frame copies).

    Args:
      waveforms: (batch, samples) float32; lengths, num_frames: (batch,) valid samples and frames.
      frames: frames per row of the output (`num_frames` of the padded length).
      shift, offset: frame t starts at sample t*shift + offset (Kaldi's reflection at the edges).
      window: (window_size,) float32; noise: optional (batch, frames, window_size) dither.
    Returns:
      power (batch, frames, n_fft//2 + 1), raw energy and windowed energy (batch, frames),
      zero past each utterance's own frame count.
    """
    half = n_fft // 2
    assert half & (half - 1) == 0 and half >= 4, n_fft
    waves = np.ascontiguousarray(waveforms, np.float32)
    batch = waves.shape[0]
    power = np.empty((batch, frames, half + 1), np.float32)
    energies = np.empty((batch, frames, 2), np.float32)
    window = np.ascontiguousarray(window, np.float32)
    if noise is None:
        noise = np.zeros((batch, 0, window.shape[0]), np.float32)
    noise = np.ascontiguousarray(noise, np.float32)
    lengths = np.asarray(lengths, np.int64)
    num_frames = np.asarray(num_frames, np.int64)
    plan = _plan(n_fft)

    def work(first, last):
        _waveform_power(waves, lengths, num_frames, first, last, int(shift), int(offset), noise,
                        window, bool(remove_dc_offset), float(preemph), plan, power, energies)  # fmt: skip

    _on_all_cores(work, batch * frames, min_chunk)
    return power, energies[..., 0], energies[..., 1]


def kaldi_spectrum(
    waveforms: jax.Array,
    lengths: jax.Array,
    num_frames: jax.Array,
    frames: int,
    offset: int,
    opts: FrameOptions,
    noise: jax.Array | None = None,
):
    """jit-able `waveform_power` (Kaldi's framing, `ProcessWindow`, FFT and power spectrum of a
    padded batch), run on the host through `jax.pure_callback`.

    XLA's CPU backend contracts a*b+c into fused multiply-adds (no flag turns that off), rewrites
    division by a scalar as multiplication by its reciprocal and reorders reductions, and Kaldi's
    low mel bins are sensitive to single-ulp changes of the pre-emphasised frame (pre-emphasis
    leaves them ~30 dB down), so the Kaldi-exact path is replayed on the host in strict float32.

    Args:
      waveforms (batch, samples), lengths and num_frames (batch,): the batch; frames (static):
        output frames per row; offset: first sample of frame 0 (`mfcc.first_sample_offset`).
      noise: optional (batch, frames, window_size) dither added to each frame.
    Returns:
      power (batch, frames, n_fft//2 + 1), raw and windowed energy (batch, frames) (sums of
      squares, not logs), zero past each utterance's frame count.
    """
    n_fft = opts.padded_window_size
    batch = waveforms.shape[0]
    out = (
        jax.ShapeDtypeStruct((batch, frames, n_fft // 2 + 1), np.float32),
        jax.ShapeDtypeStruct((batch, frames), np.float32),
        jax.ShapeDtypeStruct((batch, frames), np.float32),
    )
    fn = functools.partial(
        waveform_power, frames=frames, shift=opts.window_shift, offset=offset,
        window=window_function(opts), n_fft=n_fft, remove_dc_offset=opts.remove_dc_offset,
        preemph=opts.preemphasis_coefficient,
    )  # fmt: skip
    args = (waveforms.astype(np.float32), lengths.astype(np.int32), num_frames.astype(np.int32))
    if noise is not None:
        return jax.pure_callback(
            lambda w, n, nf, z: fn(w, n, nf, noise=z), out, *args, noise.astype(np.float32)
        )
    return jax.pure_callback(fn, out, *args)


def kaldi_frames_spectrum(frames: jax.Array, opts: FrameOptions):
    """jit-able `process_and_power` of raw (dithered) frames (num, window_size), on the host
    through `jax.pure_callback`: power (num, n_fft//2 + 1), raw and windowed energy (num,)
    (sums of squares), the bits `kaldi_spectrum` gives for the same frames."""
    n_fft = opts.padded_window_size
    num = frames.shape[0]
    out = (
        jax.ShapeDtypeStruct((num, n_fft // 2 + 1), np.float32),
        jax.ShapeDtypeStruct((num,), np.float32),
        jax.ShapeDtypeStruct((num,), np.float32),
    )
    fn = functools.partial(
        process_and_power, window=window_function(opts), n_fft=n_fft,
        remove_dc_offset=opts.remove_dc_offset, preemph=opts.preemphasis_coefficient,
    )  # fmt: skip
    return jax.pure_callback(fn, out, frames.astype(np.float32))
