"""Backend throughput on this machine: PLDA trial lists, dense score matrices, AS-norm.

    .venv/bin/python benchmarks/bench_backend.py                  # defaults below, ~2-3 min
    .venv/bin/python benchmarks/bench_backend.py --dense-size=5000 --num-trials=200000   # quick

Cases (each runs in its own subprocess so the reported peak RSS is that case's alone):
- trials_*: Kaldi-style trial list (`ivector-plda-scoring` semantics: enrolment with num_utts
  1..3, test n = 1) of --num-trials random pairs among 20k enrolment x 50k test vectors, D = --dim.
  xvjax `score_trials` (jnp, float64 and float32, blocked) vs a straightforward numpy version
  (transform, then Kaldi's LLR formula on the gathered pairs, in blocks of 100k trials).
- trials_sre_jax64: the same number of trials in an SRE-style list (800 enrolment models x 5000
  test segments, 25% of all pairs): `score_trials` picks the dense tiles that hold trials.
- dense_*: all --dense-size x --dense-size pairs (n = 1 for all). xvjax `iter_score_blocks`
  streams blocks (float32 GEMM, block --block-size, nothing N x M is kept: each block is reduced to
  its maximum, standing in for a consumer such as a top-N search or a score histogram) vs numpy
  materialising the whole float64 matrix with the same closed form.
- asnorm_*: the same with adaptive S-norm (cohort --cohort, top --top-k per side): xvjax computes
  the cohort statistics block-wise (GEMM, then a separate jitted top_k step) and normalises each
  block on the device; numpy materialises both cohort score matrices, np.partition, then
  normalises the full matrix.
- cohort_variants: the --dense-size x --cohort cohort statistics of one side, computed (a) in
  closed form from cohort feature moments (whole cohort, no cohort scores; what `snorm` uses),
  (b) whole cohort by explicit blocked scoring + jitted mean/std, (c) top-k with the GEMM and
  the top_k/moments step as separate jitted calls (what `asnorm` uses), (d) the same fused in
  one jit (PERF_NOTES: XLA CPU fuses this badly).
Kaldi's own ivector-plda-scoring was measured at ~0.18M trials/s on this machine (PERF_NOTES).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

CASES = [
    "trials_jax64",
    "trials_sre_jax64",
    "trials_jax32",
    "trials_numpy",
    "dense_jax",
    "dense_numpy",
    "asnorm_jax",
    "asnorm_numpy",
    "cohort_variants",
]


def synthetic_plda(dim: int, seed: int = 0):
    from xvjax.backend.plda import Plda

    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    transform = q * rng.uniform(0.5, 2.0, size=(dim, 1))
    psi = np.sort(rng.gamma(2.0, 2.0, size=dim))[::-1].copy()
    return Plda(mean=rng.normal(size=dim) * 0.1, transform=transform, psi=psi)


def vectors(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def numpy_llr_pairs(plda, u, v, n):
    """Kaldi's LogLikelihoodRatio, vectorised over aligned pairs (straightforward numpy)."""
    psi = plda.psi[None, :]
    n = n[:, None]
    mean = n * psi / (n * psi + 1.0) * u
    var = 1.0 + psi / (n * psi + 1.0)
    given = -0.5 * (np.log(var).sum(1) + ((v - mean) ** 2 / var).sum(1))
    without = -0.5 * (np.log(1.0 + psi).sum() + (v * v / (1.0 + psi)).sum(1))
    return given - without


def numpy_transform(plda, x, n):
    u = (x - plda.mean) @ plda.transform.T
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), (x.shape[0],))
    dot = np.sum(u * u / (plda.psi + 1.0 / n[:, None]), axis=1)
    return u * np.sqrt(plda.dim / dot)[:, None]


def numpy_dense(plda, u, v):
    """All-pairs LLR for n = 1 with the closed form (one float64 GEMM), materialised."""
    psi = plda.psi
    var = 1.0 + psi / (psi + 1.0)
    lin = (psi / (psi + 1.0) * u) / var
    quad = 0.5 * (1.0 / (1.0 + psi) - 1.0 / var)
    const = 0.5 * (np.log1p(psi).sum() - np.log(var).sum() - np.sum(lin * lin * var, axis=1))
    return lin @ v.T + const[:, None] + (v * v @ quad)[None, :]


