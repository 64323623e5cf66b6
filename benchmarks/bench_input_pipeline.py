"""The training input pipeline alone, by worker count, beside the train step's consumption, and the
workers an accelerator would need.

    .venv/bin/python benchmarks/bench_input_pipeline.py                       # all sources, ~15 min
    .venv/bin/python benchmarks/bench_input_pipeline.py --sources=feats,egs --workers=1,2
    .venv/bin/python benchmarks/bench_input_pipeline.py --no-grain --no-step  # pipeline only

Sources (synthetic, written to a temporary directory; each through `train/input_pipeline.build_data`
as `xvjax train` builds it, batch 64, chunks of 200-400 frames as `base_config()`):
  feats      a data dir's feats.scp (30-dim, 300-1000 frames), utterances cached in RAM (default)
  feats-disk the same with data.cache=False: every chunk read from the ark (corpora larger than RAM)
  egs        Kaldi x-vector egs archives (compressed, 200-400 frames), read and shuffled per archive
  tfds       the feats data dir written by `make-tfds-dataset` (ArrayRecord), if tensorflow-datasets
             is installed
  audio      16 kHz wav.scp: MFCC, sliding CMN and the clean VAD's frames on the fly
  audio-aug  the same with augmentation of every chunk (aug_prob 1: reverb / noise / music / babble
             from synthetic RIRs and MUSAN-like noise)
Every measurement of one source makes the same --batches minibatches from position 0 (the stream is
the same whatever the worker count), after a warm-up pass over them (jit compilation of every shape,
page cache, the store's RAM cache): it is the steady state. Figures are the best of --repeats runs
(one for the audio sources), the loader's pool and grain's interleaved. `--grain` also runs each source's
`make_batch` through grain (`MapDataset.source(specs).map(make_batch).to_iter_dataset(
ReadOptions(num_threads=N))`) over the same specs, to compare with the loader's own thread pool.

The train step's consumption is `benchmarks/bench_train.py`'s step (full-size xvector_1a, 7000
outputs, 64 x 200 frames, this CPU). The projection is a paper figure: an accelerator's frames/s
is its dense matmul peak x --mfu / (training FLOPs per frame, from XLA's cost analysis of that
step); the workers it needs divide that by one worker's frames/s measured here.
The machine is shared (2 cores): the load average is printed beside each figure; figures measured
under load are noisy and low, and no thread count can exceed the cores there are.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# (name, dense matmul peak FLOP/s per device, note): the precisions JAX uses by default there.
DEVICES = (
    ("A100 (TF32 tensor cores, f32 default)", 156e12, "NVIDIA A100 datasheet, dense"),
    ("A100 (bf16)", 312e12, "NVIDIA A100 datasheet, dense"),
    ("TPU v5e chip (bf16)", 197e12, "Cloud TPU v5e docs; f32 matmuls run as bf16 passes"),
)
DEVICES_PER_HOST = 8  # an 8-GPU A100 host, or a v5e host with 8 chips


def load_avg() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


# ----------------------------------------------------------------------------- synthetic sources


def write_audio_dir(path: str, num_utts: int, seconds: float) -> None:
    """A 16 kHz wav.scp data dir of `num_utts` voiced/silent noise bursts (20 speakers)."""
    from xvjax.kaldi.audio import write_wav

    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    wav, utt2spk = [], []
    for i in range(num_utts):
        utt = f"spk{i % 20:03d}-utt{i:04d}"
        n = int(16000 * seconds * rng.uniform(0.8, 1.4))
        env = (np.sin(np.arange(n) / 2500.0) > -0.3).astype(np.float64)  # pauses for the VAD
        x = rng.normal(size=n) * 3000 * env + 20 * rng.normal(size=n)
        f = os.path.join(path, f"{utt}.wav")
        write_wav(f, x, 16000)
        wav.append(f"{utt} {f}\n")
        utt2spk.append(f"{utt} {utt.split('-')[0]}\n")
    with open(os.path.join(path, "wav.scp"), "w") as f:
        f.writelines(sorted(wav))
    with open(os.path.join(path, "utt2spk"), "w") as f:
        f.writelines(sorted(utt2spk))


def write_noise_dirs(root: str) -> tuple[str, str]:
    """(MUSAN-like dir with noise/ music/ speech/, data dir of exponentially decaying RIRs)."""
    from xvjax.kaldi.audio import write_wav

    rng = np.random.default_rng(1)
    musan = os.path.join(root, "musan")
    for kind in ("noise", "music", "speech"):
        os.makedirs(os.path.join(musan, kind))
        for i in range(3):
            x = 2000 * rng.normal(size=16000 * 8)
            write_wav(os.path.join(musan, kind, f"{kind}{i}.wav"), x, 16000)
    rirs = os.path.join(root, "rirs")
    os.makedirs(rirs)
    lines = []
    for i in range(4):
        n = int(16000 * 0.3)
        h = rng.normal(size=n) * np.exp(-np.arange(n) / (16000 * 0.05 * (i + 1)))
        h[0] = 1.0
        f = os.path.join(rirs, f"rir{i}.wav")
        write_wav(f, 20000 * h / np.abs(h).max(), 16000)
        lines.append(f"rir{i} {f}\n")
    with open(os.path.join(rirs, "wav.scp"), "w") as f:
        f.writelines(lines)
    return musan, rirs


def write_egs_dir(feats_dir: str, out: str, num_archives: int, examples: int) -> None:
    """Kaldi x-vector egs archives (`egs.N.ark`, compressed, + pdf2num) of the chunks the sampler
    allocates from `feats_dir`, written with the egs writer as nnet3-xvector-get-egs would."""
    from xvjax.data import chunks, stores
    from xvjax.kaldi.egs import write_egs, xvector_example

    store = stores.FeatsStore(feats_dir)
    table, _ = chunks.build_utt_table(store.utt2len, store.utt2spk, min_len=200)
    cfg = chunks.ChunkConfig(frames_per_archive=examples * 300, batch_size=1, seed=7)
    os.makedirs(out)
    for k in range(num_archives):
        arc = chunks.allocate_archive(table, cfg, k)
        egs = []
        for u, off, label in zip(arc.utt_idx, arc.offsets, arc.labels, strict=True):
            utt = table.utt_ids[int(u)]
            x = store.load(utt)[off : off + arc.chunk_len]
            egs.append((f"{utt}-{off}-{arc.chunk_len}", xvector_example(x, int(label), 50)))
        write_egs(f"ark:{out}/egs.{k + 1}.ark", egs)
    with open(f"{out}/pdf2num", "w") as f:
        f.write(" ".join(["1"] * table.num_speakers) + "\n")


def source_configs(root: str, sources: list[str]) -> dict:
    """{source name: config} for the synthetic data of each requested source."""
    from xvjax.synthetic.fake_feats import write_fake_data_dir
    from xvjax.train.config import base_config

    out = {}
    feats = f"{root}/feats"
    if {"feats", "feats-disk", "egs", "tfds"} & set(sources):
        write_fake_data_dir(feats, num_speakers=50, utts_per_speaker=8, feat_dim=30,
                            min_frames=300, max_frames=1000)  # fmt: skip
    if {"audio", "audio-aug"} & set(sources):
        write_audio_dir(f"{root}/audio", num_utts=80, seconds=8.0)
    for source in sources:
        c = base_config()
        c.data.min_utts_per_spk = 1
        if source in ("feats", "feats-disk"):
            c.data.source, c.data.train_dir = "feats", feats
            c.data.cache = source == "feats"
        elif source == "egs":
            write_egs_dir(feats, f"{root}/egs", num_archives=4, examples=256)
            c.data.source, c.data.egs_dir = "egs", f"{root}/egs"
        elif source == "tfds":
            try:
                from xvjax.data.tfds_source import build_tfds_dataset

                c.data.tfds_dir = build_tfds_dataset(feats, f"{root}/tfds")
            except Exception as e:  # the optional extra is missing
                print(f"tfds: skipped ({e})")
                continue
            c.data.source = "tfds"
        elif source in ("audio", "audio-aug"):
            c.data.source, c.data.train_dir = "audio", f"{root}/audio"
            if source == "audio-aug":
                c.data.musan, c.data.rirs = write_noise_dirs(f"{root}/noise")
                c.data.aug_prob = 1.0
        else:
            raise SystemExit(f"unknown source {source}")
        out[source] = c
    return out


# ----------------------------------------------------------------------------- measurements


def run_loader(loader, num_batches: int, start: dict) -> tuple[float, float, int, int]:
    """(seconds, CPU seconds of this process, examples, frames) of `num_batches` minibatches from
    position `start`."""
    loader.load_state_dict(start)
    n = frames = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
        b = next(loader)
        n += b.feats.shape[0]
        frames += b.feats.shape[0] * b.feats.shape[1]
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    loader.close()
    return sec, cpu, n, frames


def run_grain(loader, num_batches: int, start: dict, threads: int) -> tuple[float, float, int, int]:
    """The same minibatches through grain's thread pool over the loader's `make_batch` (the time
    includes drawing the specs from the sampler, as the loader's does)."""
    import grain

    loader.load_state_dict(start)
    t0, c0 = time.perf_counter(), time.process_time()
    specs = [next(loader.sampler) for _ in range(num_batches)]
    ds = grain.MapDataset.source(specs).map(loader.make_batch)
    it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                   prefetch_buffer_size=threads + 2)))  # fmt: skip
    n = frames = 0
    for b in it:
        n += b.feats.shape[0]
        frames += b.feats.shape[0] * b.feats.shape[1]
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    loader.load_state_dict(start)
    return sec, cpu, n, frames


