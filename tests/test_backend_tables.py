"""The backend tools' file handling as library calls: vector tables with their checks
(`xvjax.backend.vector_tables`) and `<enroll> <test> <score>` files (`xvjax.backend.score_files`)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from xvjax.backend import score_files, vector_tables
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.kaldi import tables


def test_read_vectors_checks_name_the_key(tmp_path):
    good = tmp_path / "good.ark.txt"
    good.write_text("a [ 1 2 3 ]\nb [ 4 5 6 ]\n")
    keys, mat = vector_tables.read_vectors(f"ark,t:{good}")
    assert keys == ["a", "b"] and mat.dtype == np.float32
    np.testing.assert_array_equal(mat, [[1, 2, 3], [4, 5, 6]])
    empty = tmp_path / "empty.ark.txt"
    empty.write_text("")
    keys, mat = vector_tables.read_vectors(f"ark,t:{empty}", dim=4)
    assert keys == [] and mat.shape == (0, 4)
    for text, what, dim, message in (
        ("a [ 1 2 ]\na [ 3 4 ]\n", "vector", None, "duplicate vector 'a'"),
        ("a [ 1 2 ]\nb [ 3 4 5 ]\n", "vector", None, "vector 'b' .* has dimension 3, expected 2$"),
        ("a [ 1 2 ]\n", "test iVector", 3, "test iVector 'a' .*expected 3 \\(the model's dim"),
        ("a [ 1 nan ]\n", "vector", None, "vector 'a' .* contains NaN or infinite values"),
    ):
        bad = tmp_path / "bad.ark.txt"
        bad.write_text(text)
        with pytest.raises(XvjaxError, match=message):
            vector_tables.read_vectors(f"ark,t:{bad}", what, dim=dim)


def test_vectors_round_trip_as_float32(tmp_path):
    mat = np.array([[1.0, 2.5], [np.pi, -1e-3]])
    vector_tables.write_vectors(f"ark:{tmp_path / 'v.ark'}", ["x", "y"], mat)
    keys, back = vector_tables.read_vectors(f"ark:{tmp_path / 'v.ark'}")
    assert keys == ["x", "y"]
    np.testing.assert_array_equal(back, mat.astype(np.float32))


def test_enroll_num_utts_skips_speakers_without_a_count(tmp_path, caplog):
    table = tmp_path / "num_utts.ark"
    table.write_text("s1 3\ns3 1\n")
    vecs = np.arange(6, dtype=np.float32).reshape(3, 2)
    keys, kept, counts, skipped = vector_tables.enroll_num_utts(["s1", "s2", "s3"], vecs, "")
    assert keys == ["s1", "s2", "s3"] and counts.tolist() == [1, 1, 1] and skipped == 0
    with caplog.at_level(logging.WARNING, logger="xvjax"):
        keys, kept, counts, skipped = vector_tables.enroll_num_utts(
            ["s1", "s2", "s3"], vecs, f"ark:{table}"
        )
    assert keys == ["s1", "s3"] and counts.tolist() == [3.0, 1.0] and skipped == 1
    np.testing.assert_array_equal(kept, vecs[[0, 2]])
    assert "Number of utterances not given for speaker s2" in caplog.text
    assert vector_tables.read_num_utts(f"ark:{table}") == {"s1": 3, "s3": 1}
    table.write_text("s1 0\n")
    with pytest.raises(XvjaxError, match="speaker 's1' has a non-positive count"):
        vector_tables.enroll_num_utts(["s1"], vecs[:1], f"ark:{table}")


def test_write_block_rows_assembles_tiles_into_rows(tmp_path):
    full = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    tiles = [
        (r0, c0, full[r0 : r0 + 2, c0 : c0 + 3]) for r0 in range(0, 5, 2) for c0 in range(0, 7, 3)
    ]
    keys = [f"e{i}" for i in range(5)]
    vector_tables.write_block_rows(f"ark,t:{tmp_path / 'm.ark'}", keys, tiles, 7)
    rows = tables.read_dict(f"ark,t:{tmp_path / 'm.ark'}", kind="vector")
    assert list(rows) == keys
    np.testing.assert_array_equal(np.stack([rows[k] for k in keys]), full)


def test_score_files_in_kaldis_format(tmp_path):
    trials = Trials(["m1", "m2"], ["u1", "u2"])
    out = tmp_path / "scores"
    # rounded to float32 once, printed with 7 significant digits (ivector-plda-scoring's format)
    score_files.write_scores(str(out), trials, np.array([-27.160412345678, 1e-9 / 3]))
    assert out.read_text() == "m1 u1 -27.16041\nm2 u2 3.333333e-10\n"
    back, scores = score_files.read_score_file(str(out))
    assert (back.enroll, back.test, back.labels) == (trials.enroll, trials.test, None)
    np.testing.assert_array_equal(scores, [-27.16041, 3.333333e-10])
    assert score_files.read_lines(f"cat {out} |") == out.read_text().splitlines()
    score_files.write_lines(str(tmp_path / "keys"), ["u1", "u2"])
    assert (tmp_path / "keys").read_text() == "u1\nu2\n"
