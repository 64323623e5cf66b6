"""Streams of nnet3 examples as Kaldi's egs binaries transform them (`src/nnet3/nnet-example-utils.cc`,
`src/nnet3bin/nnet3-{merge,shuffle,subset,copy,xvector-get}-egs.cc`).

- `merge_examples` / `merge_egs`: minibatches (`nnet3-merge-egs`, Kaldi's ExampleMerger): examples
  of the same structure are grouped; a group is written as one merged example `merged-<i>-<size>`
  as soon as it holds the largest size of its `--minibatch-size` rule, and at the end the rest is
  written in the largest allowed sizes (what no allowed size takes is discarded). A merged
  example has each NnetIo's rows in example order with `n` = example index (times the stride of
  already-merged input); dense and compressed features become one full matrix, sparse ones stay
  sparse.
- `select_from_example`: `nnet3-copy-egs --frame/--left-context/--right-context/--frame-shift`.
- `shuffle_egs`, `subset_egs`: `nnet3-shuffle-egs` (full, or partial with `--buffer-size`) and
  `nnet3-subset-egs` (reservoir sampling, then shuffled). Both are seeded by `--srand`, but
  Kaldi's order comes from the C++ standard library's `std::shuffle`/`rand()`, which numpy does
  not reproduce: the same seed gives the same order in xvjax, not Kaldi's order.
- `read_ranges` / `xvector_egs_from_ranges`: `nnet3-xvector-get-egs` from allocate_egs.py's
  ranges file (`utt local-archive archive start-frame num-frames speaker`).

Rules follow Kaldi's `--minibatch-size` syntax: `256`, `128,256`, `64:128` (a range), or per
example size `128=64/256=32` (the rule whose size is closest to the example's is used).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import compressed, streams
from xvjax.kaldi.egs import NnetExample, NnetIo, SparseMatrix, xvector_example

log = logging.getLogger("xvjax")


# ---------------------------------------------------------------------------- merging


@dataclasses.dataclass(frozen=True)
class MinibatchRule:
    """One `--minibatch-size` rule: the example size it is for (0: any) and allowed ranges."""

    eg_size: int
    ranges: tuple[tuple[int, int], ...]

    @property
    def largest(self) -> int:
        return max(hi for _, hi in self.ranges)

    def largest_in_range(self, available: int) -> int:
        """The largest allowed minibatch size <= available (0 if none)."""
        best = 0
        for lo, hi in self.ranges:
            if available >= lo:
                best = max(best, min(hi, available))
        return best


def _int_set(text: str, option: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for part in text.split(","):
        try:
            ends = [int(v) for v in part.split(":")]
        except ValueError:
            raise XvjaxError(f"could not parse option --minibatch-size={option}") from None
        if not 1 <= len(ends) <= 2 or ends[0] > ends[-1] or ends[0] <= 0:
            raise XvjaxError(f"could not parse option --minibatch-size={option}")
        ranges.append((ends[0], ends[-1]))
    return tuple(ranges)


def parse_minibatch_size(text: str) -> list[MinibatchRule]:
    """Kaldi's ExampleMergingConfig rules from `--minibatch-size`."""
    parts = text.split("/")
    rules = []
    for part in parts:
        if "=" in part:
            size, _, sets = part.partition("=")
            try:
                eg_size = int(size)
            except ValueError:
                raise XvjaxError(f"could not parse option --minibatch-size={text}") from None
            rules.append(MinibatchRule(eg_size, _int_set(sets, text)))
        elif len(parts) != 1:
            raise XvjaxError(
                f"could not parse option --minibatch-size={text} (all rules must have eg-size "
                "specified if >1 rule)"
            )
        else:
            rules.append(MinibatchRule(0, _int_set(part, text)))
    sizes = [r.eg_size for r in rules]
    if len(set(sizes)) != len(sizes):
        raise XvjaxError(f"invalid --minibatch-size={text} (repeated example-sizes)")
    return rules


