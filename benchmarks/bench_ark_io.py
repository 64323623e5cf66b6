"""Throughput of xvjax's Kaldi table I/O on a feature ark generated on the fly (not committed).

    .venv/bin/python benchmarks/bench_ark_io.py            # 1 GB of float features (~1 min)
    .venv/bin/python benchmarks/bench_ark_io.py --gb=0.1   # a quick run

Prints MB/s (of float32 feature data) for: writing a float ark+scp, reading it sequentially, reading
it by scp in shuffled order (random access), writing it compressed (Kaldi's default method 1, and
method 3 = two-byte) and reading the compressed arks back. Files live in a temp dir removed at exit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from xvjax.kaldi import tables  # noqa: E402


def make_features(num_utts: int, dim: int, seed: int = 0):
    """Yields (utt, feats (frames, dim) float32) like MFCCs: 200..800 frames.

    A pool of 256 random matrices is cycled (with distinct keys), so generating data costs almost
    nothing inside the timed loops and the whole set is never held in memory.
    """
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((800, dim)).astype(np.float32) * 8.0
    pool = []
    for _ in range(256):
        frames = int(rng.integers(200, 801))
        pool.append(base[:frames] + rng.standard_normal((frames, dim), dtype=np.float32))
    for i in range(num_utts):
        yield f"spk{i // 20:05d}-utt{i:07d}", pool[i % len(pool)]


def timed(label: str, nbytes: int, fn) -> float:
    start = time.perf_counter()
    fn()
    secs = time.perf_counter() - start
    mb = nbytes / 1e6
    print(f"{label:<42} {mb:9.1f} MB in {secs:6.2f} s = {mb / secs:8.1f} MB/s", flush=True)
    return secs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gb", type=float, default=1.0, help="GB of float32 feature data (default 1)"
    )
    parser.add_argument("--dim", type=int, default=30, help="feature dimension (default 30)")
    parser.add_argument(
        "--compressed-fraction",
        type=float,
        default=0.25,
        help="fraction of the data used for the (slower) compressed runs",
    )
    args = parser.parse_args()
    avg_bytes = 500 * args.dim * 4
    num_utts = max(1, int(args.gb * 1e9 / avg_bytes))
    # Features are generated on the fly (deterministically), never all held in memory.
    nbytes = sum(m.nbytes for _, m in make_features(num_utts, args.dim))
    keys = [k for k, _ in make_features(num_utts, args.dim)]
    print(
        f"{num_utts} utterances x {args.dim} dims, {nbytes / 1e9:.2f} GB float32 (numpy {np.__version__})"
    )
    with tempfile.TemporaryDirectory(prefix="bench_ark_") as tmp:
        ark, scp = os.path.join(tmp, "f.ark"), os.path.join(tmp, "f.scp")

        def write_float():
            with tables.Writer(f"ark,scp:{ark},{scp}") as w:
                for k, v in make_features(num_utts, args.dim):
                    w[k] = v

        def read_seq():
            for _ in tables.read(f"ark:{ark}"):
                pass

        np.random.default_rng(1).shuffle(keys)

        def read_random():
            ra = tables.RandomAccess(f"scp:{scp}")
            for k in keys:
                ra[k]
            ra.close()

        timed("write float ark,scp", nbytes, write_float)
        timed("read float ark (sequential)", nbytes, read_seq)
        timed("read float scp (random order)", nbytes, read_random)
        os.unlink(ark)

        num_sub = max(1, int(num_utts * args.compressed_fraction))
        sub_bytes = sum(m.nbytes for _, m in make_features(num_sub, args.dim))
        for method in (1, 3):
            cark = os.path.join(tmp, f"c{method}.ark")

            def write_cm(method=method, cark=cark):
                with tables.Writer(f"ark:{cark}", compression_method=method) as w:
                    for k, v in make_features(num_sub, args.dim):
                        w[k] = v

            def read_cm(cark=cark):
                for _ in tables.read(f"ark:{cark}"):
                    pass

            timed(f"write compressed (method {method})", sub_bytes, write_cm)
            ratio = os.path.getsize(cark) / sub_bytes
            timed(f"read compressed (method {method}, {ratio:.2f}x size)", sub_bytes, read_cm)
            os.unlink(cark)


if __name__ == "__main__":
    main()
