"""On-the-fly features from audio: chunks equal the offline pipeline's rows; keyed augmentation."""

import dataclasses
import os

import numpy as np
import pytest

from xvjax.data import chunks
from xvjax.data.audio_source import AudioStore
from xvjax.features.options import VOXCELEB_MFCC
from xvjax.kaldi.audio import write_wav

RATE = 16000
MFCC = dataclasses.replace(VOXCELEB_MFCC, dither=0.0)


def _voice(rng, f0, seconds):
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    env = np.zeros(n)
    pos = 0
    while pos < n:  # syllables with pauses, so the energy VAD has something to drop
        on, off = int(rng.integers(2000, 6000)), int(rng.integers(800, 3000))
        env[pos : pos + on] = 1.0
        pos += on + off
    return 3000 * x * env + 30 * rng.normal(size=n)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    data = root / "train"
    os.makedirs(data)
    rng = np.random.default_rng(0)
    wav_lines, utt_lines = [], []
    for s, f0 in enumerate((110.0, 150.0, 210.0)):
        for u in range(2):
            utt = f"spk{s}-u{u}"
            path = root / f"{utt}.wav"
            write_wav(str(path), _voice(rng, f0, 2.5 + 0.5 * u), RATE)
            wav_lines.append(f"{utt} {path}\n")
            utt_lines.append(f"{utt} spk{s}\n")
    (data / "wav.scp").write_text("".join(wav_lines))
    (data / "utt2spk").write_text("".join(utt_lines))
    for kind in ("noise", "music", "speech"):
        os.makedirs(root / "musan" / kind)
        write_wav(str(root / "musan" / kind / f"{kind}1.wav"), 2000 * rng.normal(size=RATE), RATE)
    return str(data), str(root / "musan")


def _sampler(store, batch=4):
    table, _ = chunks.build_utt_table(store.utt2len, store.utt2spk, min_len=100)
    cfg = chunks.ChunkConfig(
        min_chunk=100, max_chunk=100, frames_per_archive=1000, num_repeats=4, batch_size=batch
    )
    return chunks.ChunkSampler(table, cfg)


def test_audio_chunks_equal_offline_pipeline_rows(audio_dir):
    data, _ = audio_dir
    store = AudioStore(data, mfcc_opts=MFCC)
    assert store.feat_dim == 30
    for utt, n in store.utt2len.items():
        assert 100 < n < store.num_frames[utt]  # VAD dropped the pauses
    sampler = _sampler(store)
    loader = store.make_loader(sampler, prefetch=0)
    ref = _sampler(store)
    for _ in range(3):
        batch, spec = next(loader), next(ref)
        for row in range(4):
            utt = ref.table.utt_ids[spec.utt_idx[row]]
            whole = store.load(utt)
            want = whole[spec.offsets[row] : spec.offsets[row] + 100]
            np.testing.assert_allclose(batch.feats[row], want, rtol=0, atol=2e-3)


def test_augmented_batches_are_keyed_and_resumable(audio_dir):
    data, musan = audio_dir
    from xvjax.features.noise_banks import load_sources

    sources = load_sources(noise=[musan], music=[musan], speech=[musan], sample_rate=RATE)
    store = AudioStore(data, mfcc_opts=MFCC, sources=sources, aug_prob=1.0, seed=5)
    clean = AudioStore(data, mfcc_opts=MFCC)
    a = [next(store.make_loader(_sampler(store), prefetch=0)) for _ in range(1)][0]
    loader = store.make_loader(_sampler(store), prefetch=0)
    b = [next(loader) for _ in range(3)]
    np.testing.assert_array_equal(a.feats, b[0].feats)  # same key -> same batch
    c = next(clean.make_loader(_sampler(clean), prefetch=0))
    assert np.abs(a.feats - c.feats).max() > 0.1  # augmentation changed the features
    again = store.make_loader(_sampler(store), prefetch=0)
    again.load_state_dict(b[0].position)
    np.testing.assert_array_equal(next(again).feats, b[1].feats)


def test_train_data_from_audio_config(audio_dir):
    from xvjax.train.config import base_config
    from xvjax.train.input_pipeline import build_data

    data, musan = audio_dir
    c = base_config()
    c.data.source, c.data.train_dir, c.data.musan, c.data.aug_prob = "audio", data, musan, 0.5
    c.data.min_chunk = c.data.max_chunk = 100
    c.data.min_utts_per_spk = 1
    c.train.batch_size = 4
    td = build_data(c)
    assert td.num_speakers == 3 and td.feat_dim == 30
    batch = next(td.loader)
    assert batch.feats.shape == (4, 100, 30) and np.isfinite(batch.feats).all()
    td.loader.close()
    c.data.musan = ""
    from xvjax.errors import XvjaxError

    with pytest.raises(XvjaxError, match="--musan"):
        build_data(c)


def test_augmented_batches_do_not_depend_on_workers_and_resume_exactly(audio_dir):
    import threading

    data, musan = audio_dir
    from xvjax.features.noise_banks import load_sources

    sources = load_sources(noise=[musan], music=[musan], speech=[musan], sample_rate=RATE)
    store = AudioStore(data, mfcc_opts=VOXCELEB_MFCC, sources=sources, aug_prob=0.7, seed=2)
    assert store.mfcc_opts.dither > 0  # dither keyed per batch too

    before = {t for t in threading.enumerate() if t.name.startswith("xvjax-data")}

    def take(loader, n):
        out = [next(loader) for _ in range(n)]
        loader.close()
        return out

    run = take(store.make_loader(_sampler(store), num_workers=0), 4)
    got = take(store.make_loader(_sampler(store), prefetch=1, num_workers=3), 4)
    again = store.make_loader(_sampler(store), num_workers=2)
    again.load_state_dict(run[1].position)
    for g, w in zip(got + take(again, 2), run + run[2:], strict=True):
        np.testing.assert_array_equal(g.feats, w.feats)
        assert g.position == w.position
    assert {t for t in threading.enumerate() if t.name.startswith("xvjax-data")} <= before
