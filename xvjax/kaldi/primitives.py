"""Kaldi object serialisation primitives (`src/base/io-funcs*`, `src/matrix/kaldi-matrix.cc`).

The nnet3 model and egs readers/writers are built from these, in both of Kaldi's modes:

- tokens (`<LearningRate>`, `FM`) are followed by one space in both modes;
- binary basic types: int32 = size byte 0x04 + little-endian int32, float = 0x04 + IEEE float32,
  double = 0x08 + IEEE float64, bool = the single char `T`/`F` (no space);
- text basic types: the value then a space; floats printed like C++ `ostream << x` at precision 7
  (`InitKaldiOutputStream` sets 7), i.e. `'%.7g' % x`;
- matrices: binary `FM ` rows cols row-major data (`DM` for double, `CM`/`CM2`/`CM3` compressed,
  read only); text ` [\\n  r0c0 r0c1 \\n  ... ]\\n` (` [ ]\\n` when empty);
- vectors: binary `FV ` dim data; text ` [ v0 v1 ... ]\\n`;
- integer vectors (`WriteIntegerVector`): binary size byte + int32 count + raw int32s; text
  `[ 1 2 3 ]\\n`.

This is xvjax's one codec of Kaldi primitives: nnet3 models, egs, PLDA files and the table holders
(`holders`) all use it. `KaldiInput` is a cursor over the bytes of an object (a whole file, or a
window on a stream through `read_from_stream`; arrays are decoded with `np.frombuffer`, never
element by element). `KaldiOutput` collects the bytes of an object (`matrix`/`vector` write float
or, with double=True, double objects). `format_float(s)` print numbers as Kaldi's text mode;
`parse_text_array` reads bracketed text arrays. Errors are `FormatError`s (`XvjaxError`s) naming
the source and the byte offset; `Truncated` when the data ends inside an object. Files, `-` and
pipes are `streams`' business.
"""

from __future__ import annotations

import re
import struct

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import compressed

_WS = b" \t\n\r"
_WS_RE = re.compile(rb"[ \t\n\r]*")
_WORD_RE = re.compile(rb"[ \t\n\r]*([^ \t\n\r]+)")
_I32 = struct.Struct("<i")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


def format_float(x: float) -> str:
    """A float as C++ `ostream << x` prints it at precision 7 (Kaldi's text mode): `%.7g`, with
    glibc's `nan` / `-nan` / `inf` / `-inf`."""
    x = float(x)
    if x != x:
        return "-nan" if np.signbit(x) else "nan"
    return f"{x:.7g}"


def format_floats(values) -> str:
    """Space-terminated text of an array's values (each value followed by one space)."""
    arr = np.asarray(values).ravel()
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return "".join([format_float(v) + " " for v in arr.tolist()])
    return ("%.7g " * arr.size) % tuple(arr.tolist())  # one C-level format call for all values


ARRAY_TOKENS = {  # token -> (little-endian element type, number of dimensions)
    "FM": (np.dtype("<f4"), 2),
    "DM": (np.dtype("<f8"), 2),
    "FV": (np.dtype("<f4"), 1),
    "DV": (np.dtype("<f8"), 1),
}
COMPRESSED_TOKENS = ("CM", "CM2", "CM3")
OBJECT_NAMES = {
    "FM": "float matrix",
    "DM": "double matrix",
    "FV": "float vector",
    "DV": "double vector",
    "CM": "compressed matrix",
    "CM2": "compressed matrix",
    "CM3": "compressed matrix",
}


class FormatError(XvjaxError):
    """Bad object bytes/text; the table layer adds the file and key to the message."""


class Truncated(FormatError):
    """The data ended inside an object (with `final=False`: more data may complete it)."""


