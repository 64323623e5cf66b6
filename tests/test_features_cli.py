"""Feature commands end to end on the Kaldi fixtures, and their handling of bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from xvjax.cli import run
from xvjax.kaldi import tables


@pytest.fixture
def in_features_dir(kaldi_fixtures, monkeypatch):
    monkeypatch.chdir(kaldi_fixtures / "features")  # wav16.scp paths are relative to it
    return kaldi_fixtures / "features"


def _close(ours, ref, frac=0.999, tol=1e-3, worst=1e-2):
    assert sorted(ours) == sorted(ref)
    err = np.concatenate([np.abs(ours[k] - ref[k]).ravel() for k in ref])
    assert np.mean(err <= tol) >= frac and err.max() <= worst


def test_kaldi_pipeline_commands(in_features_dir, tmp_path, capsys):
    """compute-mfcc-feats | compute-vad | apply-cmvn-sliding | select-voiced-frames, as MANIFEST.md."""
    mfcc, vad = tmp_path / "mfcc.txt", tmp_path / "vad.txt"
    cmn, prep = tmp_path / "cmn.txt", tmp_path / "prep.txt"
    assert (
        run(["compute-mfcc-feats", "--config=mfcc16k.conf", "scp:wav16.scp", f"ark,t:{mfcc}"]) == 0
    )
    _close(tables.read_dict(f"ark,t:{mfcc}"), tables.read_dict("ark,t:mfcc16k.txt"))
    assert run(["compute-vad", "--config=vad.conf", f"ark,t:{mfcc}", f"ark,t:{vad}"]) == 0
    assert vad.read_bytes() == (in_features_dir / "vad16k.txt").read_bytes()
    assert "No frames were judged voiced for utterance u6_16k_silence" in capsys.readouterr().err
    args = ["--norm-vars=false", "--center=true", "--cmn-window=300"]
    assert run(["apply-cmvn-sliding", *args, "ark,t:mfcc16k.txt", f"ark,t:{cmn}"]) == 0
    ours, ref = tables.read_dict(f"ark,t:{cmn}"), tables.read_dict("ark,t:cmn16k.txt")
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], atol=1e-4, rtol=0)
    assert (
        run(["select-voiced-frames", "ark,t:cmn16k.txt", "ark,t:vad16k.txt", f"ark,t:{prep}"]) == 0
    )
    ours, ref = tables.read_dict(f"ark,t:{prep}"), tables.read_dict("ark,t:prepared16k.txt")
    assert sorted(ours) == sorted(ref)  # the silent utterance is skipped, as by Kaldi
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k])
    assert "processed 4 utterances, 1 had errors" in capsys.readouterr().err


def test_numpy_commands_run_without_jax(in_features_dir, tmp_path):
    """compute-vad, apply-cmvn-sliding and select-voiced-frames are numpy tools: no JAX import."""
    vad, cmn, out = tmp_path / "vad.ark", tmp_path / "cmn.ark", tmp_path / "out.ark"
    code = (
        "import sys\nfrom xvjax.cli import run\n"
        f"assert run(['compute-vad', '--config=vad.conf', 'ark,t:mfcc16k.txt', 'ark:{vad}']) == 0\n"
        f"assert run(['apply-cmvn-sliding', '--center=true', 'ark,t:mfcc16k.txt', 'ark:{cmn}']) == 0\n"
        f"assert run(['select-voiced-frames', 'ark:{cmn}', 'ark:{vad}', 'ark:{out}']) == 0\n"
        "print(sorted(m for m in ('jax', 'flax', 'optax', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=in_features_dir
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    assert sorted(tables.read_dict(f"ark:{out}")) == ["u1_16k", "u2_16k", "u5_16k", "u7_16k_long"]


def test_fbank_and_8k(in_features_dir, tmp_path):
    out = tmp_path / "f.ark"
    assert (
        run(
            [
                "compute-fbank-feats",
                "--dither=0",
                "--num-mel-bins=80",
                "scp:wav16.scp",
                f"ark:{out}",
            ]
        )
        == 0
    )
    _close(tables.read_dict(f"ark:{out}"), tables.read_dict("ark,t:fbank16k_80.txt"))
    assert (
        run(
            [
                "compute-mfcc-feats",
                "--config=mfcc8k.conf",
                "scp:wav8.scp",
                f"ark,scp:{out},{tmp_path}/f.scp",
            ]
        )
        == 0
    )
    _close(tables.read_dict(f"scp:{tmp_path}/f.scp"), tables.read_dict("ark,t:mfcc8k.txt"))


def _write(path, x, rate, subtype="PCM_16"):
    soundfile.write(path, x, rate, subtype=subtype)


def test_bad_utterances_are_skipped_with_a_reason(kaldi_fixtures, tmp_path, capsys):
    good, rate = soundfile.read(kaldi_fixtures / "audio" / "u5_16k.wav", dtype="int16")
    _write(tmp_path / "good.wav", good, rate)
    _write(tmp_path / "rate8k.wav", good, 8000)
    _write(tmp_path / "short.wav", good[:100], rate)
    _write(tmp_path / "zeros.wav", np.zeros(4000, np.int16), rate)
    nan = good.astype(np.float32) / 32768
    nan[50] = np.nan
    _write(tmp_path / "nan.wav", nan, rate, "FLOAT")
    (tmp_path / "garbage.wav").write_bytes(b"not a wav file at all")
    scp = tmp_path / "wav.scp"
    scp.write_text(
        f"a_good {tmp_path}/good.wav\nb_rate {tmp_path}/rate8k.wav\nc_short {tmp_path}/short.wav\n"
        f"d_zeros {tmp_path}/zeros.wav\ne_nan {tmp_path}/nan.wav\nf_garbage {tmp_path}/garbage.wav\n"
        f"g_missing {tmp_path}/missing.wav\nh_pipe cat {tmp_path}/good.wav |\n"
    )
    out = tmp_path / "feats.ark"
    assert (
        run(["compute-mfcc-feats", "--dither=0", "--batch-size=2", f"scp:{scp}", f"ark:{out}"]) == 0
    )
    feats = tables.read_dict(f"ark:{out}")
    assert [k for k, _ in tables.read(f"ark:{out}")] == [
        "a_good",
        "d_zeros",
        "h_pipe",
    ]  # input order
    np.testing.assert_array_equal(feats["a_good"], feats["h_pipe"])
    # all-zero audio: Kaldi's floors (log energy = log(FLT_EPSILON)), not an error
    np.testing.assert_allclose(feats["d_zeros"][:, 0], np.log(np.finfo(np.float32).eps), rtol=1e-6)
    lines = capsys.readouterr().err.splitlines()
    text = "\n".join(lines)
    for key, why in [("b_rate", "sample frequency mismatch"), ("c_short", "no frames fit"),
                     ("e_nan", "NaN"), ("f_garbage", "garbage.wav"), ("g_missing", "missing.wav")]:  # fmt: skip
        assert any(f"utterance {key}:" in ln and why in ln for ln in lines), (key, text)
    assert "Done 3 out of 8 utterances" in text


def test_make_features_data_dir(kaldi_fixtures, tmp_path, capsys):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    audio = kaldi_fixtures / "audio"
    (data / "wav.scp").write_text(
        f"u1 {audio}/u2_16k.wav\nu2 cat {audio}/u5_16k.wav |\nu3 {audio}/u6_16k_silence.wav\n"
        f"u4 {tmp_path}/missing.wav\n"
    )
    (data / "utt2spk").write_text("u1 s1\nu2 s1\nu3 s2\nu4 s2\n")
    (data / "spk2utt").write_text("s1 u1 u2\ns2 u3 u4\n")
    conf = kaldi_fixtures / "features"
    mfcc_dir = tmp_path / "mfcc"
    cmd = ["make-features", f"--mfcc-config={conf}/mfcc16k.conf", f"--vad-config={conf}/vad.conf",
           "--progress=false", "--batch-size=2", str(data), str(tmp_path / "log"), str(mfcc_dir)]  # fmt: skip
    assert run(cmd) == 0
    feats = tables.read_dict(f"scp:{data}/feats.scp")
    vad = tables.read_dict(f"scp:{data}/vad.scp")
    assert sorted(feats) == sorted(vad) == ["u1", "u2", "u3"]
    # compressed like make_mfcc.sh (copy-feats --compress=true): compare with Kaldi's own
    # compressed-then-decoded features; a value may land one quantisation step away
    # (the column headers come from the data, so small feature differences shift some steps)
    ref = tables.read_dict(f"ark,t:{conf}/mfcc16k_compressed_decoded.txt")
    raw = tables.read_dict(f"ark,t:{conf}/mfcc16k.txt")
    for ours, theirs in (("u1", "u2_16k"), ("u2", "u5_16k"), ("u3", "u6_16k_silence")):
        err = np.abs(feats[ours] - ref[theirs])
        kaldi_step = np.abs(ref[theirs] - raw[theirs]).max()
        assert np.mean(err <= 1e-3) >= 0.95 and err.max() <= 2 * kaldi_step
    ref_vad = tables.read_dict(f"ark,t:{conf}/vad16k.txt")
    np.testing.assert_array_equal(vad["u1"], ref_vad["u2_16k"])
    assert not vad["u3"].any()
    assert (data / "utt2num_frames").read_text().split() == ["u1", "352", "u2", "52", "u3", "200"]
    assert os.path.exists(mfcc_dir / "raw_mfcc_train.ark")
    assert "missing.wav" in capsys.readouterr().err


def test_errors_are_one_line(tmp_path, capsys):
    assert run(["compute-mfcc-feats", "--num-ceps=40", "scp:x", "ark:y"]) == 1
    assert "num-ceps" in capsys.readouterr().err
    assert run(["compute-mfcc-feats", "--window-type=kaiser", "scp:x", "ark:y"]) == 1
    assert "window-type" in capsys.readouterr().err
    assert run(["compute-vad", "--vad-proportion-threshold=1.5", "ark:x", "ark:y"]) == 1
    assert "proportion" in capsys.readouterr().err
    assert run(["compute-mfcc-feats", f"scp:{tmp_path}/none.scp", "ark:/dev/null"]) == 1
    assert "none.scp" in capsys.readouterr().err
    (tmp_path / "mfcc.conf").write_text("--dither=0\n")
    (tmp_path / "vad.conf").write_text("--vad-proportion-threshold=1.5\n")
    make = ["make-features", f"--mfcc-config={tmp_path}/mfcc.conf", "--progress=false"]
    assert run([*make, f"--vad-config={tmp_path}/none.conf", str(tmp_path)]) == 1
    assert "VAD config" in capsys.readouterr().err
    assert run([*make, f"--vad-config={tmp_path}/vad.conf", str(tmp_path)]) == 1
    assert "proportion" in capsys.readouterr().err


def test_extract_engine_order_chunks_and_errors():
    """Packing frames into chunks (utterances spanning chunks, a padded last chunk) never
    reorders or mixes up utterances."""
    from xvjax.features import reference
    from xvjax.features.options import MfccOptions
    from xvjax.features.stream import bucket_length, extract_features

    assert [bucket_length(n) for n in (1, 1024, 1025, 5000, 16000)] == [
        1024,
        1024,
        1152,
        5120,
        16384,
    ]
    rng = np.random.default_rng(0)
    lengths = [160000, 300, 240000, 8000, 3200, 1000]
    utts = [(f"u{i}", rng.standard_normal(n).astype(np.float32) * 1000, 16000)
            for i, n in enumerate(lengths)]  # fmt: skip
    utts.insert(2, ("bad_rate", np.ones(4000, np.float32), 8000))
    opts = MfccOptions(dither=0.0)
    res = list(extract_features(utts, opts, batch_size=1))
    assert [r.key for r in res] == [u[0] for u in utts]
    assert [r.error is None for r in res] == [True, False, False, True, True, True, True]
    for r, (_, x, _) in zip(res, utts, strict=True):
        if r.error is None:
            # measured max |diff| ~1e-4: chunking must not perturb the numbers either
            np.testing.assert_allclose(r.feats, reference.features_numpy(x, opts), atol=1e-3)


@pytest.mark.parametrize("fft_impl", ["kaldi", "xla"])
def test_extract_engine_features_do_not_depend_on_chunking(kaldi_fixtures, fft_impl):
    """An utterance's features (dither on) are the same bytes whatever shares its chunks and
    wherever its frames fall in them (one compiled chunk shape), and match `compute_mfcc` of the
    utterance alone, unpadded, with its key (measured max |diff| 5e-5: XLA compiles small
    matrix products of other shapes with another summation order)."""
    import jax
    import soundfile

    from xvjax.features.mfcc import compute_mfcc
    from xvjax.features.options import MfccOptions
    from xvjax.features.stream import extract_features, utterance_words

    opts = MfccOptions(dither=1.0, snip_edges=False)
    audio = kaldi_fixtures / "audio"
    wav = {n: soundfile.read(audio / f"{n}.wav", dtype="int16")[0].astype(np.float32)
           for n in ("u1_16k", "u5_16k", "u7_16k_long")}  # fmt: skip
    utts = [(n, x, 16000) for n, x in wav.items()] + [("short", wav["u5_16k"][:700], 16000)]
    shifted = [("lead", wav["u5_16k"][:12345], 16000)] + utts
    runs = [
        list(extract_features(utts, opts, batch_size=1, seed=3, fft_impl=fft_impl)),
        list(extract_features(shifted[::-1], opts, batch_size=1, seed=3, fft_impl=fft_impl)),
        [r for u in utts for r in extract_features([u], opts, 1, seed=3, fft_impl=fft_impl)],
    ]
    assert sum(len(r.feats) for r in runs[0]) > 1024  # the first run spans chunks
    words = utterance_words(3, [u[0] for u in utts])
    for i, (utt, x, _) in enumerate(utts):
        got = [next(r.feats for r in run if r.key == utt) for run in runs]
        assert all(g.tobytes() == got[0].tobytes() for g in got), utt
        key = jax.random.wrap_key_data(words[i : i + 1])
        alone, nf = compute_mfcc(x[None], np.array([len(x)]), opts, key, fft_impl)
        np.testing.assert_allclose(got[0], np.asarray(alone)[0, : int(nf[0])], atol=2e-4)
    other_seed = list(extract_features(utts[:1], opts, seed=4, fft_impl=fft_impl))
    assert np.abs(other_seed[0].feats - runs[0][0].feats).max() > 1e-3


def test_extract_engine_mixed_warps_and_long_utterances():
    """Utterances with different VTLN warps fill different chunks; when what waits exceeds a
    chunk, a partial chunk is computed. Results keep their order and equal each warp's own run
    (same chunk shape: same bytes); an utterance longer than several chunks is whole."""
    from xvjax.features.options import MfccOptions
    from xvjax.features.stream import extract_features

    rng = np.random.default_rng(1)
    opts = MfccOptions(dither=1.0)
    utts = [(f"u{i}", rng.standard_normal(48000).astype(np.float32) * 1000, 16000)
            for i in range(8)]  # fmt: skip
    utts.append(("long", rng.standard_normal(16000 * 35).astype(np.float32) * 1000, 16000))
    warps = {u: (0.9 if i % 2 else 1.0) for i, (u, _, _) in enumerate(utts)}
    mixed = list(extract_features(utts, opts, batch_size=1, warp_of=warps.get))
    assert [r.key for r in mixed] == [u for u, _, _ in utts]
    for warp in (0.9, 1.0):
        own = [u for u in utts if warps[u[0]] == warp]
        alone = extract_features(own, opts, batch_size=1, warp_of=warps.get)
        for r in alone:
            assert next(m for m in mixed if m.key == r.key).feats.tobytes() == r.feats.tobytes()
    assert len(mixed[-1].feats) == 1 + (16000 * 35 - 400) // 160  # snip-edges: 3.4 chunks


def test_kaldi_recipe_options_utt2dur_vtln_htk(in_features_dir, tmp_path):
    """The options make_mfcc.sh passes: --write-utt2dur (always), --vtln-map/--utt2spk (with
    spk2warp), --output-format=htk. Warp 1.0 gives Kaldi's features; a speaker's warp gives what
    --vtln-warp gives; the HTK file holds the same numbers big-endian after its header."""
    from xvjax.kaldi.htk import read_htk

    wav = tmp_path / "wav.scp"
    wav.write_text(
        "u5_16k ../audio/u5_16k.wav\nu5_warped ../audio/u5_16k.wav\nzz ../audio/u5_16k.wav\n"
    )
    (tmp_path / "utt2spk").write_text("u5_16k a\nu5_warped b\nzz c\n")
    (tmp_path / "spk2warp").write_text("a 1.0\nb 0.9\n")
    htk = tmp_path / "feats.htk.ark"
    argv = ["compute-mfcc-feats", "--config=mfcc16k.conf", "--output-format=htk",
            f"--vtln-map=ark:{tmp_path / 'spk2warp'}", f"--utt2spk=ark:{tmp_path / 'utt2spk'}",
            f"--write-utt2dur=ark,t:{tmp_path / 'utt2dur'}", f"scp:{wav}", f"ark:{htk}"]  # fmt: skip
    assert run(argv) == 0
    assert (tmp_path / "utt2dur").read_text() == "u5_16k 0.517875 \nu5_warped 0.517875 \n"
    from xvjax.kaldi.htk import HtkCodec

    ours = tables.read_dict(f"ark:{htk}", kind=HtkCodec(0))
    assert sorted(ours) == ["u5_16k", "u5_warped"]  # zz has no warp: skipped
    with open(htk, "rb") as f:
        f.read(len("u5_16k "))
        feats, header = read_htk(f)
    assert header == (feats.shape[0], 100000, 4 * 30, 0o6 | 0o100)  # MFCC_E (use-energy=true)
    ref = tables.read_dict("ark,t:mfcc16k.txt")
    _close({"u5_16k": ours["u5_16k"]}, {"u5_16k": ref["u5_16k"]})
    warped = tmp_path / "w.ark"
    one = tmp_path / "one.scp"
    one.write_text("u5_warped ../audio/u5_16k.wav\n")
    argv = ["compute-mfcc-feats", "--config=mfcc16k.conf", "--vtln-warp=0.9", f"scp:{one}"]
    assert run(argv + [f"ark:{warped}"]) == 0
    w = tables.read_dict(f"ark:{warped}")["u5_warped"]
    np.testing.assert_array_equal(ours["u5_warped"], w)
    assert np.abs(w - ref["u5_16k"]).max() > 0.1  # the warp changes the features
    assert run(["compute-mfcc-feats", f"--utt2spk=ark:{tmp_path / 'utt2spk'}", f"scp:{one}",
                f"ark:{warped}"]) == 1  # fmt: skip


def test_allow_downsample_and_upsample(in_features_dir, tmp_path, capsys):
    """A 16 kHz file with the 8 kHz config fails unless --allow-downsample (Kaldi's resampler)."""
    from xvjax.features.resample import kaldi_resample

    one = tmp_path / "one.scp"
    one.write_text("u5_16k ../audio/u5_16k.wav\n")
    out = tmp_path / "f.ark"
    assert run(["compute-mfcc-feats", "--config=mfcc8k.conf", f"scp:{one}", f"ark:{out}"]) == 1
    assert "--allow-downsample=true" in capsys.readouterr().err
    argv = ["compute-mfcc-feats", "--config=mfcc8k.conf", "--allow-downsample=true"]
    assert run(argv + [f"scp:{one}", f"ark:{out}"]) == 0
    feats = tables.read_dict(f"ark:{out}")["u5_16k"]
    assert feats.shape == (52, 23)  # 4143 samples at 8 kHz: round(4143 / 80) frames
    # Kaldi's resampler: exact output length, a pass-band tone kept, a stop-band tone removed
    t = np.arange(16000) / 16000
    y = kaldi_resample(1000 * np.sin(2 * np.pi * 440 * t), 16000, 8000)
    assert len(y) == 8000 and len(kaldi_resample(np.ones(3), 16000, 8000)) == 2
    t8 = np.arange(8000) / 8000
    assert np.abs(y[50:-50] - 1000 * np.sin(2 * np.pi * 440 * t8[50:-50])).max() < 1.0
    z = kaldi_resample(1000 * np.sin(2 * np.pi * 6000 * t), 16000, 8000)
    assert np.abs(z[50:-50]).max() < 5.0
    up = kaldi_resample(y, 8000, 16000)
    assert (
        len(up) == 16000
        and np.abs(up[100:-100] - 1000 * np.sin(2 * np.pi * 440 * t[100:-100])).max() < 2.0
    )


def test_select_unvoiced_frames(in_features_dir, tmp_path):
    """--select-unvoiced-frames keeps exactly the frames the VAD marks 0."""
    out = tmp_path / "sil.ark"
    argv = ["select-voiced-frames", "--select-unvoiced-frames=true", "ark,t:cmn16k.txt"]
    assert run(argv + ["ark,t:vad16k.txt", f"ark:{out}"]) == 0
    sil = tables.read_dict(f"ark:{out}")
    cmn, vad = tables.read_dict("ark,t:cmn16k.txt"), tables.read_dict("ark,t:vad16k.txt")
    assert sorted(sil) == sorted(k for k in cmn if (vad[k] == 0).any())
    for k, x in sil.items():
        np.testing.assert_array_equal(x, cmn[k][vad[k] == 0])


def test_mfcc_from_a_wave_archive(in_features_dir, tmp_path):
    """make_mfcc.sh with segments pipes `extract-segments ... ark:- |` into compute-mfcc-feats."""
    segments = tmp_path / "segments"
    segments.write_text("u5_all u5_16k 0 -1\n")
    waves = tmp_path / "w.ark"
    assert run(["extract-segments", "scp:wav16.scp", str(segments), f"ark:{waves}"]) == 0
    out = tmp_path / "f.ark"
    assert run(["compute-mfcc-feats", "--config=mfcc16k.conf", f"ark:{waves}", f"ark:{out}"]) == 0
    ref = tables.read_dict("ark,t:mfcc16k.txt")
    _close({"u5_16k": tables.read_dict(f"ark:{out}")["u5_all"]}, {"u5_16k": ref["u5_16k"]})
