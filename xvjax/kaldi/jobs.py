"""Kaldi's parallel jobs (`--nj`, `JOB=1:N`): one table split over N jobs and put back together.

A Kaldi recipe runs N copies of a binary, job `JOB` (1..N) on `split<N>/JOB` of the data, each
writing `name.JOB.ark` and `name.JOB.scp`, then concatenates the scp files. xvjax's multi-process
commands do the same within one command (job = process index + 1):

- `job_wspecifier("ark,scp:xvector.ark,xvector.scp", job=2, num_jobs=4)` ->
  `ark,scp:xvector.2.ark,xvector.2.scp` (a `JOB` in the names is replaced instead, as queue.pl does,
  `ark,scp:xvector.JOB.ark,xvector.JOB.scp`); `merged_scp(wspec)` is the scp of the whole table
  (`xvector.scp`), written by `merge_scps` from the jobs' scp files, in the input's key order.
- `assign_by_length(lengths, num_jobs)`: which job takes each utterance, balanced by length (frames
  or seconds) rather than by count, the same on every process (a pure function of the lengths in
  input order).
- `TableShare(rspec, job, num_jobs)`: one job's utterances of a feature table, balanced by frames
  (an `scp:` table's lengths come from the matrix headers, and a job reads only its own matrices).
- `split_ranges(num_items, num_jobs)`: contiguous, equal-count ranges (rows of a score matrix,
  lines of a trial list).

Standard output and pipes cannot be split or merged: with more than one job the wspecifier must
name files.
"""

from __future__ import annotations

import heapq
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from xvjax import fileutil
from xvjax.errors import XvjaxError
from xvjax.kaldi import streams, tables
from xvjax.kaldi.specifiers import parse_rspecifier, parse_wspecifier

log = logging.getLogger("xvjax")

__all__ = [
    "job_filename",
    "job_wspecifier",
    "merged_scp",
    "merge_scps",
    "merge_job_tables",
    "concat_files",
    "check_file_output",
    "assign_by_length",
    "TableShare",
    "split_ranges",
]

_EXTENSION = re.compile(r"(\.[A-Za-z0-9]+)$")


def job_filename(path: str, job: int) -> str:
    """`path` for job `job` (1-based): `JOB` replaced by the number, else `.JOB` put before the
    file's extension (`xvector.ark` -> `xvector.3.ark`; no extension: `scores` -> `scores.3`)."""
    if "JOB" in path:
        return path.replace("JOB", str(job))
    folder, base = os.path.split(path)
    m = _EXTENSION.search(base)
    base = f"{base[: m.start()]}.{job}{m.group(1)}" if m and m.start() > 0 else f"{base}.{job}"
    return os.path.join(folder, base)


def check_file_output(name: str | None, wspec: str) -> None:
    """XvjaxError unless `name` (an output of several jobs) is a file, not a stream or pipe."""
    if name is None:
        return
    kind, _ = streams.classify_wxfilename(name)
    if kind != "file":
        raise XvjaxError(
            f"'{wspec}': several processes cannot write one stream or pipe; name files "
            "(e.g. ark,scp:xvector.ark,xvector.scp: each process writes xvector.N.ark)"
        )


def _options(wspec: str) -> str:
    return wspec.partition(":")[0]


def job_wspecifier(wspec: str, job: int, num_jobs: int) -> str:
    """The wspecifier job `job` (1-based) of `num_jobs` writes (see the module docstring). With one
    job and no `JOB` in the names it is `wspec` itself (a plain single-process run)."""
    spec = parse_wspecifier(wspec)
    if num_jobs == 1 and "JOB" not in wspec:
        return wspec
    for name in (spec.ark, spec.scp):
        check_file_output(name, wspec)
    if spec.scp is None:
        raise XvjaxError(
            f"'{wspec}': with {num_jobs} processes the output needs an scp to merge the jobs' "
            "archives (e.g. ark,scp:out.ark,out.scp)"
        )
    names = [job_filename(n, job) for n in (spec.ark, spec.scp) if n is not None]
    return f"{_options(wspec)}:{','.join(names)}"


def merged_scp(wspec: str, num_jobs: int) -> str | None:
    """The scp file of the whole table (the jobs' scp files merged), or None when the jobs' own
    outputs are the table (one job and no `JOB`)."""
    spec = parse_wspecifier(wspec)
    if num_jobs == 1 and "JOB" not in wspec:
        return None
    if spec.scp is None:
        return None
    scp = spec.scp.replace(".JOB", "").replace("JOB", "")
    return scp


