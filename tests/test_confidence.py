"""Speaker-bootstrap confidence intervals: weighted metrics equal the metrics of the expanded trial
list, replicates resample speakers (not trials), and paired comparisons are exact for equal systems."""

from __future__ import annotations

import numpy as np
import pytest

from xvjax import confidence, metrics
from xvjax.errors import XvjaxError


def _trials(num_spk=12, tests_per_spk=5, seed=0, spread=1.0):
    """sre-style trials: every speaker's model against every test utterance; scores carry a
    per-speaker offset (so trials of one speaker are correlated, as real ones are)."""
    rng = np.random.default_rng(seed)
    spk = [f"s{i:02d}" for i in range(num_spk)]
    offset = rng.normal(0, spread, num_spk)
    models, tests, labels, scores = [], [], [], []
    for m in range(num_spk):
        for t in range(num_spk):
            for _ in range(tests_per_spk):
                models.append(spk[m])
                tests.append(spk[t])
                labels.append(m == t)
                scores.append(rng.normal(2.0 if m == t else 0.0) + offset[m] + offset[t])
    return np.array(scores), np.array(labels), models, tests


def test_weighted_metrics_equal_the_expanded_trial_list():
    scores, labels, models, tests = _trials()
    units = confidence.TrialUnits.from_ids(models, tests)
    boot = confidence.Bootstrap(units, num_replicates=5, seed=3)
    reps = boot.replicates(scores, labels)
    w = boot.weights(slice(0, 5)).astype(int)
    for r in range(5):
        s, lab = np.repeat(scores, w[r]), np.repeat(labels, w[r])
        fnr, fpr = metrics.det_curve(s, lab)
        assert reps["eer"][r] == pytest.approx(100 * np.min(np.maximum(fnr[1:], fpr[1:])))
        for p in confidence.P_TARGETS:
            dcf, _ = metrics.compute_min_dcf(s, lab, p)
            assert reps[f"min_dcf_{p:g}"][r] == pytest.approx(dcf)


def test_replicates_draw_speakers_with_replacement():
    scores, labels, models, tests = _trials(num_spk=10)
    units = confidence.TrialUnits.from_ids(models, tests)
    assert units.num_units == 10 and units.names[0] == "s00"
    boot = confidence.Bootstrap(units, num_replicates=200, seed=0)
    assert np.all(boot.counts.sum(1) == 10)
    # A trial between speakers a and b weighs c_a * c_b.
    w = boot.weights(slice(0, 1))[0]
    c = boot.counts[0]
    assert np.array_equal(w, c[units.model] * c[units.test])
    assert (boot.counts == 0).any()  # some speaker left out of some replicate


def test_speaker_bootstrap_is_wider_than_trial_bootstrap_for_correlated_trials():
    scores, labels, models, tests = _trials(num_spk=16, tests_per_spk=8, spread=1.0)
    boot = confidence.Bootstrap(confidence.TrialUnits.from_ids(models, tests), 400, seed=1)
    lo, hi = confidence.interval(boot.replicates(scores, labels)["eer"])
    eer = 100 * metrics.compute_eer(scores, labels)[0]
    assert lo < eer < hi
    # Trials as units (each trial its own speaker on both sides) ignore the speaker effect.
    ids = [f"t{i}" for i in range(len(scores))]
    naive = confidence.Bootstrap(confidence.TrialUnits(
        np.arange(len(ids)), np.arange(len(ids)), len(ids), tuple(ids)), 400, seed=1)  # fmt: skip
    nlo, nhi = confidence.interval(naive.replicates(scores, labels)["eer"])
    assert hi - lo > 1.5 * (nhi - nlo)


def test_paired_relative_change():
    scores, labels, models, tests = _trials()
    boot = confidence.Bootstrap(confidence.TrialUnits.from_ids(models, tests), 100, seed=2)
    a = boot.replicates(scores, labels)
    assert np.allclose(confidence.relative_change(a["eer"], a["eer"]), 0.0)
    better = boot.replicates(np.where(labels, scores + 1.0, scores), labels)
    change = confidence.relative_change(better["eer"], a["eer"])
    lo, hi = confidence.interval(change)
    assert hi < 0  # a clearly better system: the whole interval is an improvement


def test_bad_input():
    scores, labels, models, tests = _trials(num_spk=3)
    units = confidence.TrialUnits.from_ids(models, tests)
    with pytest.raises(XvjaxError, match="replicate"):
        confidence.Bootstrap(units, 0)
    with pytest.raises(XvjaxError, match="scores"):
        confidence.Bootstrap(units, 2).replicates(scores[:-1], labels[:-1])
    with pytest.raises(XvjaxError, match="2 speakers"):
        confidence.Bootstrap(confidence.TrialUnits.from_ids(["a"], ["a"]), 2)
