"""Data directories and audio: wav.scp (paths, pipes, wav archives), segments, Kaldi's int16 scale,
the validator's messages, subset/combine/fix and the data-dir commands."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile

from xvjax import cli
from xvjax.errors import XvjaxError
from xvjax.kaldi import audio, datadir, tables
from xvjax.kaldi.datadir import files


@pytest.fixture(scope="module")
def wavs(kaldi_fixtures):
    a = kaldi_fixtures / "audio"
    return {name: str(a / f"{name}.wav") for name in ("u1_16k", "u2_16k", "u3_8k", "u5_16k")}


def _int16(path: str) -> np.ndarray:
    return soundfile.read(path, dtype="int16")[0].astype(np.float32)


@pytest.fixture()
def data(tmp_path, wavs):
    utt2spk = {"a-u1": "a", "a-u2": "a", "b-u5": "b"}
    wav = {"a-u1": wavs["u1_16k"], "a-u2": f"cat {wavs['u2_16k']} |", "b-u5": wavs["u5_16k"]}
    return datadir.write_data_dir(
        str(tmp_path / "d"),
        utt2spk,
        wav_scp=wav,
        utt2dur={"a-u1": 13.09, "a-u2": 3.52, "b-u5": 0.52},
    )


# ----------------------------------------------------------------------------- audio


def test_wav_entries_keep_kaldi_int16_scale(wavs, tmp_path):
    x, sr = audio.read_wav_entry(wavs["u1_16k"])
    assert sr == 16000 and x.dtype == np.float32 and x.shape == (209428,)
    np.testing.assert_array_equal(x, _int16(wavs["u1_16k"]))
    assert x.max() == 32767.0  # peak 0.999969 of full scale, as the audio MANIFEST says
    y, sr8 = audio.read_wav_entry(
        f"sox {wavs['u3_8k']} -t wav - 2>/dev/null |" if _has("sox") else f"cat {wavs['u3_8k']} |"
    )
    assert sr8 == 8000 and y.shape == (54407,)
    np.testing.assert_array_equal(y, _int16(wavs["u3_8k"]))
    # a wav stored inside an archive at a byte offset (Kaldi's wav-copy ark output)
    blob = open(wavs["u5_16k"], "rb").read()
    (tmp_path / "w.ark").write_bytes(b"u5 " + blob + b"u2 " + open(wavs["u2_16k"], "rb").read())
    z, _ = audio.read_wav_entry(f"{tmp_path / 'w.ark'}:3")
    np.testing.assert_array_equal(z, _int16(wavs["u5_16k"]))


def _has(tool: str) -> bool:
    return any(
        os.access(os.path.join(p, tool), os.X_OK)
        for p in os.environ.get("PATH", "").split(os.pathsep)
    )


def test_unreadable_audio_is_a_clear_error(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    with pytest.raises(XvjaxError, match=r"cannot read audio '.*junk.wav'"):
        audio.read_wav_entry(str(tmp_path / "junk.wav"))
    with pytest.raises(XvjaxError, match="No such file"):
        audio.read_wav_entry(str(tmp_path / "missing.wav"))
    with pytest.raises(XvjaxError, match="exited with status|wrote nothing"):
        audio.read_wav_entry("false |")
    stereo = tmp_path / "st.wav"
    left_right = np.stack([np.arange(100), -np.arange(100)], 1).astype(np.int16)
    soundfile.write(stereo, left_right, 8000, subtype="PCM_16")
    # as Kaldi: no channel chosen -> channel 0 (with a warning: test_faults); one it lacks: error
    np.testing.assert_array_equal(audio.read_wav_entry(str(stereo))[0], left_right[:, 0])
    np.testing.assert_array_equal(audio.read_wav_entry(str(stereo), 1)[0], left_right[:, 1])
    with pytest.raises(XvjaxError, match="has 2 channels, no channel 2"):
        audio.read_wav_entry(str(stereo), channel=2)


def test_segment_bounds_follow_extract_segments():
    assert audio.segment_bounds(0.5, 2.0, 16000, 209428) == (8000, 32000)
    assert audio.segment_bounds(2.0, -1, 16000, 209428) == (32000, 209428)
    assert audio.segment_bounds(12.9, 13.3, 16000, 209428) == (206400, 209428)  # small overshoot
    for start, end, msg in [
        (13.0, 14.0, "too far past"),
        (14.0, 15.0, "past the end"),
        (1.0, 1.05, "shorter"),
        (2.0, 1.0, "invalid"),
    ]:
        with pytest.raises(XvjaxError, match=msg):
            audio.segment_bounds(start, end, 16000, 209428)


# ----------------------------------------------------------------------------- data dirs


def test_write_load_and_iter_audio(data, wavs):
    assert sorted(os.listdir(data.path)) == ["spk2utt", "utt2dur", "utt2spk", "wav.scp"]
    assert open(os.path.join(data.path, "spk2utt")).read() == "a a-u1 a-u2\nb b-u5\n"
    d = datadir.load_data_dir(data.path)
    assert d.spk2utt == {"a": ["a-u1", "a-u2"], "b": ["b-u5"]} and d.utt2dur["a-u2"] == 3.52
    got = {utt: (x, sr) for utt, x, sr in d.iter_audio()}
    np.testing.assert_array_equal(got["a-u2"][0], _int16(wavs["u2_16k"]))
    assert [len(x) for x, _ in got.values()] == [209428, 56355, 8286]


def test_segments_cut_recordings(tmp_path, wavs, caplog):
    segs = {
        "r-a": ("r", 0.5, 2.0),
        "r-b": ("r", 2.0, -1),
        "r-c": ("r", 12.9, 13.5),
        "r-d": ("r", 20.0, 21.0),
    }
    d = datadir.write_data_dir(
        str(tmp_path / "s"), {u: "r" for u in segs}, wav_scp={"r": wavs["u1_16k"]}, segments=segs
    )
    full = _int16(wavs["u1_16k"])
    got = {utt: x for utt, x, _ in d.iter_audio()}
    assert (
        list(got) == ["r-a", "r-b", "r-c"] and "r-d" in caplog.text
    )  # out of range: warned, skipped
    np.testing.assert_array_equal(got["r-a"], full[8000:32000])
    np.testing.assert_array_equal(got["r-b"], full[32000:])
    np.testing.assert_array_equal(got["r-c"], full[206400:])


@pytest.mark.parametrize(
    "edit,msg",
    [
        (
            lambda p: _append(p, "utt2spk", "a-u0 a\n"),
            "utt2spk:4: key 'a-u0' after 'b-u5': not sorted",
        ),
        (lambda p: _append(p, "utt2spk", "b-u5 b\n"), "utt2spk:4: duplicate key 'b-u5'"),
        (
            lambda p: _write(p, "spk2utt", "a a-u1\nb b-u5\n"),
            "spk2utt: speaker 'a' does not match utt2spk",
        ),
        (
            lambda p: _write(p, "utt2dur", "a-u1 13\nb-u5 1\n"),
            "utt2dur: 1 utterances missing (e.g. 'a-u2')",
        ),
        (
            lambda p: _write(p, "wav.scp", "a-u1 /no/such.wav\na-u2 x.wav |\nb-u5 /no/b.wav\n"),
            "a-u1': file '/no/such.wav' does not exist",
        ),
        (
            lambda p: _write(p, "utt2spk", "a-u1 b\na-u2 a\nb-u5 b\n"),
            "sorted consistently with speakers",
        ),
        (
            lambda p: _write_bytes(p, "utt2dur", b"a-u1 1\na-u2 \xe9\nb-u5 1\n"),
            "utt2dur:2: not UTF-8",
        ),
        (
            lambda p: _write(p, "utt2dur", "a-u1 1\na-u2 x\nb-u5 1\n"),
            "utterance 'a-u2': bad value 'x'",
        ),
        (
            lambda p: _write(
                p, "feats.scp", "a-u1 /gone.ark:3\na-u2 /gone.ark:9\nb-u5 /gone.ark:20\n"
            ),
            "file '/gone.ark' does not exist",
        ),
    ],
)
def test_validator_messages(data, edit, msg):
    assert datadir.check_data_dir(data.path) == []
    edit(data.path)
    problems = datadir.check_data_dir(data.path)
    assert any(msg in p for p in problems), problems
    with pytest.raises(XvjaxError):
        datadir.load_data_dir(data.path)


def _append(path, name, text):
    with open(os.path.join(path, name), "a") as f:
        f.write(text)


def _write(path, name, text):
    with open(os.path.join(path, name), "w") as f:
        f.write(text)


def _write_bytes(path, name, data):
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def test_subset_combine_fix(data, tmp_path, kaldi_fixtures):
    feats = tables.read_scp(str(kaldi_fixtures / "features/prepared16k.scp"))
    feats_scp = {
        u: rx.replace("prepared16k.ark", str(kaldi_fixtures / "features/prepared16k.ark"))
        for u, rx in feats
    }
    names = dict(zip(["a-u1", "a-u2", "b-u5"], ["u1_16k", "u2_16k", "u5_16k"], strict=True))
    d = datadir.write_data_dir(
        str(tmp_path / "f"),
        data.utt2spk,
        wav_scp=data.wav_scp,
        feats_scp={u: feats_scp[n] for u, n in names.items()},
    )
    mats = dict(tables.read(d.feats_rspecifier()))
    assert mats["a-u2"].shape == (324, 30)
    sub = datadir.subset_data_dir(d.path, str(tmp_path / "sub"), speakers=["a"])
    assert sub.utts == ["a-u1", "a-u2"] and set(sub.wav_scp) == {"a-u1", "a-u2"}
    assert [k for k, _ in tables.read(sub.feats_rspecifier())] == ["a-u1", "a-u2"]
    assert datadir.subset_data_dir(d.path, str(tmp_path / "n2"), num_utts=2).utts == [
        "a-u1",
        "a-u2",
    ]
    assert datadir.subset_data_dir(d.path, str(tmp_path / "last"), last=1).utts == ["b-u5"]
    with pytest.raises(XvjaxError, match="speaker 'zz' is not in"):
        datadir.subset_data_dir(d.path, str(tmp_path / "x"), speakers=["zz"])
    other = datadir.write_data_dir(
        str(tmp_path / "o"),
        {"c-u3": "c"},
        wav_scp={"c-u3": str(kaldi_fixtures / "audio/u3_8k.wav")},
        feats_scp={"c-u3": feats_scp["u1_16k"]},
    )
    comb = datadir.combine_data_dirs(str(tmp_path / "comb"), [sub.path, other.path])
    assert (
        comb.utts == ["a-u1", "a-u2", "c-u3"]
        and comb.feats_scp
        and datadir.check_data_dir(comb.path) == []
    )
    # fix: drop utterances missing from feats.scp, sort, regenerate spk2utt
    _write(
        comb.path,
        "feats.scp",
        open(os.path.join(comb.path, "feats.scp"))
        .read()
        .replace(f"a-u2 {feats_scp['u2_16k']}\n", ""),
    )
    _append(comb.path, "utt2spk", "0-first z\n")
    assert datadir.check_data_dir(comb.path)
    fixed = datadir.fix_data_dir(comb.path)
    assert fixed.utts == ["a-u1", "c-u3"] and fixed.spk2utt == {"a": ["a-u1"], "c": ["c-u3"]}
    assert datadir.check_data_dir(comb.path) == [] and os.path.exists(
        os.path.join(comb.path, ".backup/utt2spk")
    )


def test_data_dir_commands(data, tmp_path, monkeypatch, capsys):
    assert cli.run(["validate-data-dir", "--no-feats", data.path]) == 0
    assert cli.run(["validate-data-dir", data.path]) == 1
    assert "feats.scp: missing" in capsys.readouterr().err
    (tmp_path / "spks").write_text("b\n")
    assert (
        cli.run(
            ["subset-data-dir", f"--spk-list={tmp_path / 'spks'}", data.path, str(tmp_path / "b")]
        )
        == 0
    )
    assert datadir.load_data_dir(str(tmp_path / "b")).utts == ["b-u5"]
    assert cli.run(["subset-data-dir", "--first=1", data.path, str(tmp_path / "f1")]) == 0
    assert (
        cli.run(
            ["combine-data-dir", str(tmp_path / "c"), str(tmp_path / "b"), str(tmp_path / "f1")]
        )
        == 0
    )
    assert datadir.load_data_dir(str(tmp_path / "c")).utts == ["a-u1", "b-u5"]
    _append(str(tmp_path / "c"), "utt2spk", "0 q\n")
    assert cli.run(["fix-data-dir", str(tmp_path / "c")]) == 0
    assert cli.run(["validate-data-dir", "--no-feats", str(tmp_path / "c")]) == 0


def test_segments_lines_parsed_once_for_load_validate_and_fix(tmp_path, wavs):
    segs = {"r-a": ("r", 0.5, 2.0, 0), "r-b": ("r", 2.0, -1), "r-c": ("r", 3.0, 4.0)}
    d = datadir.write_data_dir(
        str(tmp_path / "s"), {u: "r" for u in segs}, wav_scp={"r": wavs["u1_16k"]}, segments=segs
    )
    assert d.segments["r-a"] == datadir.Segment("r", 0.5, 2.0, 0)
    assert d.segments["r-b"] == datadir.Segment("r", 2.0, -1.0, -1)
    good = open(os.path.join(d.path, "segments")).read()
    for line, msg, fix_fails in [
        ("r-c r 3 4 0 9\n", "segment 'r-c': bad line", True),  # too many fields
        ("r-c r 3 x\n", "segment 'r-c': bad line", True),
        ("r-c r 3 4 -2\n", "segment 'r-c': bad line", False),  # fix drops the bad channel
        ("r-c r 4 3\n", "segment 'r-c': bad times start=4.0 end=3.0", False),
    ]:
        _write(d.path, "segments", good.replace("r-c r 3 4\n", line))
        assert any(msg in p for p in datadir.check_data_dir(d.path)), line
        if fix_fails:
            with pytest.raises(XvjaxError, match="segment 'r-c'"):
                datadir.fix_data_dir(d.path)
    # fix keeps only utterances whose segment names a recording in wav.scp
    _write(d.path, "segments", good.replace("r-c r 3 4\n", "r-c q 3 4\n"))
    fixed = datadir.fix_data_dir(d.path)
    assert fixed.utts == ["r-a", "r-b"] and fixed.segments["r-a"].channel == 0
    assert datadir.check_data_dir(d.path) == []


def test_data_dir_files_share_c_locale_order_and_segment_lines():
    # C-locale byte order: upper case before lower case, '-' before digits, bytes for non-ASCII.
    assert files.sorted_keys(["b", "B", "a-1", "a1", "ä", "z"]) == ["B", "a-1", "a1", "b", "z", "ä"]
    assert files.utt2spk_to_spk2utt({"s2-b": "s2", "s1-a": "s1", "s2-a": "s2"}) == {
        "s1": ["s1-a"],
        "s2": ["s2-a", "s2-b"],
    }
    for line in ("r 0.5 2", "r 0 -1 1", "r 1.25 3.000000001"):
        assert files.format_segment(files.parse_segment(line)) == line
    with pytest.raises(ValueError):
        files.parse_segment("r 0.5")
