"""Kaldi PLDA files (`<Plda>` ... `</Plda>`), binary and text, read and written byte-exactly.

Layout written by Kaldi's `Plda::Write` (binary when the file starts with `\\0B`):

    <Plda> DV <int32 D> <D doubles>  DM <int32 D> <int32 D> <D*D doubles>  DV <int32 D> <D doubles> </Plda>

i.e. the token `<Plda>`, the mean (Vector<double>), the transform (Matrix<double>, row-major), psi
(Vector<double>) and `</Plda>`. Integers are written as one size byte (4) plus little-endian int32.
The text form is `<Plda>  [ m0 m1 ... ]\\n [\\n  a00 a01 ... \\n  ... aDD ]\\n [ psi ... ]\\n</Plda> `
with numbers printed like C++ `ostream << x` at precision 7 (`%.7g`). Reading accepts float (`FV`,
`FM`) as well as double objects, as Kaldi does; `read_plda(write_plda(p))` is exact in binary mode,
and writing a PLDA that was read from a Kaldi binary file reproduces the file byte for byte.

File names are Kaldi rxfilenames/wxfilenames (`xvjax.kaldi.streams`): a path, `-` (stdin/stdout),
`command |` (read from a pipe) or `| command` (write to a pipe). Writes to files are atomic.
Single vectors and matrices (`mean.vec`, `transform.mat`) are read with `xvjax.kaldi.tables`.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import streams

__all__ = [
    "read_plda",
    "write_plda",
    "plda_to_bytes",
    "parse_plda",
    "read_rxfilename",
    "write_wxfilename",
]


# ----------------------------------------------------------------------------- rx/wx filenames
def read_rxfilename(rxfilename: str) -> bytes:
    """All bytes of a Kaldi rxfilename: a file, `file:offset`, `-` (stdin) or `command |`."""
    with streams.input_stream(rxfilename) as f:
        try:
            return f.read()
        except OSError as e:
            raise XvjaxError(f"cannot read {streams.printable(rxfilename)}: {e}") from None


def write_wxfilename(wxfilename: str, data: bytes) -> None:
    """Writes bytes to a Kaldi wxfilename: a file (atomically), `-` (stdout) or `| command`."""
    with streams.output_stream(wxfilename) as out:
        out.write(data)


# ----------------------------------------------------------------------------- low-level codec
class _Reader:
    """Cursor over the bytes of one Kaldi object, binary or text."""

    def __init__(self, data: bytes, name: str):
        self.name = name
        self.binary = data[:2] == b"\0B"
        self.data = data
        self.pos = 2 if self.binary else 0

    def error(self, what: str) -> XvjaxError:
        return XvjaxError(f"{self.name}: {what} (at byte {self.pos}); not a Kaldi object file?")

    def skip_space(self) -> None:
        data, n = self.data, len(self.data)
        while self.pos < n and data[self.pos : self.pos + 1].isspace():
            self.pos += 1

    def token(self) -> str:
        self.skip_space()
        start = self.pos
        data, n = self.data, len(self.data)
        while self.pos < n and not data[self.pos : self.pos + 1].isspace():
            self.pos += 1
        if start == self.pos:
            raise self.error("unexpected end of file")
        return data[start : self.pos].decode("latin-1")

    def expect(self, tok: str) -> None:
        got = self.token()
        if got != tok:
            raise self.error(f"expected token {tok}, got '{got}'")
        if self.binary and self.pos < len(self.data) and self.data[self.pos : self.pos + 1] == b" ":
            self.pos += 1

    def int32(self) -> int:
        size = self.data[self.pos]
        if size != 4:
            raise self.error(f"expected int32 size byte 4, got {size}")
        (value,) = struct.unpack_from("<i", self.data, self.pos + 1)
        self.pos += 5
        return value

    def floats(self, count: int, dtype: np.dtype) -> np.ndarray:
        nbytes = count * dtype.itemsize
        if self.pos + nbytes > len(self.data):
            raise self.error(f"file ends inside an object of {count} numbers")
        arr = np.frombuffer(self.data, dtype=dtype.newbyteorder("<"), count=count, offset=self.pos)
        self.pos += nbytes
        return arr.astype(dtype.newbyteorder("="))

    def binary_header(self, kinds: tuple[str, ...]) -> tuple[str, np.dtype]:
        self.skip_space()
        tok = self.data[self.pos : self.pos + 2].decode("latin-1")
        if tok not in kinds:
            raise self.error(f"expected one of {'/'.join(kinds)}, got '{tok}'")
        self.pos += 2
        if self.data[self.pos : self.pos + 1] == b" ":
            self.pos += 1
        return tok, np.dtype(np.float64 if tok[0] == "D" else np.float32)

    def vector(self) -> np.ndarray:
        if self.binary:
            _, dtype = self.binary_header(("DV", "FV"))
            n = self.int32()
            return self.floats(n, dtype).astype(np.float64)
        self.skip_space()
        if self.data[self.pos : self.pos + 1] != b"[":
            raise self.error("expected '[' starting a text vector")
        end = self.data.find(b"]", self.pos)
        if end < 0:
            raise self.error("text vector without closing ']'")
        body = self.data[self.pos + 1 : end]
        self.pos = end + 1
        try:
            return np.array([float(t) for t in body.split()], dtype=np.float64)
        except ValueError:
            raise self.error("bad number in text vector") from None

    def matrix(self) -> np.ndarray:
        if self.binary:
            self.skip_space()
            if self.data[self.pos : self.pos + 2] == b"CM":
                raise self.error("a PLDA transform cannot be a compressed matrix")
            _, dtype = self.binary_header(("DM", "FM"))
            rows, cols = self.int32(), self.int32()
            return self.floats(rows * cols, dtype).reshape(rows, cols).astype(np.float64)
        self.skip_space()
        if self.data[self.pos : self.pos + 1] != b"[":
            raise self.error("expected '[' starting a text matrix")
        end = self.data.find(b"]", self.pos)
        if end < 0:
            raise self.error("text matrix without closing ']'")
        body = self.data[self.pos + 1 : end].decode("latin-1")
        self.pos = end + 1
        try:
            rows = [[float(t) for t in line.split()] for line in body.splitlines() if line.strip()]
        except ValueError:
            raise self.error("bad number in text matrix") from None
        if not rows:
            return np.zeros((0, 0))
        if len({len(r) for r in rows}) != 1:
            raise self.error("text matrix rows have different lengths")
        return np.array(rows, dtype=np.float64)


def _fmt(x: float) -> str:
    """C++ `ostream << x` with precision 7 (Kaldi's text mode)."""
    if np.isnan(x):
        return "nan" if not np.signbit(x) else "-nan"
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.7g}"


