"""Batched PLDA scoring, dense blocked/sharded matrices and score normalisation against Kaldi's
scores and the fixture's S-norm / AS-norm reference."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from xvjax.backend import plda as plda_lib
from xvjax.backend import score_files, scoring, snorm
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.kaldi import plda_io, tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def load(path):
    table = tables.read_dict(f"ark,t:{path}", kind="vector")
    keys = list(table)
    return keys, np.stack([np.asarray(table[k], dtype=np.float64) for k in keys])


def read_scores(path):
    out = {}
    for line in open(path):
        e, t, s = line.split()
        out[(e, t)] = float(s)
    return out


@pytest.fixture(scope="module")
def bk(kaldi_fixtures):
    return kaldi_fixtures / "backend"


def setup_case(bk, plda_name, mean_name):
    model = plda_io.read_plda(str(bk / plda_name))
    e_keys, enroll = load(bk / f"enroll_prepared_{mean_name}.ark.txt")
    t_keys, test = load(bk / f"test_prepared_{mean_name}.ark.txt")
    counts = tables.read_dict(f"ark:{bk / 'num_utts.ark'}", kind="int32")
    n = np.array([counts[k] for k in e_keys], dtype=np.float64)
    ref = read_scores(bk / f"scores_{plda_name}_{mean_name}")
    e_idx = {k: i for i, k in enumerate(e_keys)}
    t_idx = {k: i for i, k in enumerate(t_keys)}
    pairs = list(ref)
    ie = np.array([e_idx[e] for e, _ in pairs])
    it = np.array([t_idx[t] for _, t in pairs])
    return model, enroll, test, n, ie, it, np.array([ref[p] for p in pairs])


CASES = [(p, m) for p in ("plda", "plda_adapt") for m in ("mean", "mean_adapt")]


@pytest.mark.parametrize("plda_name,mean_name", CASES)
def test_trial_scores_match_kaldi(bk, plda_name, mean_name):
    model, enroll, test, n, ie, it, ref = setup_case(bk, plda_name, mean_name)
    ours = scoring.score_trials(model, enroll, test, ie, it, n)
    # Kaldi prints 7 significant digits (|score| < 200 -> 5e-5 rounding); the rest is float32
    assert np.abs(ours - ref).max() < 1e-4
    # the numpy reference implementation agrees to double precision
    u, _ = plda_lib.plda_transform(model, enroll, n)
    v, _ = plda_lib.plda_transform(model, test)
    assert np.abs(plda_lib.plda_llr(model, u[ie], v[it], n[ie]) - ours).max() < 1e-10
    # dense matrix: same numbers on the same pairs, float64 and float32
    dense64 = scoring.score_matrix(model, enroll, test, n, dtype=np.float64, block_size=64)
    assert np.abs(dense64[ie, it] - ours).max() < 1e-10
    dense32 = scoring.score_matrix(model, enroll, test, n, block_size=64)
    assert dense32.dtype == np.float32
    assert np.abs(dense32[ie, it] - ref).max() < 1e-4


def test_blocked_results_independent_of_block_size(bk):
    model, enroll, test, n, ie, it, _ = setup_case(bk, "plda_adapt", "mean_adapt")
    full64 = scoring.score_matrix(model, enroll, test, n, dtype=np.float64, block_size=4096)
    full32 = scoring.score_matrix(model, enroll, test, n, block_size=4096)
    for block in (7, (5, 33), (40, 1), 64):
        b64 = scoring.score_matrix(model, enroll, test, n, dtype=np.float64, block_size=block)
        assert np.abs(b64 - full64).max() < 1e-11
        b32 = scoring.score_matrix(model, enroll, test, n, block_size=block)
        assert np.abs(b32 - full32).max() < 1e-4  # float32 GEMM rounding only
    for block in (1, 100, 1 << 16):
        s = scoring.score_trials(model, enroll, test, ie, it, n, block_size=block, method="gather")
        assert np.abs(s - full64[ie, it]).max() < 1e-11
    # trial lists via the dense tiles that hold trials (auto picks it for dense-ish lists like
    # this one, 1102 of 6400 pairs); with small tiles most tiles are skipped
    ef = scoring.prepare_enroll(model, enroll, n)
    tf = scoring.prepare_test(model, test)
    few = slice(0, 1102, 50)
    for tile in (8, (5, 17), 4096):
        s = scoring.score_pairs(ef, tf, ie[few], it[few], method="dense", dense_block_size=tile)
        assert np.abs(s - full64[ie[few], it[few]]).max() < 1e-11
    # one shared n (the K = D GEMM path) agrees with the general one
    ones = scoring.score_matrix(model, enroll, test, 1, dtype=np.float64)
    u, _ = plda_lib.plda_transform(model, enroll)
    v, _ = plda_lib.plda_transform(model, test)
    assert np.abs(ones[ie, it] - plda_lib.plda_llr(model, u[ie], v[it])).max() < 1e-10


@pytest.fixture(scope="module")
def norm_case(bk):
    model, enroll, test, n, ie, it, _ = setup_case(bk, "plda_adapt", "mean_adapt")
    _, cohort = load(bk / "cohort_prepared.ark.txt")
    ref_s = read_scores(bk / "scores_snorm")
    ref_a = read_scores(bk / "scores_asnorm_top20")
    e_keys, _ = load(bk / "enroll_prepared_mean_adapt.ark.txt")
    t_keys, _ = load(bk / "test_prepared_mean_adapt.ark.txt")
    pairs = [(e_keys[i], t_keys[j]) for i, j in zip(ie, it, strict=True)]
    return dict(
        model=model,
        enroll=enroll,
        test=test,
        cohort=cohort,
        n=n,
        ie=ie,
        it=it,
        ref_s=np.array([ref_s[p] for p in pairs]),
        ref_a=np.array([ref_a[p] for p in pairs]),
        e_keys=e_keys,
        t_keys=t_keys,
        pairs=pairs,
    )


def test_snorm_from_kaldi_cohort_scores_matches_reference(bk, norm_case):
    """The normalisation itself, fed Kaldi's own score files, reproduces the reference."""
    c = norm_case
    raw = read_scores(bk / "scores_plda_adapt_mean_adapt")
    raw = np.array([raw[p] for p in c["pairs"]])

    def grouped(path, keys):
        rows = {}
        for line in open(path):
            a, _, s = line.split()
            rows.setdefault(a, []).append(float(s))
        return np.array([rows[k] for k in keys])

    e_sc = grouped(bk / "scores_enroll_cohort", c["e_keys"])
    t_sc = grouped(bk / "scores_test_cohort", c["t_keys"])
    for top_k, ref in ((None, c["ref_s"]), (20, c["ref_a"])):
        e = snorm.cohort_stats_from_scores(e_sc, top_k).take(c["ie"])
        t = snorm.cohort_stats_from_scores(t_sc, top_k).take(c["it"])
        assert np.abs(snorm.snorm(raw, e, t) - ref).max() < 1e-5


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_snorm_and_asnorm_from_vectors(norm_case, dtype):
    """End to end from vectors. The reference was computed from Kaldi's printed scores (7 digits),
    so it carries up to 5e-5 of rounding, divided by top-20 stds as small as 1.7."""
    c = norm_case
    for method, top_k, ref, tol in (
        ("snorm", None, c["ref_s"], 1e-5),
        ("asnorm", 20, c["ref_a"], 5e-5),
    ):
        prep = snorm.prepare_norm(
            c["model"],
            c["enroll"],
            c["test"],
            c["cohort"],
            c["n"],
            method=method,
            top_k=top_k,
            dtype=dtype,
            block_size=16,
        )
        _, normed = snorm.norm_trials(prep, c["ie"], c["it"])
        assert np.abs(normed - ref).max() < tol
        dense = np.full((len(c["enroll"]), len(c["test"])), np.nan)
        for r0, c0, blk in snorm.iter_norm_blocks(prep, block_size=(13, 50), dtype=dtype):
            dense[r0 : r0 + blk.shape[0], c0 : c0 + blk.shape[1]] = blk
        assert not np.isnan(dense).any()
        assert np.abs(dense[c["ie"], c["it"]] - normed).max() < (
            1e-9 if dtype == np.float64 else 1e-4
        )


