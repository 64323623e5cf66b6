"""Kaldi's own files: every binary/compressed/scp table reads to its text twin, and what xvjax writes
is byte-identical to what Kaldi wrote (plain binary arks, scp offsets, all 7 compression methods)."""

from __future__ import annotations

import os
import shutil

import kaldiio
import numpy as np
import pytest

from xvjax.kaldi import tables

# (binary/compressed table, text twin, compressed?) relative to fixtures/features or /backend.
FEATURE_PAIRS = [
    ("ark:mfcc8k_float.ark", "ark,t:mfcc8k.txt", False),
    ("ark:prepared16k.ark", "ark:prepared16k.txt", False),
    ("scp:prepared16k.scp", "ark:prepared16k.txt", False),
    ("scp,s:prepared8k.scp", "ark:prepared8k.txt", False),
    ("ark:vad16k.ark", "ark:vad16k.txt", False),
    ("scp:mfcc16k_compressed.scp", "ark:mfcc16k_compressed_decoded.txt", True),
    ("scp:mfcc8k_compressed.scp", "ark:mfcc8k_compressed_decoded.txt", True),
] + [
    (f"ark:mfcc16k_{m}.ark", f"ark:mfcc16k_{m}_decoded.txt", True)
    for m in ("compressed", "cm2", "cm3", "cm4", "cm5", "cm6", "cm7")
]
BACKEND_SETS = ("train", "adapt", "enroll", "test")
METHODS = {1: "compressed", 2: "cm2", 3: "cm3", 4: "cm4", 5: "cm5", 6: "cm6", 7: "cm7"}


@pytest.fixture(scope="module")
def features(kaldi_fixtures):
    """Kaldi's scp paths are relative to the working directory: run from features/."""
    old = os.getcwd()
    os.chdir(kaldi_fixtures / "features")
    yield kaldi_fixtures / "features"
    os.chdir(old)


def _as_text_tokens(arr: np.ndarray) -> list[list[str]]:
    rows = arr.reshape(1, -1) if arr.ndim == 1 else arr
    return [[format(v, ".7g") for v in row] for row in rows.tolist()]


@pytest.mark.parametrize("binary_rspec,text_rspec,is_compressed", FEATURE_PAIRS)
def test_feature_tables_read_like_their_text_twins(
    features, binary_rspec, text_rspec, is_compressed
):
    got = tables.read_dict(binary_rspec)
    want = tables.read_dict(text_rspec)
    assert list(got) == list(want)
    for key, ref in want.items():
        arr = got[key]
        assert arr.shape == ref.shape and arr.dtype == np.float32, key
        if is_compressed:
            # The text twin is Kaldi's own decoding printed at precision 7: our decoded floats must
            # print to exactly the same digits.
            assert _as_text_tokens(arr) == _as_text_tokens(ref), key
        else:
            # Kaldi made the binary from the text: every float must be bit-identical.
            np.testing.assert_array_equal(arr.view(np.uint32), ref.view(np.uint32), err_msg=key)


@pytest.mark.parametrize("name", BACKEND_SETS)
def test_backend_vectors_ark_scp_and_text_agree(kaldi_fixtures, name, monkeypatch):
    monkeypatch.chdir(kaldi_fixtures / "backend")
    text = tables.read_dict(f"ark:{name}.ark.txt")
    for rspec in (f"ark:{name}.ark", f"scp:{name}.scp"):
        got = tables.read_dict(rspec, kind="vector")
        assert list(got) == list(text)
        for key in text:
            np.testing.assert_array_equal(got[key], text[key])


def test_plain_binary_matches_kaldiio(features):
    """Cross-check against kaldiio where it is correct (uncompressed float data)."""
    for rspec in ("ark:mfcc8k_float.ark", "ark:vad16k.ark", "ark:prepared16k.ark"):
        ours = tables.read_dict(rspec)
        theirs = dict(kaldiio.load_ark(rspec.split(":", 1)[1]))
        assert list(ours) == list(theirs)
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key])


