"""Kaldi's float32 real FFT (`SplitRadixRealFft<float>`, matrix/srfft.cc), operation for operation.

Why not `np.fft.rfft`? Kaldi's MFCCs carry the rounding of its own float32 FFT: the split-radix
butterflies with float tables, and real-FFT twiddles built by repeated float32 complex
multiplication (whose drift reaches ~1e-5). In low-energy mel bins of loud frames that rounding
moves cepstra by ~1e-3, so an exact (or differently rounded) FFT misses Kaldi's numbers by more
than the fixtures' tolerance. This module replays the same float32 operations in the same order.

Two replays give the same bits:
- `process_and_power` (what the front end runs): Kaldi's per-frame loop compiled by numba (strict
  IEEE float32: numba, unlike XLA, never contracts a*b+c into a fused multiply-add), one thread per
  core over chunks of frames;
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


@numba.njit(nogil=True, cache=True)
def _block_sum(a, lo, n):
    """numpy's float32 sum of a block of <= 128 values: 8 accumulators, then the remainder."""
    if n < 8:
        res = np.float32(0.0)
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    full = n - n % 8
    for i in range(lo + 8, lo + full, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(lo + full, lo + n):
        res += a[i]
    return res


@numba.njit(nogil=True, cache=True)
def _pairwise_sum(a, n):
    """numpy's float32 `add.reduce` of a[:n]: halves (rounded down to a multiple of 8) until blocks
    of <= 128. Iterative (numba's cache cannot hold recursive functions)."""
    todo = np.empty((64, 3), np.int64)  # (lo, n, children done?) of pending halvings
    sums = np.empty(64, np.float32)
    top, depth = 0, 0
    todo[0] = (0, n, 0)
    top = 1
    while top:
        top -= 1
        lo, size, done = todo[top]
        if size <= 128:
            sums[depth] = _block_sum(a, lo, size)
            depth += 1
        elif done:  # both halves are the last two sums (addition commutes bit for bit)
            depth -= 1
            sums[depth - 1] = sums[depth - 1] + sums[depth]
        else:
            half = size // 2
            half -= half % 8
            todo[top] = (lo, size, 1)
            todo[top + 1] = (lo + half, size - half, 0)
            todo[top + 2] = (lo, half, 0)
            top += 3
    return sums[0]


@numba.njit(nogil=True, cache=True)
def _srfft(xr, xi, schedule, tables):
    """Kaldi's `ComputeRecursive` on one frame, in place, sub-problem by sub-problem."""
    sq = np.float32(np.sqrt(0.5))
    for s in range(schedule.shape[0]):
        logn, o = schedule[s, 0], schedule[s, 1]
        if logn == 1:
            r0, r1, i0, i1 = xr[o], xr[o + 1], xi[o], xi[o + 1]
            xr[o], xr[o + 1], xi[o], xi[o + 1] = r0 + r1, r0 - r1, i0 + i1, i0 - i1
            continue
        if logn == 2:
            r0, r1, r2, r3 = xr[o], xr[o + 1], xr[o + 2], xr[o + 3]
            i0, i1, i2, i3 = xi[o], xi[o + 1], xi[o + 2], xi[o + 3]
            r0, r2 = r0 + r2, r0 - r2
            i0, i2 = i0 + i2, i0 - i2
            r1, r3 = r1 + r3, r1 - r3
            i1, i3 = i1 + i3, i1 - i3
            r0, r1 = r0 + r1, r0 - r1
            i0, i1 = i0 + i1, i0 - i1
            r2, i3, i2, r3 = r2 + i3, i2 + r3, i2 - r3, r2 - i3
            xr[o], xr[o + 1], xr[o + 2], xr[o + 3] = r0, r1, r2, r3
            xi[o], xi[o + 1], xi[o + 2], xi[o + 3] = i0, i1, i2, i3
            continue
        m2, m4, m8 = 1 << (logn - 1), 1 << (logn - 2), 1 << (logn - 3)
        for j in range(o, o + m2):
            a, b = xr[j], xr[j + m2]
            xr[j], xr[j + m2] = a + b, a - b
            a, b = xi[j], xi[j + m2]
            xi[j], xi[j + m2] = a + b, a - b
        q1, q2 = o + m2, o + m2 + m4
        for j in range(m4):
            ar, br, ai, bi = xr[q1 + j], xr[q2 + j], xi[q1 + j], xi[q2 + j]
            ar, bi, ai, br = ar + bi, ai + br, ai - br, ar - bi
            if j == 0:
                r1, i1, r2, i2 = ar, ai, br, bi
            elif j == m8:
                r1, i1 = sq * (ar + ai), sq * (ai - ar)
                r2, i2 = sq * (bi - br), -sq * (br + bi)
            else:
                t = tables[logn]
                t2 = t[0, j] * (ar + ai)
                i1 = t[1, j] * ar + t2
                r1 = t[2, j] * ai + t2
                t2 = t[3, j] * (br + bi)
                i2 = t[4, j] * br + t2
                r2 = t[5, j] * bi + t2
            xr[q1 + j], xi[q1 + j], xr[q2 + j], xi[q2 + j] = r1, i1, r2, i2


@numba.njit(nogil=True, cache=True)
def _frame_power(x, length, window, remove_dc, preemph, plan, scratch, power, energies):
    """Kaldi's `ProcessWindow` + `SplitRadixRealFft::Compute` + `ComputePowerSpectrum` of one
    frame x[:length] (x is n_fft long and zero past `length`; it is overwritten): writes
    power (n_fft/2 + 1,) and energies (2,) = raw and windowed energy."""
    schedule, tables, twiddles, perm = plan
    half = power.shape[0] - 1
    sq, xr, xi = scratch[0, :length], scratch[1, :half], scratch[2, :half]
    c = np.float32(preemph)
    h = np.float32(0.5)
    if remove_dc:
        mean = _pairwise_sum(x, length) / np.float32(length)
        for i in range(length):
            x[i] = x[i] - mean
    for i in range(length):
        sq[i] = x[i] * x[i]
    energies[0] = _pairwise_sum(sq, length)
    if c != 0:
        for i in range(length - 1, 0, -1):
            x[i] = x[i] - c * x[i - 1]
        x[0] = x[0] - c * x[0]
    for i in range(length):
        x[i] = x[i] * window[i]
        sq[i] = x[i] * x[i]
    energies[1] = _pairwise_sum(sq, length)
    for i in range(half):
        xr[i] = x[2 * i]
        xi[i] = x[2 * i + 1]
    _srfft(xr, xi, schedule, tables)
    # Real-FFT recombination (k = 1 .. half/2) and power, Kaldi's operation order.
    r0, i0 = xr[perm[0]], xi[perm[0]]
    power[0] = (r0 + i0) * (r0 + i0)
    power[half] = (r0 - i0) * (r0 - i0)
    for k in range(1, half // 2 + 1):
        bk_re, bk_im = xr[perm[k]], xi[perm[k]]
        bm_re, bm_im = xr[perm[half - k]], xi[perm[half - k]]
        w_re, w_im = twiddles[0, k - 1], twiddles[1, k - 1]
        c_re = h * (bk_re + bm_re)
        c_im = h * (bk_im - bm_im)
        d_re = h * (bk_im + bm_im)
        d_im = -h * (bk_re - bm_re)
        a_re = c_re + (w_re * d_re - w_im * d_im)
        a_im = c_im + (w_re * d_im + w_im * d_re)
        power[k] = a_re * a_re + a_im * a_im
        if half - k != k:
            ad_re = c_re + ((-w_re) * d_re - w_im * (-d_im))
            ad_im = -c_im + ((-w_re) * (-d_im) + w_im * d_re)
            power[half - k] = ad_re * ad_re + ad_im * ad_im


@numba.njit(nogil=True, cache=True)
def _frames_power(frames, window, remove_dc, preemph, plan, power, energies):
    """`_frame_power` of frames (num, length) -> power (num, n_fft/2 + 1), energies (num, 2)."""
    length = frames.shape[1]
    half = power.shape[1] - 1
    x = np.zeros(2 * half, np.float32)
    scratch = np.empty((3, max(length, half)), np.float32)
    for f in range(frames.shape[0]):
        x[:length] = frames[f]
        x[length:] = 0.0
        _frame_power(x, length, window, remove_dc, preemph, plan, scratch, power[f], energies[f])


@numba.njit(nogil=True, cache=True)
def _waveform_power(waves, lengths, num_frames, first, last, shift, offset, noise, window,
                    remove_dc, preemph, plan, power, energies):  # fmt: skip
    """Frames first .. last-1 of the flattened (utterance, frame) grid of `waves` (batch, samples),
    cut as Kaldi's `ExtractWindow` does (frame t starts at t*shift + offset; samples outside
    [0, n) reflect: -1 -> 0, n -> n-1), plus `noise` (batch, frames, length) when it has frames
    (dither), then `_frame_power`. Frames past an utterance's `num_frames` are zero."""
    total = waves.shape[1]
    frames_per_row = power.shape[1]
    length = window.shape[0]
    half = power.shape[2] - 1
    x = np.zeros(2 * half, np.float32)
    scratch = np.empty((3, max(length, half)), np.float32)
    dither = noise.shape[1] > 0
    for f in range(first, last):
        b, t = f // frames_per_row, f % frames_per_row
        if t >= num_frames[b]:
            power[b, t] = 0.0
            energies[b, t] = 0.0
            continue
        n = max(lengths[b], 1)
        start = t * shift + offset
        if start >= 0 and start + length <= n:
            x[:length] = waves[b, start : start + length]
        else:
            for i in range(length):
                m = (start + i) % (2 * n)
                if m >= n:
                    m = 2 * n - 1 - m
                x[i] = waves[b, min(m, total - 1)]
        if dither:
            for i in range(length):
                x[i] = x[i] + noise[b, t, i]
        x[length:] = 0.0
        _frame_power(x, length, window, remove_dc, preemph, plan, scratch, power[b, t],
                     energies[b, t])  # fmt: skip


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
