"""`xvjax.backend.trials`: the one trial list (labelled or not) and its vectorised id lookup."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from xvjax.backend.trials import Trials, rows_of
from xvjax.errors import XvjaxError


def test_read_labelled_and_unlabelled_forms(tmp_path):
    labelled = tmp_path / "trials"
    labelled.write_text("m1 u1 target\nm1 u2 nontarget\nm2 u1 nontarget\n")
    t = Trials.read(str(labelled))
    assert t.enroll == ["m1", "m1", "m2"] and t.test == ["u1", "u2", "u1"]
    np.testing.assert_array_equal(t.labels, [True, False, False])
    assert Trials.read(str(labelled), labelled=True).labels.dtype == bool
    # the scoring binaries' form: two fields a line, as `cut -d' ' -f1,2 trials |` gives
    pairs = Trials.read(f"cut -d' ' -f1,2 {labelled} |", labelled=False)
    assert pairs.enroll == t.enroll and pairs.test == t.test and pairs.labels is None
    assert Trials.read(f"cut -d' ' -f1,2 {labelled} |").labels is None
    with pytest.raises(XvjaxError, match="expected two fields: key1 key2.*cut -d"):
        Trials.read(str(labelled), labelled=False)
    with pytest.raises(XvjaxError, match="trial 'm1 u1' has no target|nontarget label"):
        Trials.read(f"cut -d' ' -f1,2 {labelled} |", labelled=True)
    mixed = tmp_path / "mixed"
    mixed.write_text("a b target\nc d\n")
    with pytest.raises(XvjaxError, match="'c d'"):
        Trials.read(str(mixed))
    scores = tmp_path / "scores"
    scores.write_text("a b 1.5\n")
    with pytest.raises(XvjaxError, match="'a b' has no target"):
        Trials.read(str(scores))


def test_index_maps_ids_to_rows_and_skips_unknown_ones():
    t = Trials(["m2", "nobody", "m1", "m2", "nobody"], ["u3", "u1", "ghost", "u1", "ghost"])
    e, te, kept = t.index(["m1", "m2"], ["u1", "u2", "u3"])
    np.testing.assert_array_equal(e, [1, -1, 0, 1, -1])
    np.testing.assert_array_equal(te, [2, 0, -1, 0, -1])
    np.testing.assert_array_equal(kept, [True, False, False, True, False])
    # the same rows as a dictionary lookup, on a larger random case
    rng = np.random.default_rng(0)
    keys = [f"k{i}" for i in rng.permutation(500)]
    names = [f"k{i}" for i in rng.integers(0, 600, 2000)]
    ref = {k: i for i, k in enumerate(keys)}
    np.testing.assert_array_equal(rows_of(keys, names), [ref.get(n, -1) for n in names])
    assert rows_of([], ["a"]).tolist() == [-1]
    with pytest.raises(XvjaxError, match="duplicate key 'a'"):
        rows_of(["a", "b", "a"], ["a"])


def test_unknown_ids_warn_like_kaldi_and_subset_keeps_order(caplog):
    t = Trials(["m1", "nobody", "m1", "nobody"], ["u1", "u1", "ghost", "ghost"],
               np.array([True, False, True, False]))  # fmt: skip
    e, te, kept = t.index(["m1"], ["u1"])
    with caplog.at_level(logging.WARNING, logger="xvjax"):
        assert t.warn_unknown(e, te, "training iVectors", "test iVectors") == 3
    assert [r.getMessage() for r in caplog.records] == [
        "Key nobody not present in training iVectors.",
        "Key ghost not present in test iVectors.",
        "Key nobody not present in training iVectors.",  # the enrolment id is checked first
    ]
    both = t.subset(kept)
    assert both.enroll == ["m1"] and both.test == ["u1"] and both.labels.tolist() == [True]
    assert len(Trials(["a"], ["b"]).subset(np.array([False]))) == 0
