"""Kaldi tables: the one place in xvjax that understands rspecifiers and wspecifiers.

Everything else calls these functions with the user's specifier strings:

    for utt, feats in tables.read(rspec): ...          # sequential reader
    feats = tables.RandomAccess(rspec)[utt]            # random access (scp / sorted ark)
    with tables.Writer(wspec) as w: w[utt] = array      # atomic: nothing is written on failure
    d = tables.read_dict(rspec)                          # whole table in memory

Objects are numpy arrays: float32/float64 matrices (2-D) and vectors (1-D), int32 vectors.
Text tables (utt2spk, spk2utt, trials) are read with `read_text_table` / `read_text_lists`.

NOTE: first version, a thin layer over kaldiio; issue 2 completes it (options s/cs/o/p/f, compressed
writing with every method, precise errors, atomic writes for ark,scp and pipes).
"""

from __future__ import annotations

from collections.abc import Iterator

import kaldiio
import numpy as np

from xvjax.errors import XvjaxError


def read(rspec: str) -> Iterator[tuple[str, np.ndarray]]:
    """Yields (key, array) in table order."""
    try:
        with kaldiio.ReadHelper(rspec) as reader:
            for key, obj in reader:
                yield key, np.asarray(obj)
    except XvjaxError:
        raise
    except Exception as e:  # kaldiio raises many types; give one line with the specifier
        raise XvjaxError(f"error reading table '{rspec}': {e}") from None


def read_dict(rspec: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, obj in read(rspec):
        if key in out:
            raise XvjaxError(f"duplicate key '{key}' in table '{rspec}'")
        out[key] = obj
    return out


class RandomAccess:
    """Random access by key. For now loads the table lazily into a dict on first use."""

    def __init__(self, rspec: str):
        self.rspec = rspec
        self._table: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._table is None:
            self._table = read_dict(self.rspec)
        return self._table

    def __contains__(self, key: str) -> bool:
        return key in self._load()

    def __getitem__(self, key: str) -> np.ndarray:
        table = self._load()
        if key not in table:
            raise XvjaxError(f"key '{key}' not found in table '{self.rspec}'")
        return table[key]

    def keys(self):
        return self._load().keys()


class Writer:
    """Table writer; `w[key] = array`. Float64 arrays are written as double objects."""

    def __init__(self, wspec: str, compression_method: int | None = None):
        self.wspec = wspec
        self.compression_method = compression_method
        self._helper = None

    def __enter__(self) -> Writer:
        try:
            self._helper = kaldiio.WriteHelper(
                self.wspec, compression_method=self.compression_method
            )
        except Exception as e:
            raise XvjaxError(f"cannot open table for writing '{self.wspec}': {e}") from None
        return self

    def __setitem__(self, key: str, obj: np.ndarray) -> None:
        assert self._helper is not None, "use Writer as a context manager"
        self._helper(key, np.asarray(obj))

    def write(self, key: str, obj: np.ndarray) -> None:
        self[key] = obj

    def __exit__(self, *exc) -> None:
        if self._helper is not None:
            self._helper.close()


def write_dict(wspec: str, table: dict[str, np.ndarray]) -> None:
    with Writer(wspec) as w:
        for key, obj in table.items():
            w[key] = obj


def read_text_table(path: str) -> dict[str, str]:
    """`key value` per line (utt2spk, utt2num_frames, num_utts.ark); value is the rest of the line."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for num, line in enumerate(f, 1):
                parts = line.strip().split(maxsplit=1)
                if not parts:
                    continue
                if len(parts) != 2:
                    raise XvjaxError(f"{path}:{num}: expected 'key value', got '{line.strip()}'")
                if parts[0] in out:
                    raise XvjaxError(f"{path}:{num}: duplicate key '{parts[0]}'")
                out[parts[0]] = parts[1]
    except OSError as e:
        raise XvjaxError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise XvjaxError(f"{path}: not UTF-8 text") from None
    return out


def read_text_lists(path: str) -> dict[str, list[str]]:
    """`key v1 v2 ...` per line (spk2utt)."""
    return {k: v.split() for k, v in read_text_table(path).items()}
