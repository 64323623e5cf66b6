"""Failure behaviour (issue #11): no silent wrong answers, no half-written files.

The fault table runs each command family (tables, front end, x-vectors, vector tools, estimation,
scoring, metrics, models, data dirs) on truncated, empty, NaN, wrong-dim and missing inputs,
in-process through `cli.run`, and asserts one of two outcomes:

- ERROR: a non-zero exit status, exactly one `ERROR (xvjax CMD): ...` line on stderr saying what
  was wrong, no traceback, and no output: an output file that was there before is still there,
  unchanged, and nothing else (no temp file) is left beside it;
- SKIP (where Kaldi skips per utterance or key): exit 0, a warning naming the bad key, the skip
  counted in the final log line, and every other key's output identical to a run without the bad
  key.

Then one test per numbered item of the issue that the table does not cover: WAV truncation and
channels (3), the all-or-nothing rule itself (5), signals and stale temp files (6, subprocesses),
permissions (8), --verbose (12), messages (14) and the README's EER join (15).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from xvjax import cli, fileutil
from xvjax.kaldi import tables

REPO = Path(__file__).resolve().parents[1]
NUM_FRAMES, FEAT_DIM = 160, 30  # the fixture model nnet3/small takes 30-dim features


def run(argv, capsys):
    rc = cli.run([argv[0], "--print-args=false", *argv[1:]])
    out, err = capsys.readouterr()
    return rc, out, err


# ----------------------------------------------------------------------------- inputs


@pytest.fixture(scope="session")
def inputs(kaldi_fixtures, tmp_path_factory) -> dict[str, str]:
    """Small inputs of every family, each clean and with one fault. Bad keys: u2 (features, audio),
    the 4th vector, and trials of the 3rd enrolment speaker."""
    d = tmp_path_factory.mktemp("faults_in")
    rng = np.random.default_rng(0)
    p: dict[str, str] = {"d": str(d), "fx": str(kaldi_fixtures)}
    bk, nn = kaldi_fixtures / "backend", kaldi_fixtures / "nnet3" / "small"

    def ark(name, table):
        tables.write_dict(f"ark:{d / name}", table)
        p[name] = str(d / name)

    # features: energy in column 0 in loud and quiet stretches, so the VAD finds speech
    feats = {}
    for utt in ("u1", "u2", "u3"):
        m = rng.normal(size=(NUM_FRAMES, FEAT_DIM)).astype(np.float32)
        m[:, 0] += np.where((np.arange(NUM_FRAMES) // 20) % 2 == 0, 12.0, 2.0)
        feats[utt] = m
    ark("feats.ark", feats)
    ark("feats_nobad.ark", {k: v for k, v in feats.items() if k != "u2"})
    nan = {k: v.copy() for k, v in feats.items()}
    nan["u2"][10, 3] = np.nan
    ark("feats_nan.ark", nan)
    ark("feats23.ark", {k: v[:, :23] for k, v in feats.items()})
    data = (d / "feats.ark").read_bytes()
    cut = data.index(b"u2 ") + 200  # inside u2's matrix data
    (d / "feats_trunc.ark").write_bytes(data[:cut])
    p["feats_trunc.ark"] = str(d / "feats_trunc.ark")
    (d / "empty.ark").write_bytes(b"")
    p["empty.ark"] = str(d / "empty.ark")
    vad = {k: (v[:, 0] > 7.0).astype(np.float32) for k, v in feats.items()}
    ark("vad.ark", vad)
    ark("vad_short.ark", {k: v[:-1] if k == "u2" else v for k, v in vad.items()})
    ark("vad_nobad.ark", {k: v for k, v in vad.items() if k != "u2"})
    ark("vad_none.ark", {k: np.zeros_like(v) for k, v in vad.items()})

    # vectors (128-dim, as Kaldi's x-vectors before LDA) of 8 speakers x 5 utterances
    train = tables.read_dict(f"ark:{bk / 'train.ark'}")
    utt2spk = tables.read_text_table(str(bk / "train.utt2spk"))
    spks = sorted(set(utt2spk.values()))[:8]
    keys = sorted(k for k in train if utt2spk[k] in spks)
    keys = [k for s in spks for k in [u for u in keys if utt2spk[u] == s][:5]]
    vecs = {k: np.asarray(train[k], np.float32) for k in keys}
    bad = keys[3]
    p["bad_vec"] = bad
    ark("vec.ark", vecs)
    ark("vec_nobad.ark", {k: v for k, v in vecs.items() if k != bad})
    ark("vec_nan.ark", {k: np.where(np.arange(128) == 5, np.inf, v) if k == bad else v
                        for k, v in vecs.items()})  # fmt: skip
    ark("vec_dim.ark", {k: v[:100] if k == bad else v for k, v in vecs.items()})
    vdata = (d / "vec.ark").read_bytes()
    (d / "vec_trunc.ark").write_bytes(vdata[: vdata.index(bad.encode()) + 40])
    p["vec_trunc.ark"] = str(d / "vec_trunc.ark")
    tables.write_text_table(str(d / "utt2spk"), {k: utt2spk[k] for k in keys})
    spk2utt = {s: [k for k in keys if utt2spk[k] == s] for s in spks}
    tables.write_text_table(str(d / "spk2utt"), {s: " ".join(u) for s, u in spk2utt.items()})
    p.update(utt2spk=str(d / "utt2spk"), spk2utt=str(d / "spk2utt"))
    p.update(transform=str(bk / "transform.mat"), plda=str(bk / "plda"))

    # scoring: the fixture's prepared (48-dim) enrolment and test vectors, a trial subset
    enroll = tables.read_dict(f"ark,t:{bk / 'enroll_prepared_mean.ark.txt'}")
    test = tables.read_dict(f"ark,t:{bk / 'test_prepared_mean.ark.txt'}")
    models = sorted(enroll)[:4]
    trial_lines = [
        line.split()
        for line in (bk / "trials").read_text().splitlines()
        if line.split()[0] in models
    ]
    (d / "trials").write_text("".join(" ".join(t) + "\n" for t in trial_lines))
    (d / "trials.pairs").write_text("".join(f"{t[0]} {t[1]}\n" for t in trial_lines))
    p["bad_model"] = models[2]
    ark("enroll.ark", {k: enroll[k] for k in models})
    ark("enroll_nobad.ark", {k: enroll[k] for k in models if k != models[2]})
    ark("enroll_nan.ark", {k: enroll[k] * (np.nan if k == models[2] else 1) for k in models})
    ark("test.ark", {t[1]: test[t[1]] for t in trial_lines})
    ark("test128.ark", {t[1]: np.zeros(128, np.float32) for t in trial_lines})
    p.update(trials=str(d / "trials"), pairs=str(d / "trials.pairs"))
    (d / "pairs_short").write_text("".join(f"{t[0]}\n" for t in trial_lines[:3]))
    p["pairs_short"] = str(d / "pairs_short")
    (d / "scores_nan").write_text(f"{trial_lines[0][0]} {trial_lines[0][1]} nan\n")
    p["scores_nan"] = str(d / "scores_nan")
    (d / "empty.txt").write_text("")
    p["empty.txt"] = str(d / "empty.txt")

    # models
    p["raw"] = str(nn / "final.raw")
    raw = (nn / "final.raw").read_bytes()
    (d / "trunc.raw").write_bytes(raw[: len(raw) // 2])
    p["trunc.raw"] = str(d / "trunc.raw")

    # audio: two short clean utterances and u2 with NaN samples (a float WAV)
    clean, sr = soundfile.read(kaldi_fixtures / "audio" / "u2_16k.wav", dtype="int16")
    wavs = {"u1": clean[:8000], "u2": clean[8000:16000], "u3": clean[16000:24000]}
    for utt, x in wavs.items():
        soundfile.write(d / f"{utt}.wav", x, sr, subtype="PCM_16")
    noisy = wavs["u2"].astype(np.float64) / 32768.0
    noisy[100] = np.nan
    soundfile.write(d / "u2_nan.wav", noisy, sr, subtype="FLOAT")
    (d / "wav.scp").write_text("".join(f"{u} {d / u}.wav\n" for u in wavs))
    (d / "wav_nan.scp").write_text(
        "".join(f"{u} {d / (u + '_nan' if u == 'u2' else u)}.wav\n" for u in wavs)
    )
    (d / "wav_nobad.scp").write_text("".join(f"{u} {d / u}.wav\n" for u in wavs if u != "u2"))
    (d / "wav_missing.scp").write_text("".join(f"{u} {d / 'nowhere' / u}.wav\n" for u in wavs))
    for name in ("wav.scp", "wav_nan.scp", "wav_nobad.scp", "wav_missing.scp"):
        p[name] = str(d / name)
    p["mfcc_conf"] = str(kaldi_fixtures / "features" / "mfcc16k.conf")
    p["vad_conf"] = str(kaldi_fixtures / "features" / "vad.conf")
    return p


# ----------------------------------------------------------------------------- the fault table


@dataclasses.dataclass(frozen=True)
class Fault:
    """One command on one faulty input. `argv` and `outputs` are templates over the inputs
    (`{feats.ark}`, ...) and the output dir `{o}`. ERROR cases: `message` is searched in the one
    ERROR line. SKIP cases: `argv` with `{IN}` = `bad_input`, compared with `{IN}` = `ref_input`;
    `bad` names the key in the warning and `count` is searched in the final log line."""

    family: str
    fault: str
    argv: tuple[str, ...]
    outputs: tuple[str, ...]
    message: str = ""
    bad_input: str = ""
    ref_input: str = ""
    bad: str = ""
    count: str = ""

    @property
    def id(self) -> str:
        return f"{self.family}-{self.argv[0]}-{self.fault}"


def error(family, fault, argv, outputs, message):
    return Fault(family, fault, tuple(argv.split()), tuple(outputs.split()), message)


def skip(family, fault, argv, outputs, bad_input, ref_input, bad, count):
    return Fault(
        family, fault, tuple(argv.split()), tuple(outputs.split()), "", bad_input, ref_input,
        bad, count,
    )  # fmt: skip


ERRORS = [
    # Kaldi tables
    error("tables", "truncated", "copy-feats ark:{feats_trunc.ark} ark,scp:{o}/f.ark,{o}/f.scp",
          "f.ark f.scp", r"key 'u2': truncated"),
    error("tables", "empty", "copy-feats ark:{empty.ark} ark:{o}/f.ark", "f.ark", "exit status 1"),
    error("tables", "missing", "copy-vector ark:{d}/none.ark ark:{o}/v.ark", "v.ark",
          "cannot open .*none.ark"),
    # front end
    error("features", "missing", "compute-mfcc-feats --config={mfcc_conf} scp:{wav_missing.scp} "
          "ark,scp:{o}/m.ark,{o}/m.scp", "m.ark m.scp", "exit status 1"),
    error("features", "empty", "compute-mfcc-feats --config={mfcc_conf} scp:{empty.txt} "
          "ark:{o}/m.ark", "m.ark", "exit status 1"),
    error("features", "truncated", "apply-cmvn-sliding ark:{feats_trunc.ark} ark:{o}/c.ark",
          "c.ark", r"key 'u2': truncated"),
    error("features", "empty", "compute-vad ark:{empty.ark} ark:{o}/v.ark", "v.ark",
          "exit status 1"),
    error("features", "no-voiced", "select-voiced-frames ark:{feats.ark} ark:{vad_none.ark} "
          "ark:{o}/s.ark", "s.ark", "exit status 1"),
    error("features", "missing", "select-voiced-frames ark:{feats.ark} ark:{d}/none.ark "
          "ark:{o}/s.ark", "s.ark", "cannot open"),
    # x-vectors
    error("xvectors", "wrong-dim", "nnet3-xvector-compute {raw} ark:{feats23.ark} "
          "ark,scp:{o}/x.ark,{o}/x.scp", "x.ark x.scp",
          r"all 3 utterances failed \(wrong feature dimension: 3; the model takes 30-dim"),
    error("xvectors", "empty", "nnet3-xvector-compute {raw} ark:{empty.ark} ark:{o}/x.ark",
          "x.ark", r"no x-vectors were extracted: 'ark:.*empty.ark' has no utterances"),
    error("xvectors", "truncated", "nnet3-xvector-compute {raw} ark:{feats_trunc.ark} "
          "ark:{o}/x.ark", "x.ark", r"key 'u2': truncated"),
    error("xvectors", "missing", "nnet3-xvector-compute {d}/none.raw ark:{feats.ark} "
          "ark:{o}/x.ark", "x.ark", "none.raw: no such file"),
    # vector tools
    error("vectors", "truncated", "ivector-normalize-length ark:{vec_trunc.ark} ark:{o}/n.ark",
          "n.ark", "truncated"),
    error("vectors", "empty", "ivector-normalize-length ark:{empty.ark} ark:{o}/n.ark", "n.ark",
          "exit status 1"),
    error("vectors", "wrong-dim", "transform-vec {transform} ark:{vec_dim.ark} ark:{o}/t.ark",
          "t.ark", r"'{bad_vec}' .*has dimension 100, expected 128"),
    error("vectors", "empty", "ivector-mean ark:{empty.ark} {o}/mean.vec", "mean.vec",
          "no vectors read"),
    # estimation: a broken vector is an error, not something to estimate around
    error("estimation", "nan", "ivector-compute-lda --dim=4 ark:{vec_nan.ark} ark:{utt2spk} "
          "{o}/lda.mat", "lda.mat", "'{bad_vec}' .*NaN or infinite"),
    error("estimation", "nan", "ivector-compute-plda ark:{spk2utt} ark:{vec_nan.ark} {o}/plda",
          "plda", "'{bad_vec}' .*NaN or infinite"),
    error("estimation", "truncated", "ivector-compute-plda ark:{spk2utt} ark:{vec_trunc.ark} "
          "{o}/plda", "plda", "truncated"),
    error("estimation", "empty", "ivector-adapt-plda {plda} ark:{empty.ark} {o}/plda_adapt",
          "plda_adapt", "no adaptation vectors"),
    # scoring
    error("scoring", "wrong-dim", "ivector-plda-scoring {plda} ark:{enroll.ark} ark:{test128.ark} "
          "{pairs} {o}/scores", "scores", "dimension 128, expected 48"),
    error("scoring", "truncated", "ivector-plda-scoring {plda} ark:{enroll.ark} ark:{test.ark} "
          "{pairs_short} {o}/scores", "scores", "pairs_short"),
    error("scoring", "missing", "cosine-scoring ark:{enroll.ark} ark:{test.ark} {d}/none "
          "{o}/scores", "scores", "cannot open"),
    error("scoring", "empty", "score-norm {empty.txt} {empty.txt} {empty.txt} {o}/normed",
          "normed", "no scores in"),
    error("scoring", "nan", "calibrate train {scores_nan} {trials} {o}/cal", "cal",
          "not a finite number"),
    # metrics
    error("metrics", "empty", "compute-eer {empty.txt}", "", "empty input"),
    error("metrics", "nan", "compute-min-dcf {scores_nan} {trials}", "", "not a finite number"),
    error("metrics", "missing", "compute-min-dcf --p-target 0.05 {scores_nan} {d}/none", "",
          "cannot open"),
    error("metrics", "empty", "det-plot {trials} {o}/det.png {empty.txt}", "det.png", "no scores"),
    # models
    error("models", "truncated", "nnet3-copy {trunc.raw} {o}/copy.raw", "copy.raw", "trunc.raw"),
    error("models", "truncated", "nnet3-to-flax {trunc.raw} {o}/model", "model", "trunc.raw"),
    error("models", "missing", "flax-to-nnet3 {d}/none {o}/out.raw", "out.raw",
          "not an xvjax model directory"),
]  # fmt: skip

SKIPS = [
    skip("features", "nan", "compute-mfcc-feats --config={mfcc_conf} scp:{IN} ark:{o}/m.ark",
         "m.ark", "wav_nan.scp", "wav_nobad.scp", "u2", r"Done 2 out of 3 utterances"),
    skip("features", "nan", "apply-cmvn-sliding ark:{IN} ark:{o}/c.ark", "c.ark",
         "feats_nan.ark", "feats_nobad.ark", "u2", r"to 2 utterances, 1 had errors"),
    skip("features", "nan", "compute-vad ark:{IN} ark:{o}/v.ark", "v.ark", "feats_nan.ark",
         "feats_nobad.ark", "u2", r"processed 2 utterances successfully; 1 had empty"),
    skip("features", "nan", "select-voiced-frames ark:{IN} ark:{vad.ark} ark:{o}/s.ark", "s.ark",
         "feats_nan.ark", "feats_nobad.ark", "u2", r"processed 2 utterances, 1 had errors"),
    skip("features", "wrong-dim", "select-voiced-frames ark:{feats.ark} ark:{IN} ark:{o}/s.ark",
         "s.ark", "vad_short.ark", "vad_nobad.ark", "u2", r"processed 2 utterances, 1 had errors"),
    skip("xvectors", "nan", "nnet3-xvector-compute {raw} ark:{IN} ark:{o}/x.ark", "x.ark",
         "feats_nan.ark", "feats_nobad.ark", "u2", r"Done 2 utterances, failed for 1"),
    skip("vectors", "nan", "ivector-normalize-length ark:{IN} ark:{o}/n.ark", "n.ark",
         "vec_nan.ark", "vec_nobad.ark", "{bad_vec}", r"Processed 39 iVectors, skipped 1"),
    skip("vectors", "nan", "ivector-subtract-global-mean ark:{IN} ark:{o}/s.ark", "s.ark",
         "vec_nan.ark", "vec_nobad.ark", "{bad_vec}", r"Wrote 39 mean-subtracted iVectors, skip"),
    skip("vectors", "nan", "transform-vec {transform} ark:{IN} ark:{o}/t.ark", "t.ark",
         "vec_nan.ark", "vec_nobad.ark", "{bad_vec}", r"to 39 vectors, skipped 1"),
    skip("vectors", "nan", "ivector-mean ark:{spk2utt} ark:{IN} ark:{o}/spk.ark ark,t:{o}/n",
         "spk.ark n", "vec_nan.ark", "vec_nobad.ark", "{bad_vec}", r"\(1 absent from input\)"),
    skip("scoring", "nan", "ivector-plda-scoring {plda} ark:{IN} ark:{test.ark} {pairs} "
         "{o}/scores", "scores", "enroll_nan.ark", "enroll_nobad.ark", "{bad_model}",
         r"Processed \d+ trials, \d+ had errors"),
]  # fmt: skip


def _fill(template: str, inputs: dict[str, str], out: Path, **more) -> str:
    values = {**inputs, "o": str(out), **more}
    return re.sub(r"\{([^{}]+)\}", lambda m: values[m.group(1)], template)


def _leftovers(folder: Path, expected) -> list[str]:
    return sorted(set(os.listdir(folder)) - set(expected))


@pytest.mark.parametrize("case", ERRORS, ids=lambda c: c.id)
def test_fault_fails_cleanly(case, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name in case.outputs:  # what an earlier run left there must survive the failed one
        (out / name).write_bytes(b"from an earlier run\n")
    argv = [_fill(a, inputs, out) for a in case.argv]
    rc, stdout, err = run(argv, capsys)
    assert rc != 0
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"ERROR (xvjax {case.argv[0]}): ")
    assert re.search(_fill(case.message, inputs, out), errors[0]), errors[0]
    for name in case.outputs:
        assert (out / name).read_bytes() == b"from an earlier run\n", name
    assert _leftovers(out, case.outputs) == []


def _read_output(path: Path):
    """An archive as {key: array}; other outputs (score files, text tables) as their bytes."""
    if path.suffix == ".ark":
        return {k: np.asarray(v) for k, v in tables.read(f"ark:{path}")}
    return path.read_bytes()


@pytest.mark.parametrize("case", SKIPS, ids=lambda c: c.id)
def test_fault_is_skipped_counted_and_the_rest_is_right(case, inputs, tmp_path, capsys):
    results = {}
    for variant, source in (("bad", case.bad_input), ("ref", case.ref_input)):
        out = tmp_path / variant
        out.mkdir()
        argv = [_fill(a, inputs, out, IN=inputs[source]) for a in case.argv]
        rc, stdout, err = run(argv, capsys)
        assert rc == 0, err
        assert "Traceback" not in err and "ERROR" not in err, err
        results[variant] = {name: _read_output(out / name) for name in case.outputs}
        assert _leftovers(out, case.outputs) == []
        if variant == "bad":
            bad = _fill(case.bad, inputs, out)
            assert re.search(rf"^WARNING .*{re.escape(bad)}", err, re.M), err
            assert re.search(case.count, err), err
    bad, ref = results["bad"], results["ref"]
    for name in case.outputs:
        if isinstance(ref[name], bytes):
            assert bad[name] == ref[name], name
            continue
        assert bad[name].keys() == ref[name].keys(), name
        for key in ref[name]:
            np.testing.assert_array_equal(bad[name][key], ref[name][key], err_msg=key)


def test_the_table_covers_every_family_and_fault():
    families = {c.family for c in ERRORS + SKIPS}
    assert families >= {"tables", "features", "xvectors", "vectors", "estimation", "scoring",
                        "metrics", "models"}  # fmt: skip
    assert {c.fault for c in ERRORS + SKIPS} >= {
        "truncated",
        "empty",
        "nan",
        "wrong-dim",
        "missing",
    }


# ----------------------------------------------------------------------------- item 3: WAV files


def test_truncated_wav_is_read_with_kaldis_warning_and_stereo_uses_channel_0(
    inputs, tmp_path, capsys
):
    d = Path(inputs["d"])
    data = (d / "u1.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 6000])  # header says 16000 bytes of data
    x, sr = soundfile.read(d / "u3.wav", dtype="int16")
    soundfile.write(tmp_path / "st.wav", np.stack([x, x[::-1]], 1), sr, subtype="PCM_16")
    scp = tmp_path / "wav.scp"
    scp.write_text(f"cut {tmp_path / 'cut.wav'}\nst {tmp_path / 'st.wav'}\n")
    rc, _, err = run(
        [
            "compute-mfcc-feats",
            f"--config={inputs['mfcc_conf']}",
            f"scp:{scp}",
            f"ark:{tmp_path}/m.ark",
        ],
        capsys,
    )
    assert rc == 0, err
    assert "expected 16000 bytes of wave data, but read only 6000 bytes. Truncated file?" in err
    assert "channel not specified but the audio has 2 channels; defaulting to zero" in err
    got = tables.read_dict(f"ark:{tmp_path}/m.ark")
    # the same features as the first 3000 samples / the left channel on their own
    soundfile.write(tmp_path / "cut_ok.wav", soundfile.read(d / "u1.wav", dtype="int16")[0][:3000],
                    sr, subtype="PCM_16")  # fmt: skip
    (tmp_path / "ref.scp").write_text(f"cut {tmp_path / 'cut_ok.wav'}\nst {d / 'u3.wav'}\n")
    rc, _, err = run(
        ["compute-mfcc-feats", f"--config={inputs['mfcc_conf']}", f"scp:{tmp_path / 'ref.scp'}",
         f"ark:{tmp_path}/ref.ark"],
        capsys,
    )  # fmt: skip
    assert rc == 0 and "Truncated" not in err and "channels" not in err
    ref = tables.read_dict(f"ark:{tmp_path}/ref.ark")
    for key in ("cut", "st"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    # --channel=1 picks the right channel; a channel the file does not have fails the utterance
    rc, _, err = run(
        ["compute-mfcc-feats", "--channel=1", f"--config={inputs['mfcc_conf']}", f"scp:{scp}",
         f"ark:{tmp_path}/c1.ark"],
        capsys,
    )  # fmt: skip
    assert rc == 0 and re.search(r"utterance cut: .*has 1 channels, no channel 1", err), err
    assert list(tables.read_dict(f"ark:{tmp_path}/c1.ark")) == ["st"]


# ----------------------------------------------------------------------------- item 5


def test_failed_command_puts_back_what_it_replaced_and_keeps_nothing_new(inputs, tmp_path, capsys):
    """compute-vad with no voiced utterance used to write its output and exit 1; a copy-feats
    with ark,scp that fails half-way replaced nothing; a data dir job that fails leaves no
    archives, feats.scp or folders it created."""
    old_ark, old_scp = tmp_path / "f.ark", tmp_path / "f.scp"
    tables.write_dict(f"ark,scp:{old_ark},{old_scp}", {"old": np.eye(2, dtype=np.float32)})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    rc, _, err = run(
        ["copy-feats", f"ark:{inputs['feats_trunc.ark']}", f"ark,scp:{old_ark},{old_scp}"], capsys
    )
    assert rc == 1 and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert tables.read_dict(f"scp:{old_scp}").keys() == {"old"}  # the scp still matches its ark

    rc, _, err = run(
        ["compute-vad", "--vad-energy-threshold=100", f"ark:{inputs['feats.ark']}",
         f"ark:{tmp_path / 'vad.ark'}"],
        capsys,
    )  # fmt: skip
    assert rc == 1 and "3 were completely unvoiced" in err and not (tmp_path / "vad.ark").exists()

    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    shutil.copy(inputs["wav_missing.scp"], data / "wav.scp")
    (data / "utt2spk").write_text("u1 s1\nu2 s1\nu3 s2\n")
    (data / "spk2utt").write_text("s1 u1 u2\ns2 u3\n")
    listing = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    archives = tmp_path / "mfcc" / "new"
    rc, _, err = run(
        ["make-features", f"--mfcc-config={inputs['mfcc_conf']}",
         f"--vad-config={inputs['vad_conf']}", "--progress=false", str(data), "", str(archives)],
        capsys,
    )  # fmt: skip
    assert rc == 1 and "no utterance gave features" in err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == listing


def test_outputs_of_a_command_are_committed_together(tmp_path):
    """fileutil.command_outputs: replaced files stay readable during the command (a job reads
    back what it wrote); on rollback new files go, replaced files and removed files come back."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_text("old a")
    c.write_text("old c")
    with fileutil.command_outputs() as outputs:
        with fileutil.atomic_open(a, "w") as f:
            f.write("new a")
        assert a.read_text() == "new a"
        with fileutil.atomic_open(a, "w") as f:  # twice: the first version is what comes back
            f.write("newer a")
        with fileutil.atomic_open(tmp_path / "sub" / "b", "w") as f:
            f.write("new b")
        fileutil.remove(c)
        assert not c.exists()
        outputs.rollback()
    assert sorted(os.listdir(tmp_path)) == ["a", "c"]
    assert (a.read_text(), c.read_text()) == ("old a", "old c")

    with pytest.raises(RuntimeError), fileutil.command_outputs():
        with fileutil.atomic_open(b, "w") as f:
            f.write("b")
        raise RuntimeError("the command failed")
    assert sorted(os.listdir(tmp_path)) == ["a", "c"]

    with fileutil.command_outputs():
        with fileutil.atomic_open(a, "w") as f:
            f.write("kept")
        fileutil.remove(c)
    assert sorted(os.listdir(tmp_path)) == ["a"] and a.read_text() == "kept"


