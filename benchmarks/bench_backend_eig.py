"""Cost of Kaldi's eigenvector signs in the LDA/PLDA eigendecompositions (prints figures).

    .venv/bin/python benchmarks/bench_backend_eig.py [--dims 128,256,512]

`linalg.sorted_eigh` is LAPACK's `eigh` plus `kaldi_signs`, which replays Kaldi's Householder +
implicit-QR sequence on 3 probe vectors (O(D^2) Python-level rotations). LDA does two such
decompositions of the x-vector dimension, PLDA training one and PLDA adaptation two of the LDA
dimension.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from xvjax.backend.linalg import kaldi_signs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="128,256,512")
    dims = [int(d) for d in ap.parse_args().dims.split(",")]
    print(f"{'dim':>5} {'eigh s':>8} {'signs s':>8}")
    rng = np.random.default_rng(0)
    for d in dims:
        x = rng.standard_normal((2 * d, d))
        a = x.T @ x
        t0 = time.perf_counter()
        s, u = np.linalg.eigh(a)
        t1 = time.perf_counter()
        kaldi_signs(a, u[:, ::-1])
        t2 = time.perf_counter()
        print(f"{d:5d} {t1 - t0:8.3f} {t2 - t1:8.3f}")


if __name__ == "__main__":
    main()
