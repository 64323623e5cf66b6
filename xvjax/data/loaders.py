"""Minibatch streams for training, each with a checkpointable position.

`ChunkLoader` cuts the chunks a `ChunkSampler` allocates from an utterance store (`stores.py`);
`EgsLoader` reads Kaldi's own x-vector egs archives (already cut into chunks). Both yield
`TrainBatch(feats (local_batch, chunk, dim) float32, labels (local_batch,) int32, position)` where
`position` is what a checkpoint stores to resume right after this batch.

Parallel workers: both make their minibatches (egs: their archives' minibatches) with pure functions
of the batch spec (archive, batch) on a pool of threads (`Workers`), handed out in stream order.
So the stream is the same for any worker count, and the checkpoint stays the position dict. Threads,
not processes: numpy slicing, ark reading and JAX (the audio source) release the GIL, and the stores
(an in-memory RAM cache, all the audio) are shared instead of copied; grain's thread pool over the
same `make_batch` measured no faster (benchmarks/bench_input_pipeline.py).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import glob
import os
import re
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


# ----------------------------------------------------------------------------- workers


class Workers:
    """`make(item)` for the items of `source` on `num_workers` threads, handed out in `source` order.

    Up to `in_flight` items are being made or waiting at any time (the items are drawn from `source`
    in the consumer's thread, so `source` needs no lock). An error raised by `make` is raised by the
    `next` call that would have returned its result. `close()` drops the items not started and
    joins the threads (a thread already inside `make`, e.g. in a JAX call, finishes it first), so
    no worker outlives its loader; the threads are not daemons, so the interpreter also joins them
    before it tears down.
    """

    def __init__(self, source: Iterator, make, num_workers: int, in_flight: int):
        self._source, self._make = source, make
        self._in_flight = max(int(in_flight), int(num_workers), 1)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max(int(num_workers), 1), thread_name_prefix="xvjax-data"
        )
        self._pending: collections.deque[concurrent.futures.Future] = collections.deque()
        self._exhausted = False
        self._fill()

    def _fill(self) -> None:
        while not self._exhausted and len(self._pending) < self._in_flight:
            try:
                item = next(self._source)
            except StopIteration:
                self._exhausted = True
                return
            self._pending.append(self._pool.submit(self._make, item))

    def __iter__(self):
        return self

    def __next__(self):
        if not self._pending:
            raise StopIteration
        out = self._pending.popleft().result()  # re-raises the worker's error here
        self._fill()
        return out

    def close(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def in_flight(num_workers: int, prefetch: int) -> int:
    """Batches being made or waiting: every worker busy plus `prefetch` ready ones."""
    return int(num_workers) + int(prefetch)


# ----------------------------------------------------------------------------- chunk loader


def _load_utterance(store, utt: str) -> np.ndarray:
    """`store.load(utt)`, any failure turned into one line naming the utterance."""
    try:
        return store.load(utt)
    except XvjaxError as e:
        if utt in str(e):
            raise
        raise XvjaxError(f"utterance '{utt}': {e}") from e
    except Exception as e:
        raise XvjaxError(f"utterance '{utt}': cannot load ({type(e).__name__}: {e})") from e


class ChunkLoader:
    """Minibatches of chunks from an utterance store, in `ChunkSampler` order.

    `position` / `load_state_dict` give and set the position of the next batch. Batches are made by
    `num_workers` threads (0: in the caller's thread), up to `num_workers + prefetch` ahead; each is
    a pure function of its spec (`make_batch`), so the stream is the same whatever the worker
    count and a resumed stream is the one an uninterrupted run reads.
    """

    def __init__(self, store, sampler: ChunkSampler, prefetch: int = 2, num_workers: int = 1):
        self.store, self.sampler = store, sampler
        self.prefetch, self.num_workers = int(prefetch), int(num_workers)
        self._it: Workers | None = None
        self._position = sampler.state_dict()  # after the last batch handed out

    def state_dict(self) -> dict:
        """Position after the last batch returned (the sampler itself runs ahead of the workers)."""
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
            x = _load_utterance(self.store, utt)
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
        if self.num_workers <= 0:
            batch = self.make_batch(next(self.sampler))
        else:
            if self._it is None:
                self._it = Workers(
                    self.sampler,
                    self.make_batch,
                    self.num_workers,
                    in_flight(self.num_workers, self.prefetch),
                )
            batch = next(self._it)
        self._position = dict(batch.position)
        return batch

    def close(self) -> None:
        """Stops and joins the workers; iterating again restarts them from `state_dict()`."""
        if self._it is not None:
            self._it.close()
            self._it = None
            self.sampler.load_state_dict(self._position)


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
    `num_workers` threads read and cut the next archives (0: in the caller's thread); an archive's
    minibatches are a pure function of (seed, epoch, archive), so the stream does not depend on the
    worker count. At most `num_workers` archives are read ahead (an archive can be large).
    """

    def __init__(
        self,
        egs: str | Sequence[str],
        batch_size: int,
        seed: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        num_speakers: int | None = None,
        num_workers: int = 1,
    ):
        self.paths = egs_archives(egs)
        if batch_size % process_count:
            raise XvjaxError(
                f"batch size {batch_size} is not divisible by {process_count} processes"
            )
        self.batch_size, self.seed = batch_size, seed
        self.process_index, self.process_count = process_index, process_count
        self.local_batch = batch_size // process_count
        self.num_workers = int(num_workers)
        self.position = {"epoch": 0, "archive": 0, "batch": 0}
        self._it: Workers | None = None
        first = self.archive_batches((0, 0))
        if not first:
            raise XvjaxError(f"egs archive {self._order(0)[0]}: fewer examples than one minibatch")
        self._current: tuple[tuple[int, int], list] | None = ((0, 0), first)
        self.feat_dim = int(first[0][0].shape[-1])
        self.num_speakers = num_speakers or (
            egs_num_speakers(egs) if isinstance(egs, str) else None
        )

    def _order(self, epoch: int) -> list[str]:
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.paths))
        return [self.paths[i] for i in perm]

    def archive_batches(self, key: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(feats (batch, chunk, dim), labels (batch,))] of archive `key` = (epoch, archive index
        in that epoch's order): a pure function of the key."""
        epoch, archive = key
        path = self._order(epoch)[archive]
        try:
            egs = read_egs_archive(path)
        except XvjaxError:
            raise
        except Exception as e:
            raise XvjaxError(f"egs archive {path}: {type(e).__name__}: {e}") from e
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
        return [batches[i] for i in order]

    def _keys(self, epoch: int, archive: int) -> Iterator[tuple[int, int]]:
        while True:
            yield epoch, archive
            archive += 1
            if archive >= len(self.paths):
                epoch, archive = epoch + 1, 0

    def _archive(self, key: tuple[int, int]) -> list:
        """The minibatches of archive `key`, which is the one after the previous call's."""
        if self._current is not None and self._current[0] == key:
            return self._current[1]
        if self.num_workers <= 0:
            batches = self.archive_batches(key)
        else:
            if self._it is None:
                keyed = lambda k: (k, self.archive_batches(k))
                self._it = Workers(self._keys(*key), keyed, self.num_workers, self.num_workers)
            got, batches = next(self._it)
            assert got == key, (got, key)
        self._current = (key, batches)
        return batches

    def state_dict(self) -> dict:
        return dict(self.position)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.close()
        self.position = {k: int(state[k]) for k in ("epoch", "archive", "batch")}

    def __iter__(self):
        return self

    def __next__(self) -> TrainBatch:
        e, a, b = self.position["epoch"], self.position["archive"], self.position["batch"]
        for _ in range(len(self.paths) + 1):
            batches = self._archive((e, a))
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
        """Stops and joins the workers; iterating again restarts them from `state_dict()`."""
        if self._it is not None:
            self._it.close()
            self._it = None