def cohort_variants(plda, a) -> dict:
    import jax
    import jax.numpy as jnp

    from xvjax.backend import scoring, snorm

    enroll, cohort = vectors(a.dense_size, a.dim, 4), vectors(a.cohort, a.dim, 6)
    ef = scoring.prepare_enroll(plda, enroll)
    cf = scoring.prepare_test(plda, cohort)
    out = {}
    t0 = time.perf_counter()
    snorm._closed_form_stats(ef, cf)
    out["closed_form"] = time.perf_counter() - t0

    block_fn = scoring._jitted("block")

    def moments(s):
        m = jnp.mean(s, axis=1)
        return m, jnp.sqrt(jnp.mean(jnp.square(s - m[:, None]), axis=1))

    k = a.top_k

    def topk(s):
        top = jax.lax.top_k(s, k)[0]
        return moments(top)

    fused = jax.jit(lambda *ops: topk(block_fn(*ops)))
    moments_j = jax.jit(moments)
    topk_j = jax.jit(topk)
    sp = scoring._split_features(ef, cf)
    rows = a.block_size
    ft, qt = jnp.asarray(sp.ft, jnp.float32), jnp.asarray(sp.qt, jnp.float32)

    def run(step):
        res = []
        for r0 in range(0, len(enroll), rows):
            sl = slice(r0, r0 + rows)
            fe = jnp.asarray(scoring._pad_rows(sp.fe[sl], rows), jnp.float32)
            ce = jnp.asarray(scoring._pad_rows(sp.ce[sl], rows), jnp.float32)
            qi = jnp.asarray(scoring._pad_rows(sp.qi[sl], rows))
            res.append(step(fe, ce, qi, ft, qt))
        jax.block_until_ready(res)

    variants = {
        "full_explicit": lambda *ops: moments_j(block_fn(*ops)),
        "topk_separate": lambda *ops: topk_j(block_fn(*ops)),
        "topk_fused": fused,
    }
    for name, step in variants.items():
        run(step)  # compile
        t0 = time.perf_counter()
        run(step)
        out[name] = time.perf_counter() - t0
    return out


