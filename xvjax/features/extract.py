"""Batched feature extraction over a stream of utterances (the engine behind the CLI commands).

Utterances arrive one by one (key, samples, sample_rate); they are checked (Kaldi's per-utterance
errors become logged skips), grouped in input order into batches, padded to a bucketed length
(lengths rounded up to 1/8-octave steps, batch size fixed) so that only a handful of shapes is
ever compiled, run through `compute_features`, and yielded back in input order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator

import numpy as np

from xvjax.features.options import FbankOptions, MfccOptions

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


def check_utterance(
    key: str, samples: np.ndarray, rate: float, opts: MfccOptions | FbankOptions
) -> str | None:
    """Kaldi's per-utterance failure cases, as one line (None if the utterance is usable)."""
    if float(rate) != float(np.float32(opts.sample_frequency)):
        return (
            f"sample frequency mismatch: you specified {opts.sample_frequency:g} but data has "
            f"{float(rate):g} (use --sample-frequency option); utterance is {key}"
        )
    if samples.ndim != 1:
        return f"expected mono audio, got shape {samples.shape}; utterance is {key}"
    if not np.all(np.isfinite(samples)):
        return f"audio has NaN or infinite samples; utterance is {key}"
    from xvjax.features.mfcc import num_frames

    if int(num_frames(len(samples), opts)) == 0:
        return (
            f"no frames fit in the audio (#samples is {len(samples)}, one frame is "
            f"{opts.window_size}); utterance is {key}"
        )
    return None


def _run_batch(batch, opts, batch_size: int, key, fft_impl: str) -> list[Result]:
    import jax
    import jax.numpy as jnp

    from xvjax.features.mfcc import compute_features

    length = bucket_length(max(len(s) for _, s in batch))
    wav = np.zeros((batch_size, length), np.float32)
    lens = np.zeros((batch_size,), np.int32)
    for i, (_, s) in enumerate(batch):
        wav[i, : len(s)] = s
        lens[i] = len(s)
    feats, nf = compute_features(jnp.asarray(wav), jnp.asarray(lens), opts, key, fft_impl)
    feats, nf = jax.device_get((feats, nf))
    return [
        Result(k, np.ascontiguousarray(feats[i, : nf[i]]), num_samples=len(s))
        for i, (k, s) in enumerate(batch)
    ]


def extract_features(
    utterances: Iterable[tuple[str, np.ndarray, float]],
    opts: MfccOptions | FbankOptions,
    batch_size: int = 16,
    max_batch_samples: int = 16_000 * 600,
    seed: int = 0,
    fft_impl: str = "kaldi",
) -> Iterator[Result]:
    """Yields a `Result` per input utterance, in input order.

    Args:
      utterances: (key, samples float32 int16-scale (n,), sample_rate) triples.
      opts: MfccOptions or FbankOptions (checked here).
      batch_size: utterances per compiled batch.
      max_batch_samples: a batch is closed early once batch_size x padded length passes this.
      seed: dither seed (`jax.random.key(seed)` folded with the batch index).
      fft_impl: "kaldi" (bit-faithful to Kaldi) or "xla" (see `compute_mfcc`).
    """
    import jax

    opts.check()
    base_key = jax.random.key(seed)
    pending: list[Result | tuple[str, np.ndarray]] = []
    batch: list[tuple[str, np.ndarray]] = []
    num_batches = 0

    def flush():
        nonlocal num_batches, batch, pending
        done: Iterator[Result] = iter(())
        if batch:
            key = jax.random.fold_in(base_key, num_batches) if opts.dither != 0 else None
            num_batches += 1
            done = iter(_run_batch(batch, opts, batch_size, key, fft_impl))
        out = [item if isinstance(item, Result) else next(done) for item in pending]
        batch, pending = [], []
        return out

    for key, samples, rate in utterances:
        samples = np.asarray(samples, np.float32)
        error = check_utterance(key, samples, rate, opts)
        if error is not None:
            pending.append(Result(key, error=error, num_samples=len(samples)))
        else:
            longest = max([len(samples)] + [len(s) for _, s in batch])
            if batch and (
                len(batch) >= batch_size or batch_size * bucket_length(longest) > max_batch_samples
            ):
                yield from flush()
            batch.append((key, samples))
            pending.append((key, samples))
    yield from flush()