def merge_scps(job_scps: Sequence[str], out_scp: str, key_order: Iterable[str] | None = None):
    """Writes the lines of the jobs' scp files to `out_scp` (atomically): in `key_order` when given
    (keys not written by any job left out), else job by job. Returns the number of lines.

    A key in two jobs' files is an error (the jobs were not disjoint)."""
    lines: dict[str, str] = {}
    in_order: list[str] = []
    for path in job_scps:
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    key = line.split(None, 1)[0] if line.strip() else ""
                    if not key:
                        continue
                    if key in lines:
                        raise XvjaxError(f"key '{key}' is in two jobs' outputs ({path})")
                    lines[key] = line if line.endswith("\n") else line + "\n"
                    in_order.append(key)
        except FileNotFoundError:
            raise XvjaxError(
                f"job output '{path}' is missing (not on a shared file system?)"
            ) from None
    order = in_order if key_order is None else [k for k in key_order if k in lines]
    with fileutil.atomic_open(out_scp, "w", encoding="utf-8") as out:
        out.writelines(lines[k] for k in order)
    return len(order)


def merge_job_tables(wspec: str, num_jobs: int, key_order: Iterable[str] | None = None):
    """Writes `merged_scp(wspec)` from the scp files the jobs wrote with `job_wspecifier`
    (`merge_scps`); returns its path, or None when there is nothing to merge."""
    merged = merged_scp(wspec, num_jobs)
    if merged is None:
        return None
    scp = parse_wspecifier(wspec).scp
    merge_scps([job_filename(scp, j + 1) for j in range(num_jobs)], merged, key_order)
    return merged


def concat_files(parts: Sequence[str], out: str) -> None:
    """Writes the files `parts` one after the other to `out` (atomically)."""
    with fileutil.atomic_open(out, "wb") as f:
        for part in parts:
            try:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 22):
                        f.write(chunk)
            except FileNotFoundError:
                raise XvjaxError(
                    f"job output '{part}' is missing (not on a shared file system?)"
                ) from None


def assign_by_length(lengths: Iterable[float], num_jobs: int) -> list[int]:
    """Job index (0-based) of each item, in input order: each item goes to the job with the least
    total length so far (the lowest index on ties). Every job ends within one item's length of the
    others, and the result depends only on the lengths, so every process computes the same split."""
    if num_jobs < 1:
        raise XvjaxError(f"number of jobs must be positive, got {num_jobs}")
    heap = [(0.0, j) for j in range(num_jobs)]  # (total length, job): least loaded first
    out = []
    for n in lengths:
        load, j = heapq.heappop(heap)
        heapq.heappush(heap, (load + max(float(n), 0.0), j))
        out.append(j)
    return out


def split_ranges(num_items: int, num_jobs: int) -> list[range]:
    """`num_jobs` contiguous ranges covering 0..num_items, sizes differing by at most one."""
    base, extra = divmod(num_items, num_jobs)
    out, start = [], 0
    for j in range(num_jobs):
        stop = start + base + (1 if j < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


class TableShare:
    """Job `job`'s (0-based) share of the matrix table `rspec`, the `num_jobs` jobs balanced by
    rows (`assign_by_length` in table order).

    Iterating yields this job's (key, float32 matrix) in table order. For an `scp:` table the rows
    come from each matrix's header and only this job's matrices are read; an archive (a file or a
    pipe) is read whole by every job, each keeping its share. After the iteration `all_keys` holds
    every key of the table in order (the order of the merged scp) and `num_rows` the rows of each.
    Unreadable entries raise XvjaxError naming the key, as `tables.read` does.
    """

    def __init__(self, rspec: str, job: int, num_jobs: int):
        self.rspec, self.job, self.num_jobs = rspec, job, num_jobs
        self.spec = parse_rspecifier(rspec)
        self.label = f"{self.spec.type}:{streams.printable(self.spec.filename)}"
        self.all_keys: list[str] = []
        self.num_rows: list[int] = []

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        self.all_keys, self.num_rows = [], []
        if self.spec.type == "scp":
            yield from self._script()
        else:
            yield from self._archive()

    def _entry(self, key: str, rx: str, read):
        try:
            return read(rx)
        except XvjaxError as e:
            msg = f"{self.label}: key '{key}' ({rx}): {e}"
            if self.spec.permissive:
                log.warning("%s (permissive: skipped)", msg)
                return None
            raise XvjaxError(msg) from None

    def _script(self):
        entries = []
        for key, rx in tables.read_scp(self.spec.filename):
            rows = self._entry(key, rx, tables.matrix_num_rows)
            if rows is not None:
                entries.append((key, rx))
                self.all_keys.append(key)
                self.num_rows.append(rows)
        owners = assign_by_length(self.num_rows, self.num_jobs)
        for (key, rx), owner in zip(entries, owners, strict=True):
            if owner == self.job:
                mat = self._entry(key, rx, lambda r: tables.read_matrix(r))
                if mat is not None:
                    yield key, mat

    def _archive(self):
        heap = [(0.0, j) for j in range(self.num_jobs)]
        for key, mat in tables.read(self.rspec, kind="matrix"):
            rows = int(np.shape(mat)[0]) if np.ndim(mat) == 2 else 0
            self.all_keys.append(key)
            self.num_rows.append(rows)
            load, owner = heapq.heappop(heap)  # the rule of `assign_by_length`, one item at a time
            heapq.heappush(heap, (load + rows, owner))
            if owner == self.job:
                yield key, mat
