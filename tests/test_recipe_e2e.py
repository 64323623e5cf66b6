"""The transfer recipe end to end on the `tiny` corpus preset (slow: ~2 minutes on 2 busy cores)."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest

from xvjax.recipe import config, transfer
from xvjax.recipe.report import read_result_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("recipe_tiny")
    cfg = config.RecipeConfig(workdir=str(workdir), preset="tiny", progress=False)
    return cfg, transfer.run_recipe(cfg)


def test_every_stage_produced_its_files(tiny_run):
    cfg, summary = tiny_run
    w = cfg.workdir
    assert summary["ran"] == list(config.STAGES)
    for i, name in enumerate(config.STAGES):
        assert os.path.isfile(os.path.join(w, "stages", f"{i}.{name}.json"))
    assert os.path.isfile(os.path.join(w, "corpus", "corpus.json"))
    for s in ("source_train", "target_train", "target_adapt", "target_dev_enroll",
              "target_dev_test", "target_enroll", "target_test"):  # fmt: skip
        for f in ("feats.scp", "vad.scp", "utt2num_frames"):
            assert os.path.getsize(os.path.join(w, "data", s, f)) > 0
        assert os.path.getsize(os.path.join(w, "data", f"{s}_no_sil", "feats.scp")) > 0
        assert os.path.getsize(os.path.join(w, "xvectors", "source", s, "xvector.scp")) > 0
    assert os.path.isfile(os.path.join(w, "exp", "source_model", "final", "model.json"))
    for row in ("6a", "6b", "6c"):
        run = os.path.join(w, "exp", f"finetune_{row}")
        assert os.path.isfile(os.path.join(run, "final", "model.json"))
        # the dev-best step is the fine-tuned model (early stopping on the dev trials)
        assert os.path.isfile(os.path.join(run, "best", "model.json"))
        assert os.path.getsize(
            os.path.join(w, "xvectors", f"finetune_{row}", "target_test", "xvector.scp")
        )
    # Augmented copies of target_train joined the fine-tuning data.
    assert summary["augmentation"] == ["reverb", "noise", "music", "babble"]
    for key in ("results_md", "results_json", "det_png", "training_curves_png"):
        assert os.path.getsize(summary[key]) > 0
    for png in ("det_png", "training_curves_png"):
        with open(summary[png], "rb") as f:
            assert f.read(4) == b"\x89PNG"


def test_every_row_has_real_eers_with_intervals(tiny_run):
    _, summary = tiny_run
    with open(summary["results_json"], encoding="utf-8") as f:
        results = json.load(f)
    ids = [r["id"] for r in results["rows"]]
    assert ids[:8] == ["1", "2", "3", "3b", "3c", "3d", "4", "4b"]
    assert {"5a", "5b", "6a", "6b", "6c", "7"} <= set(ids)
    for r in results["rows"]:
        assert math.isfinite(r["dev"]["eer"])
        # The tiny corpus is far too small to rank routes (24 target trials): what must hold is
        # that the source network separates source speakers, and that every number is real.
        if r["id"] in ("1", "2", "3"):
            assert r["source"]["eer"] < 40.0, r
        for side in ("target", "source"):
            m = r[side]
            assert math.isfinite(m["eer"]) and 0.0 <= m["eer"] <= 100.0, (r["id"], side, m)
            lo, hi = m["ci"]["eer"]
            assert lo <= m["eer"] <= hi
            for key in ("min_dcf_0.01", "min_dcf_0.005"):
                assert 0.0 <= m[key] <= 1.0 + 1e-9
            assert os.path.getsize(m["scores"]) > 0
        if r["id"] != "1":
            value, (lo, hi) = r["vs_row1"]["eer"]
            assert math.isfinite(value) and lo <= hi
    assert results["meta"]["corpus"]["seed"] == 777
    with open(summary["results_md"], encoding="utf-8") as f:
        md = f.read()
    assert "| 6b |" in md and "corpus seed 777" in md and "Dev-chosen best route" in md
    assert "## Choices" in md and "## PLDA adaptation on this data" in md


def test_rerun_resumes_without_recomputing(tiny_run):
    cfg, _ = tiny_run
    again = transfer.run_recipe(cfg)
    assert again["ran"] == []
    assert again["skipped"] == list(config.STAGES)


def test_user_data_with_kaldi_backend_files_reproduces_the_backend_rows(tiny_run, tmp_path_factory):
    """The same data given as user data dirs, the first run's model as --pretrained and its
    source backend written as Kaldi files (--plda/--mean/--lda): the backend rows come out
    identical, choices included (the dev set is given too)."""
    first_cfg, first = tiny_run
    data = os.path.join(first["corpus"]["path"], "data")
    backend = os.path.join(first_cfg.workdir, "backends", "row1")
    cfg = config.RecipeConfig(
        workdir=str(tmp_path_factory.mktemp("recipe_user")),
        preset="tiny",
        src_data=os.path.join(data, "source_train"),
        src_enroll=os.path.join(data, "source_eval_enroll"),
        src_test=os.path.join(data, "source_eval_test"),
        src_trials=os.path.join(data, "source_eval_test", "trials"),
        tgt_train=os.path.join(data, "target_train"),
        tgt_adapt=os.path.join(data, "target_adapt"),
        tgt_enroll=os.path.join(data, "target_enroll"),
        tgt_test=os.path.join(data, "target_test"),
        trials=os.path.join(data, "target_test", "trials"),
        tgt_dev_enroll=os.path.join(data, "target_dev_enroll"),
        tgt_dev_test=os.path.join(data, "target_dev_test"),
        dev_trials=os.path.join(data, "target_dev_test", "trials"),
        pretrained=first["source_model"],
        sample_rate=8000,  # the built-in corpus' default (its telephone band); user data's is 16k
        plda=os.path.join(backend, "plda"),
        mean=os.path.join(backend, "mean.vec"),
        lda=os.path.join(backend, "transform.mat"),
        ft_steps=10,
        ft_eval_every=5,
        augment=False,
        pseudo_ft=False,
        progress=False,
    )
    second = transfer.run_recipe(cfg)
    a, b = read_result_rows(first["results_json"]), read_result_rows(second["results_json"])
    for row in ("1", "2", "3", "3b", "3c", "3d", "4", "4b", "5a", "5b"):
        assert b[row]["recipe"] == a[row]["recipe"], row
        for side in ("target", "source"):
            for key in ("eer", "min_dcf_0.01", "min_dcf_0.005"):
                assert b[row][side][key] == pytest.approx(a[row][side][key], abs=1e-6), (row, side)
    assert second["augmentation"] == []
    assert "6c" not in b
    for row in ("6a", "6b", "7"):
        assert math.isfinite(b[row]["target"]["eer"])


def test_dev_set_held_out_when_none_is_given(tiny_run, tmp_path_factory):
    """User data without a dev set: speakers of --tgt-train are held out and said so."""
    first_cfg, first = tiny_run
    data = os.path.join(first["corpus"]["path"], "data")
    cfg = config.RecipeConfig(
        workdir=str(tmp_path_factory.mktemp("recipe_holdout")),
        preset="tiny",
        src_data=os.path.join(data, "source_train"),
        tgt_train=os.path.join(data, "target_train"),
        tgt_adapt=os.path.join(data, "target_adapt"),
        tgt_enroll=os.path.join(data, "target_enroll"),
        tgt_test=os.path.join(data, "target_test"),
        trials=os.path.join(data, "target_test", "trials"),
        pretrained=first["source_model"],
        dev_speakers=3,
        stage=-1,
        progress=False,
    )
    transfer.run_recipe(dataclasses.replace(cfg, stage=-1), until="backends")
    with open(os.path.join(cfg.workdir, "stages", "0.data.json"), encoding="utf-8") as f:
        ctx = json.load(f)["outputs"]
    assert len(ctx["dev_held_out"]) == 3
    assert ctx["sizes"]["target_train"]["num_speakers"] == 8 - 3
