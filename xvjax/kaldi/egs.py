"""Kaldi nnet3 training examples (`NnetExample`, `src/nnet3/nnet-example.cc`): read and write.

An egs archive is a Kaldi table of NnetExamples. On disk (binary; text mode is the same tokens):

    KEY \\0B<Nnet3Eg> <NumIo> 2
      <NnetIo> input <I1V> N  [index vector]  [GeneralMatrix: FM / CM / CM2 / CM3 / SM]  </NnetIo>
      <NnetIo> output <I1V> 1 ...  SM  (sparse one-hot speaker label)  </NnetIo>
    </Nnet3Eg>

Binary index vectors (`WriteIndexVector`, nnet-common.cc) store each (n, t, x) as one signed
byte = t - previous t when n and x equal the previous ones (the first relative to (0, 0, 0)) and
the difference is within +-124, else byte 127 followed by n, t, x as Kaldi int32s. In text mode
each index is `<I1> n t x`.

API:

    for key, eg in read_egs("ark:egs.1.ark"): eg.io["input"].features  # (rows, dim) float32
    for key, feats, label in read_xvector_egs("ark:egs.1.ark"): ...     # x-vector egs
    eg = xvector_example(feats, label, num_pdfs, compress=True)         # = nnet3-xvector-get-egs
    with EgsWriter("ark,t:out.txt") as w: w.write(key, eg)             # or write_egs(wspec, pairs)
    example_to_bytes(key, eg, binary=True)                              # one archive entry

Types: NnetExample(io: dict[name, NnetIo]); NnetIo(name, indexes (rows, 3) int32 (n, t, x),
features float32 (rows, dim) or SparseMatrix(num_cols, rows=[(indices, values), ...]),
compressed: original CM bytes or None); NnetIo.dense() gives a dense float32 matrix.

Compressed inputs are decoded with Kaldi's float32 arithmetic (`compressed.decompress`)
and their original bytes are kept (`NnetIo.compressed`) so a binary copy is byte-identical.
Tables of examples go through `xvjax.kaldi.tables` with `EGS_CODEC` (every rspecifier/wspecifier
form, scp offsets, pipes, `-`, atomic writes); archives are streamed, each example decoded with
`np.frombuffer` over the stream's buffer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import compressed, tables
from xvjax.kaldi.primitives import KaldiInput, KaldiOutput, format_float, read_from_stream


@dataclasses.dataclass
class SparseMatrix:
    """Kaldi SparseMatrix<float>: per row (column indices int32, values float32)."""

    num_cols: int
    rows: list[tuple[np.ndarray, np.ndarray]]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), self.num_cols

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        for r, (idx, val) in enumerate(self.rows):
            out[r, idx] = val
        return out

    def __eq__(self, other) -> bool:
        if not isinstance(other, SparseMatrix) or self.shape != other.shape:
            return False
        return all(
            np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
            for a, b in zip(self.rows, other.rows, strict=True)
        )


@dataclasses.dataclass
class NnetIo:
    """One named input/output of an example.

    indexes: (num_rows, 3) int32 array of (n, t, x). features: dense float32 (num_rows, dim) or a
    SparseMatrix. compressed: the original `CM...` bytes when the features were compressed.
    """

    name: str
    indexes: np.ndarray
    features: np.ndarray | SparseMatrix
    compressed: bytes | None = None

    def dense(self) -> np.ndarray:
        f = self.features
        return f.to_dense() if isinstance(f, SparseMatrix) else f


@dataclasses.dataclass
class NnetExample:
    io: dict[str, NnetIo]


# ---------------------------------------------------------------------------- index vectors


def _read_indexes(inp: KaldiInput, what: str) -> np.ndarray:
    inp.expect("<I1V>", what)
    size = inp.int32(f"size of {what}")
    if size < 0:
        raise inp.error(f"negative size {size} of {what}")
    if not inp.binary:
        out = np.zeros((size, 3), dtype=np.int32)
        for i in range(size):
            inp.expect("<I1>", what)
            out[i] = (inp.int32(what), inp.int32(what), inp.int32(what))
        return out
    data = inp.data
    if inp.pos + size <= len(data):
        chunk = np.frombuffer(data, dtype=np.int8, count=size, offset=inp.pos)
        if not np.any(np.abs(chunk.astype(np.int32)) >= 125):  # fast path: all 1-byte t steps
            inp.pos += size
            out = np.zeros((size, 3), dtype=np.int32)
            out[:, 1] = np.cumsum(chunk, dtype=np.int64).astype(np.int32)
            return out
    out = np.zeros((size, 3), dtype=np.int32)
    prev = (0, 0, 0)
    for i in range(size):
        inp._need(1, what)
        c = int(np.int8(np.uint8(data[inp.pos])))
        inp.pos += 1
        if abs(c) < 125:
            prev = (prev[0], prev[1] + c, prev[2]) if i > 0 else (0, c, 0)
        elif c == 127:
            prev = (inp.int32(what), inp.int32(what), inp.int32(what))
        else:
            raise inp.error(f"unexpected character {c} in {what}")
        out[i] = prev
    return out


def _write_indexes(out: KaldiOutput, indexes: np.ndarray) -> None:
    idx = np.asarray(indexes, dtype=np.int64).reshape(-1, 3)
    out.token("<I1V>")
    out.int32(len(idx))
    if not out.binary:
        out.raw("".join(f"<I1> {n} {t} {x} " for n, t, x in idx.tolist()))
        return
    prev = np.vstack([np.zeros((1, 3), np.int64), idx[:-1]])
    dt = idx[:, 1] - prev[:, 1]
    short = (idx[:, 0] == prev[:, 0]) & (idx[:, 2] == prev[:, 2]) & (dt < 125) & (dt > -125)
    if short.all():
        out.raw(dt.astype(np.int8).tobytes())
        return
    parts = []
    for i in range(len(idx)):
        if short[i]:
            parts.append(np.int8(dt[i]).tobytes())
        else:
            n, t, x = (int(v) for v in idx[i])
            parts.append(b"\x7f\x04" + np.int32(n).tobytes() + b"\x04" + np.int32(t).tobytes())
            parts.append(b"\x04" + np.int32(x).tobytes())
    out.raw(b"".join(parts))


# ---------------------------------------------------------------------------- matrices


def _read_sparse(inp: KaldiInput, what: str) -> SparseMatrix:
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    if inp.binary:
        inp.expect("SM", what)
        num_rows = inp.int32(f"rows of {what}")
        dims = set()
        for _ in range(num_rows):
            inp.expect("SV", what)
            dims.add(inp.int32(what))
            nnz = inp.int32(what)
            idx = np.zeros(nnz, np.int32)
            val = np.zeros(nnz, np.float32)
            for j in range(nnz):
                idx[j] = inp.int32(what)
                val[j] = inp.float32(what)
            rows.append((idx, val))
    else:
        tok = inp.token(what)
        if not tok.startswith("rows="):
            raise inp.error(f"expected rows= in sparse {what}, got '{tok}'")
        num_rows = int(tok[5:])
        dims = set()
        for _ in range(num_rows):
            tok = inp.token(what)
            if not tok.startswith("dim="):
                raise inp.error(f"expected dim= in sparse {what}, got '{tok}'")
            dims.add(int(tok[4:]))
            inp.expect("[", what)
            items = []
            while True:
                word = inp.token(what)
                if word == "]":
                    break
                items.append(word)
            if len(items) % 2:
                raise inp.error(f"odd number of values in sparse row of {what}")
            rows.append(
                (
                    np.array(items[0::2], dtype=np.int64).astype(np.int32),
                    np.array(items[1::2], dtype=np.float64).astype(np.float32),
                )
            )
    if len(dims) > 1:
        raise inp.error(f"sparse {what} has rows of different dims {sorted(dims)}")
    return SparseMatrix(dims.pop() if dims else 0, rows)


def _write_sparse(out: KaldiOutput, mat: SparseMatrix) -> None:
    if out.binary:
        out.token("SM")
        out.int32(len(mat.rows))
        for idx, val in mat.rows:
            out.token("SV")
            out.int32(mat.num_cols)
            out.int32(len(idx))
            for i, v in zip(idx.tolist(), val.tolist(), strict=True):
                out.int32(i)
                out.float32(v)
    else:
        text = [f"rows={len(mat.rows)} "]
        for idx, val in mat.rows:
            pairs = "".join(
                f"{i} {format_float(v)} " for i, v in zip(idx.tolist(), val.tolist(), strict=True)
            )
            text.append(f"dim={mat.num_cols} [ {pairs}] ")
        out.raw("".join(text) + "\n")


def _read_io(inp: KaldiInput, key: str) -> NnetIo:
    inp.expect("<NnetIo>", f"example {key}")
    name = inp.token(f"NnetIo name in example {key}")
    what = f"'{name}' of example {key}"
    indexes = _read_indexes(inp, f"indexes of {what}")
    compressed = None
    pos = inp.pos
    head = inp.peek_token()
    if head.startswith("rows=") or head == "SM":
        features = _read_sparse(inp, f"features of {what}")
    elif inp.binary and head in ("CM", "CM2", "CM3"):
        inp.pos = pos
        tok = inp.token()
        features, body = inp.compressed_matrix_body(tok, f"features of {what}")
        compressed = tok.encode() + b" " + body
    else:
        features = inp.matrix(f"features of {what}")
    if features.shape[0] != len(indexes):
        raise inp.error(f"{what}: {len(indexes)} indexes but {features.shape[0]} feature rows")
    inp.expect("</NnetIo>", what)
    return NnetIo(name, indexes, features, compressed)


def read_example(inp: KaldiInput, key: str = "") -> NnetExample:
    """NnetExample::Read from the cursor (after the `\\0B` marker in binary mode)."""
    inp.expect("<Nnet3Eg>", f"example {key}")
    inp.expect("<NumIo>", f"example {key}")
    num = inp.int32(f"NumIo of example {key}")
    if not 0 < num < 1000:
        raise inp.error(f"example {key}: bad NumIo {num}")
    io: dict[str, NnetIo] = {}
    for _ in range(num):
        item = _read_io(inp, key)
        io[item.name] = item
    inp.expect("</Nnet3Eg>", f"example {key}")
    return NnetExample(io)


def write_example(out: KaldiOutput, eg: NnetExample) -> None:
    out.token("<Nnet3Eg>")
    out.token("<NumIo>")
    out.int32(len(eg.io))
    for io in eg.io.values():
        out.token("<NnetIo>")
        out.token(io.name)
        _write_indexes(out, io.indexes)
        if isinstance(io.features, SparseMatrix):
            _write_sparse(out, io.features)
        elif io.compressed is not None and out.binary:
            out.raw(io.compressed)
        else:
            out.matrix(io.features)
        out.token("</NnetIo>")
    out.token("</Nnet3Eg>")


def example_to_bytes(key: str, eg: NnetExample, binary: bool = True) -> bytes:
    """One archive entry: `key ` + (`\\0B` in binary) + the example."""
    return key.encode() + b" " + (b"\0B" if binary else b"") + EGS_CODEC.write(eg, binary)


def xvector_example(
    feats: np.ndarray, label: int, num_pdfs: int, compress: bool = True
) -> NnetExample:
    """An x-vector training example exactly as `nnet3-xvector-get-egs` builds it.

    feats: (frames, dim) chunk; input indexes (0, t, 0) for t = 0..frames-1; output one index
    (0, 0, 0) with a 1 x num_pdfs sparse one-hot row. compress=True (get_egs.sh's default)
    stores the input as Kaldi's automatic CompressedMatrix (CM for more than 8 rows).
    """
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise XvjaxError(
            f"x-vector example needs a non-empty (frames, dim) matrix, got {feats.shape}"
        )
    if not 0 <= label < num_pdfs:
        raise XvjaxError(f"label {label} outside [0, {num_pdfs})")
    frames = feats.shape[0]
    indexes = np.zeros((frames, 3), dtype=np.int32)
    indexes[:, 1] = np.arange(frames, dtype=np.int32)
    raw = None
    if compress:
        raw = compressed.compress(feats, 1)
        feats = compressed.decode(raw)
    output = SparseMatrix(num_pdfs, [(np.array([label], np.int32), np.array([1.0], np.float32))])
    return NnetExample(
        {
            "input": NnetIo("input", indexes, feats, raw),
            "output": NnetIo("output", np.zeros((1, 3), np.int32), output),
        }
    )


# ---------------------------------------------------------------------------- tables


class _EgsCodec:
    """NnetExample codec for `xvjax.kaldi.tables` (which handles all the specifiers)."""

    def read(self, f, binary: bool) -> NnetExample:
        return read_from_stream(f, binary, read_example, "example")

    def write(self, eg: NnetExample, binary: bool) -> bytes:
        out = KaldiOutput(binary)
        write_example(out, eg)
        return out.getvalue()


EGS_CODEC = _EgsCodec()


def read_egs(rspec: str) -> Iterator[tuple[str, NnetExample]]:
    """Examples of an egs table: any rspecifier (`ark:file`, `ark:-`, `ark:cmd |`, `scp:file`)."""
    return tables.read(rspec, kind=EGS_CODEC)


class EgsWriter(tables.Writer):
    """Writes an egs table: any wspecifier (`ark:f`, `ark,t:f`, `ark,scp:a,s`, `ark:| cmd`);
    atomic for files. `w.write(key, eg)` or `w[key] = eg`."""

    def __init__(self, wspec: str):
        super().__init__(wspec, codec=EGS_CODEC)


def write_egs(wspec: str, examples) -> int:
    """Writes (key, NnetExample) pairs; returns how many."""
    with EgsWriter(wspec) as w:
        for key, eg in examples:
            w.write(key, eg)
    return w.num_written


def read_xvector_egs(rspec: str) -> Iterator[tuple[str, np.ndarray, int]]:
    """(key, feats (frames, dim) float32, speaker label) of each x-vector example.

    Merged egs (several n in one example) are split by n; their keys get `/n` appended.
    """
    for key, eg in read_egs(rspec):
        if "input" not in eg.io or "output" not in eg.io:
            raise XvjaxError(f"example {key} lacks an 'input' or 'output' NnetIo")
        inp, out = eg.io["input"], eg.io["output"]
        feats = inp.dense()
        labels = out.dense()
        ns = np.unique(inp.indexes[:, 0])
        for n in ns.tolist():
            rows = inp.indexes[:, 0] == n
            order = np.argsort(inp.indexes[rows, 1], kind="stable")
            out_rows = np.nonzero(out.indexes[:, 0] == n)[0]
            if len(out_rows) != 1:
                raise XvjaxError(f"example {key}: expected one output row for n={n}")
            label = int(np.argmax(labels[out_rows[0]]))
            sub_key = key if len(ns) == 1 else f"{key}/{n}"
            yield sub_key, feats[rows][order], label
