"""The built-in demo corpus: determinism, layout, Kaldi data dir validity, rates, band, trials."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xvjax import cli, metrics
from xvjax.kaldi import datadir
from xvjax.synthetic import channel, check, voice
from xvjax.synthetic import corpus as demo_corpus
from xvjax.synthetic.domains import SOURCE, TARGET, render_utterance, speaker_traits

# A corpus small enough to write twice in a few seconds, with every part present.
MICRO = dict(
    min_dur=1.0,
    max_dur=1.5,
    source_train_spk=3,
    source_train_utts=2,
    source_eval_spk=2,
    target_train_spk=2,
    target_train_utts=2,
    target_adapt_spk=2,
    target_adapt_utts=2,
    target_eval_spk=3,
    enroll_utts=1,
    test_utts=2,
    musan_noise=2,
    musan_music=1,
    musan_speech=1,
    musan_dur=1.5,
    rir_rooms=1,
    rirs_per_room=2,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    cfg = demo_corpus.preset("tiny", **MICRO)
    paths = demo_corpus.make_corpus(out, cfg, num_jobs=1, preset_name="micro")
    return out, cfg, paths


def _files(root: Path) -> dict[str, bytes]:
    """relative path -> bytes, with the absolute root in text files replaced."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix != ".wav":
                data = data.replace(str(root.resolve()).encode(), b"ROOT")
            out[str(p.relative_to(root))] = data
    return out


def test_same_seed_same_bytes_whatever_num_jobs(corpus, tmp_path):
    out, cfg, _ = corpus
    demo_corpus.make_corpus(tmp_path / "again", cfg, num_jobs=2, preset_name="micro")
    first, second = _files(out), _files(tmp_path / "again")
    assert sorted(first) == sorted(second)
    assert [k for k in first if first[k] != second[k]] == []
    # ... and another seed gives other audio.
    other = demo_corpus.make_corpus(
        tmp_path / "other", dataclasses.replace(cfg, seed=cfg.seed + 1), num_jobs=1
    )
    wav = sorted(Path(other["source_train"], "..", "..", "wav").resolve().rglob("*.wav"))[0]
    assert wav.read_bytes() != (out / wav.relative_to(wav.parents[3])).read_bytes()


def test_existing_corpus_is_not_regenerated(corpus):
    out, cfg, _ = corpus
    stamp = os.stat(out / "corpus.json").st_mtime_ns
    demo_corpus.make_corpus(out, cfg, num_jobs=1, preset_name="micro")
    assert os.stat(out / "corpus.json").st_mtime_ns == stamp


def _utt2spk(path) -> dict[str, str]:
    return dict(line.split() for line in Path(path, "utt2spk").read_text().splitlines())


def test_data_dirs_are_valid_kaldi_data_dirs(corpus):
    out, cfg, paths = corpus
    for name in demo_corpus.SETS:
        datadir.validate_data_dir(paths[name], check_files=True)
        for table in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
            keys = [line.split()[0] for line in Path(paths[name], table).read_text().splitlines()]
            assert keys == sorted(keys, key=str.encode) and len(set(keys)) == len(keys)
        u2s = _utt2spk(paths[name])
        assert all(u.startswith(s) for u, s in u2s.items()), name
        spk2utt = {
            line.split()[0]: line.split()[1:]
            for line in Path(paths[name], "spk2utt").read_text().splitlines()
        }
        assert sorted(u for us in spk2utt.values() for u in us) == sorted(u2s)
        assert all(u2s[u] == s for s, us in spk2utt.items() for u in us)
    # Unlabelled adaptation set: every utterance is its own speaker, ids reveal nothing.
    adapt = _utt2spk(paths["target_adapt"])
    assert all(u == s and u.startswith("tgtadapt-") for u, s in adapt.items())
    assert len(adapt) == cfg.target_adapt_spk * cfg.target_adapt_utts
    assert not Path(paths["target_adapt"], "spk2gender").exists()
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["config"] == dataclasses.asdict(cfg) and meta["seed"] == cfg.seed
    assert meta["sets"]["source_train"]["num_utts"] == cfg.source_train_spk * cfg.source_train_utts


def test_speakers_are_disjoint_across_sets(corpus):
    out, cfg, paths = corpus
    truth = dict(
        line.split() for line in (out / "truth" / "target_adapt.utt2spk").read_text().splitlines()
    )
    assert sorted(truth) == sorted(_utt2spk(paths["target_adapt"]))
    spk = {name: set(_utt2spk(paths[name]).values()) for name in demo_corpus.SETS}
    spk["target_adapt"] = set(truth.values())
    assert spk["source_eval_enroll"] == spk["source_eval_test"]
    assert spk["target_enroll"] == spk["target_test"]
    groups = ["source_train", "source_eval_test", "target_train", "target_adapt", "target_test"]
    for i, a in enumerate(groups):
        for b in groups[i + 1 :]:
            assert not spk[a] & spk[b], (a, b)
    assert len(spk["target_adapt"]) == cfg.target_adapt_spk
    # Different utterances in enrollment and test.
    assert not set(_utt2spk(paths["target_enroll"])) & set(_utt2spk(paths["target_test"]))