# ----------------------------------------------------------------------------- item 6: signals


def _xvjax(*args: str) -> list[str]:
    return [sys.executable, "-m", "xvjax.cli", *args]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _writing_copy(inputs, target: Path, log: Path) -> subprocess.Popen:
    """copy-feats reading a pipe that stalls after the first archive: it has written its temp
    file and waits for more input. Its stderr goes to `log` (the pipe's sleep keeps a copy)."""
    rspec = f"ark:(cat {inputs['feats.ark']}; sleep 60) |"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            _xvjax("copy-feats", rspec, f"ark:{target}"),
            env=_env(),
            stderr=err,
            start_new_session=True,  # the sleeping pipe is killed with its group at the end
        )
    deadline = time.monotonic() + 60
    while not list(target.parent.glob(f".{target.name}.xvjax-*.tmp")):
        assert proc.poll() is None and time.monotonic() < deadline, "no temp file appeared"
        time.sleep(0.1)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """Kills what is left of the command's process group (the stalled pipe's sleep)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def test_sigterm_cleans_up_like_ctrl_c(inputs, tmp_path):
    target = tmp_path / "out.ark"
    target.write_bytes(b"earlier\n")
    log = tmp_path.parent / f"{tmp_path.name}.log"
    proc = _writing_copy(inputs, target, log)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 10  # not held up by the stalled input pipe
    err = log.read_text()
    assert "ERROR (xvjax copy-feats): terminated by signal 15" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == ["out.ark"] and target.read_bytes() == b"earlier\n"


def test_sigkill_leftovers_go_when_the_target_is_written_again(inputs, tmp_path):
    target = tmp_path / "out.ark"
    proc = _writing_copy(inputs, target, tmp_path.parent / f"{tmp_path.name}.log")
    proc.kill()
    proc.wait(timeout=30)
    _stop(proc)
    (stale,) = tmp_path.glob(".out.ark.xvjax-*.tmp")
    # a live writer's temp file (this test process's pid) and another host's are left alone
    live = tmp_path / f".out.ark.xvjax-{socket.gethostname()}-{os.getpid()}-abcdefgh.tmp"
    live.write_bytes(b"")
    other_host = tmp_path / ".out.ark.xvjax-elsewhere-1-abcdefgh.tmp"
    other_host.write_bytes(b"")
    tables.write_dict(f"ark:{target}", {"k": np.zeros(2, np.float32)})
    assert not stale.exists() and live.exists() and other_host.exists()
    assert tables.read_dict(f"ark:{target}").keys() == {"k"}


# ----------------------------------------------------------------------------- item 8


def test_model_dirs_get_the_umask_permissions(inputs, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        rc, _, err = run(["nnet3-to-flax", inputs["raw"], str(tmp_path / "m")], capsys)
    finally:
        os.umask(old)
    assert rc == 0, err
    modes = {
        str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
        for p in [tmp_path / "m", *(tmp_path / "m").rglob("*")]
    }
    assert {m for p, m in modes.items() if (tmp_path / p).is_dir()} == {0o755}, modes
    assert {m for p, m in modes.items() if (tmp_path / p).is_file()} == {0o644}, modes


@pytest.fixture
def unprivileged():
    """argv prefix running a command as an ordinary user (root reads and writes anything) and a
    scratch dir that user can reach; skipped when that is not possible."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    scratch = Path(tempfile.mkdtemp(prefix="xvjax-perm-"))
    scratch.chmod(0o777)
    yield prefix, scratch
    for p in [scratch, *scratch.rglob("*")]:
        with contextlib.suppress(OSError):
            p.chmod(0o777)
    shutil.rmtree(scratch)


