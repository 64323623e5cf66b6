"""Scaling on this machine: scoring and extraction with 1 vs 2 processes and 1 vs 2 host devices,
and a paper projection of 1e10 trials on 8 GPUs and on a TPU v5e-16 slice.

    .venv/bin/python benchmarks/bench_scale.py                 # ~3-5 min on 2 busy cores
    .venv/bin/python benchmarks/bench_scale.py --enroll=1000 --test=2000 --utts=32   # quick

Every case runs the real commands (`xvjax score-matrix`, `xvjax score-norm --method=asnorm`
(dense), `xvjax nnet3-xvector-compute`) as subprocesses, in three layouts:
- 1 process x 1 device;
- 1 process x 2 devices (XLA_FLAGS=--xla_force_host_platform_device_count=2: the test columns of
  each block, or the extraction batches, split over two CPU "devices" of one process);
- 2 processes x 1 device (jax.distributed over loopback, CPU collectives: the enrolment rows, or
  the utterances balanced by frames, split over the processes; each writes its job archive and
  process 0 the merged scp).
Printed per case: the command's own rate (process 0's log line: trials/s from the start of the
scoring to the last row written, frames/s of the extraction including jit compilation) and the
wall time of the whole command (Python + JAX start-up, reading, writing). This machine has 2 cores
shared with other users: 2 processes or 2 devices can at best double the rate of one, and only
when the other core is idle; the figures show the overheads (start-up, the collectives) rather
than a speed-up.

The projection (printed last) starts from the per-device kernel rate measured here in-process
(the dense PLDA block kernel, `iter_score_blocks` on one device, as float32 GFLOP/s and its
fraction of this CPU's measured float32 GEMM peak) and assumes the same fraction of an
accelerator's peak; it states the host link and write bandwidths it assumes, and adds the
host side of score-matrix measured here in-process (computed blocks assembled into rows and
written as a float32 ark + scp, one process). It is arithmetic,
not a measurement.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from bench_backend import synthetic_plda  # noqa: E402  (benchmarks/ is on sys.path)

LAYOUTS = [("1 proc x 1 dev", 1, 1), ("1 proc x 2 dev", 1, 2), ("2 proc x 1 dev", 2, 1)]


def make_inputs(root: str, a) -> None:
    import jax

    from xvjax.kaldi import plda_io, tables
    from xvjax.model.checkpoint import save_model
    from xvjax.model.spec import xvector_1a_spec
    from xvjax.model.xvector import init_variables
    from xvjax.synthetic.fake_feats import write_fake_data_dir

    rng = np.random.default_rng(0)
    plda_io.write_plda(synthetic_plda(a.dim), f"{root}/plda")
    for name, n in (("enroll", a.enroll), ("test", a.test), ("cohort", a.cohort)):
        vecs = rng.normal(size=(n, a.dim)).astype(np.float32)
        tables.write_dict(
            f"ark:{root}/{name}.ark", {f"{name}{i:07d}": v for i, v in enumerate(vecs)}
        )
    # equal lengths: every utterance is whole chunks of one shape (one jit program)
    write_fake_data_dir(f"{root}/data", num_speakers=a.utts // 4, utts_per_speaker=4, feat_dim=30,
                        min_frames=a.frames, max_frames=a.frames)  # fmt: skip
    spec = xvector_1a_spec(input_dim=30, num_speakers=100)  # the full-size TDNN, small output
    save_model(f"{root}/model", spec, init_variables(spec, jax.random.key(0)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], num_processes: int, num_devices: int) -> tuple[float, str]:
    """Runs `xvjax ARGS` in a layout; (wall seconds, process 0's stderr)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    for name in ("XVJAX_COORDINATOR", "XVJAX_NUM_PROCESSES", "XVJAX_PROCESS_ID"):
        env.pop(name, None)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    cmd = [sys.executable, "-m", "xvjax.cli", *args, "--print-args=false"]
    if num_processes > 1:
        port = _free_port()
        cmds = [[*cmd, f"--coordinator=127.0.0.1:{port}", f"--num-processes={num_processes}",
                 f"--process-id={p}"] for p in range(num_processes)]  # fmt: skip
    else:
        cmds = [cmd]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for c in cmds]  # fmt: skip
    errs = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - t0
    for p, err in zip(procs, errs, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(p.args)} failed:\n{err[-3000:]}")
    return wall, errs[0]


