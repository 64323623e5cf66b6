"""Transfer recipe results: table, summary, markdown, DET plot and training curves (no network)."""

from __future__ import annotations

import json

import numpy as np

from xvjax.recipe import report


def _m(eer, d1, d5=None):
    return {"eer": eer, "min_dcf_0.01": d1, "min_dcf_0.005": d1 if d5 is None else d5}


ROWS = [
    {"id": "1", "name": "baseline", "backend": "source", "target": _m(20.0, 0.9), "source": _m(2.0, 0.3)},
    {"id": "2", "name": "+ mean", "backend": "src, in-domain mean", "target": _m(15.0, 0.8), "source": None},
    {"id": "6b", "name": "fine-tuned", "backend": "b", "target": _m(10.0, 0.7, 0.75), "source": _m(3.0, 0.4)},
]  # fmt: skip


def test_table_rows_columns_and_relative_change():
    text = report.format_table(ROWS)
    lines = text.splitlines()
    assert len(lines) == 2 + len(ROWS)
    assert all(line.count("|") == 11 for line in lines)
    row1, row2, row6 = lines[2], lines[3], lines[4]
    assert "| 20.00 |  | 0.900 | 0.900 | 2.00 | 0.300 | 0.300 |" in row1
    assert "| 15.00 | -25% |" in row2 and row2.endswith("| n/a | n/a | n/a |")
    assert "| 10.00 | -50% | 0.700 | 0.750 |" in row6


def test_summary_names_best_route_and_gain():
    text = report.summary_text(ROWS)
    assert "target EER 20.00% vs 2.00% on the source trials" in text
    assert "Best route: row 6b" in text
    assert "10.00 points better than row 1 (50% relative)" in text
    assert (
        "Best backend-only route (network unchanged): row 2 (src, in-domain mean) at 15.00% (5.00 points better than row 1)"
        in text
    )
    assert report.summary_text([]) == ""


def test_markdown_states_corpus_sizes_and_seeds():
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
    }
    md = report.build_markdown(ROWS, meta)
    assert "preset `tiny`, corpus seed 777" in md
    assert "Recipe seed 3" in md
    assert "| target_test | 24 | 8 | 0.02 | 24 / 168 |" in md
    assert "| target_adapt | 32 | (32, unlabelled) | ? |  |" in md
    assert report.format_table(ROWS) in md


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