def test_cohort_stats_closed_form_and_topk_equal_explicit_scores(norm_case):
    c = norm_case
    model = c["model"]
    ef = scoring.prepare_enroll(model, c["enroll"], c["n"])
    cf = scoring.prepare_test(model, c["cohort"])
    explicit = scoring.score_matrix(model, c["enroll"], c["cohort"], c["n"], dtype=np.float64)
    for top_k in (None, 1, 20, 359):
        ref = snorm.cohort_stats_from_scores(explicit, top_k)
        got = snorm.cohort_stats(ef, cf, top_k, dtype=np.float64, block_size=7)
        np.testing.assert_allclose(got.mean, ref.mean, rtol=0, atol=1e-9)
        np.testing.assert_allclose(got.std, ref.std, rtol=0, atol=1e-9)
    # Z-norm and T-norm are the one-sided pieces of S-norm
    prep_z = snorm.prepare_norm(model, c["enroll"], c["test"], c["cohort"], c["n"], method="znorm")
    prep_t = snorm.prepare_norm(model, c["enroll"], c["test"], c["cohort"], c["n"], method="tnorm")
    prep_s = snorm.prepare_norm(model, c["enroll"], c["test"], c["cohort"], c["n"], method="snorm")
    raw, z = snorm.norm_trials(prep_z, c["ie"], c["it"])
    _, t = snorm.norm_trials(prep_t, c["ie"], c["it"])
    _, s = snorm.norm_trials(prep_s, c["ie"], c["it"])
    np.testing.assert_allclose(0.5 * (z + t), s, atol=1e-12)
    e = prep_z.enroll_stats.take(c["ie"])
    np.testing.assert_allclose(z, (raw - e.mean) / e.std, atol=1e-12)
    assert prep_z.test_stats is None and prep_t.enroll_stats is None


