"""Kaldi egs archives (NnetExample) against the fixtures written by Kaldi's nnet3 tools."""

from __future__ import annotations

import numpy as np
import pytest

from xvjax.errors import XvjaxError
from xvjax.kaldi import egs
from xvjax.kaldi.primitives import format_floats

ARCHIVES = [
    "egs/egs_sample",  # compressed input (CM), sparse output
    "egs/egs_merged",  # merged minibatch: n = 0..3, escape-coded indexes
    "egs/egs_uncompressed",  # FM input
    "nnet3/small/egs_sample",
    "nnet3/full/egs_sample",
]


@pytest.mark.parametrize("base", ARCHIVES)
def test_binary_and_text_copies_are_byte_identical(kaldi_fixtures, base):
    ark = (kaldi_fixtures / f"{base}.ark").read_bytes()
    txt = (kaldi_fixtures / f"{base}.txt").read_bytes()
    examples = list(egs.read_egs(f"ark:{kaldi_fixtures / base}.ark"))
    assert b"".join(egs.example_to_bytes(k, e, True) for k, e in examples) == ark
    # `nnet3-copy-egs ark:X.ark ark,t:X.txt`: decoded features printed as Kaldi prints them
    assert b"".join(egs.example_to_bytes(k, e, False) for k, e in examples) == txt
    # the text form reads to the same numbers
    from_text = list(egs.read_egs(f"ark:{kaldi_fixtures / base}.txt"))
    assert [k for k, _ in from_text] == [k for k, _ in examples]
    for (_, a), (_, b) in zip(examples, from_text, strict=True):
        assert list(a.io) == list(b.io)
        for name in a.io:
            np.testing.assert_array_equal(a.io[name].indexes, b.io[name].indexes)
            np.testing.assert_allclose(
                b.io[name].dense(), a.io[name].dense(), rtol=6e-7, atol=1e-37
            )
    assert b"".join(egs.example_to_bytes(k, e, False) for k, e in from_text) == txt


def test_merged_egs_equal_kaldi_decompression(kaldi_fixtures):
    """egs_merged.ark holds Kaldi's own decompression of egs_sample.ark's CM inputs (as FM)."""
    sample = list(egs.read_egs(f"ark:{kaldi_fixtures / 'egs/egs_sample.ark'}"))
    ((key, merged),) = egs.read_egs(f"ark:{kaldi_fixtures / 'egs/egs_merged.ark'}")
    assert key == "merged-0-4"
    stacked = np.concatenate([e.io["input"].features for _, e in sample])
    assert stacked.tobytes() == merged.io["input"].features.tobytes()  # bit-exact
    idx = merged.io["input"].indexes
    assert idx.shape == (264, 3) and list(np.unique(idx[:, 0])) == [0, 1, 2, 3]
    assert merged.io["output"].features.shape == (4, 20)


def test_read_xvector_egs(kaldi_fixtures):
    items = list(egs.read_xvector_egs(f"ark:{kaldi_fixtures / 'egs/egs_sample.ark'}"))
    assert [(k, f.shape, lab) for k, f, lab in items][0] == ("spk01_u2-124-66-1", (66, 30), 1)
    # key utt-START-LEN-LABEL: the label matches the sparse output
    assert all(int(k.rsplit("-", 1)[1]) == lab for k, _, lab in items)
    merged = list(egs.read_xvector_egs(f"ark:{kaldi_fixtures / 'egs/egs_merged.ark'}"))
    assert [lab for _, _, lab in merged] == [lab for _, _, lab in items]
    for (_, f1, _), (_, f2, _) in zip(items, merged, strict=True):
        np.testing.assert_array_equal(f1, f2)


def test_uncompressed_egs_hold_source_rows(kaldi_fixtures):
    from xvjax.kaldi import tables

    source = dict(tables.read(f"ark,t:{kaldi_fixtures / 'egs/egs_uncompressed_source_feats.txt'}"))
    for key, feats, label in egs.read_xvector_egs(
        f"ark:{kaldi_fixtures / 'egs/egs_uncompressed.ark'}"
    ):
        utt, start, length, lab = key.rsplit("-", 3)
        assert int(lab) == label
        rows = source[utt][int(start) : int(start) + int(length)]
        # the text table has 7 significant digits: the chunk prints to the same text
        assert format_floats(feats.ravel()) == format_floats(rows.ravel())


def test_writer_and_scp(kaldi_fixtures, tmp_path):
    examples = list(egs.read_egs(f"ark:{kaldi_fixtures / 'egs/egs_sample.ark'}"))
    out = tmp_path / "copy.ark"
    assert egs.write_egs(f"ark:{out}", examples) == 4
    data = out.read_bytes()
    assert data == (kaldi_fixtures / "egs/egs_sample.ark").read_bytes()
    # scp with byte offsets, as `ark,scp:` writers produce
    offsets, pos = [], 0
    for key, eg in examples:
        offsets.append((key, pos + len(key) + 1))
        pos += len(egs.example_to_bytes(key, eg))
    scp = tmp_path / "egs.scp"
    scp.write_text("".join(f"{k} {out}:{o}\n" for k, o in reversed(offsets)))
    got = list(egs.read_egs(f"scp:{scp}"))
    assert [k for k, _ in got] == [k for k, _ in reversed(examples)]
    assert egs.example_to_bytes(*got[0]) == egs.example_to_bytes(*examples[-1])


