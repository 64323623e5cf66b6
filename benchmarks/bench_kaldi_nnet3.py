"""Speed of the nnet3 model and egs I/O (prints figures; no assertions).

    .venv/bin/python benchmarks/bench_kaldi_nnet3.py [--copies 500]

Model: read/write of the 18 MB full-size x-vector model (binary and text).
Egs: read_xvector_egs throughput on an archive made of --copies copies of the fixture sample
(compressed CM inputs, decoded bit-exactly).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

FIXTURES = Path(
    os.environ.get(
        "XVJAX_KALDI_FIXTURES", Path(__file__).resolve().parents[1].parent / "shared/fixtures/kaldi"
    )
)


def _timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=500, help="copies of egs_sample.ark")
    args = parser.parse_args()

    from xvjax.kaldi import egs
    from xvjax.kaldi.nnet3 import Nnet

    raw = (FIXTURES / "nnet3/full/final.raw").read_bytes()
    mb = len(raw) / 1e6
    t, nnet = _timed(lambda: Nnet.from_bytes(raw, "full"))
    print(f"read binary nnet3 ({mb:.1f} MB, {nnet.num_parameters()} params): {t * 1e3:.0f} ms")
    t, _ = _timed(lambda: nnet.to_bytes(binary=True))
    print(f"write binary nnet3: {t * 1e3:.0f} ms")
    t, text = _timed(lambda: nnet.to_bytes(binary=False), repeat=1)
    print(f"write text nnet3 ({len(text) / 1e6:.1f} MB): {t:.2f} s")
    t, _ = _timed(lambda: Nnet.from_bytes(text, "full.txt"), repeat=1)
    print(f"read text nnet3: {t:.2f} s")

    sample = (FIXTURES / "egs/egs_sample.ark").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "egs.ark"
        path.write_bytes(sample * args.copies)
        start = time.perf_counter()
        n = frames = 0
        for _, feats, _ in egs.read_xvector_egs(f"ark:{path}"):
            n += 1
            frames += feats.shape[0]
        t = time.perf_counter() - start
        print(
            f"read_xvector_egs: {n} examples ({path.stat().st_size / 1e6:.1f} MB, CM inputs) in "
            f"{t:.2f} s = {n / t:.0f} egs/s, {frames / t / 1e3:.0f} k frames/s"
        )


if __name__ == "__main__":
    main()
