"""`xvjax wav-reverberate`: Kaldi's algorithm (src/featbin/wav-reverberate.cc) on one waveform,
and its agreement with the batched jnp augmentation that shares its formulas."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from xvjax import cli
from xvjax.features import reverberate as R
from xvjax.kaldi import tables
from xvjax.kaldi.audio import WAVE_CODEC, Wave


def _write(path, samples, rate=8000):
    tables.write_object(str(path), Wave(np.atleast_2d(samples).astype(np.float32), rate),
                        codec=WAVE_CODEC)  # fmt: skip
    return str(path)


def _read(path) -> np.ndarray:
    return tables.read_object(str(path), WAVE_CODEC).data


@pytest.fixture
def speech():
    rng = np.random.default_rng(0)
    return np.round(rng.normal(0, 2000, 8000)).astype(np.float32)


def test_additive_noise_at_snr(tmp_path, speech):
    """Noise scaled to the SNR against the speech power (noise power over its own length +
    FLT_EPSILON), added from its start time and cut at the end; no normalisation asked."""
    rng = np.random.default_rng(1)
    noise = np.round(rng.normal(0, 500, 3000)).astype(np.float32)
    src, nz, out = (
        _write(tmp_path / "s.wav", speech),
        _write(tmp_path / "n.wav", noise),
        tmp_path / "o.wav",
    )
    argv = ["wav-reverberate", f"--additive-signals={nz},{nz}", "--snrs=10,0", "--start-times=0.5,0.9",
            "--normalize-output=false", src, str(out)]  # fmt: skip
    assert cli.run(argv) == 0
    got = _read(out)[0]
    gain10 = np.sqrt(10**-1 * R.mean_square(speech) / (R.mean_square(noise) + R.FLT_EPSILON))
    gain0 = gain10 * np.sqrt(10.0)
    want = speech.astype(np.float64).copy()
    want[4000:7000] += noise * gain10
    want[7200:8000] += noise[:800] * gain0  # 0.9 s = sample 7200; cut at the end
    assert np.array_equal(got, np.clip(np.trunc(want.astype(np.float32)), -32768, 32767))


def test_normalize_volume_duration(tmp_path, speech):
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 3000, 8000).astype(np.float32)
    src, nz = _write(tmp_path / "s.wav", speech), _write(tmp_path / "n.wav", noise)
    out = tmp_path / "o.wav"
    base = ["wav-reverberate", f"--additive-signals={nz}", "--snrs=0", "--start-times=0", src]
    assert cli.run(base + [str(out)]) == 0  # normalised back to the input's power
    assert abs(R.mean_square(_read(out)[0]) / R.mean_square(speech) - 1) < 1e-3
    assert cli.run(["wav-reverberate", "--duration=0.25", src, str(out)]) == 0
    assert np.array_equal(_read(out)[0], speech[:2000])
    assert cli.run(["wav-reverberate", "--duration=2.5", "--volume=0.5", src, str(out)]) == 0
    assert np.array_equal(_read(out)[0], np.trunc(np.tile(speech * np.float32(0.5), 3)[:20000]))


def test_rir_delta_and_shift(tmp_path, speech):
    """A RIR that is a delayed impulse (32768 = 1.0 after Kaldi's 2^-15 scale) only delays:
    --shift-output undoes the delay; without it Kaldi's output is n + rir_len - 1 samples made of
    the first n reverberated samples repeated."""
    rir = np.zeros(50, np.float32)
    rir[7] = 32767.0
    src, rx, out = (
        _write(tmp_path / "s.wav", speech),
        _write(tmp_path / "r.wav", rir),
        tmp_path / "o.wav",
    )
    assert cli.run(["wav-reverberate", f"--impulse-response={rx}", src, str(out)]) == 0
    # normalised over the whole convolution (n + 49 samples, as Kaldi): a gain sqrt((n+49)/n)
    want = speech * (32767 / 32768) * np.sqrt(8049 / 8000)
    assert np.abs(_read(out)[0] - want).max() <= 1.0  # FFT rounding before int16 truncation
    argv = ["wav-reverberate", "--shift-output=false", "--normalize-output=false"]
    assert cli.run(argv + [f"--impulse-response={rx}", src, str(out)]) == 0
    got = _read(out)[0]
    delayed = np.concatenate([np.zeros(7), speech * (32767 / 32768)])[:8000]
    assert got.shape == (8000 + 49,)
    assert np.abs(got[:8000] - delayed).max() <= 1.0
    assert np.array_equal(got[8000:], got[:49])
    assert cli.run(["wav-reverberate", "--shift-output=false", src, str(out)]) == 0
    assert _read(out).shape == (1, 7999)  # Kaldi: n + 0 - 1 without a RIR


def test_pipes_as_augment_data_dir_writes_them(tmp_path, speech):
    """The wav.scp form augment_data_dir.py writes: a background noise through a nested
    `wav-reverberate --duration` pipe and the input from a pipe."""
    src = _write(tmp_path / "s.wav", speech)
    noise = _write(tmp_path / "n.wav", np.random.default_rng(3).normal(0, 900, 3000))
    xv = f"{sys.executable} -m xvjax.cli"
    pipe = f"{xv} wav-reverberate --duration=1.0 {noise} - |"
    scp = tmp_path / "wav.scp"
    scp.write_text(f"u1 cat {src} | {xv} wav-reverberate --shift-output=true "
                   f"--additive-signals='{pipe}' --start-times='0' --snrs='15' - - |\n")  # fmt: skip
    ((key, wave),) = tables.read(f"scp:{scp}", kind=WAVE_CODEC)
    assert key == "u1" and wave.data.shape == (1, 8000)
    diff = wave.data[0] - speech
    assert 0 < R.mean_square(diff) < R.mean_square(speech) / 10


def test_matches_the_batched_augmentation(speech):
    """The jnp reverberation the trainer uses (augment.reverberate) and wav-reverberate agree."""
    import jax.numpy as jnp

    from xvjax.features import augment

    rng = np.random.default_rng(4)
    rir = (np.exp(-np.arange(400) / 60.0) * rng.normal(0, 1, 400) * 20000).astype(np.float32)
    rir[30] = 32000.0
    ours = R.reverberate_channel(speech, 8000, rir=rir)
    theirs = augment.reverberate(jnp.asarray(speech), 8000, jnp.asarray(rir / 32768.0), 400)
    assert np.abs(ours - np.asarray(theirs)).max() <= 1e-3 * np.abs(ours).max()


def test_errors(tmp_path, speech, capsys):
    src = _write(tmp_path / "s.wav", speech)
    assert cli.run(["wav-reverberate", f"--additive-signals={src}", src, "-"]) == 1
    assert "requires --snrs and --start-times" in capsys.readouterr().err
    wide = _write(tmp_path / "w.wav", speech, rate=16000)
    argv = ["wav-reverberate", f"--additive-signals={wide}", "--snrs=1", "--start-times=0", src]
    assert cli.run(argv + [str(tmp_path / "o.wav")]) == 1
    assert "sample rate 16000" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()
