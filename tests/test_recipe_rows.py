"""The recipe's rows on synthetic x-vectors: every choice is made on the dev trials (permuting the
evaluation labels moves no choice), intervals come with every reported number, AS-norm's top-k is
clamped and said so, and the dev set held out of a labelled set is disjoint from what remains."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from xvjax.backend import adapt, means
from xvjax.backend.system import XvectorSet
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.kaldi import datadir
from xvjax.recipe import rows
from xvjax.recipe.datasets import hold_out_dev
from xvjax.recipe.routes import BackendRecipe, Backends

DIM = 12


def _speakers(rng, prefix, num_spk, utts, shift, between, within):
    """x-vectors of `num_spk` speakers: mean ~ N(shift, between I), utterance ~ N(mean, within I)."""
    keys, mats, utt2spk = [], [], {}
    for s in range(num_spk):
        spk = f"{prefix}{s:03d}"
        centre = shift + rng.normal(0, np.sqrt(between), DIM)
        for u in range(utts):
            key = f"{spk}-{u:02d}"
            keys.append(key)
            mats.append(centre + rng.normal(0, np.sqrt(within), DIM))
            utt2spk[key] = spk
    return keys, np.array(mats), utt2spk


def _split(keys, mat, utt2spk, num_enroll):
    """Enrolment (first num_enroll per speaker) and test sets of one group of speakers."""
    per = {}
    for k in keys:
        per.setdefault(utt2spk[k], []).append(k)
    enroll = {k for ks in per.values() for k in ks[:num_enroll]}
    rows_e = [i for i, k in enumerate(keys) if k in enroll]
    rows_t = [i for i, k in enumerate(keys) if k not in enroll]
    make = lambda r: XvectorSet(
        [keys[i] for i in r], mat[r], {keys[i]: utt2spk[keys[i]] for i in r}
    )
    return make(rows_e), make(rows_t)


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    shift = rng.normal(0, 1.5, DIM)  # the in-domain mean is elsewhere
    src = _speakers(rng, "s", 40, 6, 0.0, 1.0, 0.3)
    tgt = lambda p, n, u: _speakers(rng, p, n, u, shift, 0.5, 0.6)  # noqa: E731
    sets = {"source_train": XvectorSet(src[0], src[1], src[2])}
    k, m, u = tgt("t", 20, 6)
    sets["target_train"] = XvectorSet(k, m, u)
    k, m, _ = tgt("a", 30, 5)
    sets["target_adapt"] = XvectorSet(k, m, None)
    sets["target_dev_enroll"], sets["target_dev_test"] = _split(*tgt("d", 12, 6), 2)
    sets["target_enroll"], sets["target_test"] = _split(*tgt("e", 16, 6), 2)
    trials = {
        side: Trials.every_pair(sorted(set(e.spk_ids)), dict(zip(t.keys, t.spk_ids, strict=True)))
        for side, (e, t) in {
            "dev": (sets["target_dev_enroll"], sets["target_dev_test"]),
            "target": (sets["target_enroll"], sets["target_test"]),
        }.items()
    }
    return sets, trials


@dataclasses.dataclass
class Cfg:
    within_covar_scale: float = 0.75
    between_covar_scale: float = 0.25
    seed: int = 0


def _run(world, tmp_path, trials):
    return _run_sets(world[0], tmp_path, trials)[0]


def _run_sets(sets, tmp_path, trials):
    utt2spk = {side: dict(zip(sets[n].keys, sets[n].spk_ids, strict=True))
               for side, n in (("dev", "target_dev_test"), ("target", "target_test"))}  # fmt: skip
    scorer = rows.Scorer(trials, utt2spk, num_replicates=50, seed=0)
    backends = Backends(sets, lda_dim=8, em_iters=3)
    os.makedirs(tmp_path, exist_ok=True)
    table, _ = rows.backend_rows(Cfg(), backends, sets, scorer, str(tmp_path), "test")
    return table, scorer


def test_evaluation_labels_never_move_a_choice(world, tmp_path):
    sets, trials = world
    a = _run(world, tmp_path / "a", trials)
    t = trials["target"]
    perm = np.random.default_rng(1).permutation(t.labels)
    b = _run(world, tmp_path / "b", {**trials, "target": Trials(t.enroll, t.test, perm)})
    assert [r["id"] for r in a] == [r["id"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra["recipe"] == rb["recipe"] and ra["dev"] == rb["dev"], ra["id"]
    # ... while the evaluation numbers did change (the permutation was not a no-op).
    assert a[0]["target"]["eer"] != pytest.approx(b[0]["target"]["eer"])
    assert b[0]["target"]["eer"] == pytest.approx(50, abs=10)


def test_rows_report_intervals_trial_counts_and_what_was_chosen(world, tmp_path):
    table = _run(world, tmp_path, world[1])
    ids = [r["id"] for r in table]
    assert ids[:8] == ["1", "2", "3", "3b", "3c", "3d", "4", "4b"] and "5b" in ids
    for r in table:
        t = r["target"]
        lo, hi = t["ci"]["eer"]
        assert lo <= t["eer"] <= hi, r["id"]
        assert t["num_target"] == 16 * 4 and t["num_nontarget"] == 16 * 15 * 4
        assert os.path.isfile(t["scores"])
    by_id = {r["id"]: r for r in table}
    assert by_id["3"]["kaldi"] and by_id["3"]["recipe"]["adapt"] == [0.75, 0.25]
    assert len(by_id["3b"]["tried"]) == 24  # every scale pair but (0, 0)
    # The in-domain LDA dimension is capped by the 20 training speakers (19) and shown.
    assert by_id["4"]["lda_dim"] <= 19
    # Labels are used where they are, and rows 5c/5d only draw on unlabelled routes.
    assert by_id["4"]["uses_labels"] and not by_id["3d"]["uses_labels"]
    for r in table:
        if r["id"] in ("5c", "5d"):
            assert not r["uses_labels"]
    # The dev-chosen rows are the dev-best of what they tried.
    for r in table:
        tried = [t["dev_eer"] for t in r["tried"] if "dev_eer" in t]
        assert r["dev"]["eer"] == pytest.approx(min(tried)), r["id"]


def test_no_buildable_backend_is_one_clear_error(world, tmp_path):
    """Fewer source utterances than the x-vector dimension (a full-size 512-dim model on a small
    source set): every row fails to build, and the recipe says why instead of crashing."""
    sets, trials = world
    few = sets["source_train"]
    keys = few.keys[: DIM - 2]
    small = dict(sets, source_train=XvectorSet(keys, few.mat[: DIM - 2],
                                               {k: few.utt2spk[k] for k in keys}))  # fmt: skip
    small.pop("target_train")
    with pytest.raises(
        XvjaxError, match=r"no backend could be built on the test x-vectors .*row 1: "
    ):
        _run_sets(small, tmp_path, trials)


def test_asnorm_top_k_is_clamped_and_said(world):
    sets, _ = world
    backends = Backends(sets, lda_dim=8, em_iters=3)
    built = backends.build(BackendRecipe(mean="adapt", norm="asnorm", top_k=10_000))
    assert built.top_k == len(sets["target_adapt"].keys) and "clamped" in built.note


def test_user_kaldi_backend_is_the_source_system(world):
    sets, _ = world
    own = Backends(sets, lda_dim=8, em_iters=3).source()
    user = Backends(sets, lda_dim=8, em_iters=3, user=(None, own.lda, own.plda)).source()
    assert np.allclose(user.mean, means.global_mean(sets["source_train"].mat))
    assert user.plda is own.plda


def test_adaptation_diagnostics_on_in_model_data():
    """Data drawn from the PLDA model itself: no excess variance, labels agree with the model."""
    rng = np.random.default_rng(3)
    psi = np.array([4.0, 2.0, 1.0, 0.5])
    spk = np.repeat(np.arange(400), 8)
    centres = rng.normal(0, np.sqrt(psi), (400, 4))
    y = centres[spk] + rng.normal(0, 1, (len(spk), 4))
    from xvjax.backend.plda import Plda

    plda = Plda(np.zeros(4), np.eye(4), psi)
    d = adapt.adaptation_diagnostics(plda, y, y, spk.astype(str))
    assert d["model_between"] == pytest.approx(psi.mean())
    assert d["unlabelled_total"] == pytest.approx(d["model_total"], rel=0.1)
    assert d["excess"] < 0.1
    assert d["labelled_within"] == pytest.approx(1.0, rel=0.05)
    assert d["labelled_between"] == pytest.approx(psi.mean(), rel=0.15)
    # Twice the within-class variance in domain: the excess is within-class, as the labels say.
    y2 = centres[spk] + rng.normal(0, np.sqrt(3.0), (len(spk), 4))
    d2 = adapt.adaptation_diagnostics(plda, y2, y2, spk.astype(str))
    # per direction the total grows from 1 + psi to 3 + psi: excess 2 / (1 + psi) in the model's
    # whitened space
    assert d2["excess"] == pytest.approx(np.mean(2 / (1 + psi)), rel=0.1)
    assert d2["labels_excess_within"] > 5 * abs(d2["labels_excess_between"])


def test_dev_held_out_of_a_labelled_set(tmp_path):
    root = tmp_path / "data"
    utt2spk = {f"spk{s:02d}-u{u}": f"spk{s:02d}" for s in range(10) for u in range(4)}
    train = root / "target_train"
    datadir.write_data_dir(str(train), utt2spk, feats_scp={u: f"x.ark:{i}" for i, u in enumerate(sorted(utt2spk))}, validate=False)  # fmt: skip
    out = hold_out_dev(str(train), str(root), 0, seed=0)
    assert out["num_speakers"] == 4
    rest = datadir.load_data_dir(str(train), check_files=False)
    enroll = datadir.load_data_dir(out["sets"]["target_dev_enroll"], check_files=False)
    test = datadir.load_data_dir(out["sets"]["target_dev_test"], check_files=False)
    assert not set(rest.spk2utt) & set(out["speakers"])
    assert set(enroll.spk2utt) == set(test.spk2utt) == set(out["speakers"])
    assert not set(enroll.utt2spk) & set(test.utt2spk)
    trials = Trials.read(out["trials"], labelled=True)
    assert len(trials) == 4 * len(test.utt2spk) and trials.labels.sum() == len(test.utt2spk)
    with pytest.raises(XvjaxError, match="dev speakers"):
        hold_out_dev(str(train), str(root), 5, seed=0)  # 6 left: 5 would leave 1 to train on


def test_report_reuses_the_rows_bootstrap_replicates(world, tmp_path):
    """results.md's paired changes against row 1 come from the replicates each row saved with its
    scores; they equal the in-memory pairing and a recomputation from the scores."""
    from xvjax.recipe import report

    table, scorer = _run_sets(world[0], tmp_path, world[1])
    report.compare_rows(table, scorer)
    for r in table[1:]:
        expected = scorer.versus(r["id"], "1")
        for k, (_, ci) in r["vs_row1"].items():
            assert ci == pytest.approx(expected[k], nan_ok=True), (r["id"], k)
    for r in table:  # scores only, as an older run left them: recomputed, same intervals
        stem = os.path.splitext(r["target"]["scores"])[0] + ".npz"
        with np.load(stem) as z:
            np.savez(stem, scores=z["scores"], labels=z["labels"])
    again = [dict(r) for r in table]
    report.compare_rows(again, scorer)
    for r, r2 in zip(table[1:], again[1:], strict=True):
        assert r2["vs_row1"] == r["vs_row1"], r["id"]
