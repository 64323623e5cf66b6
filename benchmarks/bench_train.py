"""Training throughput of the full-size x-vector network (Kaldi's xvector_1a) on this machine.

Prints examples/s and frames/s of the jitted, sharded train step (forward + backward + optax update
with Kaldi max-change) at 64 x 200 frames, the FLOPs per step from XLA's cost analysis, the achieved
GFLOP/s and its fraction of this CPU's float32 matmul peak (a large jnp matmul, measured here).

This VM shares its cores (the hypervisor's steal time moves any rate by 10-30% from one minute to
the next), so the fraction is measured in pairs: each timed step is preceded by the better of two
timed peak matmuls, and the printed fraction is the median over the pairs of step GFLOP/s / matmul
GFLOP/s of the same moment. The step's median time against the best peak of the whole run is
printed beside it (the stricter figure on a noisy machine).

    .venv/bin/python benchmarks/bench_train.py                  # full training and fine-tuning
    .venv/bin/python benchmarks/bench_train.py --steps=20 --bf16
    .venv/bin/python benchmarks/bench_train.py --system-malloc  # without xvjax.host_memory
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from xvjax import host_memory
from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import XVector, init_variables
from xvjax.train import optim
from xvjax.train import step as step_lib
from xvjax.train.config import base_config
from xvjax.train.state import create_train_state


def matmul_fn(n: int = 4096):
    """A jitted n x n x n float32 matmul, compiled: `run()` times one call and returns its GFLOP/s."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()

    def run() -> float:
        t = time.perf_counter()
        f(a, a).block_until_ready()
        return 2 * n**3 / (time.perf_counter() - t) / 1e9

    return run


def bench(label: str, freeze: str, args, matmul=None) -> dict:
    """Times the step; with `matmul` (from `matmul_fn`), each step after a peak measurement."""
    spec = xvector_1a_spec(input_dim=30, num_speakers=args.num_speakers)
    variables = init_variables(spec, jax.random.key(0))
    cfg = base_config().optim
    cfg.freeze = freeze
    opt = optim.make_optimizer(cfg, variables["params"], 1000)
    mesh = step_lib.make_mesh()
    state = step_lib.replicate(create_train_state(variables, opt.tx, 0), mesh)
    dtype = jnp.bfloat16 if args.bf16 else jnp.float32
    frozen_bn = opt.plan.frozen
    rng = np.random.default_rng(0)
    batch = {
        "feats": rng.normal(size=(args.batch, args.frames, 30)).astype(np.float32),
        "labels": rng.integers(0, args.num_speakers, args.batch).astype(np.int32),
    }
    sbatch = step_lib.shard_batch(batch, mesh)
    fn = step_lib.make_train_step(
        XVector(spec).apply, opt.tx, mesh, frozen_bn, dtype, frozen_params=opt.plan.frozen
    )
    t0 = time.perf_counter()
    compiled = fn.lower(state, sbatch).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    state, m = compiled(state, sbatch)  # warm-up
    jax.block_until_ready(m)
    times, fractions, peaks = [], [], []
    for _ in range(args.steps):
        if matmul is not None:  # the peak of this moment, then the step
            peaks.append(max(matmul(), matmul()))
        t = time.perf_counter()
        state, m = compiled(state, sbatch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
        if matmul is not None:
            fractions.append(flops / times[-1] / 1e9 / peaks[-1])
    sec = float(np.median(times))
    return {
        "label": label,
        "compile_s": compile_s,
        "step_ms": 1e3 * sec,
        "examples_per_s": args.batch / sec,
        "frames_per_s": args.batch * args.frames / sec,
        "gflop_per_step": flops / 1e9,
        "gflops": flops / sec / 1e9,
        "fraction": float(np.median(fractions)) if fractions else None,
        "fraction_range": (min(fractions), max(fractions)) if fractions else None,
        "best_peak": max(peaks) if peaks else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--num-speakers", type=int, default=7000)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--bf16", action="store_true", help="bfloat16 compute (params stay float32)")
    p.add_argument("--peak-n", type=int, default=4096)
    p.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (`xvjax train` reuses freed memory)",
    )
    args = p.parse_args()
    if not args.system_malloc:
        host_memory.reuse_freed_memory()  # before the backend starts, as `xvjax train` does
    print(f"devices: {jax.devices()}  (jax {jax.__version__})")
    matmul = matmul_fn(args.peak_n)
    dt = "bf16" if args.bf16 else "f32"
    print(
        f"train step, full-size xvector_1a ({args.num_speakers} outputs), {args.batch} x {args.frames} frames, {dt}; "
        f"{args.steps} steps, each after the better of two {args.peak_n}^3 jnp matmuls (the peak of that moment):"
    )
    results = [bench(label, freeze, args, matmul) for label, freeze in
               (("train all layers", ""), ("fine-tune, tdnn1-5 frozen", "tdnn[1-5]"))]  # fmt: skip
    for r in results:
        lo, hi = r["fraction_range"]
        print(
            f"  {r['label']:<27} {r['examples_per_s']:7.1f} examples/s  {r['frames_per_s']:8.0f} frames/s  "
            f"step {r['step_ms']:6.1f} ms  {r['gflop_per_step']:.1f} GFLOP/step  {r['gflops']:6.1f} GFLOP/s "
            f"= {100 * r['fraction']:4.1f}% of the matmul peak (median of pairs; {100 * lo:.0f}-{100 * hi:.0f}%)  "
            f"[vs the run's best peak {r['best_peak']:.1f} GFLOP/s: {100 * r['gflops'] / r['best_peak']:4.1f}%]  "
            f"(compile {r['compile_s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
