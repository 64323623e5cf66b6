"""Kaldi binary names xvjax implements, and the shim executables that let Kaldi's own scripts
run on xvjax (`xvjax kaldi-shims DIR`, then `PATH=DIR:$PATH`).

A shim is a two-line `sh` script named like the Kaldi binary that runs
`<python> -m xvjax.cli <name> "$@"`, so options, arguments, pipes, exit status and stderr are
xvjax's. `KALDI_BINARIES` lists the names of Kaldi's compiled tools (`src/*bin/*.cc` at the
fixtures' Kaldi version) that have an xvjax command of the same name; xvjax's own commands
(make-features, score-norm, train, ...) and Kaldi's scripts (`utils/*.sh`, compute_min_dcf.py)
get no shim.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

from xvjax.errors import XvjaxError

KALDI_BINARIES = (
    # src/bin, src/featbin
    "copy-feats", "copy-matrix", "copy-vector", "copy-int-vector", "transform-vec",
    "feat-to-dim", "feat-to-len", "compute-mfcc-feats", "compute-fbank-feats",
    "compute-cmvn-stats", "apply-cmvn", "apply-cmvn-sliding", "wav-copy", "wav-to-duration",
    "extract-segments", "wav-reverberate",
    # src/ivectorbin
    "compute-vad", "select-voiced-frames", "ivector-mean", "ivector-subtract-global-mean",
    "ivector-normalize-length", "ivector-compute-lda", "ivector-compute-plda",
    "ivector-adapt-plda", "ivector-copy-plda", "ivector-plda-scoring",
    "ivector-plda-scoring-dense", "ivector-compute-dot-products", "compute-eer",
    # src/nnet3bin
    "nnet3-copy", "nnet3-init", "nnet3-info", "nnet3-compute", "nnet3-xvector-compute",
    "nnet3-copy-egs", "nnet3-merge-egs", "nnet3-shuffle-egs", "nnet3-subset-egs",
    "nnet3-xvector-get-egs",
)  # fmt: skip


def shim_text(name: str, python: str) -> str:
    """The shim script for Kaldi binary `name`, running xvjax with interpreter `python`."""
    return (
        "#!/bin/sh\n"
        f"# Kaldi's {name}, run by xvjax (written by 'xvjax kaldi-shims')\n"
        f'exec {shlex.quote(python)} -m xvjax.cli {name} "$@"\n'
    )


def write_shims(directory: str | os.PathLike, python: str | None = None) -> list[Path]:
    """Writes one executable shim per name in `KALDI_BINARIES` into `directory` (created if
    needed; existing shims are replaced, other files left alone). Returns the paths written."""
    python = python or sys.executable
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise XvjaxError(f"cannot create shim directory {out}: {e.strerror}") from None
    written = []
    for name in KALDI_BINARIES:
        path = out / name
        tmp = out / f".{name}.tmp"
        try:
            tmp.write_text(shim_text(name, python))
            tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise XvjaxError(f"cannot write shim {path}: {e.strerror}") from None
        written.append(path)
    return written