def run_case(name: str, a) -> dict:
    from xvjax.backend import scoring, snorm

    plda = synthetic_plda(a.dim)
    out: dict = {"case": name}
    if name == "cohort_variants":
        v = cohort_variants(plda, a)
        out.update(seconds=v["topk_separate"], trials=a.dense_size * a.cohort)
        out["note"] = ", ".join(f"{k} {t:.2f} s" for k, t in v.items())
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    if name.startswith("trials"):
        rng = np.random.default_rng(1)
        num_e, num_t = (800, 5000) if "sre" in name else (20000, 50000)
        enroll, test = vectors(num_e, a.dim, 2), vectors(num_t, a.dim, 3)
        n = rng.integers(1, 4, size=len(enroll)).astype(np.float64)
        if "sre" in name:
            pick = rng.choice(num_e * num_t, size=min(a.num_trials, num_e * num_t), replace=False)
            ie, it = pick // num_t, pick % num_t
        else:
            ie = rng.integers(0, len(enroll), size=a.num_trials)
            it = rng.integers(0, len(test), size=a.num_trials)
        t0 = time.perf_counter()
        if name == "trials_numpy":
            u = numpy_transform(plda, enroll.astype(np.float64), n)
            v = numpy_transform(plda, test.astype(np.float64), 1)
            step = 100_000  # blocks, so numpy's temporaries stay ~1 GB
            s = np.concatenate(
                [
                    numpy_llr_pairs(
                        plda, u[ie[i : i + step]], v[it[i : i + step]], n[ie[i : i + step]]
                    )
                    for i in range(0, len(ie), step)
                ]
            )
        else:
            dtype = np.float32 if name == "trials_jax32" else np.float64
            scoring.score_trials(
                plda, enroll, test, ie[:1000], it[:1000], n, dtype=dtype
            )  # compile
            t0 = time.perf_counter()
            s = scoring.score_trials(plda, enroll, test, ie, it, n, dtype=dtype)
        out["seconds"] = time.perf_counter() - t0
        out["trials"] = len(ie)
        out["checksum"] = float(np.mean(s))
    else:
        size = a.dense_size
        enroll, test = vectors(size, a.dim, 4), vectors(size, a.dim, 5)
        cohort = vectors(a.cohort, a.dim, 6)
        t0 = time.perf_counter()
        if name == "dense_numpy":
            s = numpy_dense(plda, numpy_transform(plda, enroll, 1), numpy_transform(plda, test, 1))
            out["checksum"] = float(s.max())
        elif name == "asnorm_numpy":
            u = numpy_transform(plda, enroll, 1)
            v = numpy_transform(plda, test, 1)
            c = numpy_transform(plda, cohort, 1)
            k = a.top_k

            def stats(sc):
                top = -np.partition(-sc, k - 1, axis=1)[:, :k]
                return top.mean(1), top.std(1)

            me, se = stats(numpy_dense(plda, u, c))
            mt, st = stats(numpy_dense(plda, v, c))
            s = numpy_dense(plda, u, v)
            s = 0.5 * ((s - me[:, None]) / se[:, None] + (s - mt[None, :]) / st[None, :])
            out["checksum"] = float(s.max())
        else:
            kw = dict(block_size=a.block_size, dtype=np.float32)
            # compile on a small problem with the same block shapes
            small = min(size, a.block_size)
            if name == "dense_jax":
                ef = scoring.prepare_enroll(plda, enroll[:small])
                tf = scoring.prepare_test(plda, test[:small])
                for _ in scoring.iter_score_blocks(ef, tf, **kw):
                    pass
                t0 = time.perf_counter()
                ef = scoring.prepare_enroll(plda, enroll)
                tf = scoring.prepare_test(plda, test)
                best = -np.inf
                for _, _, blk in scoring.iter_score_blocks(ef, tf, **kw):
                    best = max(best, float(blk.max()))
            else:
                prep = snorm.prepare_norm(
                    plda, enroll[:small], test[:small], cohort, method="asnorm", top_k=a.top_k, **kw
                )
                for _ in snorm.iter_norm_blocks(prep, **kw):
                    pass
                t0 = time.perf_counter()
                prep = snorm.prepare_norm(
                    plda, enroll, test, cohort, method="asnorm", top_k=a.top_k, **kw
                )
                out["cohort_stats_seconds"] = time.perf_counter() - t0
                best = -np.inf
                for _, _, blk in snorm.iter_norm_blocks(prep, **kw):
                    best = max(best, float(blk.max()))
            out["checksum"] = best
        out["seconds"] = time.perf_counter() - t0
        out["trials"] = size * size
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--num-trials", type=int, default=1_000_000)
    p.add_argument("--dense-size", type=int, default=20_000)
    p.add_argument("--cohort", type=int, default=5_000)
    p.add_argument("--top-k", type=int, default=300)
    p.add_argument("--dim", type=int, default=200)
    p.add_argument("--block-size", type=int, default=2048)
    p.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES)
    )
    p.add_argument("--case", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.case:
        print(json.dumps(run_case(a.case, a)))
        return
    import jax

    print(f"# jax {jax.__version__}, devices: {jax.devices()}, numpy {np.__version__}")
    print(
        f"# D={a.dim}, trials={a.num_trials}, dense={a.dense_size}x{a.dense_size}, "
        f"cohort={a.cohort}, top-k={a.top_k}, block={a.block_size}"
    )
    print(f"{'case':<14} {'seconds':>8} {'trials/s':>10} {'peak RSS MB':>12}  notes")
    args = [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k not in ("case", "cases")
    ]
    for case in a.cases.split(","):
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *args, f"--case={case}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            print(f"{case:<14} FAILED: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        note = r.get("note", "")
        if "cohort_stats_seconds" in r:
            note = f"cohort stats {r['cohort_stats_seconds']:.2f} s"
        rate = r["trials"] / r["seconds"]
        print(f"{case:<14} {r['seconds']:8.2f} {rate:10.3g} {r['peak_rss_mb']:12.0f}  {note}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
