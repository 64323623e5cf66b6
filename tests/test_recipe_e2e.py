"""The transfer recipe end to end on the `tiny` corpus preset (slow: ~2 minutes on 2 busy cores)."""

from __future__ import annotations

import json
import math
import os

import pytest

from xvjax.recipe import transfer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("recipe_tiny")
    cfg = transfer.RecipeConfig(workdir=str(workdir), preset="tiny", progress=False)
    return cfg, transfer.run_recipe(cfg)


def test_every_stage_produced_its_files(tiny_run):
    cfg, summary = tiny_run
    w = cfg.workdir
    assert summary["ran"] == list(transfer.STAGES)
    for i, name in enumerate(transfer.STAGES):
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
    assert again["skipped"] == list(transfer.STAGES)