def test_trials(corpus):
    _, cfg, paths = corpus
    for trials, enroll, test, num_spk in (
        ("source_eval_trials", "source_eval_enroll", "source_eval_test", cfg.source_eval_spk),
        ("target_trials", "target_enroll", "target_test", cfg.target_eval_spk),
    ):
        lines = [line.split() for line in Path(paths[trials]).read_text().splitlines()]
        models = set(_utt2spk(paths[enroll]).values())
        test_u2s = _utt2spk(paths[test])
        assert all(len(f) == 3 and f[2] in ("target", "nontarget") for f in lines)
        assert {f[0] for f in lines} == models and {f[1] for f in lines} == set(test_u2s)
        assert all((f[2] == "target") == (test_u2s[f[1]] == f[0]) for f in lines)
        num_tar = sum(f[2] == "target" for f in lines)
        assert num_tar == num_spk * cfg.test_utts
        assert len(lines) - num_tar == num_spk * cfg.test_utts * (num_spk - 1)


def _band_energy(x: np.ndarray, rate: int, lo: float, hi: float = 1e9) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


def test_rates_and_telephone_band(corpus):
    _, cfg, paths = corpus
    for name in demo_corpus.SETS:
        want = cfg.source_rate if name.startswith("source") else cfg.target_rate
        for line in Path(paths[name], "wav.scp").read_text().splitlines():
            info = sf.info(line.split(None, 1)[1])
            assert (info.samplerate, info.channels, info.subtype) == (want, 1, "PCM_16")
    src = [sf.read(v.split()[1])[0] for v in Path(paths["source_train"], "wav.scp").open()]
    tgt = [sf.read(v.split()[1])[0] for v in Path(paths["target_train"], "wav.scp").open()]
    # The telephone target has next to no energy above 3.5 kHz (only the mu-law quantisation
    # floor, about -47 dB), and little below 200 Hz; the wideband source has real energy there.
    assert max(_band_energy(x, 8000, 3500) for x in tgt) < 1e-4
    assert min(_band_energy(x, 16000, 3500) for x in src) > 10 * max(
        _band_energy(x, 8000, 3500) for x in tgt
    )
    assert max(_band_energy(x, 8000, 0, 200) for x in tgt) < 1e-2
    # The 16 kHz flavour of the target domain is the same narrowband call, upsampled.
    cfg16 = dataclasses.replace(cfg, target_rate=16000)
    x16, rate = render_utterance(
        TARGET, speaker_traits(1, TARGET, 1), np.random.default_rng(3), cfg16
    )
    assert rate == 16000 and _band_energy(x16, 16000, 3500) < 1e-4


def test_musan_and_rirs_layout(corpus):
    out, cfg, paths = corpus
    musan = Path(paths["musan"])
    for kind, count in (
        ("noise", cfg.musan_noise),
        ("music", cfg.musan_music),
        ("speech", cfg.musan_speech),
    ):
        wavs = sorted((musan / kind).glob("*.wav"))
        assert len(wavs) == count
        for w in wavs:
            x, rate = sf.read(w)
            assert rate == 16000 and len(x) == int(cfg.musan_dur * 16000) and np.std(x) > 1e-3
    # music/ANNOTATIONS as Kaldi's make_musan.py reads it: utt genres vocals(Y/N) musician.
    notes = [line.split() for line in (musan / "music" / "ANNOTATIONS").read_text().splitlines()]
    assert {f[0] + ".wav" for f in notes} == {w.name for w in (musan / "music").glob("*.wav")}
    assert all(len(f) >= 4 and f[2] in ("Y", "N") for f in notes)
    for size in ("smallroom", "mediumroom", "largeroom"):
        lines = Path(paths[f"rir_list_{size}"]).read_text().splitlines()
        assert len(lines) == cfg.rir_rooms * cfg.rirs_per_room
        for line in lines:
            f = line.split()
            assert f[0] == "--rir-id" and f[2] == "--room-id" and len(f) == 5
            assert f[1].startswith(f[3] + "-") and f[3].startswith(size + "-Room")
            assert f[4].startswith("RIRS_NOISES/simulated_rirs/" + size + "/")
            h, rate = sf.read(out / f[4])  # relative to the parent of RIRS_NOISES
            assert rate == 16000 and 0.5 < np.max(np.abs(h)) <= 0.91
            peak = int(np.argmax(np.abs(h)))
            assert peak < 0.02 * rate and np.sum(h[peak + 800 :] ** 2) > 0  # direct path, tail