class KaldiInput:
    """Cursor over a Kaldi object in memory, binary or text.

    `final=False` marks `data` as a window on a longer stream: a word that touches the end of the
    window may continue past it, so it raises `Truncated` too (see `read_from_stream`).
    """

    def __init__(
        self,
        data: bytes,
        binary: bool,
        source: str = "<input>",
        pos: int = 0,
        final: bool = True,
    ):
        self.data = data
        self.binary = binary
        self.source = source
        self.pos = pos
        self.final = final

    # ----------------------------------------------------------------- errors / low level
    def error(self, what: str, cls=FormatError) -> FormatError:
        return cls(f"{self.source}: {what} (at byte {self.pos})")

    def truncated(self, what: str) -> Truncated:
        return self.error(f"unexpected end of file while reading {what}", Truncated)

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.data):
            raise self.truncated(what)

    def at_end(self) -> bool:
        self._skip_ws()
        return self.pos >= len(self.data)

    def _skip_ws(self) -> None:
        self.pos = _WS_RE.match(self.data, self.pos).end()

    def _word(self, what: str) -> bytes:
        """Next whitespace-delimited word (leading whitespace skipped)."""
        m = _WORD_RE.match(self.data, self.pos)
        if m is None or (not self.final and m.end() == len(self.data)):
            if m is None:
                self.pos = len(self.data)
            raise self.truncated(what)
        self.pos = m.end()
        return m.group(1)

    # ----------------------------------------------------------------- tokens
    def token(self, what: str = "token") -> str:
        """ReadToken: a word, then (binary) the single space that terminates it."""
        word = self._word(what)
        if self.pos < len(self.data) and self.data[self.pos] in _WS:
            self.pos += 1
        try:
            return word.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"expected {what}, found binary data") from None

    def peek_token(self) -> str:
        """The next token without consuming it ('' at end of input)."""
        pos = self.pos
        try:
            return self.token()
        except XvjaxError:
            return ""
        finally:
            self.pos = pos

    def expect(self, expected: str, context: str = "") -> None:
        got = self.token(f"token {expected}")
        if got != expected:
            where = f" in {context}" if context else ""
            raise self.error(f"expected token {expected}{where}, got '{got}'")

    def line(self) -> str:
        """A raw text line (without its newline); used for the nnet3 config section."""
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise self.truncated("the nnet3 config section")
        text = self.data[self.pos : end]
        self.pos = end + 1
        return text.decode("utf-8", errors="replace").rstrip("\r")

    # ----------------------------------------------------------------- basic types
    def int32(self, what: str = "integer") -> int:
        if self.binary:
            self._need(5, what)
            size = self.data[self.pos]
            if size != 4:
                raise self.error(f"expected int32 ({what}), got size byte {size}")
            (value,) = _I32.unpack_from(self.data, self.pos + 1)
            self.pos += 5
            return value
        word = self._word(what)
        try:
            return int(word)
        except ValueError:
            raise self.error(
                f"expected integer ({what}), got '{word.decode(errors='replace')}'"
            ) from None

    def real(self, what: str = "float") -> float:
        """ReadBasicType<float|double>: binary size byte 4 or 8; returned as a Python float."""
        if self.binary:
            self._need(1, what)
            size = self.data[self.pos]
            if size == 4:
                self._need(5, what)
                (value,) = _F32.unpack_from(self.data, self.pos + 1)
                self.pos += 5
                return value
            if size == 8:
                self._need(9, what)
                (value,) = _F64.unpack_from(self.data, self.pos + 1)
                self.pos += 9
                return value
            raise self.error(f"expected float ({what}), got size byte {size}")
        word = self._word(what)
        try:
            return float(word)
        except ValueError:
            raise self.error(
                f"expected float ({what}), got '{word.decode(errors='replace')}'"
            ) from None

    def float32(self, what: str = "float") -> float:
        return float(np.float32(self.real(what)))

    def boolean(self, what: str = "bool") -> bool:
        if self.binary:
            self._skip_ws()
            self._need(1, what)
            c = self.data[self.pos : self.pos + 1]
            self.pos += 1
        else:
            c = self._word(what)
        if c == b"T":
            return True
        if c == b"F":
            return False
        raise self.error(f"expected bool T or F ({what}), got '{c.decode(errors='replace')}'")

    # ----------------------------------------------------------------- arrays
    def int_vector(self, what: str = "integer vector") -> np.ndarray:
        if self.binary:
            self._need(5, what)
            size = self.data[self.pos]
            if size != 4:
                raise self.error(f"expected int32 vector ({what}), got element size {size}")
            (n,) = _I32.unpack_from(self.data, self.pos + 1)
            if n < 0:
                raise self.error(f"negative size {n} for {what}")
            self.pos += 5
            self._need(4 * n, what)
            out = np.frombuffer(self.data, dtype="<i4", count=n, offset=self.pos).astype(np.int32)
            self.pos += 4 * n
            return out
        self.expect("[", what)
        values = []
        while True:
            word = self._word(what)
            if word == b"]":
                return np.asarray(values, dtype=np.int32)
            try:
                values.append(int(word))
            except ValueError:
                raise self.error(
                    f"expected integer in {what}, got '{word.decode(errors='replace')}'"
                ) from None

    def array_header(self, tok: str, what: str) -> tuple[np.dtype, tuple[int, ...]]:
        """After an `FM`/`DM`/`FV`/`DV` token: the dimensions -> (little-endian dtype, shape)."""
        dtype, ndim = ARRAY_TOKENS[tok]
        if ndim == 2:
            rows, cols = self.int32(f"{what} rows"), self.int32(f"{what} cols")
            if rows < 0 or cols < 0:
                raise self.error(f"bad {what} size {rows}x{cols}")
            return dtype, (rows, cols)
        dim = self.int32(f"{what} dim")
        if dim < 0:
            raise self.error(f"negative dim {dim} for {what}")
        return dtype, (dim,)

    def compressed_header(self, tok: str, what: str) -> tuple[int, bytes, int]:
        """After a `CM`/`CM2`/`CM3` token: (format 1..3, the 16 header bytes, payload size)."""
        self._need(16, what)
        header = bytes(self.data[self.pos : self.pos + 16])
        _, _, rows, cols = compressed.parse_header(header)
        if rows < 0 or cols < 0:
            raise self.error(f"bad compressed {what} size {rows}x{cols}")
        self.pos += 16
        fmt = compressed.TOKEN_FORMAT[tok.encode()]
        return fmt, header, compressed.payload_size(fmt, rows, cols)

    def _array(self, tok: str, what: str, dtype) -> np.ndarray:
        src_dtype, shape = self.array_header(tok, what)
        count = int(np.prod(shape))
        self._need(count * src_dtype.itemsize, what)
        arr = np.frombuffer(self.data, dtype=src_dtype, count=count, offset=self.pos)
        self.pos += count * src_dtype.itemsize
        return arr.astype(dtype).reshape(shape)

    def matrix(self, what: str = "matrix", dtype=np.float32) -> np.ndarray:
        """A matrix (FM/DM/CM*/text), returned as `dtype` (default float32, Kaldi's BaseFloat)."""
        if self.binary:
            tok = self.token(what)
            if tok in ("FM", "DM"):
                return self._array(tok, what, dtype)
            if tok in COMPRESSED_TOKENS:
                return self.compressed_matrix_body(tok, what)[0].astype(dtype, copy=False)
            raise self.error(f"expected {what} (FM or DM), got '{tok}'")
        return self._text_array(what, True, dtype)

    def vector(self, what: str = "vector", dtype=np.float32) -> np.ndarray:
        if self.binary:
            tok = self.token(what)
            if tok not in ("FV", "DV"):
                raise self.error(f"expected {what} (FV or DV), got '{tok}'")
            return self._array(tok, what, dtype)
        return self._text_array(what, False, dtype)

    def _text_array(self, what: str, matrix: bool, dtype) -> np.ndarray:
        self.expect("[", what)
        end = self.data.find(b"]", self.pos)
        if end < 0:
            raise self.truncated(f"{what} (no closing ']')")
        body = self.data[self.pos : end]
        self.pos = end + 1
        if self.pos < len(self.data) and self.data[self.pos : self.pos + 1] == b"\n":
            self.pos += 1
        try:
            return parse_text_array(body, matrix, dtype, what)
        except FormatError as e:
            raise self.error(str(e)) from None

    def compressed_matrix_body(self, tok: str, what: str) -> tuple[np.ndarray, bytes]:
        """After the CM/CM2/CM3 token: decodes the matrix; also returns its raw bytes."""
        start = self.pos
        fmt, header, size = self.compressed_header(tok, what)
        self._need(size, what)
        payload = self.data[self.pos : self.pos + size]
        self.pos += size
        return compressed.decompress(fmt, header, payload), self.data[start : self.pos]