def minibatch_size(rules: list[MinibatchRule], eg_size: int, available: int, ended: bool) -> int:
    """ExampleMergingConfig::MinibatchSize: how many of `available` examples to merge now."""
    rule = min(rules, key=lambda r: abs(eg_size - r.eg_size))  # first of the closest
    if not ended:
        return rule.largest if rule.largest <= available else 0
    return rule.largest_in_range(available)


def example_size(eg: NnetExample) -> int:
    """GetNnetExampleSize: the most indexes of any NnetIo."""
    return max(len(io.indexes) for io in eg.io.values())


def _structure(eg: NnetExample) -> tuple:
    """What makes examples mergeable together (NnetExampleStructureCompare)."""
    return tuple((io.name, io.features.shape, io.indexes.tobytes()) for io in eg.io.values())


def _append_rows(mats: list) -> np.ndarray | SparseMatrix:
    """AppendGeneralMatrixRows: sparse if every part is sparse, else one float32 matrix."""
    if all(isinstance(m, SparseMatrix) for m in mats):
        cols = {m.num_cols for m in mats}
        if len(cols) > 1:
            raise XvjaxError(f"merging sparse features of different dims {sorted(cols)}")
        return SparseMatrix(cols.pop(), [row for m in mats for row in m.rows])
    dense = [m.to_dense() if isinstance(m, SparseMatrix) else np.asarray(m) for m in mats]
    return np.concatenate(dense, axis=0).astype(np.float32)


def merge_examples(egs: list[NnetExample], compress: bool = False) -> NnetExample:
    """MergeExamples: one example holding `egs` with `n` = their index (see module docstring)."""
    if not egs:
        raise XvjaxError("no examples to merge")
    names = sorted({name for eg in egs for name in eg.io})
    dims: dict[str, int] = {}
    for eg in egs:
        for io in eg.io.values():
            d = io.features.shape[1]
            if dims.setdefault(io.name, d) != d:
                raise XvjaxError(
                    f"merging examples with inconsistent feature dims: {dims[io.name]} vs. {d} "
                    f"for '{io.name}'"
                )
    first = next(iter(egs[0].io.values()))
    stride = int(first.indexes[:, 0].max(initial=0)) + 1
    merged = {}
    for name in names:
        parts = [(n, eg.io[name]) for n, eg in enumerate(egs) if name in eg.io]
        indexes = []
        for n, io in parts:
            if io.indexes.size and io.indexes[:, 0].max() >= stride:
                raise XvjaxError(f"merging examples of different strides ('{name}')")
            idx = io.indexes.astype(np.int32, copy=True)
            idx[:, 0] += n * stride
            indexes.append(idx)
        feats = _append_rows([io.features for _, io in parts])
        raw = None
        if compress and not isinstance(feats, SparseMatrix):
            raw = compressed.compress(feats, 1)
            feats = compressed.decode(raw)
        merged[name] = NnetIo(name, np.concatenate(indexes, axis=0), feats, raw)
    return NnetExample(merged)


@dataclasses.dataclass
class MergeStats:
    """What ExampleMergingStats logs: minibatches per (example size, minibatch size), discards."""

    written: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict)
    discarded: dict[int, int] = dataclasses.field(default_factory=dict)

    def log(self) -> None:
        sizes = sorted({s for s, _ in self.written} | set(self.discarded))
        parts = []
        for s in sizes:
            mbs = ",".join(f"{m}->{c}" for (es, m), c in self.written.items() if es == s)
            sep = "," if mbs else ""
            parts.append(f"{s}={{{mbs}{sep}d={self.discarded.get(s, 0)}}}")
        log.info(
            "Merged specific eg types as follows [format: <eg-size1>={<mb-size1>->"
            "<num-minibatches1>,<mbsize2>-><num-minibatches2>.../d=<num-discarded>},"
            "<egs-size2>={...},... (note,egs-size == number of input frames including context)."
        )
        log.info("%s", ",".join(parts))
        num_mb = sum(self.written.values())
        kept = sum(m * c for (_, m), c in self.written.items())
        lost = sum(self.discarded.values())
        total = kept + lost
        if total:
            size = sum(es * m * c for (es, m), c in self.written.items()) + sum(
                es * n for es, n in self.discarded.items()
            )
            log.info(
                "Processed %d egs of avg. size %.4g into %d minibatches, discarding %.4g%% of "
                "egs.  Avg minibatch size was %.4g, #distinct types of egs/minibatches was %d/%d",
                total, size / total, num_mb, 100.0 * lost / total, kept / max(num_mb, 1),
                len(sizes), len(self.written),
            )  # fmt: skip