def measure_source(name, config, workers, num_batches, use_grain, repeats) -> list[dict]:
    """Rows of examples/s etc. per (loader or grain, worker count): the best of `repeats` runs,
    the two pools interleaved so that both see the same machine load."""
    from xvjax.train.input_pipeline import build_data

    config.data.num_workers = max(workers)
    data = build_data(config)
    loader = data.loader
    start = loader.state_dict()
    rows = []
    try:
        t = time.perf_counter()
        run_loader(loader, num_batches, start)  # warm-up: the same batches
        print(
            f"{name:<10} warm-up pass {time.perf_counter() - t:6.1f} s ({load_avg()})", flush=True
        )
        kinds = ("own", "grain") if use_grain and hasattr(loader, "make_batch") else ("own",)
        for w in workers:
            for kind in kinds:
                loader.num_workers = w
                best = None
                for _ in range(repeats):
                    load = os.getloadavg()[0]
                    if kind == "own":
                        sec, cpu, n, frames = run_loader(loader, num_batches, start)
                    else:
                        sec, cpu, n, frames = run_grain(loader, num_batches, start, w)
                    load = (load + os.getloadavg()[0]) / 2
                    if best is None or sec < best[0]:
                        best = (sec, cpu, n, frames, load)
                sec, cpu, n, frames, load = best
                row = dict(source=name, kind=kind, workers=w, examples_s=n / sec,
                           frames_s=frames / sec, frames_cpu_s=frames / cpu, load=load)  # fmt: skip
                rows.append(row)
                label = "loader" if kind == "own" else "grain "
                print(f"{name:<10} {label} workers={w}: {row['examples_s']:7.0f} examples/s "
                      f"{row['frames_s'] / 1e3:7.0f}k frames/s  {n / cpu:7.0f} examples per "
                      f"CPU-s  (load {load:.1f})", flush=True)  # fmt: skip
    finally:
        loader.close()
    return rows


