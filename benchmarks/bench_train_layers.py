"""Where the full-size train step's time goes, layer by layer, against this CPU's matmul peak.

For issue #14 item 3 (the train step at >= 75% of the float32 matmul peak). Prints, each as
GFLOP/s (XLA's cost analysis over the best of `--reps` runs) and % of a jnp matmul measured in the
same process just before and after it, the better of the two (the machine is shared: compare
within a line; under load the percentages scatter by tens of points). XLA's count includes the
element-wise work, so in 2. compare the times:
  1. a spliced TDNN affine (tdnn2/3 of xvector_1a: offsets -2,0,2, 512 -> 512) forward + backward
     in three layouts: `lax.conv_general_dilated` (what `layers.tdnn_affine` runs), splice + one
     matmul (im2col), and a sum of shifted matmuls;
  2. one TDNN block (affine -> ReLU -> training batch norm) forward + backward for tdnn2 and tdnn5
     (512 -> 1500), with the affine alone beside it: what the element-wise passes cost;
  3. the loss gradient of the whole network (`xvector.forward`, train mode) up to tdnn5's batch
     norm and up to the output: the frame-level layers' share. (The train step itself, with the
     optimizer, is `bench_train.py`.)

    .venv/bin/python benchmarks/bench_train_layers.py
    .venv/bin/python benchmarks/bench_train_layers.py --frames=200 --reps=5
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from xvjax import host_memory
from xvjax.model import layers
from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import forward, init_variables


def best_time(f, *args, reps: int) -> float:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return min(times)


def flops_of(f, *args) -> float:
    cost = f.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


_A = None


def matmul_gflops(reps: int, n: int = 2048) -> float:
    global _A
    if _A is None:
        _A = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    return 2 * n**3 / best_time(mm, _A, reps=reps) / 1e9


def report(label: str, f, args, reps: int) -> None:
    jf = jax.jit(f)
    flops = flops_of(jf, *args)
    before = matmul_gflops(reps)
    sec = best_time(jf, *args, reps=reps)
    peak = max(before, matmul_gflops(reps))  # shared machine: the better of before and after
    gfs = flops / sec / 1e9
    print(f"  {label:44s} {sec * 1e3:7.0f} ms {flops / 1e9:6.1f} GFLOP {gfs:6.1f} GFLOP/s "
          f"= {100 * gfs / peak:3.0f}% of matmul ({peak:.1f} GFLOP/s, load {os.getloadavg()[0]:.1f})")  # fmt: skip


def spliced_layouts(x, w, offsets):
    k, d, out = len(offsets), x.shape[-1], w.shape[-1]
    lo, length = offsets[0], x.shape[1] - (offsets[-1] - offsets[0])

    def conv(x, w):
        return layers.tdnn_affine(x, w, None, offsets)

    def im2col(x, w):
        return layers.splice([(x, o) for o in offsets]) @ w

    def shifted(x, w):
        wk = w.reshape(k, d, out)
        return sum(x[:, o - lo : o - lo + length] @ wk[i] for i, o in enumerate(offsets))

    return {
        "conv_general_dilated": conv,
        "splice + matmul": im2col,
        "sum of shifted matmuls": shifted,
    }


def grad_of(y_fn):
    """fwd + bwd w.r.t. input and kernel of sum(y * r), r a fixed random cotangent-like weight."""
    return jax.grad(lambda x, w, r: jnp.sum(y_fn(x, w) * r), argnums=(0, 1))


def main() -> None:
    host_memory.reuse_freed_memory()  # before the backend starts, as `xvjax train` does
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    b, t, reps = args.batch, args.frames, args.reps
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"{b} x {t} frames, float32, best of {reps}")  # fmt: skip

    print("1. spliced TDNN affine (offsets -2,0,2; 512 -> 512), forward + backward:")
    offsets = (-2, 0, 2)
    x = jnp.asarray(rng.normal(size=(b, t, 512)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3 * 512, 512)) * 0.02, jnp.float32)
    r = jnp.asarray(rng.normal(size=(b, t - 4, 512)), jnp.float32)
    for label, f in spliced_layouts(x, w, offsets).items():
        report(label, grad_of(f), (x, w, r), reps)

    print("2. TDNN block (affine -> ReLU -> batch norm, training), forward + backward:")
    for name, offs, d_in, d_out in (("tdnn2", offsets, 512, 512), ("tdnn5", (0,), 512, 1500)):
        span = offs[-1] - offs[0]
        xb = jnp.asarray(rng.normal(size=(b, t, d_in)), jnp.float32)
        wb = jnp.asarray(rng.normal(size=(len(offs) * d_in, d_out)) * 0.02, jnp.float32)
        rb = jnp.asarray(rng.normal(size=(b, t - span, d_out)), jnp.float32)

        def affine(x, w, offs=offs):
            return layers.tdnn_affine(x, w, None, offs)

        def block(x, w, offs=offs, d_out=d_out):
            y = jax.nn.relu(layers.tdnn_affine(x, w, None, offs))
            return layers.batchnorm_train(y, None, d_out, 1e-3, 1.0)[0]

        report(f"{name} affine alone ({d_in} -> {d_out})", grad_of(affine), (xb, wb, rb), reps)
        report(f"{name} affine + ReLU + batch norm", grad_of(block), (xb, wb, rb), reps)

    print("3. loss gradient of the full-size network (train mode), by how far it runs:")
    spec = xvector_1a_spec(input_dim=30, num_speakers=7000)
    v = init_variables(spec, jax.random.key(0))
    feats = jnp.asarray(rng.normal(size=(b, t, 30)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 7000, b))

    def loss(params, node):
        out, _ = forward(spec, params, v["batch_stats"], feats, train=True, output_node=node)
        if node == "output":
            return -jnp.mean(jnp.take_along_axis(out, labels[:, None], 1))
        return jnp.sum(jnp.tanh(out))

    for node in ("tdnn5.batchnorm", "output"):
        report(f"up to {node}", jax.grad(lambda p, node=node: loss(p, node)), (v["params"],), reps)


if __name__ == "__main__":
    main()