def merge_egs(
    examples: Iterable[tuple[str, NnetExample]],
    rules: list[MinibatchRule],
    compress: bool = False,
    stats: MergeStats | None = None,
) -> Iterator[tuple[str, NnetExample]]:
    """ExampleMerger: yields `(merged-<i>-<size>, example)` minibatches (module docstring).

    Groups still open at the end are finished in the order they were first seen (Kaldi's order
    there is its hash map's)."""
    stats = stats if stats is not None else MergeStats()
    groups: dict[tuple, list[NnetExample]] = {}
    count = 0

    def emit(group: list[NnetExample]):
        nonlocal count
        size = example_size(group[0])
        key = (size, len(group))
        stats.written[key] = stats.written.get(key, 0) + 1
        name = f"merged-{count}-{len(group)}"
        count += 1
        return name, merge_examples(group, compress)

    for _, eg in examples:
        group = groups.setdefault(_structure(eg), [])
        group.append(eg)
        if minibatch_size(rules, example_size(eg), len(group), ended=False):
            del groups[_structure(eg)]
            yield emit(group)
    for group in groups.values():
        size = example_size(group[0])
        while group:
            n = minibatch_size(rules, size, len(group), ended=True)
            if n == 0:
                break
            yield emit(group[:n])
            group = group[n:]
        if group:
            stats.discarded[size] = stats.discarded.get(size, 0) + len(group)


# ---------------------------------------------------------------------------- frame selection


def _t_range(io: NnetIo) -> tuple[int, int]:
    return int(io.indexes[:, 1].min()), int(io.indexes[:, 1].max())


def _filter_rows(io: NnetIo, lo: int, hi: int) -> NnetIo:
    """FilterExample for one NnetIo: rows with lo <= t <= hi (all kept: unchanged, compressed
    bytes included; otherwise compressed input becomes a full matrix, as Kaldi)."""
    keep = (io.indexes[:, 1] >= lo) & (io.indexes[:, 1] <= hi)
    if not keep.any():
        raise XvjaxError(f"frame selection removed all indexes for '{io.name}'")
    if keep.all():
        return io
    feats = io.features
    if isinstance(feats, SparseMatrix):
        feats = SparseMatrix(
            feats.num_cols, [r for r, k in zip(feats.rows, keep, strict=True) if k]
        )
    else:
        feats = np.ascontiguousarray(np.asarray(feats)[keep])
    return NnetIo(io.name, io.indexes[keep].copy(), feats)


def select_from_example(
    eg: NnetExample,
    frame: str = "",
    left_context: int = -1,
    right_context: int = -1,
    frame_shift: int = 0,
    rng: np.random.Generator | None = None,
) -> NnetExample | None:
    """SelectFromExample: keep one output frame (`frame` = an integer or "random"; "" keeps all)
    and at most `left_context`/`right_context` input frames around the outputs (-1: all), then
    shift every time except the `ivector` input by `frame_shift`. None when `frame` is outside
    the example's output frames (Kaldi then skips the example)."""
    for name in ("input", "output"):
        if name not in eg.io:
            raise XvjaxError(f"example does not have any {name} named '{name}'")
    if any(np.any(io.indexes[:, 0] != 0) for io in eg.io.values()):
        raise XvjaxError(
            "too late to perform frame selection/context reduction on these examples "
            "(already merged?)"
        )
    min_in, max_in = _t_range(eg.io["input"])
    min_out, max_out = _t_range(eg.io["output"])
    if frame:
        if frame == "random":
            rng = rng or np.random.default_rng()
            min_out = max_out = int(rng.integers(min_out, max_out + 1))
        else:
            try:
                t = int(frame)
            except ValueError:
                raise XvjaxError(f"invalid option --frame='{frame}'") from None
            if not min_out <= t <= max_out:
                return None
            min_out = max_out = t
    if left_context != -1:
        min_in = max(min_in, min_out - left_context)
    if right_context != -1:
        max_in = min(max_in, max_out + right_context)
    out = {}
    for name, io in eg.io.items():
        if name == "input":
            io = _filter_rows(io, min_in, max_in)
        elif name == "output":
            io = _filter_rows(io, min_out, max_out)
        if frame_shift and name != "ivector":
            idx = io.indexes.copy()
            idx[:, 1] += frame_shift
            io = NnetIo(io.name, idx, io.features, io.compressed)
        out[name] = io
    return NnetExample(out)