def test_single_object_files(kaldi_fixtures):
    b = kaldi_fixtures / "backend"
    mat = tables.read_matrix(str(b / "transform.mat"))
    assert mat.shape == (48, 129)
    assert _as_text_tokens(mat) == _as_text_tokens(tables.read_matrix(str(b / "transform.mat.txt")))
    mean = tables.read_vector(str(b / "mean.vec"))
    assert mean.shape == (128,) and mean.dtype == np.float32
    np.testing.assert_array_equal(mean, tables.read_vector(str(b / "mean.vec.txt")))
    with pytest.raises(Exception, match="expected a vector"):
        tables.read_vector(str(b / "transform.mat"))


def test_int_tables_and_nnet3_feature_arks(kaldi_fixtures):
    num_utts = tables.read_dict(f"ark:{kaldi_fixtures}/backend/num_utts.ark", kind="int32")
    assert num_utts["evl0001"] == 3 and all(isinstance(v, int) for v in num_utts.values())
    assert num_utts == {
        k: int(v)
        for k, v in tables.read_text_table(f"{kaldi_fixtures}/backend/num_utts.ark").items()
    }
    feats = tables.read_dict(f"ark:{kaldi_fixtures}/nnet3/small/train_feats.ark", kind="matrix")
    assert len(feats) == 24 and all(m.shape[1] == 30 for m in feats.values())
    theirs = dict(kaldiio.load_ark(str(kaldi_fixtures / "nnet3/small/train_feats.ark")))
    for key, mat in feats.items():
        np.testing.assert_array_equal(mat, theirs[key])
    tiny = tables.read_dict(f"ark:{kaldi_fixtures}/nnet3/small/tiny_feats.txt")
    assert tiny["u1_16k_tiny"].shape == (10, 30)


# ----------------------------------------------------------------------------- byte layout


def test_binary_writes_are_byte_identical_to_kaldi(kaldi_fixtures, tmp_path):
    f = kaldi_fixtures / "features"
    cases = [
        (f"ark:{kaldi_fixtures}/backend/train.ark.txt", kaldi_fixtures / "backend/train.ark"),
        (f"ark:{f}/mfcc8k.txt", f / "mfcc8k_float.ark"),
        (f"ark:{f}/vad16k.txt", f / "vad16k.ark"),
        (f"ark:{f}/prepared16k.txt", f / "prepared16k.ark"),
    ]
    for src, ref in cases:
        out = tmp_path / "out.ark"
        tables.write_dict(f"ark:{out}", tables.read_dict(src))
        assert out.read_bytes() == ref.read_bytes(), ref.name
    # Reading Kaldi's binary and writing it back is a bit-exact round trip too.
    out = tmp_path / "train_copy.ark"
    tables.write_dict(f"ark:{out}", tables.read_dict(f"ark:{kaldi_fixtures}/backend/train.ark"))
    assert out.read_bytes() == (kaldi_fixtures / "backend/train.ark").read_bytes()


def test_ark_scp_offsets_match_kaldi(kaldi_fixtures, tmp_path, monkeypatch):
    for name in ("prepared16k", "prepared8k"):
        shutil.copy(kaldi_fixtures / f"features/{name}.txt", tmp_path)
        monkeypatch.chdir(tmp_path)  # Kaldi wrote the scp with paths relative to features/
        with tables.Writer(f"ark,scp:{name}.ark,{name}.scp") as w:
            for key, mat in tables.read(f"ark:{name}.txt"):
                w[key] = mat
        assert (tmp_path / f"{name}.ark").read_bytes() == (
            kaldi_fixtures / f"features/{name}.ark"
        ).read_bytes()
        assert (tmp_path / f"{name}.scp").read_text() == (
            kaldi_fixtures / f"features/{name}.scp"
        ).read_text()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_compressed_writes_are_byte_identical_to_kaldi(kaldi_fixtures, tmp_path, method):
    f = kaldi_fixtures / "features"
    out = tmp_path / "c.ark"
    with tables.Writer(f"ark:{out}", compression_method=method) as w:
        for key, mat in tables.read(f"ark:{f}/mfcc16k.txt"):
            w[key] = mat
    assert out.read_bytes() == (f / f"mfcc16k_{METHODS[method]}.ark").read_bytes()


