"""End to end: xvjax copy-feats / copy-matrix / copy-vector / feat-to-dim / feat-to-len through
`xvjax.cli.run`, against Kaldi's fixture bytes, with Kaldi's option spellings and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from xvjax import cli
from xvjax.kaldi import tables


@pytest.fixture()
def run():
    """cli.run as a list of arguments."""
    return lambda *argv: cli.run(list(argv))


def test_help_lists_options_with_defaults(run, capsys):
    assert run("copy-feats", "--help") == 0
    out = capsys.readouterr().out
    assert "--compression-method" in out and "default = 1" in out and "--print-args" in out


@pytest.mark.parametrize("method,name", [(1, "compressed"), (2, "cm2"), (4, "cm4"), (7, "cm7")])
def test_copy_feats_compress_matches_kaldi_bytes(run, kaldi_fixtures, tmp_path, method, name):
    f = kaldi_fixtures / "features"
    out = tmp_path / "c.ark"
    argv = [
        "copy-feats",
        "--compress=true",
        f"--compression-method={method}",
        f"ark,t:{f}/mfcc16k.txt",
        f"ark:{out}",
    ]
    assert run(*argv) == 0
    assert out.read_bytes() == (f / f"mfcc16k_{name}.ark").read_bytes()


def test_copy_feats_decodes_to_kaldis_text(run, kaldi_fixtures, capsysbinary):
    f = kaldi_fixtures / "features"
    assert run("copy-feats", "--print-args=false", f"ark:{f}/mfcc16k_cm3.ark", "ark,t:-") == 0
    cap = capsysbinary.readouterr()
    assert cap.out == (f / "mfcc16k_cm3_decoded.txt").read_bytes()
    assert b"Copied 5 feature matrices." in cap.err and b"xvjax copy-feats ark:" not in cap.err


def test_copy_feats_ark_scp_and_num_frames(run, kaldi_fixtures, tmp_path, monkeypatch):
    shutil.copy(kaldi_fixtures / "features/prepared8k.txt", tmp_path)
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "copy.conf"
    conf.write_text("--write-num-frames=ark,t:utt2num_frames  # as Kaldi conf files\n")
    assert (
        run(
            "copy-feats",
            f"--config={conf}",
            "ark,t:prepared8k.txt",
            "ark,scp:prepared8k.ark,prepared8k.scp",
        )
        == 0
    )
    assert (tmp_path / "prepared8k.ark").read_bytes() == (
        kaldi_fixtures / "features/prepared8k.ark"
    ).read_bytes()
    assert (tmp_path / "prepared8k.scp").read_text() == (
        kaldi_fixtures / "features/prepared8k.scp"
    ).read_text()
    frames = tables.read_text_table("utt2num_frames")
    assert frames == {k: str(v.shape[0]) for k, v in tables.read("ark:prepared8k.txt")}


def test_copy_matrix_and_vector_single_files(run, kaldi_fixtures, tmp_path):
    b = kaldi_fixtures / "backend"
    assert (
        run("copy-matrix", "--binary=false", str(b / "transform.mat"), str(tmp_path / "t.txt")) == 0
    )
    assert (tmp_path / "t.txt").read_bytes() == (b / "transform.mat.txt").read_bytes()
    assert run("copy-matrix", str(tmp_path / "t.txt"), str(tmp_path / "t.mat")) == 0
    assert (tmp_path / "t.mat").read_bytes()[:5] == b"\0BFM "
    assert run("copy-vector", "--binary=false", str(b / "mean.vec"), str(tmp_path / "m.txt")) == 0
    assert (tmp_path / "m.txt").read_bytes() == (b / "mean.vec.txt").read_bytes()
    assert run("copy-vector", "--change-dim=3", str(b / "mean.vec"), str(tmp_path / "m3")) == 0
    np.testing.assert_array_equal(
        tables.read_vector(str(tmp_path / "m3")), tables.read_vector(str(b / "mean.vec"))[:3]
    )
    assert (
        run(
            "copy-matrix",
            "--scale=2",
            f"ark:{kaldi_fixtures}/features/mfcc8k_float.ark",
            f"ark:{tmp_path}/s.ark",
        )
        == 0
    )
    got = tables.read_dict(f"ark:{tmp_path}/s.ark")
    ref = tables.read_dict(f"ark:{kaldi_fixtures}/features/mfcc8k_float.ark")
    assert all(np.array_equal(got[k], ref[k] * np.float32(2)) for k in ref)


def test_copy_vector_tables_match_kaldi(run, kaldi_fixtures, tmp_path, monkeypatch):
    shutil.copy(kaldi_fixtures / "backend/enroll.ark.txt", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run("copy-vector", "ark,t:enroll.ark.txt", "ark,scp:enroll.ark,enroll.scp") == 0
    assert (tmp_path / "enroll.ark").read_bytes() == (
        kaldi_fixtures / "backend/enroll.ark"
    ).read_bytes()
    assert (tmp_path / "enroll.scp").read_text() == (
        kaldi_fixtures / "backend/enroll.scp"
    ).read_text()


def test_feat_to_dim_and_len(run, kaldi_fixtures, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(kaldi_fixtures / "features")
    assert run("feat-to-dim", "scp:prepared16k.scp", "-") == 0
    assert capsys.readouterr().out == "30\n"
    assert run("feat-to-len", "scp:prepared16k.scp", f"ark,t:{tmp_path}/len") == 0
    lens = tables.read_dict(f"ark:{tmp_path}/len", kind="int32")
    assert lens == {k: v.shape[0] for k, v in tables.read("ark:prepared16k.txt")}
    assert run("feat-to-dim", "ark:mfcc16k_cm5.ark", f"ark,t:{tmp_path}/dims") == 0
    assert set(tables.read_dict(f"ark:{tmp_path}/dims", kind="int32").values()) == {30}
    assert run("feat-to-len", str(kaldi_fixtures / "backend/transform.mat")) == 0
    assert capsys.readouterr().out == "48\n"


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["copy-feats", "ark:{bad}", "ark:{out}"], "key 'u4_8k': truncated"),
        (["copy-feats", "ark:{vec}", "ark:{out}"], "expected a matrix, found a float vector"),
        (["copy-feats", "{bad}", "ark:{out}"], "cannot mix archives with regular files"),
        (["copy-feats", "arc:{bad}", "{out}"], "cannot open 'arc"),
        (
            ["copy-feats", "--compress=true", "--compression-method=9", "ark:{bad}", "ark:{out}"],
            "1..7",
        ),
        (["copy-vector", "scp:{scp}", "ark:{out}"], "gone.ark"),
    ],
)
def test_bad_input_one_line_error_exit_1_no_output(
    run, kaldi_fixtures, tmp_path, capsys, argv, msg
):
    data = (kaldi_fixtures / "features/mfcc8k_float.ark").read_bytes()
    (tmp_path / "bad.ark").write_bytes(data[:-100])
    (tmp_path / "s.scp").write_text(f"x {tmp_path}/gone.ark:5\n")
    names = {
        "bad": tmp_path / "bad.ark",
        "out": tmp_path / "out.ark",
        "vec": kaldi_fixtures / "features/vad16k.ark",
        "scp": tmp_path / "s.scp",
    }
    assert run(*[a.format(**names) for a in argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"ERROR (xvjax {argv[0]}): ") and msg in err[-1], err
    assert not (tmp_path / "out.ark").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ark", "s.scp"]


def test_permissive_copy_skips_with_warning(run, kaldi_fixtures, tmp_path, capsys):
    data = (kaldi_fixtures / "features/mfcc8k_float.ark").read_bytes()
    (tmp_path / "bad.ark").write_bytes(data[:-100])
    assert run("copy-feats", f"ark,p:{tmp_path}/bad.ark", f"ark:{tmp_path}/out.ark") == 0
    assert list(tables.read_dict(f"ark:{tmp_path}/out.ark")) == ["u3_8k"]
    assert "WARNING" in capsys.readouterr().err


def test_real_pipeline_between_processes(kaldi_fixtures, tmp_path):
    """`xvjax copy-feats ... ark:- | xvjax copy-feats ark:- ark,t:-` through a shell pipe."""
    import os
    import subprocess
    import sys

    f = kaldi_fixtures / "features"
    xv = os.path.join(os.path.dirname(sys.executable), "xvjax")  # the installed console script
    cmd = (
        f"{xv} copy-feats --compress=true ark,t:{f}/mfcc16k.txt ark:- | "
        f"{xv} copy-feats ark:- ark,t:{tmp_path}/out.txt"
    )
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out.txt").read_bytes() == (
        f / "mfcc16k_compressed_decoded.txt"
    ).read_bytes()
    assert proc.stderr.count("Copied 5 feature matrices.") == 2