# ---------------------------------------------------------------------------- order


def shuffle_egs(
    examples: Iterable[tuple[str, NnetExample]], seed: int = 0, buffer_size: int = 0
) -> Iterator[tuple[str, NnetExample]]:
    """nnet3-shuffle-egs: all examples in a random order, or with `buffer_size` > 0 a partial
    shuffle in bounded memory (each new example takes a random buffer slot, writing out the
    example that was there; the buffer is written in slot order at the end)."""
    rng = np.random.default_rng(seed)
    if buffer_size <= 0:
        items = list(examples)
        for i in rng.permutation(len(items)):
            yield items[i]
        return
    buffer: list[tuple[str, NnetExample] | None] = [None] * buffer_size
    for item in examples:
        slot = int(rng.integers(buffer_size))
        if buffer[slot] is not None:
            yield buffer[slot]
        buffer[slot] = item
    yield from (item for item in buffer if item is not None)


def subset_egs(
    examples: Iterable[tuple[str, NnetExample]], n: int, seed: int = 0, randomize: bool = True
) -> tuple[list[tuple[str, NnetExample]], int]:
    """nnet3-subset-egs: a uniform random subset of `n` examples by reservoir sampling (memory
    for `n` examples), shuffled if `randomize`. Returns (subset, number read)."""
    rng = np.random.default_rng(seed)
    kept: list[tuple[str, NnetExample]] = []
    num_read = 0
    for item in examples:
        num_read += 1
        if num_read <= n:
            kept.append(item)
        elif rng.random() < np.float32(n) / np.float32(num_read):
            kept[int(rng.integers(n))] = item
    if randomize:
        kept = [kept[i] for i in rng.permutation(len(kept))]
    return kept, num_read


# ---------------------------------------------------------------------------- x-vector egs


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One line of a ranges file: where one example comes from and which archive it goes to."""

    utt: str
    archive: int  # index into the output wspecifiers
    start: int
    length: int
    label: int
    key: str  # utt-START-LEN-LABEL, as the ranges file spells the numbers


def read_ranges(rxfilename: str) -> dict[str, list[Chunk]]:
    """allocate_egs.py's ranges file: chunks by utterance, in file order."""
    out: dict[str, list[Chunk]] = {}
    text = streams.read_all(rxfilename).decode("utf-8", "replace")
    where = streams.printable(rxfilename)
    for num, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise XvjaxError(
                f"{where}:{num}: expected 6 fields in line of range file, got {len(fields)}"
            )
        utt, archive, _, start, length, label = fields
        try:
            values = [int(archive), int(start), int(length), int(label)]
        except ValueError:
            raise XvjaxError(f"{where}:{num}: expected integers in '{line}'") from None
        key = f"{utt}-{start}-{length}-{label}"
        out.setdefault(utt, []).append(Chunk(utt, values[0], values[1], values[2], values[3], key))
    return out


def xvector_chunk_example(
    feats: np.ndarray, chunk: Chunk, num_pdfs: int, compress: bool = True
) -> NnetExample | None:
    """The example nnet3-xvector-get-egs makes for a chunk: rows start..start+length-1 (moved
    back to fit when the chunk overshoots the end), or None if the utterance is too short."""
    rows = feats.shape[0]
    if rows < chunk.length:
        return None
    start = chunk.start + min(0, rows - chunk.start - chunk.length)
    return xvector_example(feats[start : start + chunk.length], chunk.label, num_pdfs, compress)
