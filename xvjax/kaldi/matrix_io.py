"""Kaldi object encoding: matrices, vectors, compressed matrices, int32 vectors and scalars.

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
kind raises `FormatError` naming the object found.
"""

from __future__ import annotations

import struct

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import compressed
from xvjax.kaldi.kaldi_io_binary import KaldiOutput

KINDS = ("auto", "matrix", "vector", "int32_vector", "int32", "float")
BINARY_HEADER = b"\0B"
_INT = struct.Struct("<bi")  # size byte 4 + int32
_DTYPE = {b"FM": "<f4", b"DM": "<f8", b"FV": "<f4", b"DV": "<f8"}


class FormatError(XvjaxError):
    """Bad object bytes/text; the table layer adds the file and key to the message."""


# ----------------------------------------------------------------------------------- reading


def read_exact(f, n: int, what: str) -> bytes:
    try:
        buf = f.read(n)
    except (MemoryError, OverflowError):
        raise FormatError(f"corrupt {what}: implausible size of {n} bytes") from None
    if len(buf) != n:
        raise FormatError(f"truncated {what}: expected {n} bytes, got {len(buf)}")
    return buf


def _read_token(f) -> bytes:
    """A binary token such as FM/CM2, consuming the single space after it."""
    if hasattr(f, "peek"):
        head = f.peek(8)[:8]
        end = head.find(b" ")
        if end > 0:
            return f.read(end + 1)[:-1]
    tok = bytearray()
    while True:
        c = f.read(1)
        if not c:
            raise FormatError(
                f"truncated object: end of data inside token '{tok.decode('latin-1')}'"
            )
        if c == b" ":
            return bytes(tok)
        tok += c
        if len(tok) > 8:
            raise FormatError(
                f"expected an object token (FM, DM, FV, DV, CM...), got {bytes(tok)!r}"
            )


def _read_int32(f, what: str) -> int:
    size, value = _INT.unpack(read_exact(f, 5, what))
    if size != 4:
        raise FormatError(f"bad {what}: expected int32 size byte 4, got {size}")
    return value


def _object_name(tok: bytes) -> str:
    return {
        b"FM": "float matrix",
        b"DM": "double matrix",
        b"FV": "float vector",
        b"DV": "double vector",
        b"CM": "compressed matrix",
        b"CM2": "compressed matrix",
        b"CM3": "compressed matrix",
    }.get(tok, f"object '{tok.decode('latin-1')}'")


def _peek1(f) -> bytes:
    if hasattr(f, "peek"):
        return f.peek(1)[:1]
    pos = f.tell()
    c = f.read(1)
    f.seek(pos)
    return c


def read_binary(f, kind: str = "auto"):
    """Reads one binary object (after the `\\0B` header) from a byte stream."""
    first = _peek1(f)
    if not first:
        raise FormatError("truncated object: no data after binary header")
    if first in (b"\x04", b"\x08"):
        return _read_binary_basic(f, kind)
    tok = _read_token(f)
    if tok in (b"CM", b"CM2", b"CM3"):
        if kind not in ("auto", "matrix"):
            raise FormatError(f"expected a {kind.replace('_', ' ')}, found a compressed matrix")
        fmt = compressed.TOKEN_FORMAT[tok]
        header = read_exact(f, 16, "compressed matrix header")
        _, _, rows, cols = compressed.parse_header(header)
        if rows < 0 or cols < 0:
            raise FormatError(f"bad compressed matrix header: {rows} rows, {cols} cols")
        if cols == 0:  # Kaldi's empty compressed matrix: the header alone
            return np.zeros((0, 0), dtype=np.float32)
        payload = read_exact(f, compressed.payload_size(fmt, rows, cols), "compressed matrix data")
        return compressed.decompress(fmt, header, payload)
    if tok not in _DTYPE:
        raise FormatError(f"unknown object token {tok!r} (expected FM, DM, FV, DV, CM, CM2 or CM3)")
    is_matrix = tok[1:] == b"M"
    if kind not in ("auto", "matrix" if is_matrix else "vector"):
        raise FormatError(f"expected a {kind.replace('_', ' ')}, found a {_object_name(tok)}")
    dtype = np.dtype(_DTYPE[tok])
    if is_matrix:
        rows = _read_int32(f, "matrix header")
        cols = _read_int32(f, "matrix header")
        if rows < 0 or cols < 0:
            raise FormatError(f"bad matrix header: {rows} rows, {cols} cols")
        shape: tuple[int, ...] = (rows, cols)
    else:
        dim = _read_int32(f, "vector header")
        if dim < 0:
            raise FormatError(f"bad vector header: dimension {dim}")
        shape = (dim,)
    count = shape[0] * (shape[1] if len(shape) == 2 else 1)
    return read_array(f, dtype, count, _object_name(tok) + " data").reshape(shape)


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
    if kind == "float":
        size = read_exact(f, 1, "float")[0]
        if size == 4:
            return float(np.frombuffer(read_exact(f, 4, "float"), "<f4")[0])
        if size == 8:
            return float(np.frombuffer(read_exact(f, 8, "float"), "<f8")[0])
        raise FormatError(f"bad float: size byte {size}")
    n = _read_int32(f, "int32")
    if kind == "int32":
        return n
    if kind == "auto" and (n < 0 or _peek1(f) != b"\x04"):
        return n  # a scalar (an empty int32 vector reads as 0 here; use kind="int32_vector")
    if n < 0:
        raise FormatError(f"bad int32 vector size {n}")
    raw = np.frombuffer(read_exact(f, 5 * n, "int32 vector data"), dtype=np.uint8).reshape(n, 5)
    if n and np.any(raw[:, 0] != 4):
        raise FormatError("bad int32 vector: element size byte is not 4")
    return np.ascontiguousarray(raw[:, 1:]).view("<i4").reshape(n).astype(np.int32)


def _parse_numbers(text: str, dtype, what: str) -> np.ndarray:
    tokens = text.split()
    try:
        with np.errstate(over="ignore"):  # 3.402824e+38 is past float32's max: inf, as strtof
            return np.array(tokens, dtype=np.float64).astype(dtype, copy=False)
    except ValueError:
        bad = next((t for t in tokens if not _is_number(t)), tokens[0] if tokens else "")
        raise FormatError(f"bad number '{bad[:30]}' in text {what}") from None


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


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
        return _parse_numbers(inside, dtype, "vector")
    if not rows:
        return np.zeros((0, 0), dtype=dtype)
    cols = len(rows[0].split())
    values = _parse_numbers(inside, dtype, "matrix")
    if values.size != cols * len(rows) or any(len(r.split()) != cols for r in rows):
        raise FormatError("text matrix rows have different lengths")
    return values.reshape(len(rows), cols)


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
        if kind == "auto" and len(tokens) == 1 and _is_number(tokens[0]):
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
        arr, double = _decode_compressed(data), False  # Kaldi writes text CM as a plain matrix
    if kind == "matrix":
        out.matrix(arr, double)
    else:
        out.vector(arr, double)
    return out.getvalue()


def _decode_compressed(data: bytes) -> np.ndarray:
    tok, _, rest = data.partition(b" ")
    return compressed.decompress(compressed.TOKEN_FORMAT[tok], rest[:16], rest[16:])
