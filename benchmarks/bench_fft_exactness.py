"""What Kaldi's exact FFT rounding buys downstream: x-vectors and EER with each FFT path.

1. Fixture models (shared/fixtures/kaldi/nnet3: full and small at 16 kHz, variant8k at 8 kHz):
   x-vectors of Kaldi's own prepared features (compute-mfcc-feats | apply-cmvn-sliding |
   select-voiced-frames) vs x-vectors of ours from the same wavs (`prepare_feats`, fft_impl
   kaldi and xla): cosine and voiced-frame counts per utterance.
2. The demo corpus's 16 kHz eval sets (`--corpus`, made by `xvjax make-demo-corpus`): x-vectors
   of the `full` fixture model from both FFT paths, cosine between the two, and the cosine-scoring
   EER of each (the fixture model is barely trained: the EER itself means little, its change
   between the paths is the figure).

    .venv/bin/python benchmarks/bench_fft_exactness.py --corpus=/tmp/xvjax_corpus_default
"""

from __future__ import annotations

import argparse
import os

import numpy as np

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "kaldi")
MODELS = {"full": ("16k", "prepared16k"), "small": ("16k", "prepared16k"),
          "variant8k": ("8k", "prepared8k")}  # fmt: skip


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=FIXTURES)
    parser.add_argument("--corpus", default="", help="demo corpus dir (skipped if empty)")
    parser.add_argument("--max-utts", type=int, default=400, help="per eval set of the corpus")
    args = parser.parse_args()

    import jax.numpy as jnp
    import soundfile

    from xvjax.features.frontend import prepare_feats
    from xvjax.features.options import RECIPE_CMN, MfccOptions, VadOptions
    from xvjax.kaldi import datadir, tables
    from xvjax.kaldi.nnet3 import Nnet
    from xvjax.metrics import compute_eer
    from xvjax.model.nnet3_import import nnet3_to_flax
    from xvjax.model.xvector_compute import Extractor, extract_xvectors

    fx = os.path.abspath(args.fixtures)
    vad = VadOptions.from_config_file(os.path.join(fx, "features", "vad.conf"))

    def ours(wavs: dict[str, np.ndarray], mfcc: MfccOptions, impl: str):
        """{utt: prepared features} through prepare_feats, in batches of similar length."""
        out = {}
        keys = sorted(wavs, key=lambda k: len(wavs[k]))
        for i in range(0, len(keys), 16):
            batch = keys[i : i + 16]
            n = max(len(wavs[k]) for k in batch)
            wav = np.zeros((len(batch), -(-n // 16000) * 16000), np.float32)
            for j, k in enumerate(batch):
                wav[j, : len(wavs[k])] = wavs[k]
            lens = jnp.asarray([len(wavs[k]) for k in batch])
            feats, counts = prepare_feats(jnp.asarray(wav), lens, mfcc, vad, RECIPE_CMN,
                                          fft_impl=impl)  # fmt: skip
            feats, counts = np.asarray(feats), np.asarray(counts)
            for j, k in enumerate(batch):
                if counts[j]:
                    out[k] = feats[j, : counts[j]]
        return out

    def xvectors(extractor, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = sorted(feats.items())
        return dict(extract_xvectors(extractor.spec, None, iter(items), min_chunk_size=25,
                                     extractor=extractor))  # fmt: skip

    print("1. fixture models: x-vectors of our features vs of Kaldi's features (cosine)")
    extractors = {}
    for name, (rate, prepared) in MODELS.items():
        nnet = Nnet.read(os.path.join(fx, "nnet3", name, "final.raw"))
        extractors[name] = ex = Extractor(*nnet3_to_flax(nnet))
        mfcc = MfccOptions.from_config_file(os.path.join(fx, "features", f"mfcc{rate}.conf"))
        scp = os.path.join(fx, "audio")
        kaldi_feats = dict(tables.read(f"ark:{os.path.join(fx, 'features', prepared + '.ark')}"))
        wavs = {
            u: soundfile.read(os.path.join(scp, f"{u}.wav"), dtype="int16")[0].astype(np.float32)
            for u in kaldi_feats
        }
        ref = xvectors(ex, kaldi_feats)
        for impl in ("kaldi", "xla"):
            mine = ours(wavs, mfcc, impl)
            got = xvectors(ex, mine)
            cos = [cosine(got[u], ref[u]) for u in sorted(ref)]
            same = sum(len(mine[u]) == len(kaldi_feats[u]) for u in kaldi_feats)
            err = max(
                (
                    np.abs(mine[u] - r).max()
                    for u, r in kaldi_feats.items()
                    if len(mine[u]) == len(r)
                ),
                default=float("nan"),
            )
            print(f"   {name:9s} fft_impl={impl:5s} 1 - cosine: max {1 - min(cos):.1e}, "
                  f"mean {1 - np.mean(cos):.1e} ({len(cos)} utts; voiced frames equal in "
                  f"{same}/{len(kaldi_feats)}; features max |diff| {err:.1e})")  # fmt: skip

    if not args.corpus:
        return
    print("\n2. demo corpus (16 kHz eval sets), `full` fixture model, cosine scoring")
    mfcc = MfccOptions.from_config_file(os.path.join(fx, "features", "mfcc16k.conf"))
    sets = {}
    for name in ("source_eval_enroll", "source_eval_test"):
        d = datadir.load_data_dir(os.path.join(args.corpus, "data", name), False, False)
        utts = sorted(d.utt2spk)[: args.max_utts]
        wavs = {u: soundfile.read(d.wav_scp[u], dtype="int16")[0].astype(np.float32)
                for u in utts}  # fmt: skip
        sets[name] = (d, wavs)
    trials = tables.read_trials(os.path.join(args.corpus, "data", "source_eval_test", "trials"))
    xv = {}
    for impl in ("kaldi", "xla"):
        xv[impl] = {
            n: xvectors(extractors["full"], ours(w, mfcc, impl)) for n, (_, w) in sets.items()
        }
    test_cos = [cosine(xv["kaldi"]["source_eval_test"][u], xv["xla"]["source_eval_test"][u])
                for u in xv["kaldi"]["source_eval_test"] if u in xv["xla"]["source_eval_test"]]  # fmt: skip
    print(f"   x-vectors, kaldi vs xla FFT: 1 - cosine max {1 - min(test_cos):.1e}, "
          f"mean {1 - np.mean(test_cos):.1e} ({len(test_cos)} test utts)")  # fmt: skip
    for impl in ("kaldi", "xla"):
        enroll_d = sets["source_eval_enroll"][0]
        models: dict[str, list] = {}
        for u, v in xv[impl]["source_eval_enroll"].items():
            models.setdefault(enroll_d.utt2spk[u], []).append(v / np.linalg.norm(v))
        test = xv[impl]["source_eval_test"]
        scores, labels = [], []
        for m, t, label in trials:
            if m in models and t in test:
                mean = np.mean(models[m], axis=0)
                scores.append(cosine(mean, test[t]))
                labels.append(label == "target")
        eer = compute_eer(np.asarray(scores), np.asarray(labels))[0]
        print(f"   fft_impl={impl:5s} EER {100 * eer:.3f}% ({len(scores)} trials)")


if __name__ == "__main__":
    main()
