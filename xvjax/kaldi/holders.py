"""Kaldi table holders: matrices, vectors, compressed matrices, int32 vectors and scalars.

The objects a table holds, read from a stream (kind checks, binary/text auto-detection) and
encoded for writing. The primitives (tokens, int32/float, FM/DM/FV/DV layouts, text arrays and
Kaldi's text floats, `FormatError`) are `primitives`'; this module adds what is particular to
holders: streaming reads (array data read straight into numpy), BasicVectorHolder int32 vectors,
scalars and compression on write.

Byte layouts follow Kaldi (`src/matrix/kaldi-matrix.cc`, `kaldi-vector.cc`, `src/base/io-funcs*`,
`src/util/kaldi-holder-inl.h`):

- binary objects start with `\\0B`; matrices `FM `/`DM ` + (`\\4` int32 rows) + (`\\4` int32 cols)
  + row-major float32/float64 data; vectors `FV `/`DV ` + (`\\4` int32 dim) + data; compressed
  matrices `CM `/`CM2 `/`CM3 ` (see `compressed.py`); int32 vectors (BasicVectorHolder) `\\4` int32
  size, then `\\4` int32 per element; int32 scalars `\\4` int32; float scalars `\\4` float32 or `\\8`
  float64.
- text objects: matrices ` [\\n  1 2 \\n  3 4 ]\\n`, vectors ` [ 1 2 ]\\n`, empty ` [ ]\\n`; int32
  vectors `1 2 3 \\n`, scalars `1 \\n`. Numbers are printed as C++ streams do at precision 7 (`%.7g`).

Kinds (what a reader expects): "auto" (whatever is there), "matrix", "vector", "int32_vector",
"int32", "float". Matrices and vectors come back as numpy arrays (float32, or float64 for DM/DV);
compressed matrices are decoded to float32 exactly as Kaldi decodes them. A wrong object for the
kind raises `FormatError` naming the object found. `f` is a `streams.InputStream` (or a seekable
binary file).
"""

from __future__ import annotations

import struct

import numpy as np

from xvjax.kaldi import compressed
from xvjax.kaldi.primitives import (
    ARRAY_TOKENS,
    COMPRESSED_TOKENS,
    OBJECT_NAMES,
    FormatError,
    KaldiInput,
    KaldiOutput,
    is_number,
    parse_text_array,
)

KINDS = ("auto", "matrix", "vector", "int32_vector", "int32", "float")
BINARY_HEADER = b"\0B"
_INT = struct.Struct("<bi")  # size byte 4 + int32

__all__ = ["KINDS", "BINARY_HEADER", "FormatError", "read_object", "encode", "kind_of"]


# ----------------------------------------------------------------------------------- reading


def read_exact(f, n: int, what: str) -> bytes:
    try:
        buf = f.read(n)
    except (MemoryError, OverflowError):
        raise FormatError(f"corrupt {what}: implausible size of {n} bytes") from None
    if len(buf) != n:
        raise FormatError(f"truncated {what}: expected {n} bytes, got {len(buf)}")
    return buf


def _peek(f, n: int) -> bytes:
    """Up to n next bytes, not consumed (`streams.InputStream.peek`, or tell/seek)."""
    if hasattr(f, "peek"):
        return f.peek(n)[:n]
    pos = f.tell()
    data = f.read(n)
    f.seek(pos)
    return data


_MAX_HEADER = 24  # `CM2 ` + 16 header bytes; `FM ` + two int32s


def read_binary(f, kind: str = "auto"):
    """Reads one binary object (after the `\\0B` header) from a byte stream.

    The token and dimensions are parsed by `KaldiInput` on the peeked header bytes; the data is
    then read straight into its array.
    """
    head = _peek(f, _MAX_HEADER)
    if not head:
        raise FormatError("truncated object: no data after binary header")
    if head[:1] in (b"\x04", b"\x08"):
        return _read_binary_basic(f, kind)
    inp = KaldiInput(head, True, "object header")
    tok = inp.token("object token")
    if tok in COMPRESSED_TOKENS:
        if kind not in ("auto", "matrix"):
            raise FormatError(f"expected a {kind.replace('_', ' ')}, found a compressed matrix")
        fmt, header, size = inp.compressed_header(tok, "compressed matrix")
        f.read(inp.pos)
        return compressed.decompress(fmt, header, read_exact(f, size, "compressed matrix data"))
    if tok not in ARRAY_TOKENS:
        raise FormatError(
            f"unknown object token {tok.encode()!r} (expected FM, DM, FV, DV, CM, CM2 or CM3)"
        )
    dtype, ndim = ARRAY_TOKENS[tok]
    if kind not in ("auto", "matrix" if ndim == 2 else "vector"):
        raise FormatError(f"expected a {kind.replace('_', ' ')}, found a {OBJECT_NAMES[tok]}")
    dtype, shape = inp.array_header(tok, OBJECT_NAMES[tok])
    f.read(inp.pos)
    count = shape[0] * (shape[1] if len(shape) == 2 else 1)
    return read_array(f, dtype, count, OBJECT_NAMES[tok] + " data").reshape(shape)


