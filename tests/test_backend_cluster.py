"""Clustering-based adaptation: AHC (blocked average linkage against scipy, recovery of synthetic
speakers, cuts, thresholds), pseudo-label backends, PLDA interpolation, CORAL, cluster-vectors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster
from scipy.cluster.hierarchy import linkage as scipy_linkage

from xvjax import cli
from xvjax.backend import adapt, cluster, coral, pseudo_labels, scoring
from xvjax.backend import plda as plda_lib
from xvjax.backend.system import PldaBackend, XvectorSet
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.kaldi import plda_io, tables
from xvjax.metrics import compute_eer

DIM = 20


def make_set(num_spk: int, utts: int, seed: int, domain: int, name: str) -> XvectorSet:
    """Labelled synthetic x-vectors: speaker factors (variances falling from 9 to 0.25) plus
    within-speaker noise (std 0.6), mixed by a per-domain rotation/scaling and shifted."""
    rng = np.random.default_rng(seed)
    drng = np.random.default_rng(100 + domain)
    mix = np.linalg.qr(drng.normal(size=(DIM, DIM)))[0] * drng.uniform(0.5, 2.0, size=DIM)
    offset = drng.normal(size=DIM) * 2
    spk = rng.normal(size=(num_spk, DIM)) * np.linspace(3, 0.5, DIM)
    labels = np.repeat(np.arange(num_spk), utts)
    x = offset + (spk[labels] + rng.normal(size=(len(labels), DIM)) * 0.6) @ mix.T
    keys = [f"{name}{s:03d}-{i:04d}" for i, s in enumerate(labels)]
    return XvectorSet(keys, x, {k: f"{name}{s:03d}" for k, s in zip(keys, labels, strict=True)})


@pytest.fixture(scope="module")
def source():
    return make_set(200, 8, seed=0, domain=0, name="s")


@pytest.fixture(scope="module")
def backend(source):
    return PldaBackend.fit(source, lda_dim=16)


@pytest.fixture(scope="module")
def small():
    """200 points: 19 speakers of 10 plus 10 strays, for comparisons with scipy's dense AHC."""
    x = make_set(19, 10, seed=7, domain=0, name="a").mat
    strays = np.random.default_rng(8).normal(size=(10, DIM)) * 4
    return np.concatenate([x, strays])


def dendrogram_key(d: cluster.Dendrogram):
    """The merges as a sorted list of (first, second) and their similarities in that order."""
    order = np.lexsort((d.second, d.first))
    pairs = zip(d.first[order].tolist(), d.second[order].tolist(), strict=True)
    return list(pairs), d.similarity[order]


def scipy_average(features: cluster.PairFeatures) -> cluster.Dendrogram:
    s = cluster.similarity_matrix(features)
    iu = np.triu_indices(len(s), 1)
    return cluster.from_linkage_matrix(scipy_linkage(-s[iu], method="average"))


# ----------------------------------------------------------------------------- similarity
def test_plda_pair_features_are_kaldi_llrs_between_single_vectors(small):
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    model = plda_lib.Plda(
        rng.normal(size=DIM),
        q * rng.uniform(0.2, 1.0, size=(DIM, 1)),
        np.sort(rng.gamma(2.0, 2.0, size=DIM))[::-1].copy(),
    )
    u, _ = plda_lib.plda_transform(model, small)
    sims = cluster.similarity_matrix(cluster.plda_pair_features(model, u))
    dense = scoring.score_matrix(model, small, small, dtype=np.float64)
    off = ~np.eye(len(small), dtype=bool)
    assert np.abs(sims - dense)[off].max() < 1e-9 * np.abs(dense).max()
    i, j = np.nonzero(off)
    assert np.allclose(sims[i, j], plda_lib.plda_llr(model, u[i], u[j]), rtol=0, atol=1e-9)


