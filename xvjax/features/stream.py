"""Batched MFCC/fbank extraction over a stream of utterances (behind compute-mfcc-feats,
compute-fbank-feats and `datadir_jobs.make_features`).

Utterances arrive one by one (key, samples, sample_rate); they are checked (Kaldi's per-utterance
errors become logged skips), grouped in input order into batches, padded to a bucketed length
(lengths rounded up to 1/8-octave steps, batch size fixed) so that only a handful of shapes is
ever compiled, run through `compute_features`, and yielded back in input order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.features.mfcc import compute_features, num_frames
from xvjax.features.options import FbankOptions, MfccOptions
from xvjax.features.resample import kaldi_resample

log = logging.getLogger("xvjax")


@dataclasses.dataclass
class Result:
    """One utterance's outcome: `feats` (frames, dim) float32, or `error` (one line) when skipped."""

    key: str
    feats: np.ndarray | None = None
    error: str | None = None
    num_samples: int = 0


def bucket_length(n: int, minimum: int = 1024) -> int:
    """Smallest 1/8-octave step >= n (at most 12.5% padding, a few compiled shapes per octave)."""
    n = max(int(n), minimum)
    top = 1 << (n - 1).bit_length()  # next power of two
    step = top // 16
    return -(-n // step) * step


def resampled(samples: np.ndarray, rate: float, opts: MfccOptions | FbankOptions):
    """(samples, rate) at the features' rate when the options allow it (Kaldi's
    --allow-downsample / --allow-upsample, its own resampler), else unchanged."""
    target = float(np.float32(opts.sample_frequency))
    rate = float(rate)
    if (rate > target and opts.allow_downsample) or (rate < target and opts.allow_upsample):
        return kaldi_resample(samples, int(rate), int(target)), target
    return samples, rate


def check_utterance(
    key: str, samples: np.ndarray, rate: float, opts: MfccOptions | FbankOptions
) -> str | None:
    """Kaldi's per-utterance failure cases, as one line (None if the utterance is usable)."""
    if float(rate) != float(np.float32(opts.sample_frequency)):
        allow = "downsample" if float(rate) > opts.sample_frequency else "upsample"
        return (
            f"sample frequency mismatch: you specified {opts.sample_frequency:g} but data has "
            f"{float(rate):g} (use --sample-frequency option, or --allow-{allow}=true to "
            f"resample); utterance is {key}"
        )
    if samples.ndim != 1:
        return f"expected mono audio, got shape {samples.shape}; utterance is {key}"
    if not np.all(np.isfinite(samples)):
        return f"audio has NaN or infinite samples; utterance is {key}"
    if int(num_frames(len(samples), opts)) == 0:
        return (
            f"no frames fit in the audio (#samples is {len(samples)}, one frame is "
            f"{opts.window_size}); utterance is {key}"
        )
    return None


def utterance_keys(base_key, utts: list[str], rows: int):
    """(rows,) dither keys: fold_in(key, hash of the utterance id) for each utterance, then padding
    rows. An utterance's dither depends on the seed and its id only, not on its batch or on which
    job of a multi-process run computes it."""
    digest = [hashlib.blake2b(u.encode("utf-8"), digest_size=8).digest() for u in utts]
    words = np.zeros((rows, 2), np.uint32)
    if digest:
        words[: len(utts)] = np.frombuffer(b"".join(digest), "<u4").reshape(-1, 2)
    fold = lambda w: jax.random.fold_in(jax.random.fold_in(base_key, w[0]), w[1])
    return jax.vmap(fold)(jnp.asarray(words))


def _run_batch(batch, opts, batch_size: int, key, fft_impl: str) -> list[Result]:
    length = bucket_length(max(len(s) for _, s in batch))
    wav = np.zeros((batch_size, length), np.float32)
    lens = np.zeros((batch_size,), np.int32)
    for i, (_, s) in enumerate(batch):
        wav[i, : len(s)] = s
        lens[i] = len(s)
    feats, nf = compute_features(jnp.asarray(wav), jnp.asarray(lens), opts, key, fft_impl)
    feats, nf = jax.device_get((feats, nf))
    out = [
        Result(k, np.ascontiguousarray(feats[i, : nf[i]]), num_samples=len(s))
        for i, (k, s) in enumerate(batch)
    ]
    for r, (_, s) in zip(out, batch, strict=True):
        if not np.isfinite(r.feats).all():  # e.g. float audio too loud for float32 power spectra
            r.error = (
                f"features have NaN or infinite values (largest sample {np.abs(s).max():g}); "
                f"utterance is {r.key}"
            )
            r.feats = None
    return out


def extract_features(
    utterances: Iterable[tuple[str, np.ndarray, float]],
    opts: MfccOptions | FbankOptions,
    batch_size: int = 16,
    max_batch_samples: int = 16_000 * 600,
    seed: int = 0,
    fft_impl: str = "kaldi",
    sort_window: int = 8,
    warp_of: Callable[[str], float] | None = None,
) -> Iterator[Result]:
    """Yields a `Result` per input utterance, in input order.

    Args:
      utterances: (key, samples float32 int16-scale (n,), sample_rate) triples.
      opts: MfccOptions or FbankOptions (checked here).
      batch_size: utterances per compiled batch.
      max_batch_samples: budget of rows x padded length per batch; batches of long utterances
        get fewer rows (halving, so few shapes are compiled).
      seed: dither seed (`utterance_keys`: the key of `seed` folded with each utterance's id).
      fft_impl: "kaldi" (bit-faithful to Kaldi), "xla" or "auto" (see `compute_mfcc`).
      sort_window: up to `sort_window * batch_size` utterances are read ahead and batched by
        length (less padding); results still come out in input order.
      warp_of: per-utterance VTLN warp factor (`--vtln-map`); None: `opts.vtln_warp` for all.
        Utterances with different warps go in different batches.
    Utterances at another sample rate are resampled when `opts` allows it (`resampled`).
    """
    opts.check()
    base_key = jax.random.key(seed)

    def batch_rows(num_samples: int) -> int:
        """Rows of the padded batch: batch_size, halved until rows x length fits the budget."""
        rows = batch_size
        while rows > 1 and rows * bucket_length(num_samples) > max_batch_samples:
            rows //= 2
        return rows

    pending: list[Result | int] = []  # Result (skipped) or index into `usable`
    usable: list[tuple[str, np.ndarray]] = []
    warps: list[float] = []

    def flush():
        nonlocal pending, usable, warps
        results: dict[int, Result] = {}
        order = sorted(range(len(usable)), key=lambda i: (warps[i], len(usable[i][1])))
        batches: list[list[int]] = []
        for i in order:  # ascending length: the newest member is the longest
            rows = batch_rows(len(usable[i][1]))
            if batches and len(batches[-1]) < rows and warps[batches[-1][0]] == warps[i]:
                batches[-1].append(i)
            else:
                batches.append([i])
        for members in batches:
            rows = batch_rows(len(usable[members[-1]][1]))
            key = None
            if opts.dither != 0:
                key = utterance_keys(base_key, [usable[i][0] for i in members], rows)
            warp = warps[members[0]]
            bopts = opts if warp == opts.vtln_warp else dataclasses.replace(opts, vtln_warp=warp)
            outs = _run_batch([usable[i] for i in members], bopts, rows, key, fft_impl)
            results.update(zip(members, outs, strict=True))
        out = [item if isinstance(item, Result) else results[item] for item in pending]
        pending, usable, warps = [], [], []
        return out

    for key, samples, rate in utterances:
        samples, rate = resampled(np.asarray(samples, np.float32), rate, opts)
        error = check_utterance(key, samples, rate, opts)
        if error is not None:
            pending.append(Result(key, error=error, num_samples=len(samples)))
            continue
        pending.append(len(usable))
        usable.append((key, samples))
        warps.append(float(opts.vtln_warp if warp_of is None else warp_of(key)))
        if len(usable) >= batch_size * max(1, sort_window):
            yield from flush()
    yield from flush()
