"""Score files of the scoring tools: `<enroll> <test> <score>` lines, as `ivector-plda-scoring`
writes them, and the other text files of the scoring commands (read from rxfilenames: a path,
`-` or `command |`; written atomically to wxfilenames).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from xvjax import metrics
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.kaldi import streams

__all__ = ["read_lines", "write_lines", "read_score_file", "write_scores"]


def read_lines(rxfilename: str) -> list[str]:
    """Text lines of an rxfilename (file, `-`, `cmd |`)."""
    with streams.input_stream(rxfilename) as f:
        data = f.read()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise XvjaxError(f"{streams.printable(rxfilename)}: not UTF-8 text") from None


def write_lines(wxfilename: str, lines: Iterable[str]) -> None:
    """One line per item (e.g. the column keys of a dense score table), written atomically."""
    with streams.output_stream(wxfilename) as out:
        out.write("".join(line + "\n" for line in lines).encode("utf-8"))


def read_score_file(rxfilename: str) -> tuple[Trials, np.ndarray]:
    """`<enroll> <test> <score>` lines -> (the trials scored, unlabelled; (T,) float64 scores)."""
    pairs, scores = metrics.read_score_lines(read_lines(rxfilename), rxfilename)
    return Trials([e for e, _ in pairs], [t for _, t in pairs]), scores


def write_scores(wxfilename: str, trials: Trials, scores) -> None:
    """`<enroll> <test> <score>` lines as `ivector-plda-scoring` prints them: each score a float
    (rounded to float32 once, for the whole array) printed at precision 7. Atomic."""
    values = np.asarray(scores, dtype=np.float64).astype(np.float32).tolist()
    lines = (
        f"{e} {t} {s:.7g}\n" for e, t, s in zip(trials.enroll, trials.test, values, strict=True)
    )
    with streams.output_stream(wxfilename) as out:
        out.write("".join(lines).encode("utf-8"))
