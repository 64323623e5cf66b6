"""Wave tables as Kaldi's WaveHolder: wav-copy, wav-to-duration, extract-segments; copy-int-vector."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from xvjax import cli
from xvjax.errors import XvjaxError
from xvjax.kaldi import audio, tables
from xvjax.kaldi.audio import WAVE_CODEC, Wave

# samples of each fixture wav (audio/MANIFEST.md, from soxi)
SAMPLES = {"u1_16k": 209428, "u2_16k": 56355, "u5_16k": 8286, "u6_16k_silence": 32000,
           "u7_16k_long": 475211, "u3_8k": 54407, "u4_8k": 18502}  # fmt: skip


@pytest.fixture
def wav_scp(kaldi_fixtures, tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text(
        "".join(f"{k} {kaldi_fixtures / 'audio' / (k + '.wav')}\n" for k in sorted(SAMPLES))
    )
    return scp


@pytest.mark.parametrize("entire", [False, True])
def test_wav_to_duration(wav_scp, tmp_path, entire):
    out = tmp_path / "utt2dur"
    argv = ["wav-to-duration", f"--read-entire-file={str(entire).lower()}", f"scp:{wav_scp}"]
    assert cli.run(argv + [f"ark,t:{out}"]) == 0
    got = dict(line.split() for line in out.read_text().splitlines())
    for key, n in SAMPLES.items():
        rate = 8000 if key.endswith("8k") else 16000
        assert got[key] == f"{np.float32(n) / np.float32(rate):.7g}"


def test_streamed_wav_header(kaldi_fixtures, tmp_path, capsys):
    """A header with unknown sizes (sox to a pipe): only --read-entire-file knows the length."""
    data = bytearray((kaldi_fixtures / "audio" / "u5_16k.wav").read_bytes())
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    streamed = tmp_path / "s.wav"
    streamed.write_bytes(bytes(data))
    scp = tmp_path / "s.scp"
    scp.write_text(f"s cat {streamed} |\n")
    assert cli.run(["wav-to-duration", f"scp:{scp}", "ark,t:-"]) == 1
    assert "no duration in header" in capsys.readouterr().err
    assert cli.run(["wav-to-duration", "--read-entire-file=true", f"scp:{scp}", "ark,t:-"]) == 0
    assert capsys.readouterr().out == "s 0.517875 \n"


def test_wav_copy_tables_and_files(wav_scp, kaldi_fixtures, tmp_path):
    ark = tmp_path / "w.ark"
    assert cli.run(["wav-copy", f"scp:{wav_scp}", f"ark,scp:{ark},{tmp_path / 'w.scp'}"]) == 0
    waves = tables.read_dict(f"scp:{tmp_path / 'w.scp'}", kind=WAVE_CODEC)
    assert {k: w.data.shape for k, w in waves.items()} == {k: (1, n) for k, n in SAMPLES.items()}
    ref = audio.read_wav_entry(str(kaldi_fixtures / "audio" / "u2_16k.wav"))[0]
    assert np.array_equal(waves["u2_16k"].data[0], ref)
    # an archive member back to a file: the original bytes (canonical 44-byte header)
    offset = dict(tables.read_scp(str(tmp_path / "w.scp")))["u2_16k"]
    out = tmp_path / "u2.wav"
    assert cli.run(["wav-copy", offset, str(out)]) == 0
    assert out.read_bytes() == (kaldi_fixtures / "audio" / "u2_16k.wav").read_bytes()
    assert cli.run(["wav-copy", f"scp:{wav_scp}", f"ark,t:{tmp_path / 't.ark'}"]) == 1
    assert cli.run(["wav-copy", f"scp:{wav_scp}", str(tmp_path / "x.wav")]) == 1  # mixed


def test_wave_write_truncates_and_clips_like_kaldi():
    wave = Wave(np.array([[1.9, -1.9, 40000.0, -40000.0, 0.5]], np.float32), 8000)
    data = audio.wave_bytes(wave)
    assert len(data) == 44 + 10
    assert np.frombuffer(data[44:], "<i2").tolist() == [1, -1, 32767, -32768, 0]
    stereo = Wave(np.array([[1, 2], [3, 4]], np.float32), 16000)
    import io

    back = audio.read_wave(io.BytesIO(audio.wave_bytes(stereo)))
    assert np.array_equal(back.data, stereo.data) and back.rate == 16000


def test_extract_segments(wav_scp, kaldi_fixtures, tmp_path, capsys):
    segments = tmp_path / "segments"
    segments.write_text(
        "a u1_16k 0.50003 2.0\n"  # start rounds to the nearest sample (8000.48 -> 8000)
        "b u1_16k 12.9 13.3\n"  # small overshoot: truncated at the end
        "c u2_16k 1 -1\n"  # -1: to the end
        "d u1_16k 14 15\n"  # starts past the end: skipped
        "e u1_16k 1.0 1.05\n"  # too short: skipped
        "f nothere 1 2\n"  # no recording: skipped
        "g u1_16k 1 2 3\n"  # no channel 3: skipped
        "bad line\n"
    )
    out = tmp_path / "seg.ark"
    assert cli.run(["extract-segments", f"scp:{wav_scp}", str(segments), f"ark:{out}"]) == 0
    assert "Successfully processed 3 lines out of 8" in capsys.readouterr().err
    segs = tables.read_dict(f"ark:{out}", kind=WAVE_CODEC)
    u1 = audio.read_wav_entry(str(kaldi_fixtures / "audio" / "u1_16k.wav"))[0]
    u2 = audio.read_wav_entry(str(kaldi_fixtures / "audio" / "u2_16k.wav"))[0]
    assert np.array_equal(segs["a"].data[0], u1[8000:32000])
    assert np.array_equal(segs["b"].data[0], u1[206400:])
    assert np.array_equal(segs["c"].data[0], u2[16000:])
    assert audio.segment_bounds(0.50004, 2.0, 16000, 209428) == (8001, 32000)


def test_segment_bounds_errors():
    with pytest.raises(XvjaxError, match="too far past"):
        audio.segment_bounds(12.9, 13.6, 16000, 209428)  # > 13.08925 + 0.5
    assert audio.segment_bounds(12.9, 13.5, 16000, 209428) == (206400, 209428)
    with pytest.raises(XvjaxError, match="shorter"):
        audio.segment_bounds(13.0, 13.5, 16000, 209428)  # truncated to 0.089 s


def test_copy_int_vector(tmp_path):
    src = tmp_path / "ali.txt"
    src.write_text("u1 1 2 3\nu2 7\n")
    out = tmp_path / "ali.ark"
    assert cli.run(["copy-int-vector", f"ark,t:{src}", f"ark:{out}"]) == 0
    back = tables.read_dict(f"ark:{out}", kind="int32_vector")
    assert {k: v.tolist() for k, v in back.items()} == {"u1": [1, 2, 3], "u2": [7]}
    single = tmp_path / "v"
    assert cli.run(["copy-int-vector", "--binary=false", f"{out}:3", str(single)]) == 0
    assert single.read_text() == "1 2 3 \n"
