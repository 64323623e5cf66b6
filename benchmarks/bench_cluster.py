"""Agglomerative clustering of x-vectors: xvjax's blocked average linkage vs scipy's `linkage`.

    .venv/bin/python benchmarks/bench_cluster.py                         # defaults below, long
    .venv/bin/python benchmarks/bench_cluster.py --sizes=2000,5000 --scipy-max=5000   # quick

Data: N synthetic x-vectors of N/10 speakers (speaker factors with variances falling from 9 to
0.25 over D=--dim dimensions, within-speaker noise std 0.6, i.e. 10 utterances a speaker on
average), scored by the PLDA log-likelihood ratio between single vectors of a PLDA trained on a
separate labelled set of the same kind (so the similarity is `cluster.pair_features(x, "plda",
backend)`, as the recipe would cluster an adaptation set).

Cases (each in its own subprocess, so the peak RSS is that case's alone; "base" is the RSS after
imports and data, before clustering):
- scipy: the whole hierarchy by `scipy.cluster.hierarchy.linkage(method="average")` on the
  condensed float64 distance matrix (-similarity), built block by block
  (`cluster.dense_linkage`): 8 N^2 / 2 bytes plus scipy's own copy. Sizes up to --scipy-max.
- xvjax: the whole hierarchy by `cluster.average_linkage` (float32 tiles of 256 x --block-size,
  8 candidates), timed after a warm-up run on 2000 points (jit compilation excluded; it is
  ~1-2 s once per process). "scanned" is the number of cluster similarities computed in scans,
  in units of N^2.
- xvjax_thr: the same stopped at the threshold where the hierarchy of a labelled 2000-vector
  sample best matches its speakers (`choose_threshold`), as a recipe run would.
For sizes both ran, "same" says whether the two hierarchies have the same merges (pairs of
clusters; float32 tiles may order near-ties differently) and the largest difference of merge
similarities.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def speakers(num: int, dim: int, seed: int):
    """(N, dim) vectors and (N,) speaker ids, N/10 speakers."""
    rng = np.random.default_rng(seed)
    num_spk = max(2, num // 10)
    spk = rng.normal(size=(num_spk, dim)) * np.linspace(3, 0.5, dim)
    labels = rng.integers(0, num_spk, size=num)
    return spk[labels] + rng.normal(size=(num, dim)) * 0.6, labels


def backend_for(dim: int):
    from xvjax.backend.system import PldaBackend, XvectorSet

    x, labels = speakers(4000, dim, seed=1)
    keys = [f"u{i}" for i in range(len(x))]
    train = XvectorSet(keys, x, {k: f"s{s}" for k, s in zip(keys, labels, strict=True)})
    return PldaBackend.fit(train, lda_dim=dim)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, size: int, a) -> dict:
    from xvjax.backend import cluster

    logging.basicConfig(level=logging.WARNING)
    backend = backend_for(a.dim)
    x, _ = speakers(size, a.dim, seed=2)
    features = cluster.pair_features(x, "plda", backend)
    out = {"case": case, "size": size}
    if case == "scipy":
        out["base_mb"] = rss_mb()
        t0 = time.perf_counter()
        d = cluster.dense_linkage(features, "average")
    else:
        threshold = None
        if case == "xvjax_thr":
            sample, labels = speakers(2000, a.dim, seed=3)
            sample_d = cluster.dendrogram(sample, "plda", backend)
            threshold = cluster.choose_threshold(sample_d, labels).threshold
            out["threshold"] = threshold
        warm = cluster.pair_features(speakers(2000, a.dim, seed=4)[0], "plda", backend)
        cluster.average_linkage(warm, block_size=a.block_size)
        out["base_mb"] = rss_mb()
        logging.getLogger("xvjax").setLevel(logging.DEBUG)
        handler = _Capture()
        logging.getLogger("xvjax").addHandler(handler)
        t0 = time.perf_counter()
        d = cluster.average_linkage(features, threshold, block_size=a.block_size)
        out["note"] = handler.last
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = rss_mb()
    out["merges"] = d.num_merges
    if a.save_dir:
        np.savez(
            os.path.join(a.save_dir, f"{case}_{size}.npz"),
            first=d.first,
            second=d.second,
            similarity=d.similarity,
        )
    return out


class _Capture(logging.Handler):
    """Keeps the last debug line of `average_linkage` (rounds and N^2 similarities scanned)."""

    last = ""

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("average linkage:"):
            self.last = msg.split(": ", 1)[1].rsplit(",", 1)[0]


def compare(save_dir: str, size: int) -> str:
    mine = np.load(os.path.join(save_dir, f"xvjax_{size}.npz"))
    ref = np.load(os.path.join(save_dir, f"scipy_{size}.npz"))

    def key(d):
        order = np.lexsort((d["second"], d["first"]))
        return d["first"][order], d["second"][order], d["similarity"][order]

    f1, s1, h1 = key(mine)
    f2, s2, h2 = key(ref)
    if np.array_equal(f1, f2) and np.array_equal(s1, s2):
        return f"same merges as scipy, max |diff| of similarities {np.abs(h1 - h2).max():.1e}"
    pairs1 = set(zip(f1.tolist(), s1.tolist(), strict=True))
    pairs2 = set(zip(f2.tolist(), s2.tolist(), strict=True))
    return f"{len(pairs1 - pairs2)} of {len(f1)} merges differ from scipy's"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="2000,5000,10000,20000,50000,100000")
    p.add_argument("--scipy-max", type=int, default=20000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--block-size", type=int, default=2048)
    p.add_argument("--cases", default="scipy,xvjax,xvjax_thr")
    p.add_argument("--case", default="", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--save-dir", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.case:
        print(json.dumps(run_case(a.case, a.size, a)))
        return
    import jax

    print(f"# jax {jax.__version__}, devices: {jax.devices()}, numpy {np.__version__}")
    print(f"# D={a.dim}, N/10 speakers, PLDA similarity, block={a.block_size}")
    print(f"{'case':<10} {'N':>7} {'seconds':>8} {'peak RSS MB':>12} {'base MB':>8}  notes")
    with tempfile.TemporaryDirectory() as tmp:
        args = [f"--dim={a.dim}", f"--block-size={a.block_size}", f"--save-dir={tmp}"]
        for size in (int(s) for s in a.sizes.split(",")):
            done = set()
            for case in a.cases.split(","):
                if case == "scipy" and size > a.scipy_max:
                    continue
                proc = subprocess.run(
                    [
                        sys.executable,
                        os.path.abspath(__file__),
                        *args,
                        f"--case={case}",
                        f"--size={size}",
                    ],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    print(f"{case:<10} {size:>7} FAILED: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                done.add(case)
                note = r.get("note", "")
                if "threshold" in r:
                    note += f"; threshold {r['threshold']:.3g}, {r['merges']} merges"
                if case == "xvjax" and "scipy" in done:
                    note += "; " + compare(tmp, size)
                print(
                    f"{case:<10} {size:>7} {r['seconds']:8.2f} {r['peak_rss_mb']:12.0f} "
                    f"{r['base_mb']:8.0f}  {note}"
                )
                sys.stdout.flush()


if __name__ == "__main__":
    main()
