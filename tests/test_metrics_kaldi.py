"""EER and minDCF exactly as Kaldi's compute-eer and sid/compute_min_dcf.py print them (metrics/ and
backend/ fixtures, ties and edge cases), actual DCF, DET points and calibration."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from xvjax import metrics
from xvjax.backend import calibration
from xvjax.errors import XvjaxError


def rows(path):
    with open(path) as f:
        return list(csv.reader(f, delimiter="\t"))


def eer_log(eer, threshold):
    return f"Equal error rate is {100.0 * eer:.6g}%, at threshold {threshold:.6g}"


def test_compute_eer_fixtures_exact(kaldi_fixtures):
    folder = kaldi_fixtures / "metrics"
    checked = 0
    for tool, arg, stdout, stderr in rows(folder / "expected.tsv"):
        if tool != "compute-eer":
            continue
        scores, labels = metrics.read_eer_input((folder / arg).read_text().splitlines())
        eer, thr = metrics.compute_eer(scores, labels)
        assert metrics.format_eer(eer) == stdout, arg
        assert stderr.endswith(eer_log(eer, thr)), (arg, stderr)
        checked += 1
    assert checked == 6


def test_compute_min_dcf_fixtures_exact_with_ties(kaldi_fixtures):
    folder = kaldi_fixtures / "metrics"
    scores, labels = metrics.read_scores_and_trials(
        (folder / "dcf_scores").read_text().splitlines(),
        (folder / "dcf_trials").read_text().splitlines(),
    )
    checked = 0
    for tool, arg, stdout, stderr in rows(folder / "expected.tsv"):
        if tool != "compute_min_dcf.py":
            continue
        a = arg.split()
        opts = {k: float(v) for k, v in zip(a[0::2], a[1::2], strict=True)}
        dcf, thr = metrics.compute_min_dcf(
            scores, labels, opts["--p-target"], opts.get("--c-miss", 1), opts.get("--c-fa", 1)
        )
        assert f"{dcf:.4f}" == stdout, arg
        assert f"minDCF is {dcf:.4f} at threshold {thr:.4f}" in stderr
        checked += 1
    assert checked == 6
    # the tie semantics matter: a threshold-based minimum gives 0.5238 for p=0.5 (MANIFEST)
    assert f"{metrics.compute_min_dcf(scores, labels, 0.5)[0]:.4f}" == "0.5060"


def test_backend_score_files_metrics_verbatim(kaldi_fixtures):
    folder = kaldi_fixtures / "backend"
    trials = (folder / "trials").read_text().splitlines()
    labels_of = {tuple(t.split()[:2]): t.split()[2] for t in trials}
    checked = 0
    for name, tool, stdout, stderr in rows(folder / "metrics_verbatim.tsv"):
        score_lines = (folder / name).read_text().splitlines()
        if tool == "compute-eer":
            # local/prepare_for_eer.py: '<score> <label>' per scores line
            eer_lines = [f"{l.split()[2]} {labels_of[tuple(l.split()[:2])]}" for l in score_lines]
            eer, thr = metrics.compute_eer(*metrics.read_eer_input(eer_lines))
            assert metrics.format_eer(eer) == stdout
            assert stderr.endswith(eer_log(eer, thr)), (name, stderr, eer_log(eer, thr))
        else:
            p = float(tool.split()[-1])
            scores, labels = metrics.read_scores_and_trials(score_lines, trials)
            dcf, thr = metrics.compute_min_dcf(scores, labels, p)
            assert f"{dcf:.4f}" == stdout
            assert f"minDCF is {dcf:.4f} at threshold {thr:.4f}" in stderr
        checked += 1
    assert checked == 18


def test_metric_input_errors():
    with pytest.raises(XvjaxError, match="no target scores"):
        metrics.compute_eer([1.0, 2.0], [0, 0])
    with pytest.raises(XvjaxError, match="second field"):
        metrics.read_eer_input(["1.0 tgt"])
    with pytest.raises(XvjaxError, match="first field must be float"):
        metrics.read_eer_input(["x target"])
    with pytest.raises(XvjaxError, match="Missing entry for a and b"):
        metrics.read_scores_and_trials(["a b 1.0"], ["a c target"])
    with pytest.raises(XvjaxError, match=r"s:2: bad score 'x'"):
        metrics.read_scores_and_trials(["a b 1.0", "a c x"], ["a b target", "a c target"], "s")
    with pytest.raises(XvjaxError, match=r"s:1: expected .* got 'a b'"):
        metrics.read_score_lines(["a b"], "s")
    pairs, scores = metrics.read_score_lines(["a b 1.5", "", "c d -2"])
    assert pairs == [("a", "b"), ("c", "d")] and scores.tolist() == [1.5, -2.0]
    with pytest.raises(XvjaxError, match="p-target"):
        metrics.compute_min_dcf([1, 2], [0, 1], p_target=1.0)
    # actual DCF validates its costs like minDCF (was a bare math domain error for p_target=0)
    with pytest.raises(XvjaxError, match="p-target must be greater than 0"):
        metrics.compute_act_dcf([1, 2], [0, 1], p_target=0.0)
    with pytest.raises(XvjaxError, match="c-miss must be greater than 0"):
        metrics.compute_act_dcf([1, 2], [0, 1], c_miss=0.0)


def test_act_dcf_and_det_curve():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200, bool), np.zeros(2000, bool)]
    scores = np.r_[rng.normal(2, 1, 200), rng.normal(-2, 1, 2000)]
    # actual DCF of perfectly calibrated LLRs (equal-variance Gaussians: llr = 4 s) ~ minDCF
    llr = 4.0 * scores
    act = metrics.compute_act_dcf(llr, labels, 0.01)
    mn, _ = metrics.compute_min_dcf(llr, labels, 0.01)
    assert mn <= act + 1e-12 and act < mn + 0.1
    # badly shifted scores give a much worse actual DCF but the same minDCF
    assert metrics.compute_act_dcf(llr + 20, labels, 0.01) > act + 0.5
    assert metrics.compute_min_dcf(llr + 20, labels, 0.01)[0] == pytest.approx(mn)
    fnr, fpr = metrics.det_curve(scores, labels)
    assert fnr[0] == 0 and fpr[0] == 1 and fnr[-1] == 1 and fpr[-1] == 0
    assert np.all(np.diff(fnr) >= 0) and np.all(np.diff(fpr) <= 0)


def test_logistic_calibration_recovers_the_true_llr():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(3000, bool), np.zeros(30000, bool)]
    # scores = (llr - 3) / 2 with llr = 4 s_true for unit Gaussians at +-2
    s_true = np.r_[rng.normal(2, 1, 3000), rng.normal(-2, 1, 30000)]
    scores = (4 * s_true - 3) / 2
    cal = calibration.train_calibration(scores, labels, p_target=0.5)
    assert cal.scale == pytest.approx(2.0, rel=0.05)
    assert cal.offset == pytest.approx(3.0, abs=0.2)
    llr = calibration.apply_calibration(cal, scores)
    assert calibration.cllr(llr, labels) < calibration.cllr(scores, labels)
    # prior-weighted training at p=0.01 is still a monotone map, minDCF unchanged
    cal01 = calibration.train_calibration(scores, labels, p_target=0.01)
    assert cal01.scale > 0
    with pytest.raises(XvjaxError, match="both target and nontarget"):
        calibration.train_calibration(scores[:10], labels[:10])


def test_calibration_file_round_trip(tmp_path):
    cal = calibration.Calibration(1.25, -3.5)
    calibration.save_calibration(cal, str(tmp_path / "cal.vec"))
    assert (tmp_path / "cal.vec").read_text().strip() == "[ 1.25 -3.5 ]"
    assert calibration.load_calibration(str(tmp_path / "cal.vec")) == cal


def loop_eer(target, nontarget):
    """compute-eer's loop, transcribed literally (the vectorised version must agree)."""
    target = sorted(np.float32(target))
    nontarget = sorted(np.float32(nontarget))
    p = 0
    while p + 1 < len(target):
        n = int(len(nontarget) * p * 1.0 / len(target))
        q = max(len(nontarget) - 1 - n, 0)
        if nontarget[q] < target[p]:
            break
        p += 1
    return float(np.float32(p * 1.0 / len(target))), float(target[p])


