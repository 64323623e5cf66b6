"""The training input pipeline alone: examples/s of the sampler + loader per source, beside the
train step's consumption, and the workers an accelerator would need.

    .venv/bin/python benchmarks/bench_input_pipeline.py            # feats, ~30 s
    .venv/bin/python benchmarks/bench_input_pipeline.py --sources=feats,audio --seconds=120

Sources (synthetic, written to a temporary directory): `feats` (a data dir's feats.scp, 30-dim,
300-1000 frames, read and cut into chunks per batch) and `audio` (16 kHz wav.scp: MFCC, CMN and
VAD on the fly, no augmentation; its first minute is mostly jit compilation of the length
buckets, so give it a long --seconds). Each runs `train/input_pipeline.build_data` with --prefetch 0
(in the consumer's thread) and 2 (the loader's one background thread), batch 64, for --seconds.
Today's loader has one worker (the prefetch thread): the "workers needed" column divides an
accelerator's step rate by the rate of one such worker. The step rates are a paper figure: the
full-size x-vector TDNN costs ~16 MFLOP per training frame (forward + backward, 3 x 5.36), at
--mfu of a device's dense peak (A100 TF32 156 TFLOP/s, TPU v5e bf16 197 TFLOP/s); this CPU's own
step rate is `benchmarks/bench_train.py`'s (~8k frames/s, PERF_NOTES).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

TRAIN_FLOP_PER_FRAME = 3 * 5.36e6
DEVICES = {"A100 (TF32)": 156e12, "TPU v5e chip (bf16)": 197e12}


def write_audio_dir(path: str, num_utts: int, seconds: float) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    wav, utt2spk = [], []
    for i in range(num_utts):
        utt = f"spk{i % 20:03d}-utt{i:04d}"
        n = int(16000 * seconds * rng.uniform(0.6, 1.4))
        x = (rng.normal(size=n) * 3000 * (1 + np.sin(np.arange(n) / 800.0))).astype(np.int16)
        f = os.path.join(path, f"{utt}.wav")
        sf.write(f, x, 16000, subtype="PCM_16")
        wav.append(f"{utt} {f}\n")
        utt2spk.append(f"{utt} {utt.split('-')[0]}\n")
    with open(os.path.join(path, "wav.scp"), "w") as f:
        f.writelines(sorted(wav))
    with open(os.path.join(path, "utt2spk"), "w") as f:
        f.writelines(sorted(utt2spk))


def measure(config, seconds: float) -> tuple[float, float]:
    """(examples/s, mean frames per example) of `build_data(config).loader` for `seconds`."""
    from xvjax.train.input_pipeline import build_data

    data = build_data(config)
    try:
        next(data.loader)  # open files, start the thread
        n = frames = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            b = next(data.loader)
            n += b.feats.shape[0]
            frames += b.feats.shape[0] * b.feats.shape[1]
        return n / (time.perf_counter() - t0), frames / max(n, 1)
    finally:
        data.loader.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sources", default="feats", help="feats and/or audio")
    p.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--mfu", type=float, default=0.4, help="projection: fraction of peak")
    a = p.parse_args()

    from xvjax.synthetic.fake_feats import write_fake_data_dir
    from xvjax.train.config import base_config

    rows = []
    with tempfile.TemporaryDirectory() as root:
        for source in a.sources.split(","):
            c = base_config()
            c.data.source = source
            c.train.batch_size = a.batch_size
            if source == "feats":
                write_fake_data_dir(f"{root}/feats", num_speakers=50, utts_per_speaker=8,
                                    feat_dim=30, min_frames=300, max_frames=1000)  # fmt: skip
                c.data.train_dir = f"{root}/feats"
            else:
                write_audio_dir(f"{root}/audio", num_utts=160, seconds=6.0)
                c.data.train_dir = f"{root}/audio"
            for prefetch in (0, 2):
                c.data.prefetch = prefetch
                rate, frames = measure(c, a.seconds)
                rows.append((source, prefetch, rate, frames))
                print(f"{source:<6} prefetch={prefetch}: {rate:8.0f} examples/s "
                      f"({rate * frames / 1e3:.0f}k frames/s, {frames:.0f} frames/example)",
                      flush=True)  # fmt: skip
    print(f"\nPaper projection (~{TRAIN_FLOP_PER_FRAME / 1e6:.0f} MFLOP per training frame at "
          f"{a.mfu:.0%} of peak):")  # fmt: skip
    for name, peak in DEVICES.items():
        frames_s = peak * a.mfu / TRAIN_FLOP_PER_FRAME
        need = []
        for source, prefetch, rate, frames in rows:
            if prefetch:
                need.append(f"{source} {frames_s / (rate * frames):.0f}")
        print(f"  {name}: ~{frames_s / 1e6:.1f}M frames/s per device; workers like the one "
              f"measured here needed per device: {', '.join(need)}")  # fmt: skip


if __name__ == "__main__":
    main()
