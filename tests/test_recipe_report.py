"""Transfer recipe results: table, summary, markdown, DET plot and training curves (no network)."""

from __future__ import annotations

import json

import numpy as np

from xvjax.recipe import report


def _m(eer, d1, d5=None, ci=1.0):
    d5 = d1 if d5 is None else d5
    return {
        "eer": eer, "min_dcf_0.01": d1, "min_dcf_0.005": d5, "num_target": 600,
        "num_nontarget": 30000,
        "ci": {"eer": (eer - ci, eer + ci), "min_dcf_0.01": (d1 - 0.01, d1 + 0.01),
               "min_dcf_0.005": (d5 - 0.01, d5 + 0.01)},
    }  # fmt: skip


def _row(rid, dev, target, source=None, labels=False, change=None, **kw):
    r = {"id": rid, "name": f"route {rid}", "backend": f"b{rid}", "lda_dim": 16, "dev": _m(dev, 0.5),
         "target": target, "source": source, "uses_labels": labels, "chosen_on_dev": "", **kw}  # fmt: skip
    if change is not None:
        r["vs_row1"] = {"eer": change, "min_dcf_0.01": (0.0, (-0.1, 0.1))}
    return r


ROWS = [
    _row("1", 30.0, _m(20.0, 0.9), _m(2.0, 0.3)),
    _row("2", 25.0, _m(15.0, 0.8), change=(-0.25, (-0.40, -0.10))),
    _row("3", 28.0, _m(19.0, 0.85), kaldi="sre16/v2", change=(-0.05, (-0.2, 0.1))),
    _row("4", 12.0, _m(10.0, 0.7, 0.75), _m(3.0, 0.4), labels=True, change=(-0.5, (-0.6, -0.4))),
    _row("6b", 10.0, _m(9.0, 0.6), labels=True, change=(-0.55, (-0.65, -0.45))),
]


def test_table_has_intervals_trial_counts_and_changes():
    lines = report.format_table(ROWS).splitlines()
    assert len(lines) == 2 + len(ROWS)
    assert all(line.count("|") == 13 for line in lines)
    row1, row2, row3 = lines[2], lines[3], lines[4]
    assert "| 20.00 [19.00, 21.00] |  | 0.900 [0.890, 0.910] |" in row1
    assert "| 600 / 30000 | 2.00 [1.00, 3.00] |" in row1
    assert "| 15.00 [14.00, 16.00] | -25% [-40, -10] |" in row2 and row2.endswith("| n/a |")
    assert row3.startswith("| 3 (Kaldi) |") and "| no | 28.00 |" in row3
    assert "| yes | 12.00 |" in lines[5]


def test_summary_follows_the_dev_set_and_the_intervals():
    text = report.summary_text(ROWS)
    assert "target EER 20.00% [19.00, 21.00] vs 2.00% on the source-domain trials" in text
    # row 6b has the lowest dev EER: it is the dev-chosen route, whatever the evaluation says
    assert "Dev-chosen best route: row 6b" in text
    assert "-55% [-65, -45] relative to row 1 (better at 95%)" in text
    assert "Dev-chosen best route without in-domain labels: row 2" in text
    assert "better: 2, 4, 6b; worse: none; no measurable difference: 3." in text
    assert report.summary_text([]) == ""


def test_the_eval_best_row_is_not_called_best_when_dev_disagrees():
    rows = [ROWS[0], _row("4", 20.0, _m(5.0, 0.7), labels=True, change=(-0.75, (-0.8, -0.7))),
            _row("6b", 10.0, _m(9.0, 0.6), labels=True, change=(-0.55, (-0.65, -0.45)))]  # fmt: skip
    assert "Dev-chosen best route: row 6b" in report.summary_text(rows)


def test_markdown_states_corpus_sizes_seeds_choices_and_method():
    meta = {
        "corpus": {"preset": "tiny", "seed": 777, "source_rate": 16000, "target_rate": 8000},
        "sizes": {
            "target_test": {
                "num_utts": 24,
                "num_speakers": 8,
                "hours": 0.02,
                "trials": {"target": 24, "nontarget": 168},
            },
            "target_adapt": {"num_utts": 32, "num_speakers": 32},
        },  # fmt: skip
        "features": {"mfcc": "30 MFCCs", "resample_to": 16000},
        "seed": 3,
        "model": "source model: x.",
        "dev": {"what": "target_dev", "target": 40, "nontarget": 200},
        "bootstrap": 1000,
    }
    rows = [dict(r, chosen_on_dev="12 candidates") if r["id"] == "4" else r for r in ROWS]
    md = report.build_markdown(rows, meta)
    assert "preset `tiny`, corpus seed 777" in md
    assert "Recipe seed 3" in md
    assert "| target_test | 24 | 8 | 0.02 | 24 / 168 |" in md
    assert "| target_adapt | 32 | (32, unlabelled) | ? |  |" in md
    assert report.format_table(rows) in md
    assert "target_dev: 40 target / 200 nontarget trials" in md
    assert "- Row 4: 12 candidates." in md and "- Row 1: no choice (a fixed recipe)." in md
    assert "speaker bootstrap" in md and "1000 replicates" in md


def test_det_plot_and_training_curves(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, sep in enumerate((1.0, 3.0)):
        labels = np.arange(200) < 40
        scores = rng.standard_normal(200) + sep * labels
        stem = tmp_path / f"row{i}_target"
        np.savez(str(stem) + ".npz", scores=scores, labels=labels)
        rows.append(
            {"id": str(i + 1), "name": f"r{i}", "target": {"scores": str(stem) + ".scores"}}
        )
    png = tmp_path / "det.png"
    report.det_plot(rows, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(
            json.dumps({"step": s, "loss": 3.0 / s, "accuracy": 1 - 1.0 / s}) + "\n"
            for s in range(1, 20)
        )  # fmt: skip
        + json.dumps({"step": 19, "dev_eer": 0.1})
        + "\n"
    )
    curve = tmp_path / "curve.png"
    assert report.training_curves({"run": str(metrics), "missing": str(tmp_path / "x")}, str(curve))
    assert curve.read_bytes()[:4] == b"\x89PNG"
    assert not report.training_curves({"missing": str(tmp_path / "x")}, str(tmp_path / "n.png"))