def test_cosine_scores():
    rng = np.random.default_rng(3)
    e, t = rng.normal(size=(9, 16)), rng.normal(size=(11, 16))
    ref = (e / np.linalg.norm(e, axis=1, keepdims=True)) @ (
        t / np.linalg.norm(t, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(
        scoring.cosine_matrix(e, t, block_size=4, dtype=np.float64), ref, atol=1e-12
    )
    ie, it = np.array([0, 3, 8]), np.array([10, 0, 5])
    np.testing.assert_allclose(scoring.cosine_scores(e, t, ie, it), ref[ie, it], atol=1e-12)


SHARDED = textwrap.dedent(
    """
    import sys, numpy as np, jax
    from xvjax.backend import scoring, snorm
    from xvjax.kaldi import plda_io
    d = np.load(sys.argv[1])
    model = plda_io.read_plda(sys.argv[2])
    assert jax.device_count() == 2, jax.devices()
    mesh = scoring.device_mesh()
    assert mesh.size == 2
    m = scoring.score_matrix(model, d["enroll"], d["test"], d["n"], dtype=np.float64, block_size=(10, 64))
    s = scoring.score_trials(model, d["enroll"], d["test"], d["ie"], d["it"], d["n"], block_size=100)
    ef = scoring.prepare_enroll(model, d["enroll"], d["n"])
    st = snorm.cohort_stats(ef, scoring.prepare_test(model, d["cohort"]), 20, dtype=np.float64, block_size=6)
    np.savez(sys.argv[3], m=m, s=s, mean=st.mean, std=st.std)
    """
)


def test_sharded_over_two_devices_equals_single_device(bk, norm_case, tmp_path):
    c = norm_case
    np.savez(
        tmp_path / "in.npz",
        enroll=c["enroll"],
        test=c["test"],
        n=c["n"],
        ie=c["ie"],
        it=c["it"],
        cohort=c["cohort"],
    )
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
    )
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run(
        [
            sys.executable,
            "-c",
            SHARDED,
            str(tmp_path / "in.npz"),
            str(bk / "plda_adapt"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        env=env,
        cwd=REPO,
    )
    out = np.load(tmp_path / "out.npz")
    model = c["model"]
    m = scoring.score_matrix(model, c["enroll"], c["test"], c["n"], dtype=np.float64)
    assert np.abs(out["m"] - m).max() < 1e-11
    assert np.abs(out["s"] - m[c["ie"], c["it"]]).max() < 1e-11
    ef = scoring.prepare_enroll(model, c["enroll"], c["n"])
    st = snorm.cohort_stats(ef, scoring.prepare_test(model, c["cohort"]), 20, dtype=np.float64)
    assert np.abs(out["mean"] - st.mean).max() < 1e-11
    assert np.abs(out["std"] - st.std).max() < 1e-11


def test_plda_is_a_pytree_and_one_call_norm(norm_case):
    import jax

    c = norm_case
    leaves = jax.tree.leaves(c["model"])
    assert len(leaves) == 3 and leaves[0].shape == (48,)
    doubled = jax.tree.map(lambda a: 2 * a, c["model"])
    assert isinstance(doubled, plda_lib.Plda)
    s = snorm.norm_trial_scores(
        c["model"],
        c["enroll"],
        c["test"],
        c["cohort"],
        c["ie"],
        c["it"],
        c["n"],
        method="asnorm",
        top_k=20,
    )
    assert np.abs(s - c["ref_a"]).max() < 5e-5


def test_partial_blocks_reuse_one_compiled_kernel():
    """Last (partial) blocks are padded to the block shape: one compile per block shape, whatever
    N_e, N_t or the number of trials (a new shape per block would recompile on every call)."""
    rng = np.random.default_rng(5)
    dim = 7  # a shape no other test uses, so the counts below are this test's own
    block, pairs = scoring.score_block, scoring._pair_scores
    before = block._cache_size()
    for num_e, num_t in ((37, 53), (33, 50), (21, 17)):
        e, t = rng.normal(size=(num_e, dim)), rng.normal(size=(num_t, dim))
        scoring.cosine_matrix(e, t, block_size=(10, 16), dtype=np.float64)
    assert block._cache_size() == before + 1
    e, t = rng.normal(size=(37, dim)), rng.normal(size=(53, dim))
    ef = scoring.EnrollFeatures(e, np.zeros(37), np.zeros((1, dim)), np.zeros(37, np.int32))
    before = pairs._cache_size()
    for num in (500, 333):
        ie, it = rng.integers(0, 37, num), rng.integers(0, 53, num)
        got = scoring.score_pairs(ef, t, ie, it, block_size=64, method="gather")
        np.testing.assert_allclose(got, np.einsum("ij,ij->i", e[ie], t[it]), atol=1e-12)
    assert pairs._cache_size() == before + 1


def test_score_list_normalisation_from_score_files(bk, tmp_path):
    """`score-norm`'s file form as library calls: cohort statistics per key from cohort score
    files, then S-norm / AS-norm of a score file of any scorer, against the fixture reference."""
    trials, raw = score_files.read_score_file(str(bk / "scores_plda_adapt_mean_adapt"))
    e_cohort = score_files.read_score_file(str(bk / "scores_enroll_cohort"))
    t_cohort = score_files.read_score_file(str(bk / "scores_test_cohort"))
    for top_k, ref_name in ((None, "scores_snorm"), (20, "scores_asnorm_top20")):
        e_stats = snorm.cohort_stats_by_key(*e_cohort, top_k)
        t_stats = snorm.cohort_stats_by_key(*t_cohort, top_k)
        assert set(e_stats) == set(trials.enroll) and set(t_stats) == set(trials.test)
        normed = snorm.normalize_score_list(trials, raw, e_stats, t_stats)
        ref = read_scores(bk / ref_name)
        pairs = zip(trials.enroll, trials.test, strict=True)
        assert np.abs(normed - [ref[p] for p in pairs]).max() < 1e-5
    # Z-norm: the enrolment side alone
    z = snorm.normalize_score_list(trials, raw, e_stats, None)
    mean, std = np.array([e_stats[e] for e in trials.enroll]).T
    np.testing.assert_allclose(z, (raw - mean) / std, atol=1e-12)
    with pytest.raises(XvjaxError, match="'evl0000' has no cohort scores in cohort.txt"):
        snorm.normalize_score_list(trials, raw, {}, None, ("cohort.txt", ""))
    one = Trials(["a", "b", "b"], ["c1", "c1", "c2"])
    with pytest.raises(XvjaxError, match="x: 'a' has 1 cohort score; need at least 2"):
        snorm.cohort_stats_by_key(one, np.array([1.0, 2.0, 3.0]), name="x")
    with pytest.raises(XvjaxError, match="cohort scores of 'b' have zero standard deviation"):
        snorm.cohort_stats_by_key(one.subset(np.array([False, True, True])), np.array([2.0, 2.0]))


def test_precision_dtype():
    assert scoring.precision_dtype("float32") == np.float32
    assert scoring.precision_dtype("float64") == np.float64
    with pytest.raises(XvjaxError, match="--precision must be float32 or float64, got 'float16'"):
        scoring.precision_dtype("float16")
