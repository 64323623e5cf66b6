"""Minibatch streams for training, each with a checkpointable position.

`ChunkLoader` cuts the chunks a `ChunkSampler` allocates from an utterance store (`stores.py`),
prefetching in a background thread without changing the order; `EgsLoader` reads Kaldi's own x-vector
egs archives (already cut into chunks). Both yield `TrainBatch(feats (local_batch, chunk, dim)
float32, labels (local_batch,) int32, position)` where `position` is what a checkpoint stores to
resume right after this batch.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import queue
import re
import threading
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from xvjax.data.chunks import ChunkSampler
from xvjax.errors import XvjaxError
from xvjax.kaldi.egs import read_xvector_egs


@dataclasses.dataclass(frozen=True)
class TrainBatch:
    feats: np.ndarray  # (local_batch, chunk_len, feat_dim) float32
    labels: np.ndarray  # (local_batch,) int32
    position: dict  # loader position after this batch


# ----------------------------------------------------------------------------- chunk loader


class _Prefetcher:
    """Runs `make(item)` for the items of `source` in one background thread, in order."""

    _DONE = object()

    def __init__(self, source: Iterator, make, depth: int):
        self._q: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, make), daemon=True)
        self._thread.start()

    def _run(self, source, make):
        try:
            for item in source:
                out = make(item)
                while not self._stop.is_set():
                    try:
                        self._q.put(out, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # hand the error to the consumer
            self._q.put(e)
            return
        self._q.put(self._DONE)

    def __next__(self):
        out = self._q.get()
        if out is self._DONE:
            raise StopIteration
        if isinstance(out, BaseException):
            raise out
        return out

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)


class ChunkLoader:
    """Minibatches of chunks from an utterance store, in `ChunkSampler` order.

    `position` / `load_state_dict` give and set the position of the next batch; iteration prefetches
    `prefetch` batches in a background thread without changing the order.
    """

    def __init__(self, store, sampler: ChunkSampler, prefetch: int = 2):
        self.store, self.sampler, self.prefetch = store, sampler, prefetch
        self._it: _Prefetcher | None = None
        self._position = sampler.state_dict()  # after the last batch handed out

    def state_dict(self) -> dict:
        """Position after the last batch returned (the sampler itself runs ahead when prefetching)."""
        return dict(self._position)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.close()
        self.sampler.load_state_dict(state)
        self._position = self.sampler.state_dict()

    def make_batch(self, spec) -> TrainBatch:
        table = self.sampler.table
        n = spec.chunk_len
        feats = np.empty((len(spec.utt_idx), n, self.store.feat_dim), np.float32)
        for row, (u, off) in enumerate(zip(spec.utt_idx, spec.offsets, strict=True)):
            utt = table.utt_ids[int(u)]
            x = self.store.load(utt)
            if off + n > len(x):
                raise XvjaxError(
                    f"utterance '{utt}' has {len(x)} frames, fewer than its length in the "
                    f"allocation ({table.lengths[int(u)]}): features changed since start?"
                )
            feats[row] = x[off : off + n]
        return TrainBatch(feats, spec.labels.astype(np.int32), spec.next_position)

    def __iter__(self):
        return self

    def __next__(self) -> TrainBatch:
        if self.prefetch <= 0:
            batch = self.make_batch(next(self.sampler))
        else:
            if self._it is None:
                self._it = _Prefetcher(self.sampler, self.make_batch, self.prefetch)
            batch = next(self._it)
        self._position = dict(batch.position)
        return batch

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
            self._it = None


# ----------------------------------------------------------------------------- egs archives


def egs_archives(egs: str | Sequence[str]) -> list[str]:
    """An egs dir (its `egs.N.ark` in N order) or explicit archive paths."""
    if isinstance(egs, str) and os.path.isdir(egs):
        paths = glob.glob(os.path.join(egs, "egs.*.ark"))
        num = lambda p: int(m.group(1)) if (m := re.search(r"egs\.(\d+)\.ark$", p)) else 0
        paths = sorted(paths, key=num)
        if not paths:
            raise XvjaxError(f"egs dir {egs}: no egs.*.ark archives")
        return paths
    paths = [egs] if isinstance(egs, str) else list(egs)
    for p in paths:
        if not os.path.isfile(p):
            raise XvjaxError(f"egs archive {p} does not exist")
    return paths


def egs_num_speakers(egs: str) -> int | None:
    """Number of output classes from an egs dir's `pdf2num` (Kaldi writes one count per pdf)."""
    path = os.path.join(egs, "pdf2num") if os.path.isdir(egs) else None
    if path and os.path.isfile(path):
        with open(path) as f:
            return len(f.read().split())
    return None


