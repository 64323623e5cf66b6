"""Wav to PLDA scores through the code the CLI and the recipe run, in hours of audio per second.

On the 16 kHz source domain of the demo corpus (`xvjax make-demo-corpus`, made under /tmp when
`--corpus` does not exist yet), each stage is the library function behind its command:

1. features: `datadir_jobs.make_features` (make-features; the recipe's feature stage): MFCC and
   energy VAD into archives, sliding CMN + voiced frames into the `_no_sil` copy, per FFT path;
2. x-vectors: `xvector_compute.extract_xvectors` (nnet3-xvector-compute; the recipe's embedding
   stage) with a full-size network (Kaldi's xvector_1a, 30-dim input; random weights unless
   `--model` names an nnet3 .raw or an xvjax model dir), first run incl. jit compilation;
3. PLDA: `PldaBackend.fit` on source_train and `PldaBackend.score` of the eval trials.

Each stage prints hours of audio per second (and its own unit: frames/s, trials/s) with Kaldi's
measured rate on this machine beside it (shared/PERF_NOTES.md) and the ratio.

    .venv/bin/python benchmarks/bench_pipeline.py --corpus=/tmp/xvjax_corpus_tiny
    .venv/bin/python benchmarks/bench_pipeline.py --corpus=/tmp/demo --preset=default --hours=1
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time

import numpy as np

# Kaldi's own binaries on this machine (shared/PERF_NOTES.md).
KALDI_MFCC_FRAMES_PER_S = 170e3  # compute-mfcc-feats
KALDI_XVECTOR_FRAMES_PER_S = (1.7e3, 3.2e3)  # nnet3-xvector-compute, full-size network
KALDI_PLDA_TRIALS_PER_S = 0.18e6  # ivector-plda-scoring
SETS = ("source_train", "source_eval_enroll", "source_eval_test")


def audio_seconds(data_dir) -> dict[str, float]:
    """{utt: seconds} from utt2dur, else from the wav headers."""
    import soundfile

    if data_dir.utt2dur:
        return dict(data_dir.utt2dur)
    out = {}
    for utt, path in data_dir.wav_scp.items():
        info = soundfile.info(path)
        out[utt] = info.frames / info.samplerate
    return out


def prepare(corpus: str, work: str, hours: float | None) -> dict[str, str]:
    """Copies of the source sets in `work` (make-features writes into a data dir); with `hours`,
    whole speakers of each set up to its share of the hours."""
    from xvjax.kaldi import datadir

    out = {}
    for name in SETS:
        d = datadir.load_data_dir(os.path.join(corpus, "data", name), check_files=False)
        utts = sorted(d.utt2spk)
        if hours:
            secs = audio_seconds(d)
            total = sum(secs.values())
            budget = hours * 3600 * total / max(1e-9, _all_seconds(corpus))
            keep, used = [], 0.0
            for spk in sorted(set(d.utt2spk.values())):
                spk_utts = [u for u in utts if d.utt2spk[u] == spk]
                if keep and used + sum(secs[u] for u in spk_utts) > budget:
                    break
                keep += spk_utts
                used += sum(secs[u] for u in spk_utts)
            utts = keep
        dest = os.path.join(work, name)
        datadir.write_data_dir(
            dest, {u: d.utt2spk[u] for u in utts}, wav_scp={u: d.wav_scp[u] for u in utts},
            utt2dur={u: d.utt2dur[u] for u in utts} if d.utt2dur else None, validate=False,
        )  # fmt: skip
        trials = os.path.join(corpus, "data", name, "trials")
        if os.path.isfile(trials):
            shutil.copyfile(trials, os.path.join(dest, "trials"))
        out[name] = dest
    return out


def _all_seconds(corpus: str) -> float:
    from xvjax.kaldi import datadir

    return sum(
        sum(audio_seconds(datadir.load_data_dir(os.path.join(corpus, "data", n), False, False)).values())
        for n in SETS
    )  # fmt: skip


def _rate(hours: float, sec: float) -> str:
    return f"{hours / sec:8.3f} h/s ({hours * 3600 / sec:7.0f}x real time)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="/tmp/xvjax_corpus_tiny")
    parser.add_argument("--preset", default="tiny", help="make-demo-corpus preset if missing")
    parser.add_argument("--hours", type=float, default=None, help="use about this much audio")
    parser.add_argument("--fft-impl", default="kaldi,xla")
    parser.add_argument("--model", default="", help="nnet3 .raw or xvjax model dir")
    parser.add_argument("--repeats", type=int, default=1, help="feature runs per FFT path")
    args = parser.parse_args()

    import jax

    from xvjax.backend.system import PldaBackend, XvectorSet
    from xvjax.backend.trials import Trials
    from xvjax.errors import XvjaxError
    from xvjax.features.datadir_jobs import make_features
    from xvjax.features.options import RECIPE_CMN, RECIPE_VAD, VOXCELEB_MFCC
    from xvjax.kaldi import datadir, tables
    from xvjax.metrics import compute_eer
    from xvjax.model.checkpoint import load_any
    from xvjax.model.spec import xvector_1a_spec
    from xvjax.model.xvector import init_variables
    from xvjax.model.xvector_compute import Extractor, extract_xvectors
    from xvjax.synthetic.corpus import make_corpus, preset

    logging.getLogger("xvjax").setLevel(logging.WARNING)
    if not os.path.isfile(os.path.join(args.corpus, "corpus.json")):
        print(f"making the demo corpus (preset {args.preset}) in {args.corpus} ...", flush=True)
        make_corpus(args.corpus, preset(args.preset), os.cpu_count() or 1, args.preset)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    work = tempfile.mkdtemp(prefix="xvjax_bench_pipeline_")
    try:
        dirs = prepare(args.corpus, work, args.hours)
        secs = {
            n: audio_seconds(datadir.load_data_dir(d, validate=False, check_files=False))
            for n, d in dirs.items()
        }  # fmt: skip
        hours = sum(sum(s.values()) for s in secs.values()) / 3600
        utts = sum(len(s) for s in secs.values())
        print(f"{utts} utterances, {hours:.3f} h of 16 kHz audio ({', '.join(SETS)})")
        mfcc = VOXCELEB_MFCC

        print("\n1. features (make-features: MFCC + VAD -> archives, CMN + voiced -> _no_sil)")
        no_sil, feat_s = {}, {}
        for impl in args.fft_impl.split(","):
            times, frames = [], 0
            for r in range(max(1, args.repeats)):
                t0 = time.perf_counter()
                frames = 0
                for d in dirs.values():
                    rep = make_features(
                        d, mfcc, RECIPE_VAD, no_sil_dir=d + "_no_sil", cmn_opts=RECIPE_CMN,
                        archive_dir=os.path.join(work, f"mfcc_{impl}_{r}"), fft_impl=impl,
                    )  # fmt: skip
                    frames += rep.frames
                times.append(time.perf_counter() - t0)
            sec = feat_s[impl] = float(np.median(times))
            fps = frames / sec
            print(f"   fft_impl={impl:5s} {_rate(hours, sec)}  {fps:8.0f} frames/s, "
                  f"{fps / KALDI_MFCC_FRAMES_PER_S:.2f}x compute-mfcc-feats "
                  f"(median of {len(times)}: {sec:.1f} s incl. compile; runs "
                  f"{', '.join(f'{t:.1f}' for t in times)} s); load {os.getloadavg()[0]:.1f}")  # fmt: skip
            no_sil[impl] = {n: d + "_no_sil" for n, d in dirs.items()}
            for d in no_sil[impl].values():  # keep this path's prepared copy
                shutil.copytree(d, f"{d}_{impl}", dirs_exist_ok=True)
        impl0 = args.fft_impl.split(",")[0]

        print("\n2. x-vectors (nnet3-xvector-compute --chunk-size=-1 --min-chunk-size=25)")
        if args.model:
            spec, variables = load_any(args.model)
        else:
            spec = xvector_1a_spec(input_dim=mfcc.num_ceps, num_speakers=1000)
            variables = init_variables(spec, jax.random.key(0))
        extractor = Extractor(spec, variables)
        xvectors: dict[str, dict[str, np.ndarray]] = {}
        xvec_s = []
        for label in ("first run (incl. jit)", "second run"):
            t0, voiced = time.perf_counter(), 0
            for name in dirs:
                scp = os.path.join(f"{no_sil[impl0][name]}_{impl0}", "feats.scp")
                feats = [(u, m) for u, m in tables.read("scp:" + scp)]
                voiced += sum(len(m) for _, m in feats)
                xvectors[name] = dict(extract_xvectors(spec, None, iter(feats), chunk_size=-1,
                                                       min_chunk_size=25, extractor=extractor))  # fmt: skip
            sec = time.perf_counter() - t0
            xvec_s.append(sec)
            fps = voiced / sec
            lo, hi = KALDI_XVECTOR_FRAMES_PER_S
            print(f"   {label:22s} {_rate(hours, sec)}  {fps:8.0f} voiced frames/s, "
                  f"{fps / hi:.1f}-{fps / lo:.1f}x Kaldi ({len(extractor.shapes)} jit shapes); "
                  f"load {os.getloadavg()[0]:.1f}")  # fmt: skip

        print("\n3. PLDA (mean, LDA 150, PLDA: fit on source_train; score the eval trials)")
        utt2spk = {n: datadir.load_data_dir(d, False, False).utt2spk for n, d in dirs.items()}

        def xset(name):
            keys = sorted(xvectors[name])
            mat = np.stack([np.asarray(xvectors[name][k], np.float64) for k in keys])
            return XvectorSet(keys, mat, {k: utt2spk[name][k] for k in keys})

        t0 = time.perf_counter()
        try:
            backend = PldaBackend.fit(xset("source_train"), lda_dim=150)
        except XvjaxError as e:  # the tiny preset has fewer training x-vectors than dimensions
            print(f"   skipped: {e}")
            return
        fit_s = time.perf_counter() - t0
        trials = Trials.read(os.path.join(dirs["source_eval_test"], "trials"))
        t0 = time.perf_counter()
        scores, scored = backend.score(xset("source_eval_enroll"), xset("source_eval_test"), trials)
        score_s = time.perf_counter() - t0
        tps = len(scored) / score_s
        eer = compute_eer(scores, scored.labels)[0] if scored.labels is not None else float("nan")
        print(
            f"   fit {fit_s:.2f} s; scoring {len(scored)} trials in {score_s * 1e3:.1f} ms: "
            f"{tps:10.0f} trials/s, {tps / KALDI_PLDA_TRIALS_PER_S:.1f}x ivector-plda-scoring "
            f"(EER {100 * eer:.1f}%{', random network' if not args.model else ''})"
        )
        print("\noverall (features + x-vectors incl. jit + PLDA fit and scoring):")
        for impl, sec in feat_s.items():
            total = sec + xvec_s[0] + fit_s + score_s
            print(f"   fft_impl={impl:5s} {_rate(hours, total)}  ({total:.1f} s)")
        print(
            "\nKaldi rates: shared/PERF_NOTES.md (compute-mfcc-feats ~170k frames/s, "
            "nnet3-xvector-compute 1.7-3.2k frames/s, ivector-plda-scoring 0.18M trials/s)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