def test_pair_features_project_through_the_backend(small, backend):
    y = backend.project(small)
    plda_feats = cluster.pair_features(small, "plda", backend)
    u, _ = plda_lib.plda_transform(backend.plda, y)
    assert np.allclose(plda_feats.vec, cluster.plda_pair_features(backend.plda, u).vec)
    cos = cluster.similarity_matrix(cluster.pair_features(small, "cosine", backend))
    dense = scoring.cosine_matrix(y, y, dtype=np.float64)
    assert np.abs(cos - dense).max() < 1e-12
    with pytest.raises(XvjaxError, match="needs a PLDA backend"):
        cluster.pair_features(small, "plda")
    with pytest.raises(XvjaxError, match="unknown similarity"):
        cluster.pair_features(small, "euclid")


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("similarity", ["cosine", "plda"])
@pytest.mark.parametrize("candidates", [1, 8])
def test_blocked_average_linkage_equals_scipy(small, backend, similarity, candidates):
    """Same merges at the same similarities as scipy's dense average linkage, in tiles of 16
    columns (13 tiles), with 1 or 8 candidates per cluster (more or fewer rescans)."""
    features = cluster.pair_features(small, similarity, backend)
    mine = cluster.average_linkage(features, block_size=16, dtype=np.float64, candidates=candidates)
    ref = scipy_average(features)
    assert mine.num_merges == ref.num_merges == len(small) - 1
    pairs, sims = dendrogram_key(mine)
    ref_pairs, ref_sims = dendrogram_key(ref)
    assert pairs == ref_pairs
    assert np.abs(sims - ref_sims).max() < 1e-9 * max(1.0, np.abs(ref_sims).max())
    for k in (1, 2, 19, 25, 100, len(small)):
        assert np.array_equal(cluster.cut(mine, num_clusters=k), cluster.cut(ref, num_clusters=k))


def test_float32_blocks_give_the_float64_hierarchy(small, backend):
    features = cluster.pair_features(small, "plda", backend)
    d32 = cluster.average_linkage(features, block_size=64)
    d64 = cluster.average_linkage(features, block_size=64, dtype=np.float64)
    assert dendrogram_key(d32)[0] == dendrogram_key(d64)[0]
    assert np.abs(d32.similarity - d64.similarity).max() < 1e-9  # recomputed in float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_ties_of_duplicate_vectors(dtype):
    """20 vectors 5 times each (ties everywhere inside a group): the run ends, the groups are the
    20 clusters, and every cut equals scipy's."""
    x = np.repeat(np.random.default_rng(3).normal(size=(20, 6)), 5, axis=0)
    features = cluster.cosine_pair_features(x)
    d = cluster.average_linkage(features, block_size=16, dtype=dtype, candidates=2)
    ref = scipy_average(features)
    assert d.num_merges == 99
    assert np.array_equal(cluster.cut(d, num_clusters=20), np.repeat(np.arange(20), 5))
    for k in range(1, 20):
        assert np.array_equal(cluster.cut(d, num_clusters=k), cluster.cut(ref, num_clusters=k))


def test_threshold_stops_at_the_cut_of_the_whole_hierarchy(small, backend):
    features = cluster.pair_features(small, "plda", backend)
    full = cluster.average_linkage(features, block_size=32, dtype=np.float64)
    t = float(np.median(full.similarity))
    part = cluster.average_linkage(features, t, block_size=32, dtype=np.float64)
    pairs, _ = dendrogram_key(part)
    assert set(pairs) == {p for p, s in zip(*dendrogram_key(full), strict=True) if s >= t}
    assert np.array_equal(cluster.cut(part, threshold=t), cluster.cut(full, threshold=t))
    with pytest.raises(XvjaxError, match="stops at"):
        cluster.cut(part, num_clusters=1)


@pytest.mark.parametrize("method", ["complete", "single"])
def test_dense_linkages_cut_like_scipy_fcluster(small, method):
    features = cluster.cosine_pair_features(small)
    s = cluster.similarity_matrix(features)
    z = scipy_linkage(1.0 - s[np.triu_indices(len(s), 1)], method=method)  # fcluster: >= 0
    d = cluster.dense_linkage(features, method)
    for t in (0.9, 0.5, 0.0):
        ref = fcluster(z, 1.0 - t, criterion="distance")
        _, ref_labels = np.unique(ref, return_inverse=True)
        mine = cluster.cut(d, threshold=t)
        # the same partition: a bijection between the label sets
        pairs = set(zip(mine.tolist(), ref_labels.tolist(), strict=True))
        assert len(pairs) == len(set(mine.tolist())) == len(set(ref_labels.tolist()))


