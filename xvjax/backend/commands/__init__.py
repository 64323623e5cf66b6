"""Backend commands with Kaldi's names, options and argument order, one module per kind of tool:

- `vectors`: ivector-mean, ivector-subtract-global-mean, ivector-normalize-length, transform-vec;
- `lda_plda`: ivector-compute-lda, ivector-compute-plda, ivector-adapt-plda, ivector-copy-plda;
- `scoring`: ivector-plda-scoring, cosine-scoring, ivector-compute-dot-products, score-matrix,
  score-norm, ivector-plda-scoring-dense (all pairs per recording);
- `metrics`: compute-eer, compute-min-dcf, compute-act-dcf, calibrate, det-plot;
- `clustering`: cluster-vectors.

Each parses options, reads tables (`xvjax.backend.vector_tables`, `score_files`, `trials`), calls
the library and writes tables. The jax-backed scorers and the plotting are imported inside the
commands, so `xvjax --help` and the numpy-only tools start without them. The options several
commands share are declared here.
"""

from __future__ import annotations

from xvjax.cli import Opt

# Kaldi's PldaConfig, registered by ivector-plda-scoring and ivector-copy-plda.
PLDA_CONFIG_OPTS = (
    Opt(
        "normalize-length",
        True,
        "If true, do length normalization as part of PLDA (see code for details)",
    ),
    Opt(
        "simple-length-normalization",
        False,
        "If true, replace the default length normalization by scaling to length sqrt(dim)",
    ),
)

# Dense (blocked, sharded) scoring.
BLOCK_OPTS = (
    Opt("block-size", 2048, "Rows (enrolment) and columns (test) per dense scoring block"),
    Opt("precision", "float32", "Dense GEMM precision: float32 or float64"),
)
