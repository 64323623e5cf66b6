"""Kaldi compressed matrices (`CM`, `CM2`, `CM3`), bit-exact with `src/matrix/compressed-matrix.cc`.

Kaldi stores a compressed matrix as a global header (min_value, range, num_rows, num_cols) and then:

- `CM`  (speech-feature format): per column four uint16 percentiles (0, 25, 75, 100 %), then one
  byte per element, column by column; byte values 0..64, 64..192, 192..255 interpolate linearly
  between the percentiles.
- `CM2`: one uint16 per element, row-major, `min_value + range * q / 65535`.
- `CM3`: one uint8 per element, row-major, `min_value + range * q / 255`.

`--compression-method` (Kaldi's `CompressionMethod` enum) picks the format and the header:
1 automatic (CM if more than 8 rows, else CM2), 2 speech feature (CM), 3 two-byte auto (CM2),
4 two-byte signed integer (CM2 over [-32768, 32767]), 5 one-byte auto (CM3), 6 one-byte unsigned
integer (CM3 over [0, 255]), 7 one-byte zero-one (CM3 over [0, 1]).

Every arithmetic step is done in the precision Kaldi's C++ uses (float32 where it computes in
float, float64 where a double constant promotes the expression), so encoding and decoding
reproduce Kaldi's bytes and numbers exactly.
"""

from __future__ import annotations

import struct

import numpy as np

from xvjax.errors import XvjaxError

COMPRESSION_METHODS = {
    1: "automatic",
    2: "speech-feature",
    3: "two-byte-auto",
    4: "two-byte-signed-integer",
    5: "one-byte-auto",
    6: "one-byte-unsigned-integer",
    7: "one-byte-zero-one",
}
_FORMAT_TOKEN = {1: b"CM", 2: b"CM2", 3: b"CM3"}
TOKEN_FORMAT = {b"CM": 1, b"CM2": 2, b"CM3": 3}

_F32 = np.float32
_HEADER = struct.Struct("<ffii")  # min_value, range, num_rows, num_cols (the format is the token)


def payload_size(fmt: int, num_rows: int, num_cols: int) -> int:
    """Bytes after the 16-byte header for format 1 (CM), 2 (CM2) or 3 (CM3)."""
    if fmt == 1:
        return num_cols * (8 + num_rows)
    if fmt == 2:
        return 2 * num_rows * num_cols
    return num_rows * num_cols


def _format_for(method: int, num_rows: int) -> int:
    if method == 1:
        method = 2 if num_rows > 8 else 3
    if method == 2:
        return 1
    if method in (3, 4):
        return 2
    if method in (5, 6, 7):
        return 3
    raise XvjaxError(f"invalid --compression-method={method} (Kaldi accepts 1..7)")


def _global_header(mat: np.ndarray, method: int) -> tuple[np.float32, np.float32]:
    """(min_value, range) as Kaldi's `ComputeGlobalHeader` computes them."""
    if method == 1:
        method = 2 if mat.shape[0] > 8 else 3
    if method in (2, 3, 5):
        min_value, max_value = _F32(mat.min()), _F32(mat.max())
        if not (np.isfinite(min_value) and np.isfinite(max_value)):
            raise XvjaxError("cannot compress a matrix with NaN or Inf values")
        if max_value == min_value:  # `min + (1.0 + fabs(min))`, evaluated in double
            max_value = _F32(np.float64(min_value) + (1.0 + abs(np.float64(min_value))))
        return min_value, _F32(max_value - min_value)
    return {4: (_F32(-32768.0), _F32(65535.0)), 6: (_F32(0.0), _F32(255.0))}.get(
        method, (_F32(0.0), _F32(1.0))
    )


def _float_to_uint(values: np.ndarray, min_value, range_, scale: int) -> np.ndarray:
    """Kaldi's FloatToUint16 / FloatToUint8: float32 ratio, `f * scale` in float, `+ 0.499` in double."""
    f = (values - min_value) / range_
    f = np.clip(f, _F32(0.0), _F32(1.0))
    return np.floor((f * _F32(scale)).astype(np.float64) + 0.499).astype(np.int64)


def _uint16_to_float(q: np.ndarray, min_value, range_) -> np.ndarray:
    """Kaldi's Uint16ToFloat: `min + range * 1.52590218966964e-05F * q`, all in float32."""
    step = _F32(range_ * _F32(1.52590218966964e-05))
    return min_value + step * q.astype(_F32)


def _percentiles(mat: np.ndarray, min_value, range_) -> np.ndarray:
    """Per-column uint16 percentile headers (num_cols, 4), as Kaldi's ComputeColHeader."""
    n = mat.shape[0]
    if n >= 5:
        q = n // 4
        part = np.partition(np.ascontiguousarray(mat.T), [0, q, 3 * q, n - 1], axis=1)
        stats = part[:, [0, q, 3 * q, n - 1]].T
    else:
        stats = np.sort(mat, axis=0)
    u = _float_to_uint(stats, min_value, range_, 65535)
    p0 = np.minimum(u[0], 65532)
    p25 = np.minimum(np.maximum(u[1], p0 + 1), 65533) if n > 1 else p0 + 1
    p75 = np.minimum(np.maximum(u[2], p25 + 1), 65534) if n > 2 else p25 + 1
    p100 = np.maximum(u[3], p75 + 1) if n > 3 else p75 + 1
    return np.stack([p0, p25, p75, p100], axis=1).astype(np.uint16)


def _trunc_to_int(x: np.ndarray) -> np.ndarray:
    """C's `static_cast<int>(double)` on x86: truncation; NaN/overflow give INT_MIN."""
    bad = ~np.isfinite(x) | (np.abs(x) >= 2.0**31)
    return np.where(bad, -(2**31), np.trunc(np.where(bad, 0.0, x))).astype(np.int64)