def _int32(value: int) -> bytes:
    return b"\x04" + struct.pack("<i", value)


def _vector_bytes(v: np.ndarray, binary: bool, double: bool) -> bytes:
    v = np.asarray(v)
    if binary:
        dtype = np.dtype("<f8" if double else "<f4")
        return (b"DV " if double else b"FV ") + _int32(len(v)) + v.astype(dtype).tobytes()
    vals = v.astype(np.float64 if double else np.float32)
    return (" [ " + "".join(_fmt(float(x)) + " " for x in vals) + "]\n").encode()


def _matrix_bytes(m: np.ndarray, binary: bool, double: bool) -> bytes:
    m = np.asarray(m)
    rows, cols = m.shape
    if binary:
        dtype = np.dtype("<f8" if double else "<f4")
        head = (b"DM " if double else b"FM ") + _int32(rows) + _int32(cols)
        return head + np.ascontiguousarray(m.astype(dtype)).tobytes()
    vals = m.astype(np.float64 if double else np.float32)
    if rows == 0:
        return b" [ ]\n"
    out = io.StringIO()
    out.write(" [")
    for r in range(rows):
        out.write("\n  ")
        out.write("".join(_fmt(float(x)) + " " for x in vals[r]))
    out.write("]\n")
    return out.getvalue().encode()


# ----------------------------------------------------------------------------- PLDA
def plda_to_bytes(plda, binary: bool = True) -> bytes:
    """The bytes Kaldi's `Plda::Write` (through `WriteKaldiObject`) produces for `plda`."""
    mean = np.asarray(plda.mean, dtype=np.float64)
    transform = np.asarray(plda.transform, dtype=np.float64)
    psi = np.asarray(plda.psi, dtype=np.float64)
    parts = [b"\0B" if binary else b"", b"<Plda> "]
    parts.append(_vector_bytes(mean, binary, True))
    parts.append(_matrix_bytes(transform, binary, True))
    parts.append(_vector_bytes(psi, binary, True))
    parts.append(b"</Plda> ")
    return b"".join(parts)


def parse_plda(data: bytes, name: str = "<plda>"):
    """Parses Kaldi PLDA bytes (binary or text) into a `Plda` (float64 arrays)."""
    from xvjax.backend.plda import Plda

    r = _Reader(data, name)
    r.expect("<Plda>")
    mean = r.vector()
    transform = r.matrix()
    psi = r.vector()
    r.expect("</Plda>")
    dim = len(mean)
    if dim == 0 or transform.shape != (dim, dim) or psi.shape != (dim,):
        raise XvjaxError(
            f"{name}: inconsistent PLDA dimensions: mean {mean.shape}, transform "
            f"{transform.shape}, psi {psi.shape}"
        )
    return Plda(mean=mean, transform=transform, psi=psi)


def read_plda(rxfilename: str):
    """Reads a Kaldi PLDA file (binary or text; path, `-` or `command |`) into a `Plda`."""
    return parse_plda(read_rxfilename(rxfilename), rxfilename)


def write_plda(plda, wxfilename: str, binary: bool = True) -> None:
    """Writes `plda` in Kaldi's layout (atomically for files)."""
    write_wxfilename(wxfilename, plda_to_bytes(plda, binary))