def test_permission_problems_are_one_line_errors(inputs, unprivileged):
    prefix, scratch = unprivileged
    ro = scratch / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    vectors, readable, model = scratch / "v.ark", scratch / "ok.raw", scratch / "final.raw"
    shutil.copy(inputs["vec.ark"], vectors)
    shutil.copy(inputs["feats.ark"], scratch / "feats.ark")
    shutil.copy(inputs["raw"], readable)
    shutil.copy(inputs["raw"], model)
    model.chmod(0o000)
    model_dir = scratch / "model_dir"
    assert cli.run(["nnet3-to-flax", "--print-args=false", inputs["raw"], str(model_dir)]) == 0
    (model_dir / "model.json").chmod(0o000)
    env = dict(_env(), HOME=str(scratch))
    cases = [
        (["copy-vector", f"ark:{vectors}", f"ark:{ro}/v.ark"],
         rf"cannot write '{ro}/v.ark': Permission denied"),
        (["nnet3-copy", str(model), str(scratch / "copy.raw")],
         rf"cannot open '{model}' for reading: Permission denied"),
        (["nnet3-to-flax", str(readable), str(ro / "model")],
         rf"cannot write '{ro}/model': Permission denied"),
        (["nnet3-xvector-compute", str(model_dir), f"ark:{scratch}/feats.ark", f"ark:{scratch}/x"],
         rf"cannot read {model_dir}/model.json: Permission denied"),
    ]  # fmt: skip
    for argv, message in cases:
        proc = subprocess.run(
            prefix + _xvjax(argv[0], "--print-args=false", *argv[1:]),
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        assert len(lines) == 1 and re.search(message, lines[0]), proc.stderr
    assert os.listdir(ro) == [] and not (scratch / "copy.raw").exists()
    assert not (scratch / "x").exists()


# ----------------------------------------------------------------------------- item 12


def test_verbose_is_xvjaxs_logging_only(inputs, tmp_path):
    proc = subprocess.run(
        _xvjax("compute-mfcc-feats", "--verbose=2", f"--config={inputs['mfcc_conf']}",
               f"scp:{inputs['wav.scp']}", f"ark:{tmp_path / 'm.ark'}"),
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert all(line.startswith(("xvjax ", "INFO (xvjax", "DEBUG (xvjax")) for line in lines), lines
    assert len(lines) < 10 and len(set(lines)) == len(lines)


# ----------------------------------------------------------------------------- item 14


def test_bad_scp_offset_says_it_is_not_the_start_of_an_object(inputs, tmp_path, capsys):
    offsets = dict(tables.read_scp(f"{_scp_of(inputs, tmp_path)}"))
    good = int(offsets["u1"].rsplit(":", 1)[1])
    scp = tmp_path / "bad.scp"
    scp.write_text(f"u1 {tmp_path / 'f.ark'}:{good + 7}\n")
    rc, _, err = run(["copy-feats", f"scp:{scp}", "ark:/dev/null"], capsys)
    assert rc == 1
    assert f"key 'u1' ({tmp_path / 'f.ark'}:{good + 7}): offset {good + 7} is not the start of " \
           "an object" in err  # fmt: skip


def _scp_of(inputs, tmp_path) -> Path:
    tables.write_dict(
        f"ark,scp:{tmp_path / 'f.ark'},{tmp_path / 'f.scp'}",
        tables.read_dict(f"ark:{inputs['feats.ark']}"),
    )
    return tmp_path / "f.scp"


def test_compute_min_dcf_takes_the_common_options(kaldi_fixtures, capsys):
    m = kaldi_fixtures / "metrics"
    files = [str(m / "dcf_scores"), str(m / "dcf_trials")]
    assert cli.run(["compute-min-dcf", "--print-args=false", "--p-target", "0.05", *files]) == 0
    spaced, err = capsys.readouterr()
    assert not err.startswith("xvjax compute-min-dcf")  # --print-args=false was accepted
    assert cli.run(["compute-min-dcf", "--p-target=0.05", *files]) == 0
    assert capsys.readouterr().out == spaced  # the script's '--p-target 0.05' means the same
    rc = cli.run(["compute-min-dcf", "--p-target=0.01", files[0]])
    _, err = capsys.readouterr()
    assert rc == 1 and "usage" not in err.lower()
    assert [line for line in err.splitlines() if line.startswith("ERROR")] == [
        "ERROR (xvjax compute-min-dcf): expected 2 arguments, got 1; "
        "see 'xvjax compute-min-dcf --help'"
    ]


def test_run_transfer_help_prints_its_usage_only():
    script = REPO / "scripts" / "run_transfer.sh"
    proc = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    header = []  # the comment block under the #! line
    for line in script.read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        header.append(re.sub(r"^# ?", "", line))
    assert proc.stdout.splitlines() == header
    assert "set -euo pipefail" not in proc.stdout


# ----------------------------------------------------------------------------- item 15


def test_readme_eer_line_joins_scores_and_trials_by_key(kaldi_fixtures, tmp_path, capsys):
    """With a trial missing from the scores (a skipped trial), pairing by line position mislabels
    every later score; the README's join gives the EER of the scored trials."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_readme_workflow import readme_steps

    (eer_line,) = [s for s in readme_steps() if s.split()[0] == "awk"]
    join = eer_line.split("| xvjax compute-eer")[0]
    bk = kaldi_fixtures / "backend"
    trials = (bk / "trials").read_text().splitlines()
    scores = (bk / "scores_plda_mean").read_text().splitlines()
    (tmp_path / "trials").write_text("\n".join(trials) + "\n")
    (tmp_path / "scores_asnorm").write_text("\n".join(scores[:5] + scores[6:]) + "\n")
    joined = subprocess.run(
        ["bash", "-c", join], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    label = {tuple(t.split()[:2]): t.split()[2] for t in trials}
    want = [f"{s.split()[2]} {label[tuple(s.split()[:2])]}" for s in scores[:5] + scores[6:]]
    assert joined.splitlines() == want
    (tmp_path / "eer_input").write_text(joined)
    assert cli.run(["compute-eer", "--print-args=false", str(tmp_path / "eer_input")]) == 0
    assert 0.0 <= float(capsys.readouterr().out) <= 100.0