def test_cut_and_labels():
    # points 0..4: merges (0,1) at 0.9, (3,4) at 0.8, (0,3) at 0.5, (0,2) at 0.1
    d = cluster.Dendrogram(
        np.array([0, 3, 0, 0]),
        np.array([1, 4, 3, 2]),
        np.array([0.9, 0.8, 0.5, 0.1]),
        np.array([2, 2, 4, 5]),
        5,
    )
    assert cluster.cut(d, threshold=0.85).tolist() == [0, 0, 1, 2, 3]
    assert cluster.cut(d, threshold=0.5).tolist() == [0, 0, 1, 0, 0]
    assert cluster.cut(d, num_clusters=3).tolist() == [0, 0, 1, 2, 2]
    assert cluster.cut(d, num_clusters=5).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(XvjaxError, match="exactly one"):
        cluster.cut(d)
    with pytest.raises(XvjaxError, match="between 1 and 5"):
        cluster.cut(d, num_clusters=0)


# ----------------------------------------------------------------------------- recovery
@pytest.fixture(scope="module")
def source_dendrograms(source, backend):
    return {sim: cluster.dendrogram(source.mat, sim, backend) for sim in cluster.SIMILARITIES}


@pytest.fixture(scope="module")
def source_choices(source, source_dendrograms):
    return {
        sim: cluster.choose_threshold(d, source.spk_ids) for sim, d in source_dendrograms.items()
    }


@pytest.mark.parametrize("similarity", ["plda", "cosine"])
def test_clustering_recovers_new_speakers_at_the_source_threshold(
    backend, source_choices, similarity
):
    """30 unseen speakers of the source domain, clustered at the threshold chosen on the 200
    labelled source speakers: purity and coverage >= 0.98 (of 240 utterances)."""
    new = make_set(30, 8, seed=5, domain=0, name="u")
    labels = cluster.ahc(
        new.mat, similarity, backend, threshold=source_choices[similarity].threshold
    )
    purity, coverage = cluster.purity_coverage(labels, new.spk_ids)
    assert purity >= 0.98 and coverage >= 0.98, (purity, coverage)


def test_clustering_recovers_speakers_of_a_shifted_domain(backend, source_choices):
    """30 speakers of another domain (other rotation, scaling and offset), PLDA similarity of the
    source backend re-centred on the in-domain mean, at the source threshold: purity >= 0.9 and
    coverage >= 0.8; with the true number of clusters both >= 0.85."""
    target = make_set(30, 8, seed=1, domain=1, name="t")
    recentred = backend.with_mean(target.mat.mean(axis=0))
    labels = cluster.ahc(target.mat, "plda", recentred, threshold=source_choices["plda"].threshold)
    purity, coverage = cluster.purity_coverage(labels, target.spk_ids)
    assert purity >= 0.9 and coverage >= 0.8, (purity, coverage)
    labels = cluster.ahc(target.mat, "plda", recentred, num_clusters=30)
    purity, coverage = cluster.purity_coverage(labels, target.spk_ids)
    assert purity >= 0.85 and coverage >= 0.85, (purity, coverage)


def test_clustering_curve_and_threshold_choice(small, source, source_dendrograms, source_choices):
    truth = np.repeat(np.arange(20), [10] * 19 + [10])  # the strays as a 20th "speaker"
    d = cluster.average_linkage(cluster.cosine_pair_features(small), dtype=np.float64)
    curve = cluster.clustering_curve(d, truth)
    for k in (0, 1, 50, 180, 199):
        labels = cluster.cut(d, num_clusters=len(small) - k)
        assert (curve.purity[k], curve.coverage[k]) == pytest.approx(
            cluster.purity_coverage(labels, truth)
        )
    choice = source_choices["plda"]
    labels = cluster.cut(source_dendrograms["plda"], threshold=choice.threshold)
    p, c = cluster.purity_coverage(labels, source.spk_ids)
    assert labels.max() + 1 == choice.num_clusters
    assert 2 * p * c / (p + c) == pytest.approx(choice.value)
    assert choice.value == pytest.approx(max(row[2] for row in choice.table))


