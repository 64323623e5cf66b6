"""Augmentation: SNRs, reverb alignment and power, determinism, source layouts, augment-data-dir."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from xvjax.cli import run
from xvjax.features import augment, noise_banks
from xvjax.features.augment import AugmentConfig, Sources, augment_batch
from xvjax.features.datadir_jobs import augment_data_dir
from xvjax.features.noise_banks import make_bank
from xvjax.features.options import AugmentDataDirOptions

RATE = 8000
N = 6000
# one compilation for all SNRs / lengths of the tests below
add_background = jax.jit(augment.add_background, static_argnames=("count_choices",))


@pytest.fixture(scope="module")
def speech(kaldi_fixtures):
    wav, _ = soundfile.read(kaldi_fixtures / "audio" / "u4_8k.wav", dtype="int16")
    return wav[:N].astype(np.float32)


def _snr(signal, noise):
    return 10 * np.log10(
        np.mean(signal.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2)
    )


def _noise(seed, n, scale):
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


@pytest.mark.parametrize("snr", [0.0, 5.0, 8.0, 13.0, 20.0])
def test_background_snr_exact(speech, snr):
    bank = make_bank([_noise(1, 2500, 700.0)])  # shorter than the speech: repeated
    n = N - 500  # padded input: only the valid part counts
    x = np.zeros(N, np.float32)
    x[:n] = speech[:n]
    mixed, noise, gain = add_background(
        jax.random.key(0), jnp.asarray(x), n, bank, jnp.asarray([snr]), (1,)
    )
    mixed, noise = np.asarray(mixed), np.asarray(noise)
    clean = mixed[:n] - noise[:n]
    np.testing.assert_allclose(clean, float(gain) * x[:n], rtol=1e-4, atol=1e-2)
    assert abs(_snr(clean, noise[:n]) - snr) < 0.1
    assert (
        abs(np.mean(mixed[:n].astype(np.float64) ** 2) / np.mean(x[:n].astype(np.float64) ** 2) - 1)
        < 1e-3
    )
    assert not mixed[n:].any()
    # the track is the noise repeated from its start (wav-reverberate --duration)
    track = noise[:n] / noise[0] * float(bank.signals[0])
    np.testing.assert_allclose(track[2500:5000], track[:2500], rtol=1e-3, atol=1e-2)


def test_babble_each_speaker_at_its_snr(speech):
    bank = make_bank([_noise(4, 7000, 300.0)])
    mixed, noise, gain = augment.add_background(
        jax.random.key(3), jnp.asarray(speech), N, bank, (15.0,), (3,)
    )
    # one talker drawn 3 times, each scaled to 15 dB: coherent sum = 3x amplitude (9x power)
    total = _snr(np.asarray(mixed) - np.asarray(noise), np.asarray(noise))
    assert abs(total - (15.0 - 10 * np.log10(9))) < 0.1


def test_foreground_noises_placed_and_scaled(speech):
    first = _noise(5, 1500, 400.0)
    bank = make_bank([first])
    interval = 1000
    mixed, noise, gain = augment.add_foreground(
        jax.random.key(1), jnp.asarray(speech), N, bank, (5.0,), interval, 8
    )
    noise, gain = np.asarray(noise), float(gain)
    for start in (0, 2500, 5000):  # back to back with 1000-sample gaps, truncated at N
        seg = noise[start : min(start + 1500, N)]
        scale = seg / first[: len(seg)]
        np.testing.assert_allclose(scale, scale[0], rtol=1e-3)
    assert not noise[1500:2500].any() and not noise[4000:5000].any()
    # SNR of each noise against the speech (noise power over the noise's own length)
    scaled = noise[:1500]
    clean = np.asarray(mixed) - noise
    assert abs(_snr(clean, scaled) - 5.0) < 0.1


def test_reverb_compensates_rir_delay_and_keeps_power(speech):
    delay = 123
    rir = np.zeros(800, np.float32)
    rir[delay] = 32767.0
    rir[delay + 1 :] = _noise(2, 800 - delay - 1, 1500.0) * np.exp(-np.arange(800 - delay - 1) / 80)
    bank = make_bank([rir], scale=1 / 32768.0)
    out = np.asarray(augment.reverberate(jnp.asarray(speech), N, bank.segment(0), bank.lengths[0]))
    lags = np.arange(-300, 301)
    xc = [np.dot(out[max(0, k) : N + min(0, k)], speech[max(0, -k) : N - max(0, k)]) for k in lags]
    assert lags[int(np.argmax(xc))] == 0  # direct path aligned with the input
    full = np.convolve(speech.astype(np.float64), rir.astype(np.float64) / 32768.0)
    expected = full[delay : delay + N]
    gain = np.sqrt(np.mean(speech.astype(np.float64) ** 2) / (np.sum(full**2) / len(full)))
    np.testing.assert_allclose(out, expected * gain, atol=2e-2 * np.abs(expected * gain).max())
    # a pure delayed impulse gives the input back unchanged
    impulse = np.zeros(400, np.float32)
    impulse[77] = 0.5
    back = augment.reverberate(jnp.asarray(speech), N, jnp.asarray(impulse), 400)
    # Kaldi normalises by the power over the full convolution (N + 400 - 1 samples)
    np.testing.assert_allclose(
        np.asarray(back), speech * np.sqrt((N + 399) / N), rtol=1e-4, atol=0.05
    )


def _sources(speech):
    rir = np.zeros(500, np.float32)
    rir[40] = 0.9
    rir[41:] = _noise(9, 459, 0.05)
    return Sources(
        rirs=make_bank([rir]),
        noise=make_bank([_noise(1, 900, 300.0), _noise(2, 3000, 100.0)]),
        music=make_bank([_noise(3, 5000, 500.0)]),
        speech=make_bank([speech[::-1].copy(), speech[1000:].copy()]),
    )


def test_augment_batch_deterministic_and_mixed(speech):
    src = _sources(speech)
    batch = np.stack([speech] * 8)
    lengths = np.array([N, N - 7, N, 4000, N, N, 3000, N], np.int32)
    for i, n in enumerate(lengths):
        batch[i, n:] = 0.0
    cfg = AugmentConfig(probs=(0.2, 0.2, 0.2, 0.2, 0.2), sample_frequency=RATE)
    a, kinds = augment_batch(jax.random.key(7), jnp.asarray(batch), jnp.asarray(lengths), src, cfg)
    b, kinds_b = augment_batch(
        jax.random.key(7), jnp.asarray(batch), jnp.asarray(lengths), src, cfg
    )
    c, _ = augment_batch(jax.random.key(8), jnp.asarray(batch), jnp.asarray(lengths), src, cfg)
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    assert a.tobytes() == b.tobytes() and np.array_equal(kinds, kinds_b)
    assert not np.array_equal(a, c)
    for i, n in enumerate(lengths):
        assert not a[i, n:].any()
        ratio = np.mean(a[i, :n].astype(np.float64) ** 2) / np.mean(
            batch[i, :n].astype(np.float64) ** 2
        )
        # noise kinds restore the input's power; reverb normalises over n + rir_len - 1 samples
        assert abs(ratio - 1) < (0.1 if int(kinds[i]) == 1 else 1e-3)
        if int(kinds[i]) == 0:
            np.testing.assert_array_equal(a[i], batch[i])
    only_music = AugmentConfig(probs=(0, 0, 0, 1, 0), sample_frequency=RATE)
    _, k = augment_batch(jax.random.key(1), jnp.asarray(batch), jnp.asarray(lengths),
                         Sources(music=src.music), only_music)  # fmt: skip
    assert set(np.asarray(k).tolist()) == {3}


def _write(path, x, rate=RATE):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, np.asarray(x, np.int16), rate, subtype="PCM_16")


def test_source_layouts(tmp_path):
    musan = tmp_path / "musan"
    _write(str(musan / "noise" / "free-sound" / "n1.wav"), _noise(1, 1600, 300), 16000)
    _write(str(musan / "music" / "jamendo" / "m1.wav"), _noise(2, 800, 300))
    rir_root = tmp_path / "RIRS_NOISES" / "simulated_rirs" / "smallroom"
    _write(str(rir_root / "Room001" / "Room001-00001.wav"), np.r_[np.zeros(10), 20000, np.zeros(5)])
    (rir_root / "rir_list").write_text(
        "--rir-id 00001 --room-id Room001 RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00001.wav\n"
    )
    ddir = tmp_path / "noise_dir"
    _write(str(ddir / "a.wav"), _noise(3, 500, 100))
    (ddir / "wav.scp").write_text(f"a {ddir / 'a.wav'}\nb cat {ddir / 'a.wav'} |\n")
    src = noise_banks.load_sources(
        rirs=[str(rir_root / "rir_list")], noise=[str(musan)], music=[str(musan)],
        speech=[str(ddir)], sample_rate=RATE,
    )  # fmt: skip
    assert int(src.noise.lengths[0]) == 800  # 16 kHz MUSAN noise resampled to 8 kHz
    assert int(src.music.lengths[0]) == 800
    assert src.speech.size == 2
    assert abs(float(src.rirs.segment(0)[10]) - 20000 / 32768) < 1e-6
    assert int(jnp.argmax(src.rirs.segment(0))) == 10
    all_rirs = noise_banks.resolve(str(tmp_path / "RIRS_NOISES"), "rirs")
    assert len(all_rirs) == 1


def test_augment_data_dir_cli(tmp_path, speech, capsys):
    data = tmp_path / "train"
    _write(str(tmp_path / "wav" / "a.wav"), speech)
    _write(str(tmp_path / "wav" / "b.wav"), speech[:3000])
    data.mkdir()
    (data / "wav.scp").write_text(
        f"a {tmp_path / 'wav' / 'a.wav'}\nb {tmp_path / 'wav' / 'b.wav'}\n"
    )
    (data / "utt2spk").write_text("a s1\nb s2\n")
    (data / "spk2utt").write_text("s1 a\ns2 b\n")
    _write(str(tmp_path / "musan" / "music" / "m.wav"), _noise(4, 9000, 800))
    args = ["augment-data-dir", "--utt-suffix=music", f"--bg-noise-dir={tmp_path / 'musan'}",
            "--bg-snrs=15:10:8:5", "--num-bg-noises=1", "--progress=false", str(data)]  # fmt: skip
    assert run(args + [str(tmp_path / "out1")]) == 0
    assert run(args + [str(tmp_path / "out2")]) == 0
    utt2spk = (tmp_path / "out1" / "utt2spk").read_text().split()
    assert utt2spk == ["a-music", "s1", "b-music", "s2"]
    assert (tmp_path / "out1" / "utt2uniq").read_text().split() == ["a-music", "a", "b-music", "b"]
    for u, n in (("a-music", N), ("b-music", 3000)):
        one, _ = soundfile.read(tmp_path / "out1" / "wavs" / f"{u}.wav", dtype="int16")
        two, _ = soundfile.read(tmp_path / "out2" / "wavs" / f"{u}.wav", dtype="int16")
        assert len(one) == n and np.array_equal(one, two)
        orig = speech[:n].astype(np.float64)
        noise = one - orig * np.dot(one, orig) / np.dot(orig, orig)
        assert 4 < _snr(one - noise, noise) < 16
    assert run(["augment-data-dir", str(data), str(tmp_path / "bad")]) == 1
    assert "exactly one of" in capsys.readouterr().err
    # the library call the command makes
    opts = AugmentDataDirOptions(
        bg_noise_dir=str(tmp_path / "musan"), bg_snrs=(15.0, 10.0, 8.0, 5.0), utt_suffix="music"
    )
    out = augment_data_dir(str(data), str(tmp_path / "out3"), opts)
    assert sorted(out.utt2spk) == ["a-music", "b-music"]
    for name in ("utt2spk", "utt2uniq", "wavs/a-music.wav", "wavs/b-music.wav"):
        assert (tmp_path / "out3" / name).read_bytes() == (tmp_path / "out1" / name).read_bytes()


@pytest.mark.slow
def test_augment_then_prepare_feats_in_one_jitted_step(speech):
    """The trainer's on-the-fly path: augment -> MFCC -> CMN -> voiced frames, one jit."""
    from xvjax.features.frontend import prepare_feats
    from xvjax.features.options import SRE16_MFCC

    src = _sources(speech)
    cfg = AugmentConfig(sample_frequency=RATE)
    opts = SRE16_MFCC

    @jax.jit
    def step(key, wav, lengths):
        aug_key, dither_key = jax.random.split(key)
        wav, kinds = augment_batch(aug_key, wav, lengths, src, cfg)
        return prepare_feats(wav, lengths, opts, key=dither_key, fft_impl="xla")

    batch = jnp.asarray(np.stack([speech, speech]))
    lengths = jnp.asarray([N, 4000])
    feats, counts = step(jax.random.key(0), batch, lengths)
    again, _ = step(jax.random.key(0), batch, lengths)
    assert feats.shape == (2, N // 80, 23) and np.array_equal(np.asarray(feats), np.asarray(again))
    assert 0 < int(counts[1]) <= 50 and 0 < int(counts[0]) <= 75
