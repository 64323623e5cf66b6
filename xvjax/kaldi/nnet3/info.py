"""The text of `nnet3-info`'s component lines: Kaldi's number formats and parameter summaries.

Kaldi prints component statistics with C++ stream formatting (`src/nnet3/nnet-parse.cc`):
default floats are `%.6g` (or the precision a summary sets), `PrintFloatSuccinctly` picks a fixed
number of decimals by magnitude, `SummarizeVector` prints a vector of 10 or more values as 13
percentiles plus mean and standard deviation (fewer values are listed), and
`PrintParameterStats` prints a matrix's rms (or mean and stddev) and its row/column norms.
Values are computed in float32, as Kaldi's `Vector<BaseFloat>` arithmetic does them (sums are
accumulated in float64 and rounded, which agrees with Kaldi's to the digits printed).

What each component type prints (its `Info()`) is the `info` function of its entry in
`components.py`; `Nnet.info()` assembles the whole `nnet3-info` text.
"""

from __future__ import annotations

import numpy as np

_F32 = np.float32
PERCENTILES = (0, 1, 2, 5, 10, 20, 50, 80, 90, 95, 98, 99, 100)
_PERCENTILES_TEXT = "0,1,2,5 10,20,50,80,90 95,98,99,100"


def cpp_float(x, precision: int = 6) -> str:
    """`os << x` with the stream's default float format and `precision` (printf `%.<p>g`)."""
    return f"{float(x):.{precision}g}"


def succinct(f) -> str:
    """Kaldi's PrintFloatSuccinctly of a float32 value."""
    f = float(_F32(f))
    a = abs(f)
    if 10.0 <= a < 10000.0:
        return f"{f:.0f}"
    if a >= 0.995:
        return f"{f:.1f}"
    if a >= 0.01:
        return f"{f:.2f}"
    return f"{f:.1g}"


def _mean_stddev(vec: np.ndarray) -> tuple[np.float32, np.float32]:
    """Kaldi's `Sum() / Dim()` and `sqrt(VecVec / Dim() - mean^2)` in float32."""
    n = _F32(vec.size)
    mean = _F32(np.sum(vec, dtype=np.float64)) / n
    msq = _F32(np.dot(vec.astype(np.float64), vec.astype(np.float64))) / n
    return mean, _F32(np.sqrt(_F32(msq - mean * mean)))


def summarize_vector(vec) -> str:
    """SummarizeVector: `[ v0 v1 ... ]` for fewer than 10 values, else the 13 percentiles
    `[percentiles(0,1,2,5 10,20,50,80,90 95,98,99,100)=(...), mean=m, stddev=s]`."""
    vec = np.asarray(vec, dtype=np.float32).reshape(-1)
    if vec.size < 10:
        return "[ " + "".join(succinct(v) + " " for v in vec) + "]"
    mean, stddev = _mean_stddev(vec)
    ordered = np.sort(vec)
    n = vec.size - 1
    parts = []
    for i, p in enumerate(PERCENTILES):
        parts.append(succinct(ordered[(n * p) // 100]))
        if i + 1 < len(PERCENTILES):
            parts.append(" " if i in (3, 8) else ",")
    return (
        f"[percentiles({_PERCENTILES_TEXT})=({''.join(parts)}), "
        f"mean={cpp_float(mean, 3)}, stddev={cpp_float(stddev, 3)}]"
    )


def vector_stats(name: str, params, include_mean: bool = False) -> str:
    """PrintParameterStats of a vector: `, name-rms=r` or `, name-{mean,stddev}=m,s`."""
    v = np.asarray(params, dtype=np.float32).reshape(-1)
    if include_mean:
        mean, stddev = _mean_stddev(v)
        return f", {name}-{{mean,stddev}}={cpp_float(mean, 4)},{cpp_float(stddev, 4)}"
    msq = _F32(np.dot(v.astype(np.float64), v.astype(np.float64))) / _F32(v.size)
    return f", {name}-rms={cpp_float(np.sqrt(msq), 4)}"


def matrix_stats(
    name: str,
    params,
    include_mean: bool = False,
    row_norms: bool = False,
    col_norms: bool = False,
) -> str:
    """PrintParameterStats of a matrix (rms or mean/stddev, then row and column norms)."""
    m = np.asarray(params, dtype=np.float32)
    text = vector_stats(name, m, include_mean)
    sq = np.square(m.astype(np.float64))
    if row_norms:
        norms = np.sqrt(sq.sum(axis=1).astype(np.float32))
        text += f", {name}-row-norms={summarize_vector(norms)}"
    if col_norms:
        norms = np.sqrt(sq.sum(axis=0).astype(np.float32))
        text += f", {name}-col-norms={summarize_vector(norms)}"
    return text


def cpp_bool(b) -> str:
    return "true" if b else "false"