# ----------------------------------------------------------------------------- pseudo-labels
def test_pseudo_utt2spk_names_sort_like_their_numbers():
    labels = np.array([0, 11, 2, 2, 10])
    u2s = pseudo_labels.pseudo_utt2spk(["a", "b", "c", "d", "e"], labels, prefix="p")
    assert u2s == {"a": "p00", "b": "p11", "c": "p02", "d": "p02", "e": "p10"}
    assert sorted(set(u2s.values())) == ["p00", "p02", "p10", "p11"]
    with pytest.raises(XvjaxError, match="duplicate key 'a'"):
        pseudo_labels.pseudo_utt2spk(["a", "a"], np.array([0, 1]))
    with pytest.raises(XvjaxError, match="2 keys but 3"):
        pseudo_labels.pseudo_utt2spk(["a", "b"], np.array([0, 1, 2]))


@pytest.mark.parametrize(
    "labels",
    [
        np.arange(40),  # every utterance alone
        np.concatenate([np.zeros(30, int), np.arange(1, 11)]),  # one big cluster, singletons
    ],
    ids=["singletons", "one-cluster"],
)
def test_pseudo_label_training_refuses_fewer_than_two_clusters_of_two(source, backend, labels):
    keys, mat = source.keys[:40], source.mat[:40]
    pseudo = XvectorSet(keys, mat, pseudo_labels.pseudo_utt2spk(keys, labels))
    with pytest.raises(XvjaxError, match="at least two clusters of two utterances"):
        pseudo_labels.fit_pseudo_label_backend(pseudo, space=backend)
    with pytest.raises(XvjaxError, match="at least two clusters of two utterances"):
        pseudo_labels.fit_pseudo_label_backend(pseudo, lda_dim=8)


def test_pseudo_label_backend_in_the_source_space(source, backend):
    """With the true labels as pseudo-labels and singletons added, the PLDA is the one trained on
    the projected labelled clusters (the singletons left out), in the source backend's space."""
    keys, mat = source.keys[:160], source.mat[:160]
    truth = [source.utt2spk[k] for k in keys]
    labels = np.unique(truth, return_inverse=True)[1]
    extra = make_set(5, 1, seed=9, domain=0, name="x")
    pseudo = XvectorSet(
        keys + extra.keys,
        np.concatenate([mat, extra.mat]),
        pseudo_labels.pseudo_utt2spk(
            keys + extra.keys, np.concatenate([labels, 100 + np.arange(5)])
        ),
    )
    fitted = pseudo_labels.fit_pseudo_label_backend(pseudo, space=backend, em_iters=5)
    assert fitted.mean is backend.mean and fitted.lda is backend.lda
    ref = plda_lib.train_plda(backend.project(mat), truth, num_em_iters=5)
    assert np.allclose(fitted.plda.psi, ref.psi) and np.allclose(
        fitted.plda.transform, ref.transform
    )
    own = pseudo_labels.fit_pseudo_label_backend(pseudo, lda_dim=8, em_iters=5)
    assert own.lda.shape == (8, DIM + 1)
    with pytest.raises(XvjaxError, match="not both"):
        pseudo_labels.fit_pseudo_label_backend(pseudo, lda_dim=8, space=backend)


# ----------------------------------------------------------------------------- interpolation
def test_interpolate_plda_endpoints_and_covariances(source, backend):
    other = plda_lib.train_plda(backend.project(source.mat[::2]), source.spk_ids[::2], 3)
    y = backend.project(source.mat[:50])
    for w, ref in ((0.0, backend.plda), (1.0, other)):
        mixed = adapt.interpolate_plda(backend.plda, other, w)
        for a, b in zip(plda_lib.plda_covars(mixed), plda_lib.plda_covars(ref), strict=True):
            assert np.allclose(a, b, rtol=1e-9, atol=1e-12)
        u = plda_lib.plda_transform(mixed, y)[0]
        v = plda_lib.plda_transform(ref, y)[0]
        assert np.allclose(
            plda_lib.plda_llr(mixed, u[:-1], u[1:]), plda_lib.plda_llr(ref, v[:-1], v[1:])
        )
    half = adapt.interpolate_plda(backend.plda, other, 0.3)
    (w_a, b_a), (w_b, b_b) = plda_lib.plda_covars(backend.plda), plda_lib.plda_covars(other)
    w_h, b_h = plda_lib.plda_covars(half)
    assert np.allclose(w_h, 0.7 * w_a + 0.3 * w_b) and np.allclose(b_h, 0.7 * b_a + 0.3 * b_b)
    assert np.allclose(half.mean, 0.7 * backend.plda.mean + 0.3 * other.mean)
    with pytest.raises(XvjaxError, match=r"in \[0, 1\]"):
        adapt.interpolate_plda(backend.plda, other, 1.5)
    small_plda = plda_lib.train_plda(source.mat[:, :4], source.spk_ids, 2)
    with pytest.raises(XvjaxError, match="dimensions"):
        adapt.interpolate_plda(backend.plda, small_plda, 0.5)


