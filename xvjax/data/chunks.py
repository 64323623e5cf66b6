"""Training chunks as Kaldi's x-vector egs: balanced speakers, random chunk lengths, deterministic.

Kaldi (`sid/nnet3/xvector/allocate_egs.py`) fills each egs archive like this: one chunk length drawn
uniformly from [min-frames-per-chunk, max-frames-per-chunk] for the whole archive; about
`frames-per-iter / length + 1` examples; the speaker of each example is popped from
`num-repeats x all speakers` shuffled (so every speaker appears `num-repeats` times per archive and the
archive stops early when they run out); the utterance is drawn uniformly among that speaker's utterances
that are at least `length` frames long; the start frame uniformly in [0, utt_len - length].

`allocate_archive` does exactly that for archive k with its own generator seeded by (seed, k), so
archive k is the same whatever happened before it; `ChunkSampler` walks archives in order and cuts each
into minibatches (one chunk length per minibatch, as `nnet3-merge-egs` gives Kaldi). Its position
`{"archive": k, "batch": b}` is all that a checkpoint needs to resume the stream exactly.

Differences from Kaldi, on purpose: the archive size is rounded to whole minibatches; chunk lengths can
be rounded down to a multiple of `chunk_quantum` frames to bound the number of jit compilations; when
the speakers run out before one minibatch is full another shuffled round is added.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


@dataclasses.dataclass(frozen=True)
class UttTable:
    """What chunk allocation needs to know about a training set (after filtering).

    utt_ids: (num_utts,) names; lengths: (num_utts,) frames (after VAD); labels: (num_utts,) int
    speaker index in [0, num_speakers); speakers: (num_speakers,) names in label order.
    """

    utt_ids: tuple[str, ...]
    lengths: np.ndarray
    labels: np.ndarray
    speakers: tuple[str, ...]

    @property
    def num_utts(self) -> int:
        return len(self.utt_ids)

    @property
    def num_speakers(self) -> int:
        return len(self.speakers)


@dataclasses.dataclass
class FilterReport:
    num_utts_in: int = 0
    num_speakers_in: int = 0
    short_utts: list[str] = dataclasses.field(default_factory=list)
    missing_utts: list[str] = dataclasses.field(default_factory=list)
    small_speakers: list[str] = dataclasses.field(default_factory=list)
    utts_of_small_speakers: int = 0


def build_utt_table(
    utt2len: Mapping[str, int],
    utt2spk: Mapping[str, str],
    min_len: int,
    min_utts_per_spk: int = 1,
    source: str = "",
) -> tuple[UttTable, FilterReport]:
    """Drops utterances shorter than `min_len` and then speakers with fewer than `min_utts_per_spk`
    utterances, as the recipe does before get_egs.sh; logs what was dropped and how many.

    Speaker labels are assigned in sorted speaker order (Kaldi's utt2int from sorted spk2utt).
    Raises XvjaxError when nothing usable remains.
    """
    rep = FilterReport(num_utts_in=len(utt2spk), num_speakers_in=len(set(utt2spk.values())))
    kept: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        if utt not in utt2len:
            rep.missing_utts.append(utt)
            continue
        if int(utt2len[utt]) < min_len:
            rep.short_utts.append(utt)
            continue
        kept.setdefault(utt2spk[utt], []).append(utt)
    where = f" in {source}" if source else ""
    if rep.missing_utts:
        log.warning(
            "%d of %d utterances%s have no features and were dropped (e.g. %s)",
            len(rep.missing_utts),
            rep.num_utts_in,
            where,
            rep.missing_utts[0],
        )
    if rep.short_utts:
        log.warning(
            "%d of %d utterances%s are shorter than the minimum chunk of %d frames and were "
            "dropped (e.g. %s)",
            len(rep.short_utts),
            rep.num_utts_in,
            where,
            min_len,
            rep.short_utts[0],
        )
    speakers = []
    for spk in sorted(kept):
        if len(kept[spk]) < min_utts_per_spk:
            rep.small_speakers.append(spk)
            rep.utts_of_small_speakers += len(kept[spk])
        else:
            speakers.append(spk)
    if rep.small_speakers:
        log.warning(
            "%d of %d speakers%s have fewer than %d usable utterances and were dropped with their "
            "%d utterances (e.g. %s)",
            len(rep.small_speakers),
            rep.num_speakers_in,
            where,
            min_utts_per_spk,
            rep.utts_of_small_speakers,
            rep.small_speakers[0],
        )
    if len(speakers) < 2:
        raise XvjaxError(
            f"training data{where}: {len(speakers)} speaker(s) left after dropping utterances "
            f"shorter than {min_len} frames and speakers with fewer than {min_utts_per_spk} "
            f"utterances; need at least 2"
        )
    utts, lens, labels = [], [], []
    for label, spk in enumerate(speakers):
        for utt in kept[spk]:
            utts.append(utt)
            lens.append(int(utt2len[utt]))
            labels.append(label)
    table = UttTable(
        tuple(utts), np.asarray(lens, np.int64), np.asarray(labels, np.int32), tuple(speakers)
    )
    log.info(
        "Training set%s: %d utterances of %d speakers (%d frames)",
        where,
        table.num_utts,
        table.num_speakers,
        int(table.lengths.sum()),
    )
    return table, rep


@dataclasses.dataclass(frozen=True)
class ChunkConfig:
    min_chunk: int = 200
    max_chunk: int = 400
    chunk_quantum: int = 1  # chunk lengths rounded down to a multiple of this (>= min_chunk)
    frames_per_archive: int = 1_000_000  # Kaldi --frames-per-iter
    num_repeats: int = 50  # Kaldi --num-repeats
    batch_size: int = 64  # global minibatch
    seed: int = 0

    def __post_init__(self):
        if not 1 < self.min_chunk <= self.max_chunk:
            raise XvjaxError(
                f"chunk lengths: need 1 < min_chunk <= max_chunk, got {self.min_chunk}, "
                f"{self.max_chunk}"
            )
        if self.batch_size < 1 or self.num_repeats < 1 or self.chunk_quantum < 1:
            raise XvjaxError("batch_size, num_repeats and chunk_quantum must be positive")


@dataclasses.dataclass(frozen=True)
class Archive:
    """One archive of examples: all of length `chunk_len`; arrays are (num_egs,)."""

    index: int
    chunk_len: int
    utt_idx: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray

    @property
    def num_egs(self) -> int:
        return len(self.utt_idx)


def chunk_lengths(cfg: ChunkConfig) -> list[int]:
    """All chunk lengths the sampler can produce (one jit shape each)."""
    return sorted({_quantize(n, cfg) for n in range(cfg.min_chunk, cfg.max_chunk + 1)})


def _quantize(length: int, cfg: ChunkConfig) -> int:
    if cfg.chunk_quantum <= 1:
        return length
    q = (length // cfg.chunk_quantum) * cfg.chunk_quantum
    return max(q, cfg.min_chunk)


class _SpeakerIndex:
    """Per speaker, its utterances sorted by length, for 'uniform among utts >= length' draws."""

    def __init__(self, table: UttTable):
        order = np.lexsort((np.arange(table.num_utts), table.lengths))
        self.by_spk: list[np.ndarray] = []
        self.len_by_spk: list[np.ndarray] = []
        for s in range(table.num_speakers):
            idx = order[table.labels[order] == s]
            self.by_spk.append(idx)
            self.len_by_spk.append(table.lengths[idx])

    def eligible(self, s: int, length: int) -> np.ndarray:
        first = np.searchsorted(self.len_by_spk[s], length, side="left")
        return self.by_spk[s][first:]


def allocate_archive(table: UttTable, cfg: ChunkConfig, index: int, spk_index=None) -> Archive:
    """Archive `index` (0-based) as allocate_egs.py would fill it; a pure function of its inputs."""
    rng = np.random.default_rng([cfg.seed, index])
    length = _quantize(int(rng.integers(cfg.min_chunk, cfg.max_chunk + 1)), cfg)
    spk_index = spk_index or _SpeakerIndex(table)
    speakers = np.asarray(
        [s for s in range(table.num_speakers) if spk_index.eligible(s, length).size > 0]
    )
    if speakers.size == 0:
        raise XvjaxError(f"no utterance is at least {length} frames long")
    want = int(cfg.frames_per_archive / length + 1)
    want = max(cfg.batch_size, (want // cfg.batch_size) * cfg.batch_size)
    pool = np.tile(speakers, cfg.num_repeats)
    rng.shuffle(pool)
    num_egs = min(want, (pool.size // cfg.batch_size) * cfg.batch_size)
    while num_egs < cfg.batch_size:  # too few speakers x repeats for one minibatch
        more = np.tile(speakers, cfg.num_repeats)
        rng.shuffle(more)
        pool = np.concatenate([pool, more])
        num_egs = min(want, (pool.size // cfg.batch_size) * cfg.batch_size)
    spks = pool[:num_egs]
    utt_idx = np.empty(num_egs, np.int64)
    offsets = np.empty(num_egs, np.int64)
    for i, s in enumerate(spks):
        cand = spk_index.eligible(int(s), length)
        u = cand[int(rng.integers(cand.size))]
        utt_idx[i] = u
        offsets[i] = int(rng.integers(table.lengths[u] - length + 1))
    return Archive(index, length, utt_idx, offsets, table.labels[utt_idx].astype(np.int32))


@dataclasses.dataclass(frozen=True)
class ChunkBatch:
    """This process's share of one global minibatch; arrays are (local_batch,)."""

    archive: int
    batch: int
    chunk_len: int
    utt_idx: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    next_position: dict  # sampler position after this batch (what a checkpoint stores)


class ChunkSampler:
    """Deterministic stream of minibatches of chunk specs; position is checkpointable.

    With `process_count` > 1 each process gets rows [p*B/P, (p+1)*B/P) of the same global batch, so a
    multi-host run sees exactly the examples of a single-host run.
    """

    def __init__(
        self,
        table: UttTable,
        cfg: ChunkConfig,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if cfg.batch_size % process_count:
            raise XvjaxError(
                f"batch size {cfg.batch_size} is not divisible by the {process_count} processes"
            )
        self.table, self.cfg = table, cfg
        self.process_index, self.process_count = process_index, process_count
        self.local_batch = cfg.batch_size // process_count
        self._spk_index = _SpeakerIndex(table)
        self._archive: Archive | None = None
        self.position = {"archive": 0, "batch": 0}

    def archive(self, index: int) -> Archive:
        if self._archive is None or self._archive.index != index:
            self._archive = allocate_archive(self.table, self.cfg, index, self._spk_index)
        return self._archive

    def state_dict(self) -> dict:
        return dict(self.position)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.position = {"archive": int(state["archive"]), "batch": int(state["batch"])}

    def __iter__(self):
        return self

    def __next__(self) -> ChunkBatch:
        k, b = self.position["archive"], self.position["batch"]
        arc = self.archive(k)
        if b * self.cfg.batch_size >= arc.num_egs:
            k, b = k + 1, 0
            arc = self.archive(k)
        lo = b * self.cfg.batch_size + self.process_index * self.local_batch
        sl = slice(lo, lo + self.local_batch)
        nxt = {"archive": k, "batch": b + 1}
        self.position = nxt
        return ChunkBatch(
            k, b, arc.chunk_len, arc.utt_idx[sl], arc.offsets[sl], arc.labels[sl], dict(nxt)
        )


def egs_counts(table: UttTable, archives: Sequence[Archive]) -> np.ndarray:
    """Examples per speaker over the given archives (Kaldi's pdf2num)."""
    counts = np.zeros(table.num_speakers, np.int64)
    for arc in archives:
        np.add.at(counts, arc.labels, 1)
    return counts
