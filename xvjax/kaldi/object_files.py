"""Single Kaldi objects in rx/wxfilenames (`transform.mat`, `mean.vec`, `-`, `cmd |`, `a.ark:123`,
ranges `[r1:r2]`), and the dispatch between array kinds and codecs that `tables` shares.

Public names are re-exported by `xvjax.kaldi.tables` (`tables.read_matrix(...)` etc.); call them
from there.
"""

from __future__ import annotations

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import holders, streams
from xvjax.kaldi.holders import FormatError
from xvjax.kaldi.specifiers import apply_range, split_range


def check_kind(kind) -> None:
    if isinstance(kind, str):
        if kind not in holders.KINDS:
            raise ValueError(f"kind must be one of {holders.KINDS} or a codec")
    elif not (callable(getattr(kind, "read", None)) and callable(getattr(kind, "write", None))):
        raise TypeError(f"kind must be one of {holders.KINDS} or a codec, got {kind!r}")


def read_value(f, kind, dtype):
    """One object from stream `f`: an array/scalar for a string kind, else `kind.read` (codec)."""
    if isinstance(kind, str):
        return holders.read_object(f, kind, dtype)
    binary = f.peek(2)[:2] == holders.BINARY_HEADER
    if binary:
        f.read(2)
    try:
        return kind.read(f, binary)
    except FormatError:
        raise
    except XvjaxError as e:  # the table layer adds file and key
        raise FormatError(str(e)) from None


def read_value_at(f, kind, dtype, offset: int):
    """`read_value` for the object an scp entry (`a.ark:1234`) places at byte `offset` of `f`.
    When the bytes there cannot begin an object the error says so: a wrong offset, not what those
    bytes failed to parse as."""
    head = f.peek(8)[:8]
    try:
        return read_value(f, kind, dtype)
    except FormatError:
        if offset and not _can_start_object(head):
            raise FormatError(
                f"offset {offset} is not the start of an object (found {head!r}; scp offsets "
                "point just after a key of an archive)"
            ) from None
        raise


def _can_start_object(head: bytes) -> bool:
    """Whether bytes can begin an object: the binary header, or text ('[', a number)."""
    if head.startswith(holders.BINARY_HEADER):
        return True
    text = head.lstrip(b" \t")
    return bool(text) and (text[:1] == b"[" or text[:1] in b"0123456789+-.")


def encode_object(obj, binary: bool, compression_method: int | None, codec) -> bytes:
    if codec is None:
        return holders.encode(obj, binary, compression_method)
    if compression_method is not None:
        raise XvjaxError("compression applies to matrices only, not to codec objects")
    # Wave tables have no binary marker (Kaldi's WaveHolder writes the RIFF bytes directly).
    marker = binary and getattr(codec, "binary_header", True)
    return (holders.BINARY_HEADER if marker else b"") + codec.write(obj, binary)


def read_object(rxfilename: str, kind="auto", dtype=None):
    """One object from an rxfilename (`transform.mat`, `mean.vec`, `-`, `cmd |`, `a.ark:123`)."""
    check_kind(kind)
    target, rng = split_range(rxfilename)
    offset = streams.classify_rxfilename(target)[2]
    try:
        with streams.input_stream(target) as f:
            obj = read_value_at(f, kind, dtype, offset)
    except FormatError as e:
        raise XvjaxError(f"{streams.printable(rxfilename)}: {e}") from None
    return apply_range(obj, rng, rxfilename)


def read_matrix(rxfilename: str, dtype=None) -> np.ndarray:
    """A matrix file (binary, text or compressed), e.g. `transform.mat`; float32 unless `dtype`."""
    return read_object(rxfilename, "matrix", dtype)


def read_vector(rxfilename: str, dtype=None) -> np.ndarray:
    """A vector file, e.g. `mean.vec`."""
    return read_object(rxfilename, "vector", dtype)


def write_object(
    wxfilename: str,
    obj,
    binary: bool = True,
    compression_method: int | None = None,
    codec=None,
) -> None:
    """Writes one object like Kaldi's `WriteKaldiObject` (atomic for files)."""
    data = encode_object(obj, binary, compression_method, codec)
    with streams.output_stream(wxfilename) as out:
        out.write(data)


def write_matrix(wxfilename: str, mat: np.ndarray, binary: bool = True) -> None:
    mat = np.asarray(mat)
    if mat.ndim != 2:
        raise XvjaxError(f"{wxfilename}: expected a matrix, got an array of shape {mat.shape}")
    write_object(wxfilename, mat, binary)


def write_vector(wxfilename: str, vec: np.ndarray, binary: bool = True) -> None:
    vec = np.asarray(vec)
    if vec.ndim != 1 or vec.dtype.kind not in "f":
        raise XvjaxError(
            f"{wxfilename}: expected a float vector, got {vec.dtype} of shape {vec.shape}"
        )
    write_object(wxfilename, vec, binary)
