"""Front-end throughput: MFCC (+ energy VAD + sliding CMN), frames per second on this CPU.

Batched jnp (`xvjax.features`: jit over a padded (batch, samples) array, both FFT paths: "kaldi",
Kaldi's float32 FFT replayed bit for bit by the compiled host kernel, and "xla", jnp.fft in
blocks of 1024 frames), the stream behind compute-mfcc-feats and make-features
(`stream.extract_features`: frames cut on the host, packed in fixed chunks, dither on as Kaldi's
default) and a pure-numpy loop over utterances (each utterance vectorised over its frames,
np.fft.rfft). Each row prints the median wall-clock rate, the rate per CPU-second (process time:
less sensitive to other load), the ratio to Kaldi's compute-mfcc-feats on this machine (~170k
frames/s on one core, shared/PERF_NOTES.md) and the load average when it was measured (the
machine is shared).

    .venv/bin/python benchmarks/bench_features.py                # 100 x 10 s at 16 kHz
    .venv/bin/python benchmarks/bench_features.py --batch=200 --seconds=20 --repeats=5
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

KALDI_FRAMES_PER_S = 170e3  # compute-mfcc-feats on this machine (shared/PERF_NOTES.md)


def synthetic_batch(batch: int, seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Speech-like test audio: the fixture wavs if present (tiled), else shaped noise bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    fixture = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "kaldi",
                           "audio", "u7_16k_long.wav")  # fmt: skip
    if os.path.exists(fixture):
        import soundfile

        src = soundfile.read(fixture, dtype="int16")[0].astype(np.float32)
    else:
        t = np.arange(rate * 30) / rate
        src = (np.sin(2 * np.pi * 150 * t) * 3000 * (np.sin(2 * np.pi * 0.7 * t) > 0)
               + rng.standard_normal(len(t)) * 30).astype(np.float32)  # fmt: skip
    out = np.zeros((batch, n), np.float32)
    for i in range(batch):
        start = rng.integers(0, max(1, len(src) - n))
        piece = src[start : start + n]
        out[i, : len(piece)] = piece
    return out


def numpy_loop(waves, lengths, mfcc_opts, vad_opts, cmn_opts):
    """Per-utterance numpy: framing (stride tricks + reflection), rfft, mel, DCT, VAD, CMN."""
    from xvjax.features import mel as melmod
    from xvjax.features.cmvn import sliding_cmn_numpy
    from xvjax.features.reference import num_frames
    from xvjax.features.vad import compute_vad_numpy

    window = melmod.window_function(mfcc_opts)
    banks = melmod.mel_banks(mfcc_opts)
    dct = melmod.dct_matrix(mfcc_opts.num_ceps, mfcc_opts.num_mel_bins)
    lifter = melmod.lifter_coeffs(mfcc_opts.num_ceps, mfcc_opts.cepstral_lifter)
    shift, length, n_fft = (
        mfcc_opts.window_shift,
        mfcc_opts.window_size,
        mfcc_opts.padded_window_size,
    )
    eps = np.finfo(np.float32).eps
    total = 0
    for wave, n in zip(waves, lengths, strict=True):
        wave = wave[:n]
        nf = num_frames(n, mfcc_opts)
        offset = shift // 2 - length // 2
        idx = np.arange(nf)[:, None] * shift + offset + np.arange(length)[None, :]
        idx = np.where(idx < 0, -idx - 1, idx)
        idx = np.where(idx >= n, 2 * n - 1 - idx, idx)
        frames = wave[idx]
        frames = frames - frames.mean(axis=1, keepdims=True)
        energy = np.log(np.maximum((frames * frames).sum(1), eps))
        c = mfcc_opts.preemphasis_coefficient
        frames = np.concatenate([frames[:, :1] * (1 - c), frames[:, 1:] - c * frames[:, :-1]], 1)
        power = np.abs(np.fft.rfft(frames * window, n_fft)) ** 2
        feats = (np.log(np.maximum(power @ banks, eps)) @ dct) * lifter
        feats[:, 0] = energy
        voiced = compute_vad_numpy(feats, vad_opts)
        sliding_cmn_numpy(feats, cmn_opts)
        total += int(voiced.size)
    return total


def wall_and_cpu(run, repeats: int):
    """Median wall and process-CPU seconds of `repeats` calls of `run()`, and its last result."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = run()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu)), out


