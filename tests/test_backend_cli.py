"""Backend commands end to end: Kaldi's MANIFEST command lines with `xvjax` in place of the Kaldi
binaries (pipes included), Kaldi's printed metrics, bad input (clear errors, no partial files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from xvjax import cli
from xvjax.kaldi import plda_io, tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, capsys):
    rc = cli.run(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def read_scores(path):
    out = {}
    for line in open(path):
        e, t, s = line.split()
        out[(e, t)] = float(s)
    return out


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max(abs(a[k] - b[k]) for k in a)


@pytest.fixture(scope="module")
def bk(kaldi_fixtures):
    return kaldi_fixtures / "backend"


def test_compute_eer_prints_like_kaldi(kaldi_fixtures, capsys):
    rc, out, err = run(
        ["compute-eer", str(kaldi_fixtures / "metrics" / "eer_all_tied.txt")], capsys
    )
    assert rc == 0 and out == "80"
    assert "Equal error rate is 80%, at threshold 0.5" in err


def test_compute_min_dcf_accepts_the_scripts_options(kaldi_fixtures, capsys):
    m = kaldi_fixtures / "metrics"
    argv = ["compute-min-dcf", "--p-target", "0.01", "--c-miss", "10", "--c-fa", "1"]
    rc, out, err = run([*argv, str(m / "dcf_scores"), str(m / "dcf_trials")], capsys)
    assert rc == 0 and out == "0.8089\n"
    assert "minDCF is 0.8089 at threshold 2.5000 (p-target=0.01, c-miss=10.0,c-fa=1.0)" in err
    rc, out, err = run(
        ["compute-min-dcf", "--p-target=0.5", str(m / "dcf_scores"), str(m / "dcf_trials")], capsys
    )
    assert out == "0.5060\n" and "(p-target=0.5, c-miss=1,c-fa=1)" in err
    for cmd in ("compute-min-dcf", "compute-act-dcf"):
        rc, out, err = run([cmd, "--c-fa=0", str(m / "dcf_scores"), str(m / "dcf_trials")], capsys)
        assert rc == 1 and out == "" and "--c-fa must be greater than 0" in err


def test_plda_scoring_command_matches_kaldi(bk, tmp_path, capsys):
    out = tmp_path / "scores"
    argv = [
        "ivector-plda-scoring",
        "--normalize-length=true",
        f"--num-utts=ark:{bk / 'num_utts.ark'}",
        str(bk / "plda_adapt"),
        f"ark,t:{bk / 'enroll_prepared_mean.ark.txt'}",
        f"ark,t:{bk / 'test_prepared_mean.ark.txt'}",
        str(bk / "trials.pairs"),
        str(out),
    ]
    rc, _, err = run(argv, capsys)
    assert rc == 0
    ref = read_scores(bk / "scores_plda_adapt_mean")
    assert max_diff(read_scores(out), ref) < 1e-4
    # same line order and keys as Kaldi's file
    assert [line.split()[:2] for line in open(out)] == [
        line.split()[:2] for line in open(bk / "scores_plda_adapt_mean")
    ]
    # Kaldi's own log lines, same numbers
    assert "Mean score was -27.1604, standard deviation was 17.9849" in err
    assert "Average renormalization scale on training iVectors was 1.02996" in err
    assert "Processed 1102 trials, 0 had errors." in err


def test_unknown_trial_keys_warn_like_kaldi(bk, tmp_path, capsys):
    trials = tmp_path / "trials"
    trials.write_text("evl0000 evl0000-001\nnobody evl0000-001\nevl0000 ghost\n")
    argv = [
        "ivector-plda-scoring",
        str(bk / "plda"),
        f"ark,t:{bk / 'enroll_prepared_mean.ark.txt'}",
        f"ark,t:{bk / 'test_prepared_mean.ark.txt'}",
        str(trials),
        str(tmp_path / "s"),
    ]
    rc, _, err = run(argv, capsys)
    assert rc == 0
    assert "Key nobody not present in training iVectors" in err
    assert "Key ghost not present in test iVectors" in err
    assert "Processed 1 trials, 2 had errors." in err
    assert len(open(tmp_path / "s").read().splitlines()) == 1


def test_bad_vectors_are_skipped_or_fail_cleanly_without_output(bk, tmp_path, capsys):
    enroll = tmp_path / "enroll.ark.txt"
    lines = open(bk / "enroll_prepared_mean.ark.txt").read().splitlines()
    key = lines[3].split()[0]
    fields = lines[3].split()
    fields[5] = "nan"
    lines[3] = " ".join(fields)
    enroll.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores"
    argv = [
        "ivector-plda-scoring",
        str(bk / "plda"),
        f"ark,t:{enroll}",
        f"ark,t:{bk / 'test_prepared_mean.ark.txt'}",
        str(bk / "trials.pairs"),
        str(out),
    ]
    # a NaN vector is skipped like an absent one (Kaldi skips trials whose vectors are absent):
    # its trials are counted as errors, the others scored as with the intact table
    rc, _, err = run(argv, capsys)
    assert rc == 0 and f"'{key}' in 'ark,t:{enroll}' has NaN or infinite values" in err
    trials = [line.split() for line in open(bk / "trials.pairs").read().splitlines()]
    num_bad = sum(1 for t in trials if t[0] == key)
    assert 0 < num_bad < len(trials)
    assert f"Processed {len(trials) - num_bad} trials, {num_bad} had errors." in err
    kept = [line.split() for line in out.read_text().splitlines()]
    assert [s[:2] for s in kept] == [t[:2] for t in trials if t[0] != key]
    argv_ok = [*argv[:2], f"ark,t:{bk / 'enroll_prepared_mean.ark.txt'}", *argv[3:5], str(out)]
    assert run(argv_ok, capsys)[0] == 0
    intact = {tuple(s[:2]): s[2] for s in (line.split() for line in out.read_text().splitlines())}
    assert all(intact[tuple(s[:2])] == s[2] for s in kept)
    out.unlink()
    # a NaN in the data a model is estimated from is an error naming the key, with no output
    lda = tmp_path / "lda.mat"
    rc, _, err = run(
        ["ivector-compute-lda", "--dim=5", f"ark,t:{enroll}", str(bk / "enroll.utt2spk"), str(lda)],
        capsys,
    )
    assert rc == 1 and f"'{key}'" in err and "NaN" in err
    assert not lda.exists() and not list(tmp_path.glob(".lda*"))
    # raw 128-dim vectors against the 48-dim PLDA: the error names the key and the fix
    argv = [
        "ivector-plda-scoring",
        str(bk / "plda"),
        f"ark,t:{bk / 'enroll.ark.txt'}",
        f"ark,t:{bk / 'test.ark.txt'}",
        str(bk / "trials.pairs"),
        str(out),
    ]
    rc, _, err = run(argv, capsys)
    assert rc == 1 and "has dimension 128, expected 48" in err and not out.exists()
    # too few speakers for the LDA dimension
    subset = tmp_path / "train160.ark.txt"
    subset.write_text("".join(open(bk / "train.ark.txt").readlines()[:160]))
    rc, _, err = run(
        [
            "ivector-compute-lda",
            "--dim=48",
            f"ark,t:{subset}",
            f"ark:{bk / 'train.utt2spk'}",
            str(tmp_path / "lda.mat"),
        ],
        capsys,
    )
    assert rc == 1 and "needs at least 49 speakers, got 20" in err
    assert not (tmp_path / "lda.mat").exists()


def test_score_norm_file_mode_reproduces_the_reference(bk, tmp_path, capsys):
    for method, extra, ref in (
        ("snorm", [], "scores_snorm"),
        ("asnorm", ["--top-k=20"], "scores_asnorm_top20"),
    ):
        out = tmp_path / method
        argv = [
            "score-norm",
            f"--method={method}",
            *extra,
            str(bk / "scores_plda_adapt_mean_adapt"),
            str(bk / "scores_enroll_cohort"),
            str(bk / "scores_test_cohort"),
            str(out),
        ]
        rc, _, _ = run(argv, capsys)
        assert rc == 0
        assert max_diff(read_scores(out), read_scores(bk / ref)) < 1e-5


def test_score_norm_plda_modes_and_score_matrix(bk, tmp_path, capsys):
    common = [
        f"--num-utts=ark:{bk / 'num_utts.ark'}",
        str(bk / "plda_adapt"),
        f"ark,t:{bk / 'enroll_prepared_mean_adapt.ark.txt'}",
        f"ark,t:{bk / 'test_prepared_mean_adapt.ark.txt'}",
    ]
    cohort = f"ark,t:{bk / 'cohort_prepared.ark.txt'}"
    out = tmp_path / "asnorm"
    rc, _, _ = run(
        [
            "score-norm",
            "--method=asnorm",
            "--top-k=20",
            "--block-size=16",
            "--precision=float64",
            *common,
            cohort,
            str(bk / "trials.pairs"),
            str(out),
        ],
        capsys,
    )
    assert rc == 0
    ref = read_scores(bk / "scores_asnorm_top20")
    assert max_diff(read_scores(out), ref) < 5e-5  # reference built from 7-digit Kaldi scores
    # dense S-norm rows equal the trial-list S-norm
    rc, _, _ = run(
        [
            "score-norm",
            "--method=asnorm",
            "--top-k=20",
            "--precision=float64",
            f"--test-keys-out={tmp_path / 'cols'}",
            *common,
            cohort,
            f"ark:{tmp_path / 'norm.ark'}",
        ],
        capsys,
    )
    assert rc == 0
    cols = open(tmp_path / "cols").read().split()
    rows = tables.read_dict(f"ark:{tmp_path / 'norm.ark'}", kind="vector")
    trial = read_scores(out)
    assert max(abs(rows[e][cols.index(t)] - s) for (e, t), s in trial.items()) < 1e-5
    # dense raw scores equal Kaldi's trial scores on the same pairs
    rc, _, _ = run(
        [
            "score-matrix",
            f"--test-keys-out={tmp_path / 'cols2'}",
            "--block-size=7",
            *common,
            f"ark:{tmp_path / 'm.ark'}",
        ],
        capsys,
    )
    assert rc == 0
    m = tables.read_dict(f"ark:{tmp_path / 'm.ark'}", kind="vector")
    cols = open(tmp_path / "cols2").read().split()
    kaldi = read_scores(bk / "scores_plda_adapt_mean_adapt")
    assert len(m) == 40 and all(len(v) == 160 for v in m.values())
    assert max(abs(m[e][cols.index(t)] - s) for (e, t), s in kaldi.items()) < 1e-4


def test_calibrate_act_dcf_and_det_plot(bk, tmp_path, capsys):
    scores, trials = str(bk / "scores_plda_adapt_mean_adapt"), str(bk / "trials")
    cal = tmp_path / "cal.vec"
    rc, _, err = run(["calibrate", "train", "--p-target=0.05", scores, trials, str(cal)], capsys)
    assert rc == 0 and cal.exists() and "Cllr" in err
    llr = tmp_path / "llr"
    rc, _, _ = run(["calibrate", "apply", str(cal), scores, str(llr)], capsys)
    assert rc == 0
    rc, act_cal, _ = run(["compute-act-dcf", "--p-target", "0.05", str(llr), trials], capsys)
    rc, act_raw, _ = run(["compute-act-dcf", "--p-target", "0.05", scores, trials], capsys)
    rc, min_raw, _ = run(["compute-min-dcf", "--p-target", "0.05", scores, trials], capsys)
    assert float(min_raw) <= float(act_cal) < float(act_raw)
    png = tmp_path / "det.png"
    rc, _, _ = run(["det-plot", trials, str(png), scores, str(bk / "scores_asnorm_top20")], capsys)
    assert rc == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, _, err = run(["calibrate", "fit", scores, trials, str(cal)], capsys)
    assert rc == 1 and "'train' or 'apply'" in err


MANIFEST_COMMANDS = r"""
set -e
xvjax ivector-mean scp:train.scp mean.vec
xvjax ivector-mean scp:adapt.scp mean_adapt.vec
xvjax ivector-subtract-global-mean scp:train.scp ark,t:train_centered.ark.txt
xvjax ivector-compute-lda --total-covariance-factor=0.0 --dim=48 ark,t:train_centered.ark.txt ark:train.utt2spk transform.mat
xvjax transform-vec transform.mat ark,t:train_centered.ark.txt ark,t:train_lda.ark.txt
xvjax ivector-normalize-length ark,t:train_lda.ark.txt ark,t:train_lda_norm.ark.txt
xvjax ivector-compute-plda ark:train.spk2utt ark,t:train_lda_norm.ark.txt plda
xvjax ivector-copy-plda --binary=false plda plda.txt
xvjax ivector-subtract-global-mean scp:adapt.scp ark:- | xvjax transform-vec transform.mat ark:- ark:- | xvjax ivector-normalize-length ark:- ark,t:adapt_prepared.ark.txt
xvjax ivector-adapt-plda --within-covar-scale=0.75 --between-covar-scale=0.25 plda ark,t:adapt_prepared.ark.txt plda_adapt
xvjax ivector-mean ark:enroll.spk2utt scp:enroll.scp ark,t:enroll_spk.ark.txt ark,t:num_utts.ark
xvjax ivector-plda-scoring --normalize-length=true --num-utts=ark:num_utts.ark 'xvjax ivector-copy-plda --smoothing=0.0 plda_adapt - |' 'ark:xvjax ivector-mean ark:enroll.spk2utt scp:enroll.scp ark:- | xvjax ivector-subtract-global-mean mean_adapt.vec ark:- ark:- | xvjax transform-vec transform.mat ark:- ark:- | xvjax ivector-normalize-length ark:- ark:- |' 'ark:xvjax ivector-subtract-global-mean mean_adapt.vec scp:test.scp ark:- | xvjax transform-vec transform.mat ark:- ark:- | xvjax ivector-normalize-length ark:- ark:- |' trials.pairs scores_plda_adapt_mean_adapt
python3 local_prepare_for_eer.py trials scores_plda_adapt_mean_adapt | xvjax compute-eer - > eer
xvjax compute-min-dcf --p-target 0.01 scores_plda_adapt_mean_adapt trials > mindcf
"""

PREPARE_FOR_EER = """import sys
labels = {tuple(l.split()[:2]): l.split()[2] for l in open(sys.argv[1])}
for line in open(sys.argv[2]):
    e, t, s = line.split()
    print(s, labels[(e, t)])
