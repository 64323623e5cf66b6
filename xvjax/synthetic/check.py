"""Quick numpy checks of the demo corpus: does it carry speaker identity, does the domain shift hurt?

A deliberately simple speaker-recognition baseline (no neural net): per utterance, mean and std
of MFCCs over loud (voiced) frames and std of their deltas; a global standardisation and an LDA
trained on a labelled set; cosine scoring of length-normalised projections, enrollment vectors
averaged per model. Used by `benchmarks/bench_data_synthetic.py` and the tests.

The pieces are the product's: MFCCs from `xvjax.features.reference` (Kaldi's algorithm, numpy),
LDA from `xvjax.backend.lda`, speaker means from `xvjax.backend.means`, EER from `xvjax.metrics`,
data-dir and trials tables from `xvjax.kaldi.tables`.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import soundfile as sf
from scipy import signal

from xvjax import metrics
from xvjax.backend import lda as lda_lib
from xvjax.backend import means
from xvjax.features.options import MfccOptions
from xvjax.features.reference import features_numpy
from xvjax.kaldi import tables
from xvjax.synthetic.corpus import SETS


@functools.lru_cache
def mfcc_options(feat_rate: int, num_ceps: int = 20) -> MfccOptions:
    """25 ms / 10 ms frames, 30 mel bins from 20 Hz to Nyquist - 400 Hz, c0 = log energy."""
    return MfccOptions(
        sample_frequency=float(feat_rate),
        num_ceps=num_ceps,
        num_mel_bins=30,
        low_freq=20.0,
        high_freq=-400.0,
        dither=0.0,
    )


def mel_cepstra(x: np.ndarray, rate: int, feat_rate: int, num_ceps: int = 20):
    """(frames, num_ceps) MFCCs at feat_rate (resampling x; Kaldi's `compute-mfcc-feats` via
    `xvjax.features.reference`) and the (frames,) mask of loud (voiced) frames."""
    if rate != feat_rate:
        x = signal.resample_poly(x, feat_rate, rate)
    ceps = features_numpy(32768.0 * np.asarray(x), mfcc_options(feat_rate, num_ceps))
    energy = ceps[:, 0]  # log energy (use_energy)
    voiced = energy > energy.max() - 6.0  # ~ the loud half: vowels and sonorants
    return ceps, voiced if voiced.sum() > 10 else np.ones_like(voiced)


def utt_stats(x: np.ndarray, rate: int, feat_rate: int, cmn: bool = False) -> np.ndarray:
    """(60,) mean and std of voiced-frame cepstra and std of their deltas; with `cmn`, the
    cepstra are first mean-normalised over all frames (as x-vector front ends do)."""
    ceps, voiced = mel_cepstra(x, rate, feat_rate)
    if cmn:
        ceps = ceps - ceps.mean(0)
    c = ceps[voiced]
    return np.concatenate([c.mean(0), c.std(0), np.diff(c, axis=0).std(0)])


def utt_vectors(
    data_dir: str, feat_rate: int, cmn: bool = False
) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Sorted utt ids, (num_utts, 60) `utt_stats` and utt2spk of a data dir."""
    wav = tables.read_text_table(f"{data_dir}/wav.scp")
    u2s = tables.read_text_table(f"{data_dir}/utt2spk")
    keys = sorted(wav)
    vecs = []
    for k in keys:
        x, rate = sf.read(wav[k].strip())
        vecs.append(utt_stats(x, rate, feat_rate, cmn))
    return keys, np.array(vecs), u2s


def lda(x: np.ndarray, labels: list[str], dim: int) -> np.ndarray | None:
    """(in_dim, dim) projection of `ivector-compute-lda` (`xvjax.backend.lda`, within-class
    covariance whitened), without its mean offset: the caller subtracts a mean of its choice.
    None when the set has fewer vectors than dimensions (Kaldi's LDA refuses it)."""
    if len(x) < x.shape[1]:
        print(f"LDA skipped: {len(x)} vectors < dimension {x.shape[1]}")
        return None
    return lda_lib.compute_lda(x, labels, dim=dim)[:, :-1].T


def score(trials: str, enroll, test, proj, mean) -> float:
    """EER (%) of cosine scoring `(x - mean) @ proj`, enrollment averaged per model (NaN when
    `proj` is None)."""
    if proj is None:
        return float("nan")

    def embed(vectors):
        y = (vectors - mean) @ proj
        return y / np.linalg.norm(y, axis=1, keepdims=True)

    ek, ev, eu2s = enroll
    tk, tv, _ = test
    spk2utt: dict[str, list[str]] = {}
    for k in ek:
        spk2utt.setdefault(eu2s[k], []).append(k)
    spk_means, _ = means.speaker_means(dict(zip(ek, embed(ev), strict=True)), spk2utt)
    models = sorted(spk_means)
    m_vec = np.stack([spk_means[m] for m in models]).astype(np.float64)
    m_vec /= np.linalg.norm(m_vec, axis=1, keepdims=True)
    m_index = {m: i for i, m in enumerate(models)}
    t_index = {k: i for i, k in enumerate(tk)}
    rows = tables.read_trials(trials)
    e_idx = np.array([m_index[r[0]] for r in rows])
    t_idx = np.array([t_index[r[1]] for r in rows])
    s = np.einsum("td,td->t", m_vec[e_idx], embed(tv)[t_idx])
    return 100.0 * metrics.compute_eer(s, np.array([r[2] == "target" for r in rows]))[0]


def report(paths: dict, feat_rate: int, title: str, cmn: bool = False) -> dict:
    """Prints and returns {backend: (source EER, target EER)} for the corpus at `paths`."""
    t0 = time.perf_counter()
    sets = {name: utt_vectors(paths[name], feat_rate, cmn) for name in SETS}
    print(f"features at {feat_rate} Hz (cmn={cmn}): {time.perf_counter() - t0:.1f} s")
    train = sets["source_train"]
    mean = train[1].mean(0)
    std = train[1].std(0)
    norm = {k: (v[0], (v[1] - mean) / std, v[2]) for k, v in sets.items()}
    labels = [train[2][k] for k in train[0]]
    dim = min(len(set(labels)) - 1, 30)
    proj = lda(norm["source_train"][1], labels, dim)
    ident = np.eye(norm["source_train"][1].shape[1])
    zero = np.zeros(ident.shape[0])
    src = (paths["source_eval_trials"], norm["source_eval_enroll"], norm["source_eval_test"])
    tgt = (paths["target_trials"], norm["target_enroll"], norm["target_test"])
    adapt_mean = norm["target_adapt"][1].mean(0)
    tt = norm["target_train"]
    tproj = lda(tt[1], [tt[2][k] for k in tt[0]], min(len(set(tt[2].values())) - 1, 30))
    rows = [
        ("cosine, no backend", score(*src, ident, zero), score(*tgt, ident, zero)),
        ("source LDA (out-of-domain)", score(*src, proj, zero), score(*tgt, proj, zero)),
        ("source LDA + target_adapt mean", float("nan"), score(*tgt, proj, adapt_mean)),
        ("LDA on target_train", float("nan"), score(*tgt, tproj, tt[1].mean(0))),
    ]
    print(f"\nEER (%) of mean+std cepstra at {feat_rate} Hz, cmn={cmn}, {title}")
    print(f"{'backend':34s} {'source_eval':>12s} {'target':>8s}")
    for name, s, t in rows:
        print(f"{name:34s} {s:12.2f} {t:8.2f}")
    return {name: (s, t) for name, s, t in rows}