def test_truncated_and_corrupt_archives_are_clean_errors(kaldi_fixtures, tmp_path):
    data = (kaldi_fixtures / "egs/egs_sample.ark").read_bytes()
    for cut in (30, 200, len(data) - 10):
        path = tmp_path / f"cut{cut}.ark"
        path.write_bytes(data[:cut])
        with pytest.raises(XvjaxError, match="end of file|expected"):
            list(egs.read_egs(f"ark:{path}"))
    bad = tmp_path / "bad.ark"
    bad.write_bytes(data.replace(b"<NnetIo> output", b"<NnetIx> output", 1))
    with pytest.raises(XvjaxError, match="NnetIo"):
        list(egs.read_egs(f"ark:{bad}"))
    with pytest.raises(XvjaxError, match="specifier"):
        list(egs.read_egs(str(bad)))


@pytest.mark.parametrize("model", ["small", "full"])
def test_xvector_example_equals_nnet3_xvector_get_egs(kaldi_fixtures, model):
    """Egs rebuilt from the training features (key utt-START-LEN-LABEL) are Kaldi's bytes."""
    from xvjax.kaldi import tables

    folder = kaldi_fixtures / "nnet3" / model
    feats = dict(tables.read(f"ark:{folder / 'train_feats.ark'}"))
    examples = list(egs.read_egs(f"ark:{folder / 'egs_sample.ark'}"))
    assert len(examples) == 6
    for key, eg in examples:
        utt, start, length, label = key.rsplit("-", 3)
        chunk = feats[utt][int(start) : int(start) + int(length)]
        ours = egs.xvector_example(chunk, int(label), num_pdfs=12)  # --compress=true (CM)
        assert egs.example_to_bytes(key, ours) == egs.example_to_bytes(key, eg)


def test_xvector_example_uncompressed_text(kaldi_fixtures):
    from xvjax.kaldi import tables

    src = dict(tables.read(f"ark,t:{kaldi_fixtures / 'egs/egs_uncompressed_source_feats.txt'}"))
    for key, eg in egs.read_egs(f"ark:{kaldi_fixtures / 'egs/egs_uncompressed.ark'}"):
        utt, start, length, label = key.rsplit("-", 3)
        chunk = src[utt][int(start) : int(start) + int(length)]
        ours = egs.xvector_example(chunk, int(label), num_pdfs=20, compress=False)
        # the source table is text (7 digits), so compare the text forms
        assert egs.example_to_bytes(key, ours, False) == egs.example_to_bytes(key, eg, False)
    with pytest.raises(XvjaxError, match="label"):
        egs.xvector_example(chunk, 20, num_pdfs=20)


def test_egs_tables_go_through_tables_specifiers(kaldi_fixtures, tmp_path):
    """ark,scp / ark,t / pipes / scp offsets: the specifier handling is `tables`'."""
    from xvjax.kaldi import tables

    src = kaldi_fixtures / "egs/egs_sample.ark"
    examples = list(egs.read_egs(f"ark:cat {src} |"))
    ark, scp, txt = tmp_path / "e.ark", tmp_path / "e.scp", tmp_path / "e.txt"
    assert egs.write_egs(f"ark,scp:{ark},{scp}", examples) == 4
    assert ark.read_bytes() == src.read_bytes()
    with egs.EgsWriter(f"ark,t:| cat > {txt}") as w:
        for key, eg in examples:
            w[key] = eg
    assert txt.read_bytes() == (kaldi_fixtures / "egs/egs_sample.txt").read_bytes()
    by_scp = tables.RandomAccess(f"scp:{scp}", kind=egs.EGS_CODEC)
    key, eg = examples[2]
    assert egs.example_to_bytes(key, by_scp[key]) == egs.example_to_bytes(key, eg)
    with pytest.raises(XvjaxError, match="bad.ark"):  # nothing half-written on failure
        with egs.EgsWriter(f"ark:{tmp_path / 'bad.ark'}") as w:
            w["a"] = examples[0][1]
            w["has space"] = examples[0][1]
    assert not (tmp_path / "bad.ark").exists()


@pytest.mark.parametrize("window", [3, 64])
def test_stream_window_growth_reads_the_same_examples(kaldi_fixtures, window):
    """Examples longer than the peek window are read by growing it (binary and text)."""
    from xvjax.kaldi import streams
    from xvjax.kaldi.primitives import read_from_stream

    for name, binary in (("egs_sample.ark", True), ("egs_sample.txt", False)):
        path = kaldi_fixtures / "egs" / name
        want = list(egs.read_egs(f"ark:{path}"))
        with streams.input_stream(str(path)) as f:
            for key, eg in want:
                assert f.read(len(key) + 1) == key.encode() + b" "
                if binary:
                    assert f.read(2) == b"\0B"
                got = read_from_stream(f, binary, egs.read_example, "t", window=window)
                assert egs.example_to_bytes(key, got, binary) == egs.example_to_bytes(
                    key, eg, binary
                )
                while f.peek(1) in (b"\n", b" "):
                    f.read(1)