def test_backend_interpolation_needs_one_space(source, backend):
    in_domain = PldaBackend(backend.mean, backend.lda, backend.plda)
    assert backend.interpolate(in_domain, 0.5).lda is backend.lda
    with pytest.raises(XvjaxError, match="different means or LDA"):
        backend.interpolate(backend.with_mean(backend.mean + 1.0), 0.5)
    with pytest.raises(XvjaxError, match="different means or LDA"):
        backend.interpolate(PldaBackend.fit(source, lda_dim=12), 0.5)


def test_choose_threshold_on_a_dev_set(backend, source_choices):
    """The in-domain dev EER of each candidate's pseudo-label PLDA (interpolated with the source
    PLDA): a threshold too high to merge anything is reported as NaN, the lowest EER wins."""
    adapt_set = make_set(40, 6, seed=11, domain=1, name="a")
    adapt_set = XvectorSet(adapt_set.keys, adapt_set.mat)  # unlabelled
    dev = make_set(20, 4, seed=12, domain=1, name="d")
    enroll_keys = dev.keys[0::4]
    test_keys = [k for k in dev.keys if k not in enroll_keys]
    enroll = XvectorSet(enroll_keys, dev.mat[0::4], {k: dev.utt2spk[k] for k in enroll_keys})
    test = XvectorSet(test_keys, dev.mat[[i for i in range(len(dev.keys)) if i % 4]])
    spks = sorted(set(enroll.utt2spk.values()))
    trials = Trials(
        [s for s in spks for _ in test_keys],
        [t for _ in spks for t in test_keys],
        np.array([dev.utt2spk[t] == s for s in spks for t in test_keys]),
    )
    recentred = backend.with_mean(adapt_set.mat.mean(axis=0))
    t0 = source_choices["plda"].threshold
    candidates = [1e6, t0 + 2.0, t0, t0 - 2.0]
    choice = pseudo_labels.choose_threshold_dev(
        adapt_set, recentred, enroll, test, trials, candidates, weight=0.5, em_iters=3
    )
    table = {row[0]: row for row in choice.table}
    assert np.isnan(table[1e6][2]) and table[1e6][1] == len(adapt_set.keys)
    finite = [row for row in choice.table if not np.isnan(row[2])]
    assert len(finite) == 3 and choice.value == min(row[2] for row in finite)
    # the chosen row is what training and scoring at that threshold give
    labels = cluster.ahc(adapt_set.mat, "plda", recentred, threshold=choice.threshold)
    pseudo = XvectorSet(
        adapt_set.keys, adapt_set.mat, pseudo_labels.pseudo_utt2spk(adapt_set.keys, labels)
    )
    fitted = recentred.interpolate(
        pseudo_labels.fit_pseudo_label_backend(pseudo, space=recentred, em_iters=3), 0.5
    )
    scores, scored = fitted.score(enroll, test, trials)
    assert compute_eer(scores, scored.labels)[0] == choice.value
    with pytest.raises(XvjaxError, match="labelled trials"):
        pseudo_labels.choose_threshold_dev(
            adapt_set, recentred, enroll, test, Trials(trials.enroll, trials.test), [0.0]
        )