def loop_min_dcf(scores, labels, p, c_miss, c_fa):
    """compute_min_dcf.py's loops, transcribed literally."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    lab = [int(labels[i]) for i in order]
    fnrs, fprs, a, b = [], [], 0, 0
    for x in lab:
        a += x
        b += 1 - x
        fnrs.append(a)
        fprs.append(b)
    fnrs = [x / float(sum(lab)) for x in fnrs]
    fprs = [1 - x / float(len(lab) - sum(lab)) for x in fprs]
    best, thr = float("inf"), scores[order[0]]
    for i in range(len(lab)):
        c = c_miss * fnrs[i] * p + c_fa * fprs[i] * (1 - p)
        if c < best:
            best, thr = c, scores[order[i]]
    return best / min(c_miss * p, c_fa * (1 - p)), thr


@pytest.mark.parametrize("seed", range(25))
def test_vectorised_metrics_equal_the_literal_loops(seed):
    rng = np.random.default_rng(seed)
    n_t, n_n = int(rng.integers(1, 30)), int(rng.integers(1, 80))
    grid = float(rng.choice([0.25, 0.5, 1.0]))  # coarse grids: many ties across classes
    target = np.round(rng.normal(1, 1.5, n_t) / grid) * grid
    nontarget = np.round(rng.normal(-1, 1.5, n_n) / grid) * grid
    scores = np.r_[target, nontarget]
    labels = np.r_[np.ones(n_t, bool), np.zeros(n_n, bool)]
    perm = rng.permutation(len(scores))
    scores, labels = scores[perm], labels[perm]
    assert metrics.compute_eer(scores, labels) == loop_eer(target, nontarget)
    p, c_miss, c_fa = float(rng.choice([0.01, 0.05, 0.5])), float(rng.choice([1, 10])), 1.0
    got = metrics.compute_min_dcf(scores, labels, p, c_miss, c_fa)
    want = loop_min_dcf(list(scores), list(labels), p, c_miss, c_fa)
    assert got[1] == want[1] and got[0] == pytest.approx(want[0], rel=1e-12)