def _float_to_char(values: np.ndarray, p: tuple) -> np.ndarray:
    """Kaldi's FloatToChar for a (num_rows, num_cols) block with per-column float percentiles.

    Each value falls in one of three ranges [p0, p25), [p25, p75), [p75, p100] mapped to codes
    0..64, 64..192, 192..255; the range's start/width/scale are gathered per element and the code
    is `offset + int(float(f * scale) + 0.5)` with f in float32, as Kaldi computes it.
    """
    p0, p25, p75, p100 = p
    seg = (values >= p25).astype(np.intp) + (values >= p75)  # 0, 1, 2
    cols = np.arange(values.shape[1])
    start = np.stack([p0, p25, p75])[seg, cols]
    width = np.stack([p25 - p0, p75 - p25, p100 - p75])[seg, cols]
    scale = np.array([64, 128, 63], dtype=_F32)[seg]
    offset = np.array([0, 64, 192])[seg]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        code = offset + _trunc_to_int(((values - start) / width * scale).astype(np.float64) + 0.5)
    return np.clip(code, offset, offset + np.array([64, 128, 63])[seg]).astype(np.uint8)


def _char_to_float(q: np.ndarray, p: tuple) -> np.ndarray:
    """Kaldi's CharToFloat: float product, then double scale and sum, rounded once to float."""
    p0, p25, p75, p100 = p
    qf = q.astype(_F32)
    low = np.float64(p0) + ((p25 - p0) * qf).astype(np.float64) * (1 / 64.0)
    mid = np.float64(p25) + ((p75 - p25) * (qf - _F32(64))).astype(np.float64) * (1 / 128.0)
    high = np.float64(p75) + ((p100 - p75) * (qf - _F32(192))).astype(np.float64) * (1 / 63.0)
    return np.where(q <= 64, low, np.where(q <= 192, mid, high)).astype(_F32)


def compress(mat: np.ndarray, method: int = 1) -> bytes:
    """Encodes a matrix (num_rows, num_cols) as Kaldi writes it: token + space + header + data.

    Values are taken as float32 (Kaldi's BaseFloat), as `copy-feats --compress=true` does.
    """
    if mat.ndim != 2:
        raise XvjaxError(f"only matrices can be compressed, got an array of shape {mat.shape}")
    fmt = _format_for(method, mat.shape[0])
    if mat.shape[0] == 0 or mat.shape[1] == 0:  # Kaldi: empty matrix is a zero CM header
        return b"CM " + _HEADER.pack(0.0, 0.0, 0, 0)
    mat = np.ascontiguousarray(mat, dtype=_F32)
    min_value, range_ = _global_header(mat, method)
    num_rows, num_cols = mat.shape
    head = _FORMAT_TOKEN[fmt] + b" " + _HEADER.pack(min_value, range_, num_rows, num_cols)
    if fmt == 2:
        return head + _float_to_uint(mat, min_value, range_, 65535).astype("<u2").tobytes()
    if fmt == 3:
        return head + _float_to_uint(mat, min_value, range_, 255).astype(np.uint8).tobytes()
    pct = _percentiles(mat, min_value, range_)  # (num_cols, 4) uint16
    pf = _uint16_to_float(pct, min_value, range_)  # (num_cols, 4) float32
    chars = _float_to_char(mat, tuple(pf[:, i] for i in range(4)))  # (rows, cols)
    return head + pct.astype("<u2").tobytes() + np.ascontiguousarray(chars.T).tobytes()


def parse_header(buf: bytes) -> tuple[float, float, int, int]:
    """(min_value, range, num_rows, num_cols) from the 16 header bytes."""
    return _HEADER.unpack(buf)


def decode(data: bytes) -> np.ndarray:
    """Decodes a whole compressed matrix as `compress` returns it (token, space, header, data)."""
    tok, _, rest = data.partition(b" ")
    return decompress(TOKEN_FORMAT[tok], rest[:16], rest[16:])


def decompress(fmt: int, header: bytes, payload: bytes) -> np.ndarray:
    """Decodes a compressed matrix to float32 (num_rows, num_cols) exactly as Kaldi's CopyToMat."""
    min_value, range_, num_rows, num_cols = _HEADER.unpack(header)
    if num_cols == 0 or num_rows == 0:
        return np.zeros((0, 0), dtype=_F32)
    min_value, range_ = _F32(min_value), _F32(range_)
    if fmt == 2:
        q = np.frombuffer(payload, dtype="<u2").reshape(num_rows, num_cols)
        step = _F32(np.float64(range_) * (1.0 / 65535.0))
        return min_value + q.astype(_F32) * step
    if fmt == 3:
        q = np.frombuffer(payload, dtype=np.uint8).reshape(num_rows, num_cols)
        step = _F32(np.float64(range_) * (1.0 / 255.0))
        table = min_value + np.arange(256, dtype=_F32) * step  # same float ops, once per code
        return table[q]
    pct = np.frombuffer(payload, dtype="<u2", count=4 * num_cols).reshape(num_cols, 4)
    pf = _uint16_to_float(pct, min_value, range_)
    # Per column, the 256 possible byte codes decode through a lookup table (256, num_cols).
    table = _char_to_float(
        np.arange(256, dtype=np.uint8)[:, None], tuple(pf[:, i] for i in range(4))
    )
    q = np.frombuffer(payload, dtype=np.uint8, offset=8 * num_cols).reshape(num_cols, num_rows)
    return np.ascontiguousarray(table[q, np.arange(num_cols)[:, None]].T)