# ----------------------------------------------------------------------------- CORAL
def test_coral_aligns_mean_and_covariance(source):
    target = make_set(50, 6, seed=3, domain=1, name="t").mat
    exact = coral.fit_coral(source.mat, target, eps=0.0)
    aligned = exact.apply(source.mat)
    assert np.allclose(aligned.mean(axis=0), target.mean(axis=0), atol=1e-9)
    assert np.allclose(np.cov(aligned.T, bias=True), np.cov(target.T, bias=True), atol=1e-8)
    reg = coral.fit_coral(source.mat, target, eps=0.5)
    linear = reg.affine[:, :DIM]
    _, cov_s = coral.regularized_covariance(source.mat, 0.5)
    _, cov_t = coral.regularized_covariance(target, 0.5)
    assert np.allclose(linear @ cov_s @ linear.T, cov_t, atol=1e-8)
    same = coral.fit_coral(target, target, eps=0.5)
    assert np.allclose(same.apply(target), target, atol=1e-9)
    # the affine matrix is what transform-vec applies
    assert np.allclose(reg.apply(source.mat[:3]), source.mat[:3] @ linear.T + reg.affine[:, DIM])


def test_coral_errors(source):
    few = source.mat[:5]
    with pytest.raises(XvjaxError, match="singular.*eps > 0"):
        coral.fit_coral(few, source.mat, eps=0.0)
    assert coral.fit_coral(few, source.mat, eps=0.1).affine.shape == (DIM, DIM + 1)
    with pytest.raises(XvjaxError, match="dimension"):
        coral.fit_coral(source.mat, source.mat[:, :5])
    with pytest.raises(XvjaxError, match="eps must be >= 0"):
        coral.fit_coral(source.mat, source.mat, eps=-1.0)


# ----------------------------------------------------------------------------- command
def test_cluster_vectors_command(tmp_path, backend, source_choices, capsys):
    new = make_set(12, 5, seed=21, domain=0, name="c")
    y = backend.project(new.mat)
    tables.write_dict(
        f"ark:{tmp_path / 'x.ark'}", dict(zip(new.keys, y.astype(np.float32), strict=True))
    )
    plda_io.write_plda(backend.plda, str(tmp_path / "plda"))
    out = tmp_path / "utt2spk"
    argv = [
        "cluster-vectors",
        "--similarity=plda",
        f"--plda={tmp_path / 'plda'}",
        f"--threshold={source_choices['plda'].threshold}",
        f"ark:{tmp_path / 'x.ark'}",
        str(out),
    ]
    assert cli.run(argv) == 0
    u2s = tables.read_text_table(str(out), sorted_check=True)
    assert list(u2s) == sorted(new.keys)
    model = plda_io.read_plda(str(tmp_path / "plda"))
    u, _ = plda_lib.plda_transform(model, y.astype(np.float32))
    ref = cluster.flat_clusters(
        cluster.plda_pair_features(model, u), threshold=source_choices["plda"].threshold
    )
    assert [u2s[k] for k in new.keys] == list(pseudo_labels.pseudo_utt2spk(new.keys, ref).values())
    purity, coverage = cluster.purity_coverage([u2s[k] for k in new.keys], new.spk_ids)
    assert purity == 1.0 and coverage >= 0.95
    num = len(set(u2s.values()))
    assert f"Wrote 60 utterances in {num} pseudo-speakers" in capsys.readouterr().err

    out2 = tmp_path / "u2"
    assert (
        cli.run(
            [
                "cluster-vectors",
                "--num-clusters=3",
                "--linkage=complete",
                f"ark:{tmp_path / 'x.ark'}",
                str(out2),
            ]
        )
        == 0
    )
    assert len(set(tables.read_text_table(str(out2)).values())) == 3


@pytest.mark.parametrize(
    "opts, message",
    [
        (["--threshold=0", "--num-clusters=3"], "exactly one of --threshold and --num-clusters"),
        ([], "exactly one of --threshold and --num-clusters"),
        (["--similarity=plda", "--threshold=0"], "--plda=<model> goes with --similarity=plda"),
        (["--linkage=ward", "--threshold=0"], "--linkage must be one of"),
        (["--similarity=dot", "--threshold=0"], "--similarity must be plda or cosine"),
    ],
)
def test_cluster_vectors_errors_write_nothing(tmp_path, opts, message, capsys):
    tables.write_dict(
        f"ark:{tmp_path / 'x.ark'}", {"a": np.ones(3, np.float32), "b": np.zeros(3, np.float32)}
    )
    out = tmp_path / "utt2spk"
    assert cli.run(["cluster-vectors", *opts, f"ark:{tmp_path / 'x.ark'}", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