def read_array(f, dtype, count: int, what: str) -> np.ndarray:
    """`count` little-endian values read straight into a new native-order array."""
    nbytes = count * dtype.itemsize
    try:
        out = np.empty(count, dtype=dtype.newbyteorder("<"))
    except (MemoryError, ValueError):
        raise FormatError(f"corrupt {what}: implausible size of {nbytes} bytes") from None
    got = f.readinto(memoryview(out).cast("B")) if nbytes else 0
    while got < nbytes:  # pipes may return short reads
        more = f.readinto(memoryview(out).cast("B")[got:])
        if not more:
            raise FormatError(f"truncated {what}: expected {nbytes} bytes, got {got}")
        got += more
    return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))


def _read_binary_basic(f, kind: str):
    if kind in ("matrix", "vector"):
        raise FormatError(f"expected a {kind}, found an integer/scalar object")
    inp = KaldiInput(_peek(f, 10), True, "basic object")
    if kind == "float":
        value = inp.real("float")
        f.read(inp.pos)
        return value
    n = inp.int32("int32")
    more = inp.data[inp.pos : inp.pos + 1]
    f.read(inp.pos)
    if kind == "int32":
        return n
    if kind == "auto" and (n < 0 or more != b"\x04"):
        return n  # a scalar (an empty int32 vector reads as 0 here; use kind="int32_vector")
    if n < 0:
        raise FormatError(f"bad int32 vector size {n}")
    raw = np.frombuffer(read_exact(f, 5 * n, "int32 vector data"), dtype=np.uint8).reshape(n, 5)
    if n and np.any(raw[:, 0] != 4):
        raise FormatError("bad int32 vector: element size byte is not 4")
    return np.ascontiguousarray(raw[:, 1:]).view("<i4").reshape(n).astype(np.int32)


def read_text(f, kind: str = "auto", dtype=np.float32):
    """Reads one text object from a byte stream positioned after the key's space.

    Matrices/vectors are bracketed and may span lines; int32/float objects take the rest of the line.
    """
    line = f.readline()
    if not line:
        raise FormatError("truncated object: end of data where a text object was expected")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("text object is not valid UTF-8") from None
    stripped = text.lstrip()
    if not stripped.startswith("["):
        if kind in ("matrix", "vector"):
            got = stripped.strip()[:30]
            raise FormatError(f"expected a text {kind} starting with '[', got '{got}'")
        return _parse_text_basic(stripped, kind)
    if kind in ("int32", "int32_vector", "float"):
        raise FormatError(
            f"expected a text {kind.replace('_', ' ')}, found a bracketed matrix/vector"
        )
    body = stripped[1:]
    chunks = [body]
    while "]" not in chunks[-1]:
        more = f.readline()
        if not more:
            raise FormatError("truncated text matrix: end of data before ']'")
        try:
            chunks.append(more.decode("utf-8"))
        except UnicodeDecodeError:
            raise FormatError("text matrix is not valid UTF-8") from None
    whole = "".join(chunks)
    inside, _, after = whole.partition("]")
    if after.strip():
        raise FormatError(f"unexpected text after ']': '{after.strip()[:30]}'")
    rows = [r for r in inside.split("\n") if r.strip()]
    multiline = inside.lstrip(" \t\r").startswith("\n")
    if kind == "vector" or (kind == "auto" and not multiline and len(rows) == 1):
        if len(rows) > 1:
            raise FormatError("text vector spans several lines (is it a matrix?)")
        return parse_text_array(inside, False, dtype, "vector")
    return parse_text_array(inside, True, dtype, "matrix")