def test_compressed_text_output_is_kaldis_decoding(kaldi_fixtures, tmp_path):
    """copy-feats --compress=true ark,t: writes the decompressed matrix, as Kaldi's CM text mode."""
    f = kaldi_fixtures / "features"
    out = tmp_path / "c.txt"
    with tables.Writer(f"ark,t:{out}", compression_method=2) as w:
        for key, mat in tables.read(f"ark:{f}/mfcc16k.txt"):
            w[key] = mat
    assert out.read_bytes() == (f / "mfcc16k_cm2_decoded.txt").read_bytes()


def test_text_writes_are_byte_identical_to_kaldi(kaldi_fixtures, tmp_path):
    f = kaldi_fixtures / "features"
    for name in ("mfcc8k.txt", "vad16k.txt", "prepared8k.txt", "mfcc16k_cm7_decoded.txt"):
        out = tmp_path / name
        tables.write_dict(f"ark,t:{out}", tables.read_dict(f"ark:{f}/{name}"))
        assert out.read_bytes() == (f / name).read_bytes(), name
    out = tmp_path / "transform.mat.txt"
    tables.write_matrix(
        str(out), tables.read_matrix(str(kaldi_fixtures / "backend/transform.mat")), binary=False
    )
    assert out.read_bytes() == (kaldi_fixtures / "backend/transform.mat.txt").read_bytes()
    out = tmp_path / "mean.vec"
    tables.write_vector(
        str(out), tables.read_vector(str(kaldi_fixtures / "backend/mean.vec")), binary=False
    )
    assert out.read_bytes() == (kaldi_fixtures / "backend/mean.vec").read_bytes()
    out = tmp_path / "num_utts.ark"
    tables.write_dict(
        f"ark,t:{out}", tables.read_dict(f"ark:{kaldi_fixtures}/backend/num_utts.ark", kind="int32")
    )
    assert out.read_bytes() == (kaldi_fixtures / "backend/num_utts.ark").read_bytes()


def test_trials(kaldi_fixtures):
    trials = tables.read_trials(str(kaldi_fixtures / "backend/trials"))
    pairs = tables.read_trials(str(kaldi_fixtures / "backend/trials.pairs"))
    assert trials[0] == ("evl0000", "evl0000-001", "target") and len(trials) == len(pairs)
    assert [t[:2] for t in trials] == [p[:2] for p in pairs] and pairs[0][2] is None
    assert {t[2] for t in trials} == {"target", "nontarget"}


def _fixture_tables(root):
    """Every table file in the fixtures (egs, nnet3 models and PLDA are other formats)."""
    skip = ("egs_sample", "final.", "resized_0", "plda", "kaldi_stderr", "scores_", "wav")
    for folder in ("features", "backend", "nnet3/small", "nnet3/full", "nnet3/variant8k"):
        for path in sorted((root / folder).iterdir()):
            name = path.name
            if any(name.startswith(s) for s in skip):
                continue
            if name.endswith((".ark", ".scp")) or (name.endswith(".txt") and folder != "backend"):
                yield path
            elif name.endswith(".ark.txt"):
                yield path


def test_every_fixture_table_reads(kaldi_fixtures, monkeypatch):
    counts = {}
    for path in _fixture_tables(kaldi_fixtures):
        monkeypatch.chdir(path.parent)  # scp paths are relative to their folder
        kind = "scp" if path.suffix == ".scp" else "ark"
        table = tables.read_dict(f"{kind}:{path.name}")
        assert table, path
        for key, obj in table.items():
            assert isinstance(obj, (np.ndarray, int)) and np.all(np.isfinite(obj)), (path, key)
        counts[path.name] = len(table)
    assert len(counts) >= 60 and counts["train.scp"] == 2400 and counts["train_feats.ark"] == 24
    monkeypatch.chdir(kaldi_fixtures / "features")
    with pytest.raises(Exception, match="key 'u1_16k' .*found a WAV file, not a Kaldi object"):
        tables.read_dict("scp:wav16.scp")