"""


@pytest.mark.slow
def test_manifest_pipeline_with_xvjax_binaries(bk, tmp_path):
    """sre16/v2 backend from the fixture MANIFEST: our binaries, Kaldi's file formats and pipes."""
    for name in ("train", "adapt", "enroll", "test"):
        for ext in (".ark", ".scp"):
            shutil.copy(bk / f"{name}{ext}", tmp_path)
    for name in ("train.spk2utt", "train.utt2spk", "enroll.spk2utt", "trials", "trials.pairs"):
        shutil.copy(bk / name, tmp_path)
    (tmp_path / "local_prepare_for_eer.py").write_text(PREPARE_FOR_EER)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        ["bash", "-c", MANIFEST_COMMANDS], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    mean = tables.read_vector(str(tmp_path / "mean.vec"), dtype=np.float64)
    kaldi_mean = tables.read_vector(str(bk / "mean.vec"), dtype=np.float64)
    assert np.abs(mean - kaldi_mean).max() / np.abs(kaldi_mean).max() < 1e-5
    lda = tables.read_matrix(str(tmp_path / "transform.mat"), dtype=np.float64)
    kaldi_lda = tables.read_matrix(str(bk / "transform.mat"), dtype=np.float64)
    lda *= np.sign(np.sum(lda * kaldi_lda, axis=1))[:, None]
    assert np.abs(lda - kaldi_lda).max() / np.abs(kaldi_lda).max() < 1e-5
    for name in ("plda", "plda_adapt"):
        ours, kaldi = plda_io.read_plda(str(tmp_path / name)), plda_io.read_plda(str(bk / name))
        assert np.abs(ours.psi - kaldi.psi).max() / kaldi.psi.max() < 1e-5
    assert (tmp_path / "num_utts.ark").read_text() == (bk / "num_utts.ark").read_text()
    ours = read_scores(tmp_path / "scores_plda_adapt_mean_adapt")
    assert max_diff(ours, read_scores(bk / "scores_plda_adapt_mean_adapt")) < 1e-4
    assert (tmp_path / "eer").read_text() == "18.13"
    assert (tmp_path / "mindcf").read_text() == "0.9000\n"


