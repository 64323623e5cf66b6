"""Batched MFCC/fbank extraction over a stream of utterances (behind compute-mfcc-feats,
compute-fbank-feats and `datadir_jobs.make_features`).

Utterances arrive one by one (key, samples, sample_rate); they are checked (Kaldi's per-utterance
errors become logged skips) and cut into frames on the host (`mfcc.frames_numpy`), and their frames
are packed, in input order, into chunks of a fixed number of frames that `mfcc.features_of_frames`
computes. So one shape is compiled whatever the utterance lengths, and only the last chunk is
padded. Results are yielded in input order as soon as an utterance's last frame is computed.
Features are per frame, so an utterance's features do not depend on its neighbours in a chunk
(byte for byte; the dither of each frame is keyed by its utterance id and index).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator

import jax
import numpy as np

from xvjax.features.mfcc import (
    features_of_frames,
    features_of_frames_host,
    frames_numpy,
    num_frames,
    uses_host_kernel,
)
from xvjax.features.options import FbankOptions, MfccOptions
from xvjax.features.resample import kaldi_resample

log = logging.getLogger("xvjax")

FRAMES_PER_BATCH_UNIT = 1024  # `batch_size` counts utterances of ~10 s: chunks of 1024 frames each


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


def utterance_words(seed: int, utts: list[str]) -> np.ndarray:
    """(len(utts), 2) uint32 dither words (`mfcc.frame_noise`): a hash of the seed and each
    utterance id, so an utterance's dither depends on them only, not on its chunk or on which job
    of a multi-process run computes it. `jax.random.wrap_key_data(words[i])` is the key that
    gives `compute_mfcc` the same noise."""
    digest = [hashlib.blake2b(f"{seed}:{u}".encode(), digest_size=8).digest() for u in utts]
    return np.frombuffer(b"".join(digest), "<u4").reshape(len(utts), 2).copy()


class _Pending:
    """An utterance whose features are being computed: rows fill in as its chunks complete."""

    def __init__(self, key: str, samples: np.ndarray, frames: int, dim: int):
        self.result = Result(key, np.empty((frames, dim), np.float32), num_samples=len(samples))
        self.peak = float(np.abs(samples).max()) if len(samples) else 0.0
        self.missing = frames

    def done(self) -> Result:
        r = self.result
        if not np.isfinite(r.feats).all():  # e.g. float audio too loud for float32 power spectra
            r.error = (
                f"features have NaN or infinite values (largest sample {self.peak:g}); "
                f"utterance is {r.key}"
            )
            r.feats = None
        return r


class _Packer:
    """Frames of utterances (with one set of options) waiting for a chunk, in arrival order."""

    def __init__(
        self,
        opts: MfccOptions | FbankOptions,
        chunk: int,
        fft_impl: str,
        running: collections.deque,
        host: concurrent.futures.Executor,
    ):
        self.opts, self.chunk, self.fft_impl = opts, chunk, fft_impl
        self.queue: collections.deque = collections.deque()  # [pending, frames, words, first]
        self.queued = 0
        self.running = running  # chunks dispatched, not yet collected (shared by all packers)
        self.host = host  # runs the host kernel's chunks beside the reading thread

    def add(self, pending: _Pending, frames: np.ndarray, words: np.ndarray) -> None:
        self.queue.append([pending, frames, words, 0])
        self.queued += len(frames)
        while self.queued >= self.chunk:
            self.run()

    def run(self) -> None:
        """Computes the next chunk (zero-padded when fewer frames are queued)."""
        length = self.opts.window_size
        frames = np.zeros((self.chunk, length), np.float32)
        k0, k1, index = (np.zeros(self.chunk, np.uint32) for _ in range(3))
        parts, filled = [], 0
        while self.queue and filled < self.chunk:
            item = self.queue[0]
            pending, src, words, first = item
            take = min(len(src) - first, self.chunk - filled)
            frames[filled : filled + take] = src[first : first + take]
            k0[filled : filled + take], k1[filled : filled + take] = words
            index[filled : filled + take] = np.arange(first, first + take)
            parts.append((pending, first, filled, take))
            filled += take
            item[3] = first + take
            if item[3] == len(src):
                self.queue.popleft()
        self.queued -= filled
        # Dispatch only: the chunk computes while the host reads and cuts the next utterances
        # (at most two chunks in flight, also within one long utterance).
        _collect(self.running, keep=1)
        if uses_host_kernel(self.opts, self.fft_impl):
            feats = self.host.submit(features_of_frames_host, frames, k0, k1, index, self.opts)
        else:
            feats = features_of_frames(frames, k0, k1, index, self.opts, self.fft_impl)
        self.running.append((feats, parts))


def _collect(running: collections.deque, keep: int) -> None:
    """Waits for the oldest dispatched chunks until at most `keep` are running, and files their
    rows into their utterances."""
    while len(running) > keep:
        feats, parts = running.popleft()
        if isinstance(feats, concurrent.futures.Future):
            feats = feats.result()
        feats = np.asarray(jax.device_get(feats))
        for pending, first, at, take in parts:
            pending.result.feats[first : first + take] = feats[at : at + take]
            pending.missing -= take


def extract_features(
    utterances: Iterable[tuple[str, np.ndarray, float]],
    opts: MfccOptions | FbankOptions,
    batch_size: int = 16,
    seed: int = 0,
    fft_impl: str = "kaldi",
    warp_of: Callable[[str], float] | None = None,
) -> Iterator[Result]:
    """Yields a `Result` per input utterance, in input order.

    Args:
      utterances: (key, samples float32 int16-scale (n,), sample_rate) triples.
      opts: MfccOptions or FbankOptions (checked here).
      batch_size: frames computed together, in units of 1024 frames (~10 s of audio): each
        compiled call takes `batch_size * 1024` frames of any utterances.
      seed: dither seed (`utterance_words`).
      fft_impl: "kaldi" (bit-faithful to Kaldi), "xla" or "auto" (see `compute_mfcc`).
      warp_of: per-utterance VTLN warp factor (`--vtln-map`); None: `opts.vtln_warp` for all.
        Utterances with different warps go in different chunks.
    Utterances at another sample rate are resampled when `opts` allows it (`resampled`).
    """
    opts.check()
    chunk = max(1, int(batch_size)) * FRAMES_PER_BATCH_UNIT
    if isinstance(opts, FbankOptions):
        dim = opts.num_mel_bins + int(opts.use_energy)
    else:
        dim = opts.num_ceps
    packers: dict[float, _Packer] = {}
    running: collections.deque = collections.deque()  # dispatched chunks, oldest first
    order: collections.deque = collections.deque()  # Result (skipped) or _Pending, input order
    host = concurrent.futures.ThreadPoolExecutor(1)  # the host kernel's chunks (fft_impl=kaldi)

    def finished() -> Iterator[Result]:
        while order and (isinstance(order[0], Result) or order[0].missing == 0):
            item = order.popleft()
            yield item if isinstance(item, Result) else item.done()

    try:
        for key, samples, rate in utterances:
            samples, rate = resampled(np.asarray(samples, np.float32), rate, opts)
            error = check_utterance(key, samples, rate, opts)
            if error is not None:
                order.append(Result(key, error=error, num_samples=len(samples)))
                yield from finished()
                continue
            warp = float(opts.vtln_warp if warp_of is None else warp_of(key))
            if warp not in packers:
                wopts = (
                    opts if warp == opts.vtln_warp else dataclasses.replace(opts, vtln_warp=warp)
                )
                packers[warp] = _Packer(wopts, chunk, fft_impl, running, host)
            frames = frames_numpy(samples, opts)
            pending = _Pending(key, samples, len(frames), dim)
            order.append(pending)
            packers[warp].add(pending, frames, utterance_words(seed, [key])[0])
            # Several warps: bound what waits by computing the fullest packer's (partial) chunk.
            while sum(p.queued for p in packers.values()) > chunk:
                max(packers.values(), key=lambda p: p.queued).run()
            _collect(running, keep=1)
            yield from finished()
        for packer in packers.values():
            while packer.queued:
                packer.run()
        _collect(running, keep=0)
        yield from finished()
    finally:
        host.shutdown(cancel_futures=True)
