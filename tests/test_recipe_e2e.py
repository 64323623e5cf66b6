"""The transfer recipe end to end on the `tiny` corpus preset (slow: ~2 minutes on 2 busy cores)."""

from __future__ import annotations

import json
import math
import os

import pytest

from xvjax.recipe import config, transfer

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
    for s in ("source_train", "target_train", "target_adapt", "target_enroll", "target_test"):
        for f in ("feats.scp", "vad.scp", "utt2num_frames"):
            assert os.path.getsize(os.path.join(w, "data", s, f)) > 0
        assert os.path.getsize(os.path.join(w, "data", f"{s}_no_sil", "feats.scp")) > 0
        assert os.path.getsize(os.path.join(w, "xvectors", "source", s, "xvector.scp")) > 0
    assert os.path.isfile(os.path.join(w, "exp", "source_model", "final", "model.json"))
    for row in ("6a", "6b"):
        assert os.path.isfile(os.path.join(w, "exp", f"finetune_{row}", "final", "model.json"))
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


def test_every_row_has_real_eers(tiny_run):
    _, summary = tiny_run
    with open(summary["results_json"], encoding="utf-8") as f:
        results = json.load(f)
    ids = [r["id"] for r in results["rows"]]
    assert ids == ["1", "2", "3", "4", "5a", "5b", "6a", "6b"]
    for r in results["rows"]:
        for side in ("target", "source"):
            m = r[side]
            assert math.isfinite(m["eer"]) and 0.0 <= m["eer"] < 50.0, (r["id"], side, m)
            for key in ("min_dcf_0.01", "min_dcf_0.005"):
                assert 0.0 <= m[key] <= 1.0 + 1e-9
            assert os.path.getsize(m["scores"]) > 0
    assert results["meta"]["corpus"]["seed"] == 777
    with open(summary["results_md"], encoding="utf-8") as f:
        md = f.read()
    assert "| 6b |" in md and "corpus seed 777" in md


def test_rerun_resumes_without_recomputing(tiny_run):
    cfg, _ = tiny_run
    again = transfer.run_recipe(cfg)
    assert again["ran"] == []
    assert again["skipped"] == list(config.STAGES)


def _rows(summary) -> dict:
    with open(summary["results_json"], encoding="utf-8") as f:
        return {r["id"]: r for r in json.load(f)["rows"]}


def test_user_data_with_kaldi_backend_files_reproduces_rows_1_to_5(tiny_run, tmp_path_factory):
    """The same data given as user data dirs, the first run's model as --pretrained and its
    source backend written as Kaldi files (--plda/--mean/--lda): rows 1-5 come out identical."""
    first_cfg, first = tiny_run
    data = os.path.join(first["corpus"]["path"], "data")
    backend = os.path.join(first_cfg.workdir, "backends", "source")
    cfg = config.RecipeConfig(
        workdir=str(tmp_path_factory.mktemp("recipe_user")),
        preset="tiny",
        src_enroll=os.path.join(data, "source_eval_enroll"),
        src_test=os.path.join(data, "source_eval_test"),
        src_trials=os.path.join(data, "source_eval_test", "trials"),
        tgt_train=os.path.join(data, "target_train"),
        tgt_adapt=os.path.join(data, "target_adapt"),
        tgt_enroll=os.path.join(data, "target_enroll"),
        tgt_test=os.path.join(data, "target_test"),
        trials=os.path.join(data, "target_test", "trials"),
        pretrained=first["source_model"],
        plda=os.path.join(backend, "plda"),
        mean=os.path.join(backend, "mean.vec"),
        lda=os.path.join(backend, "transform.mat"),
        ft_steps=10,
        augment=False,
        progress=False,
    )
    second = transfer.run_recipe(cfg)
    a, b = _rows(first), _rows(second)
    for row in ("1", "2", "3", "4", "5a", "5b"):
        for side in ("target", "source"):
            for key in ("eer", "min_dcf_0.01", "min_dcf_0.005"):
                assert b[row][side][key] == pytest.approx(a[row][side][key], abs=1e-6), (row, side)
    assert second["augmentation"] == []
    with open(second["backend_rows"], encoding="utf-8") as f:
        best = b[json.load(f)["best"]]["recipe"]
    for row in ("6a", "6b"):
        assert math.isfinite(b[row]["target"]["eer"])
        # No source_train x-vectors here: a source backend is refitted in-domain instead.
        want = "target" if best["model"] == "source" else best["model"]
        assert b[row]["recipe"]["model"] == want