def read_egs_archive(path: str) -> list[tuple[str, np.ndarray, int]]:
    """[(key, feats (T, F) float32, label)] of one `egs.N.ark` (reader: `xvjax.kaldi.egs`)."""
    return [(k, np.asarray(x, np.float32), int(y)) for k, x, y in read_xvector_egs(f"ark:{path}")]


class EgsLoader:
    """Minibatches from Kaldi x-vector egs archives, like `nnet3-shuffle-egs | nnet3-merge-egs`.

    Each epoch visits the archives in a seeded random order; within an archive the examples are
    shuffled (seeded) and grouped by chunk length, and cut into minibatches of `batch_size` (a
    partial last minibatch is dropped). Position: {"epoch", "archive", "batch"}.
    """

    def __init__(
        self,
        egs: str | Sequence[str],
        batch_size: int,
        seed: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        num_speakers: int | None = None,
    ):
        self.paths = egs_archives(egs)
        if batch_size % process_count:
            raise XvjaxError(
                f"batch size {batch_size} is not divisible by {process_count} processes"
            )
        self.batch_size, self.seed = batch_size, seed
        self.process_index, self.process_count = process_index, process_count
        self.local_batch = batch_size // process_count
        self.position = {"epoch": 0, "archive": 0, "batch": 0}
        self._loaded: tuple[tuple[int, int], list] | None = None
        first = self._batches(0, 0)
        if not first:
            raise XvjaxError(f"egs archive {self._order(0)[0]}: fewer examples than one minibatch")
        self.feat_dim = int(first[0][0].shape[-1])
        self.num_speakers = num_speakers or (
            egs_num_speakers(egs) if isinstance(egs, str) else None
        )

    def _order(self, epoch: int) -> list[str]:
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.paths))
        return [self.paths[i] for i in perm]

    def _batches(self, epoch: int, archive: int) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._loaded is not None and self._loaded[0] == (epoch, archive):
            return self._loaded[1]
        egs = read_egs_archive(self._order(epoch)[archive])
        rng = np.random.default_rng([self.seed, epoch, archive, 1])
        egs = [egs[i] for i in rng.permutation(len(egs))]
        by_len: dict[int, list] = {}
        for eg in egs:
            by_len.setdefault(eg[1].shape[0], []).append(eg)
        batches = []
        for n in sorted(by_len):
            group = by_len[n]
            for b in range(len(group) // self.batch_size):
                rows = group[b * self.batch_size : (b + 1) * self.batch_size]
                feats = np.stack([r[1] for r in rows])
                labels = np.asarray([r[2] for r in rows], np.int32)
                batches.append((feats, labels))
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        self._loaded = ((epoch, archive), batches)
        return batches

    def state_dict(self) -> dict:
        return dict(self.position)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.position = {k: int(state[k]) for k in ("epoch", "archive", "batch")}

    def __iter__(self):
        return self

    def __next__(self) -> TrainBatch:
        e, a, b = self.position["epoch"], self.position["archive"], self.position["batch"]
        for _ in range(len(self.paths) + 1):
            batches = self._batches(e, a)
            if b < len(batches):
                break
            a, b = a + 1, 0
            if a >= len(self.paths):
                e, a = e + 1, 0
        else:
            raise XvjaxError("egs archives hold no complete minibatch")
        feats, labels = batches[b]
        lo = self.process_index * self.local_batch
        sl = slice(lo, lo + self.local_batch)
        self.position = {"epoch": e, "archive": a, "batch": b + 1}
        return TrainBatch(feats[sl], labels[sl], dict(self.position))

    def close(self) -> None:
        pass
