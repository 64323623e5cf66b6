"""x-vector extraction speed of the full-size Kaldi network (sre16/voxceleb xconfig) on this machine.

Prints frames/s for (a) the jitted network at exactly 64 x 300 frames and 1 x 3000 frames,
(b) the batched Kaldi-semantics extractor (`extract_xvectors`: chunking, length buckets, masking)
on the same workloads, and the fraction of this CPU's float32 matmul peak, measured here with a
jnp 4096^3 matmul (best of N runs for every figure: the machine is shared). FLOPs count the frame-level affine layers (2 * in * out per computed frame;
the utterance-level layers are negligible).

    .venv/bin/python benchmarks/bench_xvector.py [--repeats=3] [--input-dim=30]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import XVector, init_variables
from xvjax.model.xvector_compute import Extractor, extract_xvectors


def matmul_peak_gflops(n: int = 4096, repeats: int = 5) -> float:
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    b = jnp.asarray(np.random.default_rng(1).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times) / 1e9


def frame_flops(spec, num_frames: int) -> float:
    """FLOPs of the frame-level affine layers for one input of `num_frames` frames."""
    ctx = spec.contexts()
    dims = spec.dims()
    lev = spec.levels()
    total = 0.0
    for n in spec.nodes:
        if n.op in ("affine", "linear") and lev[n.name] == "frame":
            lc, rc = ctx[n.name]
            in_dim = sum(dims[s] for s, _ in n.inputs)
            total += 2.0 * in_dim * n.dim * max(0, num_frames - lc - rc)
    return total


def time_it(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(min(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--input-dim", type=int, default=30)
    args = ap.parse_args()

    spec = xvector_1a_spec(input_dim=args.input_dim, num_speakers=7000)
    variables = init_variables(spec, jax.random.key(0))
    rng = np.random.default_rng(0)
    for layer in variables["batch_stats"].values():  # trained-looking BN statistics
        for st in layer.values():
            st["var"] = rng.uniform(0.5, 2.0, st["var"].shape).astype(np.float32)
    variables = jax.device_put(variables)
    model = XVector(spec)
    apply = jax.jit(lambda v, x: model.apply(v, x, output_node="tdnn6.affine"))

    peak = matmul_peak_gflops()
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}")
    print(f"float32 matmul peak (jnp 4096^3): {peak:.1f} GFLOP/s")
    print(f"network: {spec.node('tdnn1.affine').attrs['input_dim']}-dim spliced input, "
          f"frame layers {[spec.node(f'tdnn{i}.affine').dim for i in range(1, 6)]}, "
          f"{frame_flops(spec, 10**6) / 1e6 / 1e6:.2f} MFLOP/frame")  # fmt: skip

    for batch, frames in ((64, 300), (1, 3000)):
        x = jnp.asarray(rng.normal(size=(batch, frames, args.input_dim)), jnp.float32)
        sec = time_it(lambda x=x: apply(variables, x).block_until_ready(), args.repeats)
        fps = batch * frames / sec
        gflops = batch * frame_flops(spec, frames) / sec / 1e9
        print(
            f"network {batch}x{frames}: {fps:,.0f} frames/s, {gflops:.1f} GFLOP/s "
            f"= {gflops / peak:.0%} of matmul peak"
        )
        feats = [(f"u{i}", np.asarray(x[i])) for i in range(batch)]
        ex = Extractor(spec, variables, "tdnn6.affine", batch_size=64)

        def run(feats=feats, ex=ex):
            for _ in extract_xvectors(spec, variables, feats, extractor=ex):
                pass

        sec = time_it(run, args.repeats)
        fps = batch * frames / sec
        print(
            f"extract_xvectors {batch} utts x {frames} frames (bucketed, masked): "
            f"{fps:,.0f} frames/s = {batch * frame_flops(spec, frames) / sec / 1e9 / peak:.0%} "
            f"of peak (useful FLOPs); jit shapes {sorted(ex.shapes)}"
        )

    peak2 = matmul_peak_gflops()
    print(f"float32 matmul peak re-measured at the end: {peak2:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
