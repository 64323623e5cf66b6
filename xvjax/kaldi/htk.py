"""HTK feature files (Kaldi's HtkMatrixHolder, `compute-mfcc-feats --output-format=htk`).

A file is a 12-byte big-endian header (number of frames int32, sample period in 100 ns units
int32, bytes per frame int16, parameter kind uint16) followed by the float32 frames, big-endian.
In a table each entry is `key ` then those bytes (no binary marker); text mode is not supported.
"""

from __future__ import annotations

import struct

import numpy as np

from xvjax.errors import XvjaxError

HEADER = struct.Struct(">iihH")


def htk_bytes(feats: np.ndarray, kind: int, period: int = 100000) -> bytes:
    """The HTK file of (frames, dim) features with parameter `kind` and `period` (100 ns)."""
    feats = np.asarray(feats, np.float32)
    if feats.ndim != 2:
        raise XvjaxError(f"HTK files hold a (frames, dim) matrix, got shape {feats.shape}")
    return (
        HEADER.pack(feats.shape[0], period, 4 * feats.shape[1], kind)
        + feats.astype(">f4").tobytes()
    )


def read_htk(f) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(features float32 (frames, dim), header (frames, period, bytes per frame, kind))."""
    head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        raise XvjaxError("truncated HTK header")
    frames, period, size, kind = HEADER.unpack(head)
    if frames < 0 or size <= 0 or size % 4:
        raise XvjaxError(f"bad HTK header: {frames} frames of {size} bytes")
    data = f.read(frames * size)
    if len(data) < frames * size:
        raise XvjaxError(f"truncated HTK data: expected {frames * size} bytes, got {len(data)}")
    feats = np.frombuffer(data, ">f4").reshape(frames, size // 4).astype(np.float32)
    return feats, (frames, period, size, kind)


class HtkCodec:
    """Table codec writing matrices as HTK files of one parameter kind (and reading them)."""

    binary_header = False

    def __init__(self, kind: int, period: int = 100000):
        self.kind, self.period = kind, period

    def read(self, f, binary: bool) -> np.ndarray:
        return read_htk(f)[0]

    def write(self, feats: np.ndarray, binary: bool) -> bytes:
        if not binary:
            raise XvjaxError("non-binary HTK-format write not supported (no ',t')")
        return htk_bytes(feats, self.kind, self.period)