def _rate(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else float("nan")


def kernel_rate(a) -> dict:
    """The dense PLDA block kernel on one device, in-process: trials/s and GFLOP/s (2 D per
    trial, the GEMM), beside this CPU's float32 GEMM peak."""
    import jax
    import jax.numpy as jnp

    from xvjax.backend import scoring
    from xvjax.backend.vector_tables import write_block_rows

    plda = synthetic_plda(a.dim)
    rng = np.random.default_rng(1)
    n = 4096
    ef = scoring.prepare_enroll(plda, rng.normal(size=(n, a.dim)))
    tf = scoring.prepare_test(plda, rng.normal(size=(n, a.dim)))
    dev = jax.local_devices()[:1]
    for _ in scoring.iter_score_blocks(ef, tf, block_size=a.block_size, devices=dev):
        pass  # compile
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in scoring.iter_score_blocks(ef, tf, block_size=a.block_size, devices=dev):
            pass
        best = min(best, time.perf_counter() - t0)
    x = jnp.ones((2048, 2048), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    mm(x).block_until_ready()
    peak = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        mm(x).block_until_ready()
        peak = min(peak, time.perf_counter() - t0)
    trials_s = n * n / best
    gflops = trials_s * 2 * a.dim / 1e9
    # the host side of score-matrix alone: computed blocks assembled into rows and written
    blocks = list(scoring.iter_score_blocks(ef, tf, block_size=a.block_size, devices=dev))
    keys = [f"enroll{i:07d}" for i in range(n)]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        write_block_rows(f"ark,scp:{out}/s.ark,{out}/s.scp", keys, blocks, n)
        host = n * n / (time.perf_counter() - t0)
    return dict(trials_s=trials_s, gflops=gflops, peak=2 * 2048**3 / peak / 1e9, host=host)


# Accelerator figures assumed by the projection (vendor data sheets; float32 GEMM throughput).
ACCELERATORS = {
    # A100 80GB SXM: 19.5 TFLOP/s FP32 (156 with TF32), 80 GB HBM2e at 2.0 TB/s, PCIe 4 x16 to
    # the host (~25 GB/s each way); 8 GPUs in one host.
    "8 x A100 (one host)": dict(devices=8, hosts=1, tflops=19.5, hbm_gb=80, link_gbs=25.0),
    # TPU v5e: 197 TFLOP/s bf16; a float32 GEMM at precision=HIGHEST takes ~6 bf16 passes
    # (~33 TFLOP/s); 16 GB HBM at 819 GB/s; a v5e-16 slice is 4 hosts x 4 chips. Host link per
    # chip assumed ~16 GB/s.
    "v5e-16 (4 hosts x 4 chips)": dict(devices=16, hosts=4, tflops=33.0, hbm_gb=16, link_gbs=16.0),
}


def projection(a, k: dict) -> None:
    num_trials = 1e10
    side = int(np.sqrt(num_trials))  # 1e5 enrolment models x 1e5 test segments
    efficiency = k["gflops"] / k["peak"]
    write_gbs = a.write_gbs
    print(f"\nPaper projection: {num_trials:.0e} trials = {side} x {side} dense, D = {a.dim}, "
          f"AS-norm cohort {a.proj_cohort}, top-k {a.top_k}")  # fmt: skip
    print(f"  measured here, one CPU device: {k['trials_s'] / 1e6:.0f}M trials/s = "
          f"{k['gflops']:.0f} GFLOP/s = {efficiency:.0%} of this CPU's float32 GEMM peak "
          f"({k['peak']:.0f} GFLOP/s); assumed the same fraction of an accelerator's peak")  # fmt: skip
    host_rate = k["host"]
    print(f"  measured here, score-matrix's host side (rows assembled and written as float32 ark): "
          f"{host_rate / 1e6:.1f}M trials/s per process ({4 * host_rate / 1e6:.0f} MB/s)")  # fmt: skip
    for name, acc in ACCELERATORS.items():
        ndev, hosts = acc["devices"], acc["hosts"]
        dev_rate = acc["tflops"] * 1e12 * efficiency / (2 * a.dim)  # trials/s per device
        t_gemm = num_trials / (dev_rate * ndev)
        # AS-norm: (E + T) x C cohort scores (GEMM) and their top-k, once per model / segment
        t_cohort = 2 * side * a.proj_cohort / (dev_rate * ndev)
        # every score comes back to a host as float32 and is written (4 bytes/trial)
        out_bytes = 4 * num_trials
        t_link = out_bytes / (acc["link_gbs"] * 1e9 * ndev)
        t_write = out_bytes / (write_gbs * 1e9 * hosts)
        t_host = num_trials / (host_rate * hosts)  # one process per host, as measured here
        # device memory: a (rows x cols/devices) block + its features + the cohort top-k state
        be = bt = a.proj_block
        mem = 4 * ((be + bt / ndev) * a.dim + be * bt / ndev + (be + bt) * a.top_k)
        print(f"  {name}: {dev_rate / 1e9:.1f}G trials/s per device; GEMM {t_gemm:.2g} s, "
              f"cohort statistics {t_cohort:.2g} s, device->host {t_link:.2g} s, "
              f"writing {out_bytes / 1e9:.0f} GB at {write_gbs:g} GB/s per host {t_write:.0f} s "
              f"-> ~{max(t_gemm + t_cohort, t_link, t_write):.0f} s if the host keeps up; with "
              f"the host side measured here {t_host:.0f} s; "
              f"device memory at block {be}: {mem / 2**20:.0f} MiB of {acc['hbm_gb']} GB "
              f"(+ the host's copy of the {side} x {a.dim} test vectors, "
              f"{4 * side * a.dim / 2**20:.0f} MiB)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--enroll", type=int, default=2000, help="enrolment vectors (dense rows)")
    p.add_argument("--test", type=int, default=5000, help="test vectors (dense columns)")
    p.add_argument("--cohort", type=int, default=2000, help="AS-norm cohort size")
    p.add_argument("--top-k", type=int, default=300)
    p.add_argument("--dim", type=int, default=200, help="x-vector (PLDA) dimension")
    p.add_argument("--block-size", type=int, default=2048)
    p.add_argument("--utts", type=int, default=64, help="utterances to extract (multiple of 4)")
    p.add_argument("--frames", type=int, default=600, help="frames per utterance")
    p.add_argument("--layouts", default="0,1,2", help="indices into the layouts to run")
    p.add_argument("--proj-block", type=int, default=16384, help="projection: block rows/cols")
    p.add_argument("--proj-cohort", type=int, default=10000, help="projection: cohort size")
    p.add_argument("--write-gbs", type=float, default=1.0,
                   help="projection: write bandwidth per host to the shared file system, GB/s")  # fmt: skip
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as root:
        make_inputs(root, a)
        plda = [f"{root}/plda", f"ark:{root}/enroll.ark", f"ark:{root}/test.ark"]
        dense = [f"--block-size={a.block_size}"]
        cases = {
            "score-matrix": (
                ["score-matrix", *dense, *plda],
                "trials/s",
            ),
            "score-norm asnorm": (
                [
                    "score-norm",
                    "--method=asnorm",
                    f"--top-k={a.top_k}",
                    *dense,
                    *plda,
                    f"ark:{root}/cohort.ark",
                ],
                "trials/s",
            ),
            "nnet3-xvector-compute": (
                [
                    "nnet3-xvector-compute",
                    "--chunk-size=300",
                    "--min-chunk-size=100",
                    f"{root}/model",
                    f"scp:{root}/data/feats.scp",
                ],
                "frames/s",
            ),
        }
        print(f"score-matrix / score-norm: {a.enroll} x {a.test} = {a.enroll * a.test:.3g} trials, "
              f"D = {a.dim}, block {a.block_size}, AS-norm cohort {a.cohort} top-k {a.top_k}; "
              f"nnet3-xvector-compute: {a.utts} x {a.frames} frames, full-size TDNN, chunks of 300")  # fmt: skip
        print(f"{'case':<24} {'layout':<16} {'rate (its log)':>16} {'wall s':>8}")
        layouts = [LAYOUTS[int(i)] for i in a.layouts.split(",")]
        for case, (args, unit) in cases.items():
            for label, num_p, num_d in layouts:
                out = f"{root}/out_{case.split()[-1]}_{num_p}_{num_d}"
                os.makedirs(out, exist_ok=True)
                wall, err = run([*args, f"ark,scp:{out}/o.ark,{out}/o.scp"], num_p, num_d)
                if unit == "trials/s":
                    rate = _rate(r"([\d.e+]+) trials/s overall", err)
                else:
                    rate = _rate(r"; (\d+) frames/s overall", err)
                print(f"{case:<24} {label:<16} {rate:>10.3g} {unit:<5} {wall:>8.1f}", flush=True)
        k = kernel_rate(a)
        projection(a, k)


if __name__ == "__main__":
    main()