def parse_text_array(body, matrix: bool, dtype=np.float32, what: str = "matrix") -> np.ndarray:
    """The numbers between Kaldi's text brackets (bytes or str): a vector, or a matrix with one
    row per line (no rows: the 0 x 0 matrix)."""
    if not matrix:
        return _parse_numbers(body.split(), dtype, what)
    rows = [r.split() for r in body.split(b"\n" if isinstance(body, bytes) else "\n")]
    rows = [r for r in rows if r]
    if not rows:
        return np.zeros((0, 0), dtype=dtype)
    cols = len(rows[0])
    if any(len(r) != cols for r in rows):
        raise FormatError(f"text {what} rows have different lengths")
    flat = _parse_numbers([w for r in rows for w in r], dtype, what)
    return flat.reshape(len(rows), cols)


def _parse_numbers(tokens: list, dtype, what: str) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # 3.402824e+38 is past float32's max: inf, as strtof
            return np.array(tokens, dtype=np.float64).astype(dtype, copy=False)
    except ValueError:
        bad = next((t for t in tokens if not is_number(t)), tokens[0] if tokens else "")
        if isinstance(bad, bytes):
            bad = bad.decode("utf-8", "replace")
        raise FormatError(f"bad number '{bad[:30]}' in text {what}") from None