def measure_step(steps: int) -> dict:
    """The train step's consumption (bench_train.bench: full-size network, 64 x 200, this CPU)."""
    from benchmarks import bench_train

    args = types.SimpleNamespace(batch=64, frames=200, num_speakers=7000, steps=steps, bf16=False)
    r = bench_train.bench("train all layers", "", args)
    r["flop_per_frame"] = r["gflop_per_step"] * 1e9 / (args.batch * args.frames)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sources", default="feats,feats-disk,egs,tfds,audio,audio-aug")
    p.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    p.add_argument("--batches", type=int, default=60, help="minibatches per measurement")
    p.add_argument("--audio-batches", type=int, default=6, help="... for the audio sources")
    p.add_argument("--repeats", type=int, default=3, help="best of (not for the audio sources)")
    p.add_argument("--grain", action=argparse.BooleanOptionalAction, default=True,
                   help="also time grain's thread pool over the same make_batch")  # fmt: skip
    p.add_argument("--step", action=argparse.BooleanOptionalAction, default=True,
                   help="time the train step (full-size network) for the consumption rate")  # fmt: skip
    p.add_argument("--step-steps", type=int, default=5)
    p.add_argument("--mfu", type=float, default=0.4, help="projection: fraction of the peak")
    a = p.parse_args()
    workers = [int(w) for w in a.workers.split(",")]
    sources = a.sources.split(",")
    if a.grain:
        try:
            import grain  # noqa: F401
        except ImportError:
            print("grain not installed: comparison skipped (pip install grain)")
            a.grain = False

    print(f"{os.cpu_count()} CPUs, {load_avg()} at start; shared machine: figures under load are "
          "noisy", flush=True)  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for name, config in source_configs(root, sources).items():
            audio = name.startswith("audio")  # long runs: one each
            n = a.audio_batches if audio else a.batches
            rows += measure_source(name, config, workers, n, a.grain, 1 if audio else a.repeats)

    # the train step's FLOPs per frame (XLA cost analysis), measured or xvector_1a's 16 MFLOP
    flop_per_frame = 3 * 5.36e6
    if a.step:
        r = measure_step(a.step_steps)
        flop_per_frame = r["flop_per_frame"]
        print(f"\ntrain step (bench_train.bench, full-size xvector_1a, 64 x 200, this CPU, "
              f"{load_avg()}): {r['examples_per_s']:.0f} examples/s, "
              f"{r['frames_per_s'] / 1e3:.1f}k frames/s, {r['gflop_per_step']:.1f} GFLOP/step "
              f"= {flop_per_frame / 1e6:.1f} MFLOP per training frame")  # fmt: skip
        for row in rows:
            if row["kind"] == "own":
                print(
                    f"  {row['source']:<10} workers={row['workers']}: pipeline / step "
                    f"consumption = {row['frames_s'] / r['frames_per_s']:5.1f}x (frames/s)"
                )

    print(f"\nProjection (paper): device frames/s = peak x {a.mfu:.0%} / "
          f"{flop_per_frame / 1e6:.1f} MFLOP per frame. Workers per device = that / one worker's "
          "frames/s above (1 worker, wall clock, this CPU under its load); cores per device = "
          "that x the CPU-seconds per frame (the 1-worker run's process CPU time: the work "
          "to do whatever the load, if it spread over cores perfectly)")  # fmt: skip
    one = {r["source"]: r for r in rows if r["kind"] == "own" and r["workers"] == 1}
    for name, peak, note in DEVICES:
        frames_s = peak * a.mfu / flop_per_frame
        print(f"  {name}: {peak / 1e12:.0f} TFLOP/s ({note}) -> {frames_s / 1e6:.1f}M frames/s "
              f"= {frames_s / 300:.0f} examples/s of 300 frames per device")  # fmt: skip
        for s, r in one.items():
            w, c = frames_s / r["frames_s"], frames_s / r["frames_cpu_s"]
            print(f"    {s:<10} {w:6.1f} workers, {c:6.1f} cores per device "
                  f"({w * DEVICES_PER_HOST:.0f} workers, {c * DEVICES_PER_HOST:.0f} cores per "
                  f"{DEVICES_PER_HOST}-device host)")  # fmt: skip


if __name__ == "__main__":
    main()
