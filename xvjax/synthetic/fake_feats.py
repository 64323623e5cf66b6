"""Feature-level fake speaker data for tests and benchmarks (no audio): Kaldi data dirs in seconds.

Frame t of an utterance of speaker s in domain d is
    x_t = C_d (phone_mean[k(t)] + spk_mean[s]) + channel_offset_d + noise_scale * e_t
with phone-like segments k(t) of 3-12 frames shared by all speakers, speaker means whose spread sets
how separable the speakers are, and a per-domain linear channel C_d (identity for domain 0) so that a
model trained on one domain transfers imperfectly to the other.
"""

from __future__ import annotations

import os

import numpy as np

from xvjax.kaldi import tables


def write_fake_data_dir(
    path: str,
    num_speakers: int = 8,
    utts_per_speaker: int = 4,
    feat_dim: int = 8,
    min_frames: int = 80,
    max_frames: int = 160,
    seed: int = 0,
    domain: int = 0,
    spk_scale: float = 0.6,
    noise_scale: float = 0.8,
    num_phones: int = 12,
    spk_prefix: str = "spk",
    with_vad: bool = False,
) -> dict[str, str]:
    """Writes feats.ark/feats.scp, utt2spk, spk2utt, utt2num_frames (and vad.scp) to `path`.

    Speakers `{spk_prefix}{i}` are drawn from `seed`; the phone inventory and the channel from
    `domain` only, so two dirs with different seeds and the same domain share the channel.
    Returns utt2spk.
    """
    os.makedirs(path, exist_ok=True)
    dom_rng = np.random.default_rng([1234, domain])
    phones = np.random.default_rng(99).normal(size=(num_phones, feat_dim)) * 1.5
    if domain == 0:
        channel, offset = np.eye(feat_dim), np.zeros(feat_dim)
    else:
        q, _ = np.linalg.qr(dom_rng.normal(size=(feat_dim, feat_dim)))
        channel = 0.5 * np.eye(feat_dim) + 0.7 * q
        offset = dom_rng.normal(size=feat_dim)
    rng = np.random.default_rng([seed, domain, 7])
    feats, utt2spk, utt2len, vad = {}, {}, {}, {}
    for s in range(num_speakers):
        spk = f"{spk_prefix}{s:03d}"
        mean = rng.normal(size=feat_dim) * spk_scale * np.sqrt(feat_dim)
        mean *= spk_scale / max(np.linalg.norm(mean) / np.sqrt(feat_dim), 1e-9)
        for u in range(utts_per_speaker):
            utt = f"{spk}-u{u:02d}"
            n = int(rng.integers(min_frames, max_frames + 1))
            ks, t = [], 0
            while t < n:
                seg = int(rng.integers(3, 13))
                ks += [int(rng.integers(num_phones))] * seg
                t += seg
            clean = phones[np.asarray(ks[:n])] + mean
            x = clean @ channel.T + offset + noise_scale * rng.normal(size=(n, feat_dim))
            feats[utt] = x.astype(np.float32)
            utt2spk[utt] = spk
            utt2len[utt] = n
            vad[utt] = (rng.random(n) > 0.1).astype(np.float32)
    ark = os.path.join(os.path.abspath(path), "feats.ark")
    scp = os.path.join(os.path.abspath(path), "feats.scp")
    with tables.Writer(f"ark,scp:{ark},{scp}") as w:
        for utt in sorted(feats):
            w[utt] = feats[utt]
    if with_vad:
        vark = os.path.join(os.path.abspath(path), "vad.ark")
        vscp = os.path.join(os.path.abspath(path), "vad.scp")
        with tables.Writer(f"ark,scp:{vark},{vscp}") as w:
            for utt in sorted(vad):
                w[utt] = vad[utt]
    with open(os.path.join(path, "utt2spk"), "w") as f:
        f.writelines(f"{u} {utt2spk[u]}\n" for u in sorted(utt2spk))
    spk2utt: dict[str, list[str]] = {}
    for u in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[u], []).append(u)
    with open(os.path.join(path, "spk2utt"), "w") as f:
        f.writelines(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items()))
    with open(os.path.join(path, "utt2num_frames"), "w") as f:
        f.writelines(f"{u} {utt2len[u]}\n" for u in sorted(utt2len))
    return utt2spk


def write_trials(
    path: str, utt2spk: dict[str, str], seed: int = 0, max_nontarget_per_utt: int = 0
) -> None:
    """All utterance pairs (u < v) as Kaldi trials, target when same speaker."""
    utts = sorted(utt2spk)
    rng = np.random.default_rng(seed)
    lines = []
    for i, a in enumerate(utts):
        others = utts[i + 1 :]
        non = [b for b in others if utt2spk[b] != utt2spk[a]]
        if max_nontarget_per_utt and len(non) > max_nontarget_per_utt:
            non = list(rng.choice(non, max_nontarget_per_utt, replace=False))
        for b in others:
            if utt2spk[b] == utt2spk[a]:
                lines.append(f"{a} {b} target\n")
        lines += [f"{a} {b} nontarget\n" for b in sorted(non)]
    with open(path, "w") as f:
        f.writelines(lines)
