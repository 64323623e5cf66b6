"""Does the on-the-fly audio source keep up with the train step? Examples/s of both.

The audio source (`data.source=audio`: `AudioStore` + `AudioChunkLoader`, the loader `xvjax train
--source=audio` builds through `train.input_pipeline.build_data`) cuts each chunk's audio,
augments it (reverb / noise / music / babble with probability `--aug-prob`, from the demo
corpus's MUSAN and RIRS_NOISES), and prepares it (MFCC -> sliding CMN -> voiced frames) per
minibatch. Its examples/s is printed beside the full-size train step's (64 x 200..400 frames,
`bench_train.bench`, the step itself unchanged) and the ratio: >= 1 means the step never waits
for data (the loader prefetches in a thread).

    .venv/bin/python benchmarks/bench_audio_source.py --corpus=/tmp/xvjax_corpus_default
    .venv/bin/python benchmarks/bench_audio_source.py --aug-prob=0
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from xvjax import host_memory


def main():
    host_memory.reuse_freed_memory()  # before the backend starts, as `xvjax train` does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="/tmp/xvjax_corpus_default")
    # the tiny preset's utterances are shorter than the 400-frame chunks
    parser.add_argument("--preset", default="default", help="make-demo-corpus preset if missing")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--aug-prob", type=float, default=0.6)
    parser.add_argument("--step-steps", type=int, default=5, help="train steps to time")
    args = parser.parse_args()

    import jax

    from xvjax.synthetic.corpus import make_corpus, preset
    from xvjax.train.config import base_config
    from xvjax.train.input_pipeline import build_data

    if not os.path.isfile(os.path.join(args.corpus, "corpus.json")):
        print(f"making the demo corpus (preset {args.preset}) in {args.corpus} ...", flush=True)
        make_corpus(args.corpus, preset(args.preset), os.cpu_count() or 1, args.preset)
    cfg = base_config()
    cfg.data.source = "audio"
    cfg.data.train_dir = os.path.join(args.corpus, "data", "source_train")
    cfg.data.aug_prob = args.aug_prob
    if args.aug_prob > 0:
        cfg.data.musan = os.path.join(args.corpus, "musan")
        cfg.data.rirs = os.path.join(args.corpus, "RIRS_NOISES")
    batch = int(cfg.train.batch_size)
    print(f"jax {jax.__version__}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; batch {batch} chunks of {cfg.data.min_chunk}-"
          f"{cfg.data.max_chunk} frames, aug_prob {args.aug_prob}")  # fmt: skip
    t0 = time.perf_counter()
    data = build_data(cfg)
    print(f"  audio store: {time.perf_counter() - t0:.1f} s to read the audio and its clean VAD")
    loader = data.loader
    times, frames = [], 0
    t_prev = time.perf_counter()
    for i in range(args.batches + 2):
        b = next(loader)
        now = time.perf_counter()
        if i >= 2:  # the first batches include jit compilation of their shapes
            times.append(now - t_prev)
            frames += int(np.prod(b.feats.shape[:2]))
        t_prev = now
    loader.close()
    source_eps = batch / float(np.median(times))
    print(f"  audio source: {source_eps:7.1f} examples/s ({frames / sum(times):8.0f} frames/s; "
          f"median of {len(times)} batches after 2 warm-up)")  # fmt: skip

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_train import bench

    ns = argparse.Namespace(num_speakers=data.num_speakers, bf16=False, batch=batch,
                            frames=int(cfg.data.min_chunk), steps=args.step_steps)  # fmt: skip
    for frames_per in sorted({int(cfg.data.min_chunk), int(cfg.data.max_chunk)}):
        ns.frames = frames_per
        step = bench(f"{frames_per} frames", "", ns)
        print(f"  train step 64x{frames_per}: {step['examples_per_s']:7.1f} examples/s -> "
              f"source/step = {source_eps / step['examples_per_s']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
