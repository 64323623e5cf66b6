"""Kaldi PLDA files (`<Plda>` ... `</Plda>`), binary and text, read and written byte-exactly.

Layout written by Kaldi's `Plda::Write` (binary when the file starts with `\\0B`):

    <Plda> DV <int32 D> <D doubles>  DM <int32 D> <int32 D> <D*D doubles>  DV <int32 D> <D doubles> </Plda>

i.e. the token `<Plda>`, the mean (Vector<double>), the transform (Matrix<double>, row-major), psi
(Vector<double>) and `</Plda>`. Integers are written as one size byte (4) plus little-endian int32.
The text form is `<Plda>  [ m0 m1 ... ]\\n [\\n  a00 a01 ... \\n  ... aDD ]\\n [ psi ... ]\\n</Plda> `
with numbers printed like C++ `ostream << x` at precision 7 (`%.7g`). Reading accepts float (`FV`,
`FM`, `CM`) as well as double objects, as Kaldi does; `read_plda(write_plda(p))` is exact in binary mode,
and writing a PLDA that was read from a Kaldi binary file reproduces the file byte for byte. The
primitives (tokens, DV/DM, text floats) are `primitives`' `KaldiInput` / `KaldiOutput`.

File names are Kaldi rxfilenames/wxfilenames (`xvjax.kaldi.streams`): a path, `-` (stdin/stdout),
`command |` (read from a pipe) or `| command` (write to a pipe). Writes to files are atomic.
Single vectors and matrices (`mean.vec`, `transform.mat`) are read with `xvjax.kaldi.tables`.
"""

from __future__ import annotations

import numpy as np

from xvjax.backend.plda import Plda
from xvjax.errors import XvjaxError
from xvjax.kaldi import streams
from xvjax.kaldi.primitives import KaldiInput, KaldiOutput

__all__ = ["read_plda", "write_plda", "plda_to_bytes", "parse_plda"]


def plda_to_bytes(plda: Plda, binary: bool = True) -> bytes:
    """The bytes Kaldi's `Plda::Write` (through `WriteKaldiObject`) produces for `plda`."""
    out = KaldiOutput(binary)
    if binary:
        out.raw(b"\0B")
    out.token("<Plda>")
    out.vector(plda.mean, double=True)
    out.matrix(plda.transform, double=True)
    out.vector(plda.psi, double=True)
    out.token("</Plda>")
    return out.getvalue()


def parse_plda(data: bytes, name: str = "<plda>") -> Plda:
    """Parses Kaldi PLDA bytes (binary or text) into a `Plda` (float64 arrays)."""
    binary = data[:2] == b"\0B"
    r = KaldiInput(data, binary, name, 2 if binary else 0)
    r.expect("<Plda>")
    mean = r.vector("PLDA mean", np.float64)
    transform = r.matrix("PLDA transform", np.float64)
    psi = r.vector("PLDA psi", np.float64)
    r.expect("</Plda>")
    dim = len(mean)
    if dim == 0 or transform.shape != (dim, dim) or psi.shape != (dim,):
        raise XvjaxError(
            f"{name}: inconsistent PLDA dimensions: mean {mean.shape}, transform "
            f"{transform.shape}, psi {psi.shape}"
        )
    if not all(np.isfinite(a).all() for a in (mean, transform, psi)):
        raise XvjaxError(f"{name}: the PLDA model has NaN or infinite values")
    return Plda(mean=mean, transform=transform, psi=psi)


def read_plda(rxfilename: str) -> Plda:
    """Reads a Kaldi PLDA file (binary or text; path, `-` or `command |`) into a `Plda`."""
    return parse_plda(streams.read_all(rxfilename), rxfilename)


def write_plda(plda: Plda, wxfilename: str, binary: bool = True) -> None:
    """Writes `plda` in Kaldi's layout (atomically for files)."""
    streams.write_all(wxfilename, plda_to_bytes(plda, binary))