def test_voice_traits_drive_pitch():
    rng = np.random.default_rng(5)
    for f0 in (100.0, 220.0):
        traits = dataclasses.replace(
            voice.sample_traits(rng, voice.TraitDistribution()),
            f0=f0,
            f0_range_st=1.0,
        )
        x = voice.synthesize(rng, traits, voice.Session(), voice.LANGUAGE_A, 2.0)
        assert len(x) == 32000 and np.all(np.isfinite(x)) and np.max(np.abs(x)) < 1
        # Median autocorrelation pitch over loud frames.
        frames = x[: len(x) // 640 * 640].reshape(-1, 640)
        frames = frames[np.mean(frames**2, 1) > 0.3 * np.mean(frames**2, 1).max()]
        lags = np.arange(40, 200)  # 80..400 Hz
        pitches = []
        for fr in frames:
            fr = fr - fr.mean()
            ac = np.array([fr[:-lag] @ fr[lag:] for lag in lags])
            pitches.append(16000 / lags[np.argmax(ac)])
        assert abs(np.median(pitches) / f0 - 1) < 0.15, (f0, np.median(pitches))


def test_speaker_identity_is_in_the_voice_not_the_content():
    """Utterances with random content: same-speaker pairs score above different-speaker pairs."""
    cfg = demo_corpus.preset("tiny")
    vecs, labels = [], []
    for spk in range(8):
        traits = speaker_traits(11, SOURCE, spk)
        for utt in range(3):
            x, rate = render_utterance(SOURCE, traits, np.random.default_rng([11, spk, utt]), cfg)
            vecs.append(check.utt_stats(x, rate, 16000))
            labels.append(spk)
    v = np.array(vecs)
    v = (v - v.mean(0)) / v.std(0)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    scores = v @ v.T
    same = np.equal.outer(labels, labels)
    pairs = np.triu_indices(len(v), 1)
    tar, non = scores[pairs][same[pairs]], scores[pairs][~same[pairs]]
    auc = np.mean(tar[:, None] > non[None, :])
    assert auc > 0.8, auc  # 0.5 if identity were not in the voice
    # Kaldi's EER agrees: well below chance.
    eer, _ = metrics.compute_eer(
        np.concatenate([tar, non]), np.arange(len(tar) + len(non)) < len(tar)
    )
    assert eer < 0.30, eer


def test_mu_law_and_snr():
    x = np.linspace(-1, 1, 1001)
    y = channel.mu_law(x)
    assert np.all(np.abs(y - x) <= 0.025 * np.abs(x) + 1e-3) and len(np.unique(y)) <= 256
    rng = np.random.default_rng(0)
    s, n = rng.standard_normal(16000), rng.standard_normal(16000)
    mix = channel.add_at_snr(s, n, 10.0, 16000)
    noise_part = mix - s
    snr = 10 * np.log10(channel.active_power(s, 16000) / np.mean(noise_part**2))
    assert abs(snr - 10.0) < 1e-6


def test_cli_writes_corpus_and_rejects_bad_options(tmp_path, capsys):
    args = [f"--{k.replace('_', '-')}={v}" for k, v in MICRO.items()]
    out = tmp_path / "c"
    assert (
        cli.run(["make-demo-corpus", "--preset=tiny", "--num-jobs=1", "--seed=9", *args, str(out)])
        == 0
    )
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["seed"] == 9 and meta["preset"] == "tiny"
    assert meta["config"] == dataclasses.asdict(demo_corpus.preset("tiny", seed=9, **MICRO))
    assert cli.run(["make-demo-corpus", "--target-rate=11025", str(tmp_path / "bad")]) == 1
    assert "--target-rate must be 8000 or 16000" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "corpus.json").exists()
    assert cli.run(["make-demo-corpus", "--preset=huge", str(tmp_path / "bad")]) == 1
    assert "unknown corpus preset 'huge'" in capsys.readouterr().err
    assert cli.run(["make-demo-corpus", "--target-reverb-prob=1.5", str(tmp_path / "bad")]) == 1
    assert "--target-reverb-prob must be in [0, 1]" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli.run(["make-demo-corpus", str(tmp_path / "file")]) == 1
    assert "cannot create the corpus directory" in capsys.readouterr().err


def test_cli_options_cover_the_config():
    from xvjax.synthetic.commands import _CORPUS_FIELDS

    names = {f.name for f in dataclasses.fields(demo_corpus.CorpusConfig)}
    assert {n.replace("-", "_") for n, _, _ in _CORPUS_FIELDS} == names
