"""Kaldi tables: the one place in xvjax that understands rspecifiers and wspecifiers.

Everything else calls these functions with the user's specifier strings:

    for utt, feats in tables.read(rspec): ...          # sequential reader
    feats = tables.RandomAccess(rspec)[utt]            # random access (scp / ark)
    with tables.Writer(wspec) as w: w[utt] = array      # atomic: nothing is written on failure
    d = tables.read_dict(rspec)                          # whole table in memory
    mat = tables.read_matrix("transform.mat")           # single objects (rx/wxfilenames)
    tables.write_vector("mean.vec", vec, binary=False)

Specifiers are Kaldi's (`src/util/kaldi-table.h`): `ark:`, `scp:`, `ark,t:`, `ark,scp:a.ark,a.scp`,
options `b`/`t` (binary/text output), `f`/`nf` (flush), `p` (permissive), `o` (each key read once),
`s` (keys sorted: checked), `cs` (called in sorted order), `bg` (accepted, no effect), with the
negations `no`, `np`, `ns`, `ncs`. Filenames may be `-` (stdin/stdout), `cmd |` (input pipe),
`| cmd` (output pipe) and, inside scp files, `a.ark:1234` (byte offset) and a range suffix
`[r1:r2]` / `[r1:r2,c1:c2]` (inclusive rows/columns, as Kaldi's extended filenames).

Objects are numpy arrays: float32/float64 matrices (2-D) and vectors (1-D), compressed matrices
decoded to float32, int32 vectors; int32 and float scalars as Python numbers. `kind=` asks for one
type ("matrix", "vector", "int32_vector", "int32", "float"; default "auto" = whatever is there).
Writers write float64 arrays as double objects, float32 as float; `compression_method=N` (Kaldi's
`--compression-method`, 1..7) compresses matrices bit-exactly as Kaldi's `copy-feats`.

Other Kaldi objects (e.g. nnet3 `NnetExample`s, `xvjax.kaldi.egs.EGS_CODEC`) go through the same
readers and writers with a codec: any object with

    read(f, binary: bool) -> obj      # f: `streams.InputStream` just after the `\0B` marker
                                      #    (binary) or the key's space (text); consume one object
    write(obj, binary: bool) -> bytes # the object's bytes, without the `\0B` marker

passed as `kind=codec` to `read` / `read_dict` / `RandomAccess` / `read_object` and as
`codec=codec` to `Writer` / `write_dict` / `write_object`. Specifier handling (options, scp
offsets, pipes, `-`, atomic writes, errors naming file and key) is then the same as for arrays.

Errors are `XvjaxError`s with one line naming the file, the key and the problem. With `p`,
unreadable scp entries are skipped and a broken archive ends the table, each with a warning.
Text tables (utt2spk, spk2utt, trials) are read with `read_text_table` / `read_text_lists`.

Why not kaldiio (2.18) underneath: it reads plain FM/DM/FV/DV correctly (the tests cross-check
it), but its compressed matrices are not Kaldi's numbers (decoding CM/CM2/CM3 differs from
copy-feats' output by up to 4e-3 for method 4, and its compressed writes differ from Kaldi's bytes
for methods 1-4, 6, 7), and it lacks the s/cs/o/p/bg options, `scp:` wspecifiers, int32/float
holders, atomic writes, permissive reading and errors naming file and key. So the formats live in
`primitives.py`, `holders.py` and `compressed.py`, the streams in `streams.py`, single
rx/wxfilename objects in `object_files.py` (re-exported here); kaldiio is only a test oracle.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator

from xvjax.errors import XvjaxError
from xvjax.kaldi import streams
from xvjax.kaldi.holders import FormatError
from xvjax.kaldi.object_files import (
    check_kind,
    encode_object,
    read_matrix,
    read_object,
    read_value,
    read_value_at,
    read_vector,
    write_matrix,
    write_object,
    write_vector,
)
from xvjax.kaldi.specifiers import (
    RSpecifier,
    WSpecifier,
    apply_range,
    check_key,
    is_rspecifier,
    is_wspecifier,
    parse_rspecifier,
    parse_wspecifier,
    split_range,
)
from xvjax.kaldi.text_tables import (
    read_text_lists,
    read_text_table,
    read_trials,
    rx_lines,
    write_text_table,
)

log = logging.getLogger("xvjax")

__all__ = [
    "RSpecifier",
    "WSpecifier",
    "parse_rspecifier",
    "parse_wspecifier",
    "is_rspecifier",
    "is_wspecifier",
    "read",
    "read_dict",
    "RandomAccess",
    "Writer",
    "write_dict",
    "read_object",
    "read_matrix",
    "read_vector",
    "write_object",
    "write_matrix",
    "write_vector",
    "read_scp",
    "read_text_table",
    "read_text_lists",
    "read_trials",
    "write_text_table",
]


# ------------------------------------------------------------------------------ reading

_SPACE = re.compile(rb"[ \t\r\n]")


def _read_key(f) -> str | None:
    """Reads `key` + one space/tab (newline left in place); None at a clean end of archive."""
    key = bytearray()
    while True:
        if hasattr(f, "peek_available"):
            chunk = f.peek_available(256)
        else:
            chunk = f.peek(256)[:256] if hasattr(f, "peek") else f.read(1)
        if not chunk:
            if key:
                raise FormatError(f"truncated archive: end of data after key '{_show(key)}'")
            return None
        if not hasattr(f, "peek"):  # unbuffered stream: byte by byte
            if chunk in b" \t\r\n":
                if key:
                    if chunk == b"\n":
                        raise FormatError(f"no object after key '{_show(key)}'")
                    break
                continue
            key += chunk
        else:
            if not key:
                stripped = chunk.lstrip(b" \t\r\n")
                if len(stripped) < len(chunk):
                    f.read(len(chunk) - len(stripped))
                    continue
            m = _SPACE.search(chunk)
            end = m.start() if m else -1
            if end < 0:
                key += f.read(len(chunk))
            else:
                key += f.read(end)
                if chunk[end : end + 1] in (b" ", b"\t"):
                    f.read(1)
                break
        if len(key) > 4096:
            raise FormatError("expected a key: no space after 4096 characters (not an archive?)")
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(
            f"key {_show(bytes(key))!r} is not valid UTF-8 (not an archive?)"
        ) from None


def _show(key: bytes) -> str:
    return key[:60].decode("utf-8", "replace")


def _iter_archive(rx: str, kind, dtype, permissive: bool, sorted_: bool, label: str):
    """Yields (key, obj) from an archive rxfilename."""
    prev: str | None = None
    with streams.input_stream(rx) as f:
        while True:
            key = None
            try:
                key = _read_key(f)
                if key is None:
                    return
                obj = read_value(f, kind, dtype)
            except FormatError as e:
                where = (
                    f"key '{key}'"
                    if key is not None
                    else f"after key '{prev}'"
                    if prev
                    else "at start"
                )
                msg = f"{label}: {where}: {e}"
                if permissive:
                    log.warning("%s (permissive: stopping here)", msg)
                    return
                raise XvjaxError(msg) from None
            if sorted_ and prev is not None and key.encode() <= prev.encode():
                problem = "duplicate" if key == prev else "unsorted"
                raise XvjaxError(
                    f"{label}: {problem} key '{key}' after '{prev}' but ',s' promises sorted keys"
                )
            prev = key
            yield key, obj


def read_scp(rx: str) -> list[tuple[str, str]]:
    """Lines `key rxfilename` of a script file, in order (Kaldi's ReadScriptFile)."""
    out = []
    for num, line in rx_lines(rx):
        line = line.rstrip("\r\n")
        fields = line.strip().split(None, 1)  # key, then the rest (may hold spaces: pipes)
        key, rest = (fields + ["", ""])[:2]
        rest = rest.strip()
        if not key or not rest:
            raise XvjaxError(
                f"{streams.printable(rx)}:{num}: expected 'key rxfilename', got '{line[:60]}'"
            )
        out.append((key, rest))
    return out


class _ObjectReader:
    """Opens scp targets, keeping the last archive open so consecutive offsets need no reopen.

    Thread-safe: a data loader may read from a background thread while the main thread reads too.
    """

    def __init__(self, kind, dtype):
        self.kind, self.dtype = kind, dtype
        self._path: str | None = None
        self._file = None
        self._size = 0
        self._lock = threading.Lock()

    def read(self, rx: str):
        with self._lock:
            return self._read(rx)

    def _read(self, rx: str):
        target, rng = split_range(rx)
        ftype, path, offset = streams.classify_rxfilename(target)
        if ftype != "file":
            with streams.input_stream(target) as f:
                return apply_range(read_value_at(f, self.kind, self.dtype, offset), rng, rx)
        if path != self._path:
            self.close()
            try:  # small chunks: random access reads one object per seek
                raw = open(path, "rb", buffering=0)
                self._size = os.fstat(raw.fileno()).st_size
                self._file = streams.InputStream(raw, path, chunk=1 << 14)
            except OSError as e:
                raise XvjaxError(f"cannot open '{path}': {e.strerror}") from None
            self._path = path
        if offset >= self._size and os.path.isfile(path):
            raise XvjaxError(f"offset {offset} is past the end of '{path}' ({self._size} bytes)")
        self._file.seek(offset)
        return apply_range(read_value_at(self._file, self.kind, self.dtype, offset), rng, rx)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._path = None, None


def _iter_script(spec: RSpecifier, kind, dtype, label: str):
    entries = read_scp(spec.filename)
    reader = _ObjectReader(kind, dtype)
    prev = None
    try:
        for key, rx in entries:
            if spec.sorted and prev is not None and key.encode() <= prev.encode():
                problem = "duplicate" if key == prev else "unsorted"
                raise XvjaxError(
                    f"{label}: {problem} key '{key}' after '{prev}' but ',s' promises sorted keys"
                )
            prev = key
            try:
                obj = reader.read(rx)
            except XvjaxError as e:
                msg = f"{label}: key '{key}' ({rx}): {e}"
                if spec.permissive:
                    log.warning("%s (permissive: skipped)", msg)
                    continue
                raise XvjaxError(msg) from None
            yield key, obj
    finally:
        reader.close()


def read(rspec: str, kind="auto", dtype=None) -> Iterator[tuple[str, object]]:
    """Yields (key, object) in table order. `dtype` casts float arrays (e.g. np.float64).

    `kind`: one of `holders.KINDS`, or a codec (see the module docstring).
    """
    check_kind(kind)
    spec = parse_rspecifier(rspec)
    label = f"{spec.type}:{streams.printable(spec.filename)}"
    if spec.type == "ark":
        yield from _iter_archive(spec.filename, kind, dtype, spec.permissive, spec.sorted, label)
    else:
        yield from _iter_script(spec, kind, dtype, label)


def read_dict(rspec: str, kind="auto", dtype=None) -> dict[str, object]:
    """The whole table as {key: object}; duplicate keys are an error."""
    out: dict[str, object] = {}
    for key, obj in read(rspec, kind, dtype):
        if key in out:
            raise XvjaxError(f"duplicate key '{key}' in table '{rspec}'")
        out[key] = obj
    return out


class RandomAccess:
    """Random access by key, as Kaldi's RandomAccessTableReader.

    `scp:` tables are indexed once and each lookup reads only its object. Archives are read
    sequentially as far as a lookup needs, keeping what was read; with `s` a key smaller than the
    last one read is known to be absent without reading on, with `cs` objects before the requested
    key are dropped, and with `o` each object is dropped once returned.
    """

    def __init__(self, rspec: str, kind="auto", dtype=None):
        check_kind(kind)
        self.rspec = rspec
        self.spec = parse_rspecifier(rspec)
        self.kind, self.dtype = kind, dtype
        self.label = f"{self.spec.type}:{streams.printable(self.spec.filename)}"
        self._index: dict[str, str] | None = None
        self._reader: _ObjectReader | None = None
        self._cache: dict[str, object] = {}
        self._iter = None
        self._last: str | None = None
        self._done = False
        self._lock = threading.RLock()  # archives are read sequentially: one reader at a time

    # scp
    def _scp_index(self) -> dict[str, str]:
        if self._index is None:
            index: dict[str, str] = {}
            prev = None
            for key, rx in read_scp(self.spec.filename):
                if key in index:
                    raise XvjaxError(f"{self.label}: duplicate key '{key}'")
                if self.spec.sorted and prev is not None and key.encode() < prev.encode():
                    raise XvjaxError(
                        f"{self.label}: unsorted key '{key}' after '{prev}' but ',s' promises sorted keys"
                    )
                index[key], prev = rx, key
            self._index = index
            self._reader = _ObjectReader(self.kind, self.dtype)
        return self._index

    # ark
    def _advance_to(self, key: str) -> None:
        if self._iter is None:
            self._iter = _iter_archive(
                self.spec.filename,
                self.kind,
                self.dtype,
                self.spec.permissive,
                self.spec.sorted,
                self.label,
            )
        while not self._done and key not in self._cache:
            if self.spec.sorted and self._last is not None and key.encode() < self._last.encode():
                return
            try:
                k, obj = next(self._iter)
            except StopIteration:
                self._done = True
                return
            if self.spec.called_sorted:
                for old in [c for c in self._cache if c.encode() < key.encode()]:
                    del self._cache[old]
            if k in self._cache:
                raise XvjaxError(f"{self.label}: duplicate key '{k}'")
            self._cache[k] = obj
            self._last = k

    def _lookup(self, key: str):
        with self._lock:
            return self._lookup_unlocked(key)

    def _lookup_unlocked(self, key: str):
        if self.spec.type == "scp":
            index = self._scp_index()
            if key not in index:
                return _MISSING
            try:
                return self._reader.read(index[key])
            except XvjaxError as e:
                msg = f"{self.label}: key '{key}' ({index[key]}): {e}"
                if self.spec.permissive:
                    log.warning("%s (permissive: treated as absent)", msg)
                    return _MISSING
                raise XvjaxError(msg) from None
        self._advance_to(key)
        if key not in self._cache:
            return _MISSING
        return self._cache.pop(key) if self.spec.once else self._cache[key]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if self.spec.type == "scp":
                return key in self._scp_index()
            self._advance_to(key)
            return key in self._cache

    def get(self, key: str, default=None):
        obj = self._lookup(key)
        return default if obj is _MISSING else obj

    def __getitem__(self, key: str):
        obj = self._lookup(key)
        if obj is _MISSING:
            raise XvjaxError(f"key '{key}' not found in table '{self.rspec}'")
        return obj

    def keys(self):
        """All keys (for archives this reads the whole archive)."""
        with self._lock:
            if self.spec.type == "scp":
                return self._scp_index().keys()
            if not self._done:
                for k, obj in self._iter or _iter_archive(
                    self.spec.filename,
                    self.kind,
                    self.dtype,
                    self.spec.permissive,
                    False,
                    self.label,
                ):
                    self._cache.setdefault(k, obj)
                self._done = True
            return self._cache.keys()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._iter is not None:
            self._iter.close()

    def __enter__(self) -> RandomAccess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_MISSING = object()


# ------------------------------------------------------------------------------ writing


class Writer:
    """Table writer; `w[key] = obj` (or `w.write(key, obj)`), committed when the block ends.

    Files (the ark and, for `ark,scp:`, the scp) are written to temp files renamed on success; on
    an exception nothing is left behind. `binary` is the default when the wspecifier has neither
    `b` nor `t`. `compression_method` (1..7, Kaldi's enum) writes matrices compressed. `codec`
    writes other Kaldi objects (see the module docstring).
    """

    def __init__(
        self,
        wspec: str,
        compression_method: int | None = None,
        binary: bool = True,
        codec=None,
    ):
        self.wspec = wspec
        self.codec = codec
        self.spec = parse_wspecifier(wspec)
        self.binary = binary if self.spec.binary is None else self.spec.binary
        if compression_method is not None and compression_method not in range(1, 8):
            raise XvjaxError(
                f"invalid compression method {compression_method} (Kaldi accepts 1..7)"
            )
        self.compression_method = compression_method
        self._ark: streams.Output | None = None
        self._scp: streams.Output | None = None
        self._scp_targets: dict[str, str] | None = None
        self._outputs: list[streams.Output] = []
        self.num_written = 0

    def open(self) -> Writer:
        try:
            if self.spec.type in ("ark", "both"):
                self._ark = streams.Output(self.spec.ark)
                self._outputs.append(self._ark)
                if self.spec.type == "both" and self._ark.kind != "file":
                    raise XvjaxError(
                        f"'{self.wspec}': ark,scp needs the archive to be a file (offsets)"
                    )
            if self.spec.type == "both":
                self._scp = streams.Output(self.spec.scp)
                self._outputs.append(self._scp)
            if self.spec.type == "scp":
                self._scp_targets = dict(read_scp(self.spec.scp))
        except BaseException:
            self.abort()
            raise
        return self

    def __enter__(self) -> Writer:
        return self.open()

    def __setitem__(self, key: str, obj) -> None:
        self.write(key, obj)

    def write(self, key: str, obj) -> None:
        if not self._outputs and self._scp_targets is None:
            self.open()
        check_key(key, self.wspec)
        try:
            data = encode_object(obj, self.binary, self.compression_method, self.codec)
        except XvjaxError as e:
            raise XvjaxError(f"table '{self.wspec}': key '{key}': {e}") from None
        if self._scp_targets is not None:
            target = self._scp_targets.get(key)
            if target is None:
                if self.spec.permissive:
                    return
                raise XvjaxError(f"table '{self.wspec}': key '{key}' is not in {self.spec.scp}")
            with streams.output_stream(target) as out:
                out.write(data)
            self.num_written += 1
            return
        ark = self._ark
        ark.write(key.encode() + b" ")
        if self._scp is not None:
            self._scp.write(f"{key} {self.spec.ark}:{ark.tell()}\n".encode())
        ark.write(data)
        if self.spec.flush and ark.kind != "file":
            ark.stream.flush()
        self.num_written += 1

    def close(self) -> None:
        """Commits the outputs (renames temp files into place)."""
        if not self._outputs and self._scp_targets is None:
            self.open()
        try:
            for out in self._outputs:
                out.commit()
        except BaseException:
            self.abort()
            raise
        self._outputs = []

    def abort(self) -> None:
        for out in self._outputs:
            out.abort()
        self._outputs = []

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_dict(wspec: str, table: dict, compression_method: int | None = None, codec=None) -> None:
    with Writer(wspec, compression_method, codec=codec) as w:
        for key, obj in table.items():
            w[key] = obj
