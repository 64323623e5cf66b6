"""Demo corpus: generation speed, and whether its speakers and domains behave as the recipe needs.

Prints (1) seconds to synthesise one minute of audio per domain, (2) corpus generation time, and
(3) EERs of a simple i-vector-free baseline: per-utterance mean+std of numpy log-mel cepstra
(voiced frames), a source-trained LDA and cosine scoring, on the source eval trials and on the
target trials, then the same with target-domain mean re-centring and with LDA retrained on
target_train. The corpus is useful when source EER is low, target EER with the source backend is
clearly higher, and in-domain adaptation brings it down.

    .venv/bin/python benchmarks/bench_data_synthetic.py                 # tiny preset (~20 s)
    .venv/bin/python benchmarks/bench_data_synthetic.py --preset=default --out=/tmp/demo_corpus
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np

from xvjax.synthetic import check, domains
from xvjax.synthetic import corpus as demo_corpus


def speed() -> None:
    cfg = demo_corpus.preset("default")
    for name, domain in (
        ("source", domains.SOURCE),
        ("target", domains.TARGET),
    ):
        traits = domains.speaker_traits(0, domain, 1)
        domains.render_utterance(domain, traits, np.random.default_rng(1), cfg)
        t0 = time.perf_counter()
        c0 = time.process_time()
        total = 0.0
        k = 0
        while total < 60.0:
            x, rate = domains.render_utterance(domain, traits, np.random.default_rng(k), cfg)
            total += len(x) / rate
            k += 1
        print(
            f"{name}: {time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU "
            f"to render {total:.0f} s of audio "
            f"(voice + {'room/noise/handset/telephone' if name == 'target' else 'microphone'})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--out", default="")
    ap.add_argument("--num-jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--feature-rate", type=int, default=0, help="8000 or 16000 (0: both)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--force", action="store_true", help="regenerate an existing corpus")
    ap.add_argument("--cmn", action="store_true", help="also report with mean-normalised cepstra")
    args = ap.parse_args()
    if not args.skip_speed:
        speed()
    out = args.out or tempfile.mkdtemp(prefix="xvjax_corpus_")
    overrides = {} if args.seed is None else {"seed": args.seed}
    cfg = demo_corpus.preset(args.preset, **overrides)
    t0 = time.perf_counter()
    cpu0 = _cpu()
    paths = demo_corpus.make_corpus(
        out, cfg, num_jobs=args.num_jobs, preset_name=args.preset, force=args.force
    )
    hours = sum(v["hours"] for v in json.load(open(paths["corpus_json"]))["sets"].values())
    print(
        f"make_corpus({args.preset}, num_jobs={args.num_jobs}): {hours:.2f} h of audio in "
        f"{time.perf_counter() - t0:.1f} s wall, {_cpu() - cpu0:.1f} s CPU (all processes) "
        f"-> {out}  [load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores]"
    )
    title = f"{args.preset} preset, seed {cfg.seed}"
    for feat_rate in [args.feature_rate] if args.feature_rate else [16000, 8000]:
        check.report(paths, feat_rate, title)
    if args.cmn:
        check.report(paths, args.feature_rate or 8000, title, cmn=True)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
