"""Kaldi's egs binaries on example streams: nnet3-merge-egs, nnet3-xvector-get-egs,
nnet3-copy-egs --frame, nnet3-shuffle-egs, nnet3-subset-egs (against the egs fixtures)."""

from __future__ import annotations

import numpy as np
import pytest

from xvjax import cli
from xvjax.errors import XvjaxError
from xvjax.kaldi import egs
from xvjax.kaldi.egs_streams import merge_egs, minibatch_size, parse_minibatch_size


@pytest.fixture(scope="module")
def egs_dir(kaldi_fixtures):
    return kaldi_fixtures / "egs"


def test_merge_egs_equals_kaldi(egs_dir, tmp_path):
    """`nnet3-merge-egs --minibatch-size=4` of the 4 sample egs: Kaldi's bytes (compressed input
    decoded into one full matrix, n = example index, key merged-0-4)."""
    out = tmp_path / "merged.ark"
    argv = ["nnet3-merge-egs", "--minibatch-size=4", f"ark:{egs_dir / 'egs_sample.ark'}"]
    assert cli.run(argv + [f"ark:{out}"]) == 0
    assert out.read_bytes() == (egs_dir / "egs_merged.ark").read_bytes()


@pytest.mark.parametrize(
    ("rule", "sizes", "discarded"),
    [("2", [2, 2], 1), ("1:2", [2, 2, 1], 0), ("4", [4], 1), ("3,5", [5], 0), ("8", [], 5)],
)
def test_merge_egs_partial_minibatches(egs_dir, rule, sizes, discarded):
    from xvjax.kaldi.egs_streams import MergeStats

    five = list(egs.read_egs(f"ark:{egs_dir / 'egs_sample.ark'}"))
    five.append(five[0])
    stats = MergeStats()
    got = list(merge_egs(five, parse_minibatch_size(rule), stats=stats))
    assert [k for k, _ in got] == [f"merged-{i}-{n}" for i, n in enumerate(sizes)]
    assert [len(np.unique(eg.io["output"].indexes[:, 0])) for _, eg in got] == sizes
    assert sum(stats.discarded.values()) == discarded


def test_minibatch_rules():
    rules = parse_minibatch_size("128=64/256=32,40:48")
    assert minibatch_size(rules, 150, 100, ended=False) == 64  # closest rule: 128
    assert minibatch_size(rules, 250, 47, ended=False) == 0  # waits for its largest, 48
    assert minibatch_size(rules, 250, 45, ended=True) == 45  # at the end: largest allowed
    assert minibatch_size(rules, 250, 35, ended=True) == 32
    assert minibatch_size(rules, 250, 31, ended=True) == 0  # discarded
    for bad in ("", "a", "64/128", "0", "64=1/64=2", "8:4"):
        with pytest.raises(XvjaxError):
            parse_minibatch_size(bad)


def test_xvector_get_egs_equals_kaldi(egs_dir, tmp_path):
    """`nnet3-xvector-get-egs --compress=false` on the fixture's ranges: Kaldi's examples (keys,
    indexes, labels, rows start..start+len-1). The source features are only stored as text
    (7 digits), so the text form is compared byte for byte and the binary one numerically."""
    out = tmp_path / "u.ark"
    feats = f"ark,t:{egs_dir / 'egs_uncompressed_source_feats.txt'}"
    argv = ["nnet3-xvector-get-egs", "--compress=false", "--num-pdfs=20"]
    assert cli.run(argv + [str(egs_dir / "egs_uncompressed.ranges"), feats, f"ark:{out}"]) == 0
    text = tmp_path / "u.txt"
    assert cli.run(["nnet3-copy-egs", f"ark:{out}", f"ark,t:{text}"]) == 0
    assert text.read_bytes() == (egs_dir / "egs_uncompressed.txt").read_bytes()
    ours = dict(egs.read_egs(f"ark:{out}"))
    ref = dict(egs.read_egs(f"ark:{egs_dir / 'egs_uncompressed.ark'}"))
    assert list(ours) == list(ref)
    for key, eg in ref.items():
        a, b = ours[key].io["input"].features, eg.io["input"].features
        assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max()
        assert ours[key].io["output"].features == eg.io["output"].features