def vec_table(path):
    return tables.read_dict(f"ark,t:{path}", kind="vector")


def test_vector_tools_reproduce_kaldi_files(bk, tmp_path, capsys):
    t = tmp_path
    assert (
        run(["ivector-mean", f"ark,t:{bk / 'adapt.ark.txt'}", str(t / "mean.vec")], capsys)[0] == 0
    )
    ours = tables.read_vector(str(t / "mean.vec"), dtype=np.float64)
    assert (
        np.abs(ours - tables.read_vector(str(bk / "mean_adapt.vec"), dtype=np.float64)).max() < 1e-5
    )
    rc, _, err = run(
        [
            "ivector-mean",
            f"ark:{bk / 'enroll.spk2utt'}",
            f"ark,t:{bk / 'enroll.ark.txt'}",
            f"ark,t:{t / 'spk.ark'}",
            f"ark,t:{t / 'num_utts.ark'}",
        ],
        capsys,
    )
    assert rc == 0 and "Norm of mean of speakers is 21.4511" in err
    assert (t / "num_utts.ark").read_text() == (bk / "num_utts.ark").read_text()
    spk, ref = vec_table(t / "spk.ark"), vec_table(bk / "enroll_spk.ark.txt")
    assert list(spk) == list(ref) and max(np.abs(spk[k] - ref[k]).max() for k in ref) < 1e-5
    # subtract mean.vec -> transform-vec -> normalize-length, through files
    steps = [
        [
            "ivector-subtract-global-mean",
            str(bk / "mean.vec"),
            f"ark,t:{t / 'spk.ark'}",
            f"ark:{t / 'a.ark'}",
        ],
        ["transform-vec", str(bk / "transform.mat"), f"ark:{t / 'a.ark'}", f"ark:{t / 'b.ark'}"],
        ["ivector-normalize-length", f"ark:{t / 'b.ark'}", f"ark,t:{t / 'c.ark'}"],
    ]
    for argv in steps:
        assert run(argv, capsys)[0] == 0
    got, ref = vec_table(t / "c.ark"), vec_table(bk / "enroll_prepared_mean.ark.txt")
    assert max(np.abs(got[k] - ref[k]).max() for k in ref) < 1e-5
    # PLDA adaptation and smoothing through the commands
    rc, _, _ = run(
        [
            "ivector-adapt-plda",
            "--within-covar-scale=0.75",
            "--between-covar-scale=0.25",
            str(bk / "plda"),
            f"ark,t:{bk / 'adapt_prepared.ark.txt'}",
            str(t / "plda_adapt"),
        ],
        capsys,
    )
    assert rc == 0
    ours, kaldi = (
        plda_io.read_plda(str(t / "plda_adapt")),
        plda_io.read_plda(str(bk / "plda_adapt")),
    )
    assert np.abs(ours.psi - kaldi.psi).max() / kaldi.psi.max() < 1e-5
    assert np.abs(ours.mean - kaldi.mean).max() < 1e-7
    rc, _, err = run(
        [
            "ivector-copy-plda",
            "--smoothing=0.1",
            "--binary=false",
            str(bk / "plda"),
            str(t / "smooth.txt"),
        ],
        capsys,
    )
    assert rc == 0 and "Smoothing within-class covariance by 0.1" in err
    ours, kaldi = (
        plda_io.read_plda(str(t / "smooth.txt")),
        plda_io.read_plda(str(bk / "plda_smooth0.1.txt")),
    )
    assert np.abs(ours.transform - kaldi.transform).max() < 1e-6
    # copying what Kaldi wrote reproduces its bytes, binary and text
    assert run(["ivector-copy-plda", str(bk / "plda"), str(t / "copy")], capsys)[0] == 0
    assert (t / "copy").read_bytes() == (bk / "plda").read_bytes()
    assert (
        run(["ivector-copy-plda", "--binary=false", str(bk / "plda"), str(t / "copy.txt")], capsys)[
            0
        ]
        == 0
    )
    assert (t / "copy.txt").read_bytes() == (bk / "plda.txt").read_bytes()