def is_number(token) -> bool:
    """Whether a text token (str or bytes) parses as a number (`float()`'s spellings)."""
    try:
        float(token)
        return True
    except ValueError:
        return False


def read_from_stream(f, binary: bool, parse, source: str = "<input>", window: int = 1 << 16):
    """Runs `parse(KaldiInput)` on the bytes buffered ahead in stream `f` and consumes what it read.

    For objects whose size is known only by parsing them (NnetExample): the window of peeked
    bytes grows (x4) while the parser hits its end, so arrays are still decoded with
    `np.frombuffer` over one buffer. `f` needs `peek(n)` and `read(n)` (`streams.InputStream`).
    """
    while True:
        data = f.peek(window)
        inp = KaldiInput(data, binary, source, final=len(data) < window)
        try:
            obj = parse(inp)
        except Truncated:
            if inp.final:
                raise
            window *= 4
            continue
        f.read(inp.pos)
        return obj


class KaldiOutput:
    """Collects a Kaldi object's bytes in binary or text mode."""

    def __init__(self, binary: bool):
        self.binary = binary
        self.parts: list[bytes] = []

    def getvalue(self) -> bytes:
        return b"".join(self.parts)

    def raw(self, data: bytes | str) -> None:
        self.parts.append(data.encode() if isinstance(data, str) else data)

    def token(self, tok: str) -> None:
        self.parts.append(tok.encode() + b" ")

    def int32(self, value: int) -> None:
        if self.binary:
            self.parts.append(b"\x04" + _I32.pack(int(value)))
        else:
            self.parts.append(b"%d " % int(value))

    def float32(self, value: float) -> None:
        if self.binary:
            self.parts.append(b"\x04" + _F32.pack(value))
        else:
            self.parts.append((format_float(float(np.float32(value))) + " ").encode())

    def float64(self, value: float) -> None:
        if self.binary:
            self.parts.append(b"\x08" + _F64.pack(value))
        else:
            self.parts.append((format_float(float(value)) + " ").encode())

    def boolean(self, value: bool) -> None:
        self.parts.append((b"T" if value else b"F") + (b"" if self.binary else b" "))

    def int_vector(self, values) -> None:
        arr = np.asarray(values, dtype="<i4").reshape(-1)
        if self.binary:
            self.parts.append(b"\x04" + _I32.pack(arr.size) + arr.tobytes())
        else:
            self.parts.append(("[ " + "".join(f"{v} " for v in arr.tolist()) + "]\n").encode())

    def matrix(self, mat: np.ndarray, double: bool = False) -> None:
        """Matrix<float> (`FM`), or Matrix<double> (`DM`) with double=True; Kaldi's only empty
        matrix is 0 x 0."""
        mat = np.asarray(mat, dtype=np.float64 if double else np.float32)
        if mat.ndim != 2:
            raise XvjaxError(f"cannot write a {mat.ndim}-D array as a Kaldi matrix")
        if mat.size == 0:
            mat = mat.reshape(0, 0)
        if self.binary:
            self.parts.append(b"DM " if double else b"FM ")
            self.int32(mat.shape[0])
            self.int32(mat.shape[1])
            self.parts.append(np.ascontiguousarray(mat, dtype="<f8" if double else "<f4").tobytes())
        elif mat.size == 0:
            self.parts.append(b" [ ]\n")
        elif np.isfinite(mat).all():  # one format string per row: no Python loop per number
            row_fmt = "\n  " + "%.7g " * mat.shape[1]
            rows = "".join([row_fmt % tuple(row) for row in mat.tolist()])
            self.parts.append((" [" + rows + "]\n").encode())
        else:
            rows = "".join(["\n  " + format_floats(row) for row in mat])
            self.parts.append((" [" + rows + "]\n").encode())

    def vector(self, vec: np.ndarray, double: bool = False) -> None:
        """Vector<float> (`FV`), or Vector<double> (`DV`) with double=True."""
        vec = np.asarray(vec, dtype=np.float64 if double else np.float32).reshape(-1)
        if self.binary:
            self.parts.append(b"DV " if double else b"FV ")
            self.int32(vec.size)
            self.parts.append(np.ascontiguousarray(vec, dtype="<f8" if double else "<f4").tobytes())
        else:
            self.parts.append((" [ " + format_floats(vec) + "]\n").encode())