def test_xvector_get_egs_archives_and_errors(egs_dir, tmp_path, capsys):
    feats = f"ark,t:{egs_dir / 'egs_uncompressed_source_feats.txt'}"
    ranges = tmp_path / "ranges"
    ranges.write_text("spk00_u0 1 7 0 30 3\nspk00_u0 0 7 5000 20 3\nspk00_u0 0 7 10 9999 3\n")
    a, b = tmp_path / "a.ark", tmp_path / "b.ark"
    argv = ["nnet3-xvector-get-egs", "--num-pdfs=4", str(ranges), feats, f"ark:{a}", f"ark:{b}"]
    assert cli.run(argv) == 0
    assert "requested chunk size of 9999" in capsys.readouterr().err.lower()
    ((key_a, eg_a),) = egs.read_egs(f"ark:{a}")  # the chunk past the end is moved back
    ((key_b, eg_b),) = egs.read_egs(f"ark:{b}")
    assert key_a == "spk00_u0-5000-20-3" and key_b == "spk00_u0-0-30-3"
    assert eg_b.io["input"].compressed is not None  # --compress=true is the default
    assert eg_a.io["output"].dense().argmax() == 3 and eg_a.io["output"].dense().shape == (1, 4)
    ranges.write_text("spk00_u0 2 7 0 30 3\n")
    assert cli.run(argv) == 1
    assert "only 2 output wspecifiers" in capsys.readouterr().err
    assert cli.run(["nnet3-xvector-get-egs", str(ranges), feats, f"ark:{a}"]) == 1


def test_copy_egs_frame_selection(egs_dir, tmp_path):
    """--frame=0 keeps the x-vector egs unchanged (their one output frame is t=0); a frame with
    no output skips the example; --left-context/--right-context trim the input around it."""
    sample = f"ark:{egs_dir / 'egs_sample.ark'}"
    same = tmp_path / "same.ark"
    assert cli.run(["nnet3-copy-egs", "--frame=0", sample, f"ark:{same}"]) == 0
    assert same.read_bytes() == (egs_dir / "egs_sample.ark").read_bytes()
    none = tmp_path / "none.ark"
    assert cli.run(["nnet3-copy-egs", "--frame=3", sample, f"ark:{none}"]) == 0
    assert none.read_bytes() == b""
    cut = tmp_path / "cut.ark"
    argv = ["nnet3-copy-egs", "--frame=random", "--right-context=9", "--frame-shift=2", sample]
    assert cli.run(argv + [f"ark:{cut}"]) == 0
    for (_, a), (_, b) in zip(egs.read_egs(f"ark:{cut}"), egs.read_egs(sample), strict=True):
        assert a.io["input"].indexes[:, 1].tolist() == list(range(2, 12))
        assert np.array_equal(a.io["input"].features, b.io["input"].features[:10])
        assert a.io["output"].indexes.tolist() == [[0, 2, 0]]
    merged = f"ark:{egs_dir / 'egs_merged.ark'}"
    assert cli.run(["nnet3-copy-egs", "--frame=0", merged, f"ark:{tmp_path / 'x.ark'}"]) == 1


def test_shuffle_and_subset(egs_dir, tmp_path):
    sample = f"ark:{egs_dir / 'egs_sample.ark'}"
    keys = [k for k, _ in egs.read_egs(sample)]
    orders = []
    for seed in (1, 1, 2):
        out = tmp_path / f"s{seed}.ark"
        assert cli.run(["nnet3-shuffle-egs", f"--srand={seed}", sample, f"ark:{out}"]) == 0
        orders.append([k for k, _ in egs.read_egs(f"ark:{out}")])
    assert sorted(orders[0]) == sorted(keys) and orders[0] == orders[1]
    out = tmp_path / "buf.ark"
    assert cli.run(["nnet3-shuffle-egs", "--buffer-size=2", sample, f"ark:{out}"]) == 0
    assert sorted(k for k, _ in egs.read_egs(f"ark:{out}")) == sorted(keys)
    out = tmp_path / "sub.ark"
    assert cli.run(["nnet3-subset-egs", "--n=2", "--srand=3", sample, f"ark:{out}"]) == 0
    sub = dict(egs.read_egs(f"ark:{out}"))
    assert len(sub) == 2 and set(sub) <= set(keys)
    whole = dict(egs.read_egs(sample))
    for k, eg in sub.items():
        assert eg.io["input"].compressed == whole[k].io["input"].compressed