def _parse_text_basic(text: str, kind: str):
    tokens = text.split()
    try:
        if kind == "int32":
            if len(tokens) != 1:
                raise ValueError
            return int(tokens[0])
        if kind == "float":
            if len(tokens) != 1:
                raise ValueError
            return float(tokens[0])
        if kind == "int32_vector":
            return np.array([int(t) for t in tokens], dtype=np.int32)
        values = [int(t) for t in tokens]  # auto: integers only
        return values[0] if len(values) == 1 else np.array(values, dtype=np.int32)
    except ValueError:
        if kind == "auto" and len(tokens) == 1 and is_number(tokens[0]):
            return float(tokens[0])
        want = {"auto": "integers"}.get(kind, kind.replace("_", " "))
        raise FormatError(f"expected {want}, got '{text.strip()[:40]}'") from None


def read_object(f, kind: str = "auto", dtype=None):
    """Reads one object, detecting binary (`\\0B`) or text; casts arrays to `dtype` if given."""
    head = f.peek(2)[:2] if hasattr(f, "peek") else None
    if head is None:
        pos = f.tell()
        head = f.read(2)
        f.seek(pos)
    if head == BINARY_HEADER:
        f.read(2)
        obj = read_binary(f, kind)
    elif head == b"RI" and (f.peek(4)[:4] if hasattr(f, "peek") else b"") == b"RIFF":
        raise FormatError("found a WAV file, not a Kaldi object (wav.scp entries are audio)")
    else:
        obj = read_text(f, kind, dtype or np.float32)
    if dtype is not None and isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        obj = obj.astype(dtype, copy=False)
    return obj


# ----------------------------------------------------------------------------------- writing


def kind_of(obj) -> str:
    """The kind an object will be written as."""
    if isinstance(obj, bool):
        raise FormatError("cannot write a bool as a Kaldi object")
    if isinstance(obj, (int, np.integer)):
        return "int32"
    if isinstance(obj, (float, np.floating)):
        return "float"
    arr = np.asarray(obj)
    if arr.ndim == 2:
        return "matrix"
    if arr.ndim == 1:
        return "int32_vector" if arr.dtype.kind in "iub" else "vector"
    raise FormatError(f"cannot write an array of shape {arr.shape} (need a matrix or a vector)")


def encode(obj, binary: bool = True, compression_method: int | None = None) -> bytes:
    """Bytes of one object as Kaldi's holders write it (with `\\0B` in binary mode)."""
    kind = kind_of(obj)
    if compression_method is not None and kind != "matrix":
        raise FormatError(f"only matrices can be compressed, got a {kind.replace('_', ' ')}")
    out = KaldiOutput(binary)
    if binary:
        out.raw(BINARY_HEADER)
    if kind == "int32":
        value = int(obj)
        if not -(2**31) <= value < 2**31:
            raise FormatError(f"integer {value} does not fit in int32")
        out.int32(value)
        if not binary:
            out.raw(b"\n")
        return out.getvalue()
    if kind == "float":
        if binary and isinstance(obj, np.float32):
            out.float32(obj)
        else:
            out.float64(obj)
        if not binary:
            out.raw(b"\n")
        return out.getvalue()
    arr = np.asarray(obj)
    if kind == "int32_vector":  # BasicVectorHolder: a size byte before every element
        if arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
            raise FormatError("integer vector values do not fit in int32")
        ints = arr.astype("<i4")
        if not binary:
            return ("".join(f"{v} " for v in ints.tolist()) + "\n").encode()
        rec = np.empty((ints.size, 5), dtype=np.uint8)
        rec[:, 0] = 4
        rec[:, 1:] = ints.view(np.uint8).reshape(-1, 4)
        out.int32(ints.size)
        out.raw(rec.tobytes())
        return out.getvalue()
    if arr.dtype.kind not in "fiub":
        raise FormatError(f"cannot write an array of dtype {arr.dtype}")
    double = arr.dtype == np.float64
    if compression_method is not None:
        data = compressed.compress(arr, compression_method)
        if binary:
            return BINARY_HEADER + data
        arr, double = compressed.decode(data), False  # Kaldi writes text CM as a plain matrix
    if kind == "matrix":
        out.matrix(arr, double)
    else:
        out.vector(arr, double)
    return out.getvalue()