def test_dot_products_and_cosine_scoring(bk, tmp_path, capsys):
    enroll, test = f"ark,t:{bk / 'enroll_spk.ark.txt'}", f"ark,t:{bk / 'test.ark.txt'}"
    for name in ("e", "t"):
        src = enroll if name == "e" else test
        argv = ["ivector-normalize-length", "--scaleup=false", src, f"ark:{tmp_path / name}.ark"]
        assert run(argv, capsys)[0] == 0
    argv = [
        "ivector-compute-dot-products",
        str(bk / "trials.pairs"),
        f"ark:{tmp_path / 'e.ark'}",
        f"ark:{tmp_path / 't.ark'}",
        str(tmp_path / "dots"),
    ]
    rc, _, err = run(argv, capsys)
    assert rc == 0 and "Processed 1102 trials 0 had errors." in err
    rc, _, _ = run(
        ["cosine-scoring", enroll, test, str(bk / "trials.pairs"), str(tmp_path / "cos")], capsys
    )
    assert rc == 0
    dots, cos = read_scores(tmp_path / "dots"), read_scores(tmp_path / "cos")
    assert max_diff(dots, cos) < 1e-6
    e, t = vec_table(bk / "enroll_spk.ark.txt"), vec_table(bk / "test.ark.txt")
    k = ("evl0001", "evl0001-003")
    want = e[k[0]] @ t[k[1]] / np.linalg.norm(e[k[0]]) / np.linalg.norm(t[k[1]])
    assert abs(cos[k] - want) < 1e-6