def print_rate(label: str, frames: int, wall: float, cpu: float, compile_s: float) -> None:
    rate, cpu_rate = frames / wall, frames / cpu
    print(f"{label}: {rate:8.0f} frames/s ({rate / KALDI_FRAMES_PER_S:.2f}x Kaldi), "
          f"{cpu_rate:8.0f} frames/CPU-s ({cpu_rate / KALDI_FRAMES_PER_S:.2f}x); first call incl. "
          f"compile {compile_s:.1f} s; load {os.getloadavg()[0]:.1f}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fft-impl", default="kaldi,xla")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from xvjax.features.frontend import compute_vad, sliding_cmn
    from xvjax.features.mfcc import compute_mfcc, extract_frames
    from xvjax.features.options import RECIPE_CMN, RECIPE_VAD, VOXCELEB_MFCC

    opts = VOXCELEB_MFCC.__class__(**{**VOXCELEB_MFCC.__dict__, "dither": 0.0})
    waves = synthetic_batch(args.batch, args.seconds)
    lengths = np.full((args.batch,), waves.shape[1], np.int32)
    frames = args.batch * int(waves.shape[1] // opts.window_shift)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores; "
          f"batch {args.batch} x {args.seconds:g} s at 16 kHz = {frames} frames")  # fmt: skip

    w, n = jnp.asarray(waves), jnp.asarray(lengths)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; medians of "
          f"{args.repeats} runs; Kaldi's compute-mfcc-feats: {KALDI_FRAMES_PER_S / 1e3:.0f}k frames/s")  # fmt: skip
    for impl in args.fft_impl.split(","):

        @jax.jit
        def mfcc_only(w, n, impl=impl):
            return compute_mfcc(w, n, opts, fft_impl=impl)

        @jax.jit
        def front_end(w, n, impl=impl):
            feats, nf = compute_mfcc(w, n, opts, fft_impl=impl)
            return sliding_cmn(feats, nf, RECIPE_CMN), compute_vad(feats, nf, RECIPE_VAD)

        for label, fn in (("MFCC", mfcc_only), ("MFCC+VAD+CMN", front_end)):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(w, n))
            compile_s = time.perf_counter() - t0
            run = lambda: jax.block_until_ready(fn(w, n))  # noqa: B023
            wall, cpu, _ = wall_and_cpu(run, args.repeats)
            print_rate(f"jnp {label:12s} fft_impl={impl:5s}", frames, wall, cpu, compile_s)

    from xvjax.features.stream import extract_features

    dithered = VOXCELEB_MFCC
    utts = [(f"u{i}", x, 16000) for i, x in enumerate(waves)]
    for impl in args.fft_impl.split(","):
        t0 = time.perf_counter()
        list(extract_features(utts[:2], dithered, fft_impl=impl))  # compile
        compile_s = time.perf_counter() - t0
        run = lambda: list(extract_features(utts, dithered, fft_impl=impl))  # noqa: B023
        wall, cpu, results = wall_and_cpu(run, args.repeats)
        done = sum(len(r.feats) for r in results)
        print_rate(f"stream MFCC dither=1 fft_impl={impl:5s}", done, wall, cpu, compile_s)

    from xvjax.features import kaldi_fft
    from xvjax.features import mel as melmod

    framed = np.asarray(extract_frames(w, n, opts)).reshape(-1, opts.window_size)
    window = melmod.window_function(opts)
    kaldi_fft.process_and_power(framed[:8], window, opts.padded_window_size, True, 0.97)
    wall, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        kaldi_fft.process_and_power(framed, window, opts.padded_window_size, True, 0.97)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(f"host kernel alone (ProcessWindow + FFT + power, all cores): "
          f"{len(framed) / np.median(wall):8.0f} frames/s, "
          f"{len(framed) / np.median(cpu):8.0f} frames/CPU-s; load {os.getloadavg()[0]:.1f}")  # fmt: skip

    t0 = time.perf_counter()
    done = numpy_loop(waves, lengths, opts, RECIPE_VAD, RECIPE_CMN)
    elapsed = time.perf_counter() - t0
    print(f"numpy loop over utterances:  {done / elapsed:10.0f} frames/s ({elapsed:.2f} s); "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
