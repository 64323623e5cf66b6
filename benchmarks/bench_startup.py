"""Start-up time of xvjax commands: one utterance through each per-utterance table tool.

Kaldi's binaries start in milliseconds, so a pipe of small tools on one utterance is cheap; each
xvjax command here runs in its own process (as in a shell pipe) on one utterance, and the table
prints its wall time (median of `--repeats`), whether it imported JAX, and the baselines
`python -c "import numpy"` and `python -c "import jax"`. Also `xvjax --help` (imports every command
module; must stay under 0.5 s) and a pipe of four commands on one utterance.

    .venv/bin/python benchmarks/bench_startup.py
    .venv/bin/python benchmarks/bench_startup.py --repeats=9
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

XVJAX = [sys.executable, "-c", "from xvjax.cli import main; main()"]
# Prints whether JAX was imported, after the command ran (for the table's last column).
PROBE = [
    sys.executable,
    "-c",
    "import sys, atexit\n"
    "atexit.register(lambda: print('JAX' if 'jax' in sys.modules else 'no JAX', file=sys.stderr))\n"
    "from xvjax.cli import main; main()",
]


def timed(cmd: list[str] | str, repeats: int, shell: bool = False) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, shell=shell, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def one_utterance(tmp: str) -> dict[str, str]:
    """One utterance's MFCC, VAD decisions and x-vector, a global mean and a transform."""
    from xvjax.kaldi import object_files, tables

    rng = np.random.default_rng(0)
    paths = {k: os.path.join(tmp, k) for k in ("feats", "vad", "xvec", "mean", "lda")}
    feats = rng.normal(size=(500, 30)).astype(np.float32)
    feats[:, 0] += 12.0  # log-energy column: voiced
    with tables.Writer(f"ark:{paths['feats']}") as w:
        w["utt1"] = feats
    with tables.Writer(f"ark:{paths['vad']}") as w:
        w["utt1"] = (rng.random(500) > 0.3).astype(np.float32)
    with tables.Writer(f"ark:{paths['xvec']}") as w:
        w["utt1"] = rng.normal(size=512).astype(np.float32)
    object_files.write_vector(paths["mean"], rng.normal(size=512).astype(np.float32))
    object_files.write_matrix(paths["lda"], rng.normal(size=(150, 512)).astype(np.float32))
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    r = args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        p = one_utterance(tmp)
        out = os.path.join(tmp, "out")
        commands = {
            "copy-feats": ["copy-feats", f"ark:{p['feats']}", f"ark:{out}"],
            "copy-vector": ["copy-vector", f"ark:{p['xvec']}", f"ark:{out}"],
            "compute-vad": ["compute-vad", f"ark:{p['feats']}", f"ark:{out}"],
            "apply-cmvn-sliding": [
                "apply-cmvn-sliding",
                "--center=true",
                f"ark:{p['feats']}",
                f"ark:{out}",
            ],  # fmt: skip
            "select-voiced-frames": [
                "select-voiced-frames",
                f"ark:{p['feats']}",
                f"ark:{p['vad']}",
                f"ark:{out}",
            ],  # fmt: skip
            "ivector-subtract-global-mean": [
                "ivector-subtract-global-mean",
                p["mean"],
                f"ark:{p['xvec']}",
                f"ark:{out}",
            ],  # fmt: skip
            "transform-vec": ["transform-vec", p["lda"], f"ark:{p['xvec']}", f"ark:{out}"],
            "ivector-normalize-length": [
                "ivector-normalize-length",
                f"ark:{p['xvec']}",
                f"ark:{out}",
            ],  # fmt: skip
            "ivector-mean": ["ivector-mean", f"ark:{p['xvec']}", out],
        }
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f}; median of {r} runs, one process each")  # fmt: skip
        numpy_s = timed([sys.executable, "-c", "import numpy"], r)
        jax_s = timed([sys.executable, "-c", "import jax, jax.numpy"], r)
        for label, sec in (
            ("python -c 'import numpy'", numpy_s),
            ("python -c 'import jax'", jax_s),
        ):
            print(f"  {label:32s} {sec * 1e3:6.0f} ms")
        help_s = timed([*XVJAX, "--help"], r)
        print(f"  {'xvjax --help':32s} {help_s * 1e3:6.0f} ms  (limit 500 ms)")
        for name, argv in commands.items():
            sec = timed([*XVJAX, *argv, "--print-args=false"], r)
            probe = subprocess.run([*PROBE, *argv], capture_output=True, text=True, check=True)
            jax_used = probe.stderr.strip().splitlines()[-1]
            print(f"  {'xvjax ' + name:32s} {sec * 1e3:6.0f} ms  {jax_used:7s} "
                  f"{sec / numpy_s:4.1f}x import numpy")  # fmt: skip
        cli = " ".join(XVJAX[:2]) + ' "from xvjax.cli import main; main()"'
        pipe = (
            f"{cli} copy-feats ark:{p['feats']} ark:- | "
            f"{cli} apply-cmvn-sliding --center=true ark:- ark:- | "
            f"{cli} select-voiced-frames ark:- ark:{p['vad']} ark:- | "
            f"{cli} copy-feats ark:- ark,t:{out}"
        )
        sec = timed(pipe, r, shell=True)
        print(f"  {'pipe of 4 commands':32s} {sec * 1e3:6.0f} ms  "
              f"(copy-feats | apply-cmvn-sliding | select-voiced-frames | copy-feats)")  # fmt: skip


if __name__ == "__main__":
    main()
