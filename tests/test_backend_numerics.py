"""Backend numerics against Kaldi's fixtures: means, length norm, LDA, PLDA EM, adaptation,
smoothing, and the PLDA file format (byte-identical round trips)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from xvjax.backend import adapt, lda, means
from xvjax.backend import plda as plda_lib
from xvjax.errors import XvjaxError
from xvjax.kaldi import plda_io, tables


@pytest.fixture(scope="module")
def bk(kaldi_fixtures):
    return kaldi_fixtures / "backend"


@functools.cache
def load(path):
    table = tables.read_dict(f"ark,t:{path}", kind="vector")
    keys = list(table)
    return keys, np.stack([np.asarray(table[k], dtype=np.float64) for k in keys])


def rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


def same_signs(mat, ref) -> bool:
    """Every row of `mat` points the way the matching row of `ref` does (Kaldi's eigenvector
    signs, which xvjax reproduces: `linalg.kaldi_signs`)."""
    return bool(np.all(np.sum(mat * ref, axis=1) > 0))


@pytest.fixture(scope="module")
def train(bk):
    keys, x = load(bk / "train.ark.txt")
    utt2spk = tables.read_text_table(str(bk / "train.utt2spk"))
    return keys, x, [utt2spk[k] for k in keys]


@pytest.fixture(scope="module")
def kaldi_plda(bk):
    return plda_io.read_plda(str(bk / "plda"))


def test_global_mean_matches_ivector_mean(bk, train):
    _, x, _ = train
    kaldi = tables.read_vector(str(bk / "mean.vec"), dtype=np.float64)
    assert rel(means.global_mean(x), kaldi) < 1e-6  # mean.vec is text, 7 digits


def test_subtract_mean_and_length_norm(bk, train):
    keys, x, _ = train
    _, centred = load(bk / "train_centered.ark.txt")
    assert np.abs(means.subtract_mean(x) - centred).max() < 2e-6
    _, projected = load(bk / "train_lda.ark.txt")
    for name, scaleup in (
        ("train_lda_norm.ark.txt", True),
        ("train_lda_norm_noscaleup.ark.txt", False),
    ):
        _, ref = load(bk / name)
        out, ratio = means.normalize_length(projected, scaleup=scaleup)
        assert rel(out, ref) < 1e-6
    ratio_mean = means.normalize_length(projected)[1].mean()
    assert abs(ratio_mean - 2.23457) < 1e-5  # Kaldi's log: "Average ratio ... was 2.23457"


def test_speaker_means_and_num_utts(bk):
    keys, x = load(bk / "enroll.ark.txt")
    spk2utt = tables.read_text_lists(str(bk / "enroll.spk2utt"))
    spk_means, num_utts = means.speaker_means(dict(zip(keys, x, strict=True)), spk2utt)
    ref_keys, ref = load(bk / "enroll_spk.ark.txt")
    assert list(spk_means) == ref_keys
    assert rel(np.stack(list(spk_means.values())), ref) < 1e-6
    kaldi_counts = tables.read_dict(f"ark:{bk / 'num_utts.ark'}", kind="int32")
    assert num_utts == kaldi_counts


def test_lda_matches_kaldi_signs_included(bk, train):
    _, _, spk = train
    _, centred = load(bk / "train_centered.ark.txt")
    ours = lda.compute_lda(centred, spk, dim=48, total_covariance_factor=0.0)
    kaldi = tables.read_matrix(str(bk / "transform.mat"), dtype=np.float64)
    assert ours.shape == kaldi.shape == (48, 129)
    assert same_signs(ours, kaldi) and rel(ours, kaldi) < 1e-5
    # and the projected vectors
    _, projected = load(bk / "train_lda.ark.txt")
    assert rel(lda.transform_vec(ours, centred), projected) < 1e-5


def test_transform_vec_linear_and_affine():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 5))
    x = rng.normal(size=(4, 4))
    np.testing.assert_allclose(lda.transform_vec(t, x), x @ t[:, :4].T + t[:, 4])
    np.testing.assert_allclose(lda.transform_vec(t[:, :4], x), x @ t[:, :4].T)
    with pytest.raises(XvjaxError, match="dimension mismatch"):
        lda.transform_vec(t, rng.normal(size=(2, 7)))


def test_plda_em_matches_kaldi(bk, train, kaldi_plda):
    keys, _, spk = train
    _, normed = load(bk / "train_lda_norm.ark.txt")
    ours = plda_lib.train_plda(normed, spk, num_em_iters=10)
    assert rel(ours.mean, kaldi_plda.mean) < 1e-5
    assert rel(ours.psi, kaldi_plda.psi) < 1e-5
    assert same_signs(ours.transform, kaldi_plda.transform)
    assert rel(ours.transform, kaldi_plda.transform) < 1e-5
    assert np.all(np.diff(ours.psi) <= 0)


def test_adapted_plda_matches_kaldi(bk, kaldi_plda):
    _, adapt_vecs = load(bk / "adapt_prepared.ark.txt")
    ours = adapt.adapt_plda(kaldi_plda, adapt_vecs, 0.75, 0.25, 1.0)
    kaldi = plda_io.read_plda(str(bk / "plda_adapt"))
    assert rel(ours.mean, kaldi.mean) < 1e-5
    assert rel(ours.psi, kaldi.psi) < 1e-5
    assert same_signs(ours.transform, kaldi.transform)
    assert rel(ours.transform, kaldi.transform) < 1e-5


def test_smoothing_matches_ivector_copy_plda(bk, kaldi_plda):
    ours = plda_lib.smooth_within_class_covar(kaldi_plda, 0.1)
    kaldi = plda_io.read_plda(str(bk / "plda_smooth0.1.txt"))  # text: 7 significant digits
    assert rel(ours.psi, kaldi.psi) < 1e-6
    assert rel(ours.transform, kaldi.transform) < 1e-6
    assert (
        plda_lib.smooth_within_class_covar(kaldi_plda, 0.0).psi.tolist() == kaldi_plda.psi.tolist()
    )


def test_plda_file_round_trips_byte_identical(bk, tmp_path, kaldi_plda):
    for name in ("plda", "plda_adapt"):
        data = (bk / name).read_bytes()
        model = plda_io.parse_plda(data, name)
        assert plda_io.plda_to_bytes(model, binary=True) == data
        assert plda_io.plda_to_bytes(model, binary=False) == (bk / f"{name}.txt").read_bytes()
    # text -> model -> text is exact too, and write/read through files
    text = (bk / "plda.txt").read_bytes()
    assert plda_io.plda_to_bytes(plda_io.parse_plda(text), binary=False) == text
    plda_io.write_plda(kaldi_plda, str(tmp_path / "p.bin"))
    again = plda_io.read_plda(str(tmp_path / "p.bin"))
    for a, b in zip(again, kaldi_plda, strict=True):
        assert np.array_equal(a, b)
    assert kaldi_plda.offset.shape == (48,)


def test_plda_file_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\0B<Plda> DV \x04\x03\x00\x00\x00" + b"\0" * 8)
    with pytest.raises(XvjaxError, match="bad"):
        plda_io.read_plda(str(bad))
    with pytest.raises(XvjaxError, match="expected token <Plda>"):
        plda_io.parse_plda(b" [ 1 2 ]\n", "vec")
    with pytest.raises(XvjaxError):
        plda_io.read_plda(str(tmp_path / "missing"))


def test_transform_and_llr_definitions(kaldi_plda):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 48))
    u, f = plda_lib.plda_transform(kaldi_plda, x, num_utts=3)
    raw = (x - kaldi_plda.mean) @ kaldi_plda.transform.T
    np.testing.assert_allclose(u, raw * f[:, None], rtol=1e-12)
    # scaled so that u^T (psi + I/n)^-1 u = D
    np.testing.assert_allclose(np.sum(u**2 / (kaldi_plda.psi + 1 / 3), axis=1), 48, rtol=1e-12)
    us, fs = plda_lib.plda_transform(kaldi_plda, x, simple_length_norm=True)
    np.testing.assert_allclose(np.linalg.norm(us, axis=1), np.sqrt(48), rtol=1e-12)
    un, _ = plda_lib.plda_transform(kaldi_plda, x, normalize_length=False)
    np.testing.assert_allclose(un, raw, rtol=1e-12)
    # the LLR equals the ratio of two Gaussian densities (Ioffe's formula), written out here
    v, _ = plda_lib.plda_transform(kaldi_plda, rng.normal(size=(5, 48)))
    psi, n = kaldi_plda.psi, 3
    mean = n * psi / (n * psi + 1) * u
    var = 1 + psi / (n * psi + 1)

    def logpdf(z, m, s2):
        return -0.5 * np.sum(np.log(2 * np.pi * s2) + (z - m) ** 2 / s2, axis=1)

    expect = logpdf(v, mean, var) - logpdf(v, 0, 1 + psi)
    np.testing.assert_allclose(plda_lib.plda_llr(kaldi_plda, u, v, n), expect, rtol=1e-10)


def test_bad_inputs_give_clear_errors(train):
    _, x, spk = train
    x = x[:, :20]
    # too few speakers for the LDA dimension
    few = [s for s in spk[:40]]
    assert len(set(few)) < 10
    with pytest.raises(XvjaxError, match="needs at least 11 speakers"):
        lda.compute_lda(x[:40], few, dim=10)
    with pytest.raises(XvjaxError, match="too little data"):
        lda.compute_lda(x[:12], spk[:12], dim=2)
    with pytest.raises(XvjaxError, match="single utterance"):
        lda.compute_lda(x[:30], [str(i) for i in range(30)], dim=2)
    with pytest.raises(XvjaxError, match="no speakers with multiple utterances"):
        plda_lib.train_plda(x[:30], [str(i) for i in range(30)])
    nan = x[:50].copy()
    nan[7, 3] = np.nan
    with pytest.raises(XvjaxError, match="row 7 contains NaN"):
        plda_lib.train_plda(nan, spk[:50])
    model = plda_lib.train_plda(x, spk, num_em_iters=2)
    with pytest.raises(XvjaxError, match="dimension 21 does not match the PLDA dimension 20"):
        plda_lib.plda_transform(model, np.zeros((2, 21)))
    with pytest.raises(XvjaxError, match="adaptation vectors have dimension"):
        adapt.adapt_plda(model, np.zeros((5, 19)))


def test_lda_floors_a_singular_within_covariance_with_kaldis_warning(train, caplog):
    _, x, spk = train
    x = x[:, :20].copy()
    x[:, 5] = 1.0  # a constant dimension: within-class covariance singular, Kaldi floors it
    with caplog.at_level("WARNING", logger="xvjax"):
        out = lda.compute_lda(x, spk, dim=10)
    assert "Floored 1 eigenvalues of covariance" in caplog.text
    assert np.all(np.isfinite(out))


def test_apply_transform_keeps_unnormalised_scores(kaldi_plda):
    """Kaldi's Plda::ApplyTransform: the PLDA of T x scores T x exactly like the old one scores x
    (without length normalisation, the LLR is invariant to invertible maps of the input)."""
    rng = np.random.default_rng(5)
    t = rng.normal(size=(48, 48)) + 4 * np.eye(48)
    moved = plda_lib.apply_transform(kaldi_plda, t)
    e, v = rng.normal(size=(6, 48)), rng.normal(size=(6, 48))
    kw = dict(normalize_length=False)
    before = plda_lib.plda_llr(
        kaldi_plda,
        plda_lib.plda_transform(kaldi_plda, e, 2, **kw)[0],
        plda_lib.plda_transform(kaldi_plda, v, **kw)[0],
        2,
    )
    after = plda_lib.plda_llr(
        moved,
        plda_lib.plda_transform(moved, e @ t.T, 2, **kw)[0],
        plda_lib.plda_transform(moved, v @ t.T, **kw)[0],
        2,
    )
    np.testing.assert_allclose(after, before, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(moved.psi, kaldi_plda.psi, rtol=1e-9)


def test_kaldi_signs_do_not_depend_on_lapack():
    """Whatever signs LAPACK returns, the eigenvectors come out with Kaldi's (the replayed QR
    sequence decides them); values and vectors are an exact decomposition."""
    from xvjax.backend.linalg import kaldi_signs, sorted_eigh

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 12))
    a = x.T @ x
    s, u = sorted_eigh(a)
    assert np.all(np.diff(s) <= 0)
    assert np.abs(a @ u - u * s).max() < 1e-12 * s.max()
    flips = np.where(rng.random(12) < 0.5, -1.0, 1.0)
    again = (u * flips) * kaldi_signs(a, u * flips)[None, :]
    np.testing.assert_array_equal(again, u)
