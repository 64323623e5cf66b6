"""Quick numpy checks of the demo corpus: does it carry speaker identity, does the domain shift hurt?

A deliberately simple speaker-recognition baseline (no neural net): per utterance, mean and std
of log-mel cepstra over loud (voiced) frames and std of their deltas; a global standardisation and
an LDA trained on a labelled set; cosine scoring of length-normalised projections, enrollment
vectors averaged per model. Used by `benchmarks/bench_data_synthetic.py` and the tests.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal
from scipy.linalg import eigh

from xvjax.data.synthetic_corpus import SETS


def mel_cepstra(x: np.ndarray, rate: int, feat_rate: int, num_ceps: int = 20):
    """(frames, num_ceps) log-mel cepstra at feat_rate (resampling x), 25 ms / 10 ms frames,
    30 mel bins from 20 Hz to Nyquist - 400 Hz; and the (frames,) mask of loud (voiced) frames."""
    if rate != feat_rate:
        x = signal.resample_poly(x, feat_rate, rate)
    win, hop = feat_rate // 40, feat_rate // 100
    nfft = 512 if feat_rate == 16000 else 256
    n = 1 + (len(x) - win) // hop
    idx = np.arange(win)[None] + hop * np.arange(n)[:, None]
    frames = x[idx] * np.hamming(win)
    frames = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], 1)
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 + 1e-8 * win  # a dither-like floor
    mel = lambda f: 1127 * np.log1p(f / 700)
    edges = np.linspace(mel(20.0), mel(feat_rate / 2 - 400), 32)
    fm = mel(np.fft.rfftfreq(nfft, 1 / feat_rate))
    fb = np.maximum(
        0,
        np.minimum(
            (fm - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None]),
            (edges[2:, None] - fm) / (edges[2:, None] - edges[1:-1, None]),
        ),
    )
    logmel = np.log(power @ fb.T + 1e-6)
    dct = np.cos(np.pi / 30 * (np.arange(30)[None] + 0.5) * np.arange(num_ceps)[:, None])
    ceps = logmel @ dct.T
    energy = np.log(np.sum(frames**2, 1) + 1e-10)
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
    wav = dict(line.split(None, 1) for line in Path(data_dir, "wav.scp").read_text().splitlines())
    u2s = dict(line.split() for line in Path(data_dir, "utt2spk").read_text().splitlines())
    keys = sorted(wav)
    vecs = []
    for k in keys:
        x, rate = sf.read(wav[k].strip())
        vecs.append(utt_stats(x, rate, feat_rate, cmn))
    return keys, np.array(vecs), u2s


def lda(x: np.ndarray, labels: list[str], dim: int) -> np.ndarray:
    """(in_dim, dim) LDA projection maximising between/within scatter (within-class whitened)."""
    labels = np.array(labels)
    mu = x.mean(0)
    sw = np.zeros((x.shape[1],) * 2)
    sb = np.zeros_like(sw)
    for s in np.unique(labels):
        xs = x[labels == s]
        m = xs.mean(0)
        sw += (xs - m).T @ (xs - m)
        sb += len(xs) * np.outer(m - mu, m - mu)
    sw = sw / len(x) + 1e-6 * np.eye(len(sw))
    vals, vecs = eigh(sb / len(x), sw)
    return vecs[:, ::-1][:, :dim]


def eer(scores: np.ndarray, targets: np.ndarray) -> float:
    """Equal error rate (%) of scores with boolean target labels."""
    order = np.argsort(scores)
    t = targets[order]
    fnr = np.cumsum(t) / t.sum()  # targets rejected at threshold after i
    fpr = 1 - np.cumsum(~t) / (~t).sum()
    i = np.argmin(np.abs(fnr - fpr))
    return 100 * float((fnr[i] + fpr[i]) / 2)


def score(trials: str, enroll, test, proj, mean) -> float:
    """EER (%) of cosine scoring `(x - mean) @ proj`, enrollment averaged per model."""

    def embed(vectors):
        y = (vectors - mean) @ proj
        return y / np.linalg.norm(y, axis=1, keepdims=True)

    ek, ev, eu2s = enroll
    tk, tv, _ = test
    e = embed(ev)
    models = {}
    for k, v in zip(ek, e, strict=True):
        models.setdefault(eu2s[k], []).append(v)
    models = {m: np.mean(v, 0) / np.linalg.norm(np.mean(v, 0)) for m, v in models.items()}
    tindex = dict(zip(tk, embed(tv), strict=True))
    s, t = [], []
    for line in Path(trials).read_text().splitlines():
        m, u, lab = line.split()
        s.append(models[m] @ tindex[u])
        t.append(lab == "target")
    return eer(np.array(s), np.array(t))


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
