"""Results of the transfer recipe: the table (markdown + JSON, printed), the DET plot (one curve per
row) and the training curves (source model and fine-tuning runs)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from xvjax.backend.plots import det_plot as plot_systems
from xvjax.fileutil import atomic_open, atomic_path

log = logging.getLogger("xvjax")

COLUMNS = ("eer", "min_dcf_0.01", "min_dcf_0.005")


def _cell(metrics: dict | None, key: str) -> str:
    if not metrics:
        return "n/a"
    v = metrics[key]
    return f"{v:.2f}" if key == "eer" else f"{v:.3f}"


def _rel(row: dict, base: dict | None) -> str:
    if not base or not row.get("target"):
        return ""
    b, v = base["target"]["eer"], row["target"]["eer"]
    if b == 0:
        return ""
    return f"{100.0 * (v - b) / b:+.0f}%"


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table: one line per row with target and source EER / minDCF (p 0.01, 0.005)."""
    head = (
        "| Row | System | Backend | Target EER (%) | vs row 1 | minDCF 0.01 | minDCF 0.005 "
        "| Source EER (%) | minDCF 0.01 | minDCF 0.005 |"
    )
    sep = "|" + "|".join(["---"] * 3 + ["---:"] * 7) + "|"
    base = next((r for r in rows if r["id"] == "1"), None)
    lines = [head, sep]
    for r in rows:
        t, s = r.get("target"), r.get("source")
        cells = [r["id"], r["name"], r.get("backend", "")]
        cells += [_cell(t, "eer"), _rel(r, base) if r["id"] != "1" else "",
                  _cell(t, "min_dcf_0.01"), _cell(t, "min_dcf_0.005")]  # fmt: skip
        cells += [_cell(s, k) for k in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_sizes(sizes: dict) -> str:
    lines = ["| Set | Utterances | Speakers | Hours | Trials (target / nontarget) |",
             "|---|---:|---:|---:|---|"]  # fmt: skip
    for name in sorted(sizes):
        info = sizes[name]
        tr = info.get("trials")
        trials = f"{tr['target']} / {tr['nontarget']}" if tr else ""
        hours = f"{info['hours']:.2f}" if "hours" in info else "?"
        spk = (
            str(info["num_speakers"])
            if name != "target_adapt"
            else f"({info['num_speakers']}, unlabelled)"
        )
        lines.append(f"| {name} | {info['num_utts']} | {spk} | {hours} | {trials} |")
    return "\n".join(lines)


def summary_text(rows: Sequence[dict]) -> str:
    """Which route helps most on the target trials, relative to the out-of-domain baseline."""
    base = next((r for r in rows if r["id"] == "1"), None)
    if base is None or not base.get("target"):
        return ""
    b = base["target"]["eer"]
    out = []
    if base.get("source"):
        out.append(
            f"Out-of-domain baseline (row 1): target EER {b:.2f}% vs {base['source']['eer']:.2f}% "
            f"on the source trials."
        )
    others = [r for r in rows if r["id"] != "1" and r.get("target")]
    if others:
        best = min(others, key=lambda r: (r["target"]["eer"], r["target"]["min_dcf_0.01"]))
        v = best["target"]["eer"]
        rel = f" ({100.0 * (b - v) / b:.0f}% relative)" if b > 0 else ""
        out.append(
            f"Best route: row {best['id']} ({best['name']}; {best.get('backend', '')}): target EER "
            f"{v:.2f}%, {b - v:.2f} points {'better' if v <= b else 'worse'} than row 1{rel}; "
            "minDCF0.01 "
            f"{best['target']['min_dcf_0.01']:.3f} vs {base['target']['min_dcf_0.01']:.3f}."
        )
    backend_only = [r for r in others if not r["id"].startswith("6")]
    if backend_only and any(r["id"].startswith("6") for r in others):
        bo = min(backend_only, key=lambda r: (r["target"]["eer"], r["target"]["min_dcf_0.01"]))
        v = bo["target"]["eer"]
        out.append(
            f"Best backend-only route (network unchanged): row {bo['id']} ({bo.get('backend', '')}) "
            f"at {v:.2f}% ({b - v:.2f} points {'better' if v <= b else 'worse'} than row 1)."
        )
    return " ".join(out)


def build_markdown(rows: Sequence[dict], meta: dict) -> str:
    corpus = meta.get("corpus", {})
    parts = ["# xvjax transfer recipe: results", ""]
    if corpus.get("preset") == "user data":
        parts.append("Data: the user's data dirs.")
    else:
        parts.append(
            f"Corpus: built-in synthetic two-domain corpus, preset `{corpus.get('preset')}`"
            + "".join(f", {k}={v}" for k, v in sorted(corpus.get("overrides", {}).items()))
            + f", corpus seed {corpus.get('seed')}; source {corpus.get('source_rate')} Hz clean, "
            f"target {corpus.get('target_rate')} Hz telephone band."
        )
    feats = meta.get("features", {})
    parts.append(
        f"Features: {feats.get('mfcc', '?')}; audio at other rates resampled to "
        f"{feats.get('resample_to', '?')} Hz before MFCC; energy VAD, sliding CMN (300 frames)."
    )
    parts.append(f"Recipe seed {meta.get('seed')}; {meta.get('model', '')}")
    if meta.get("finetune"):
        parts.append(meta["finetune"])
    parts += ["", format_sizes(meta.get("sizes", {})), "", format_table(rows), ""]
    text = summary_text(rows)
    if text:
        parts += [text, ""]
    parts.append(
        "EER as Kaldi's compute-eer, minDCF as sid/compute_min_dcf.py (c-miss = c-fa = 1). Row 5 "
        "and the backend of rows 6 are the best of the rows before them on the target trials "
        "(chosen on the evaluation trials themselves, as a demo does; use a dev set for real)."
    )
    return "\n".join(parts) + "\n"


def det_plot(rows: Sequence[dict], path: str, side: str = "target") -> None:
    """One DET curve per row (0.1% to 80%, since domain-mismatched systems live far up the curve),
    fine-tuned rows dashed, legend beside the axes."""

    systems, styles = [], []
    for r in rows:
        m = r.get(side)
        if not m:
            continue
        with np.load(os.path.splitext(m["scores"])[0] + ".npz") as z:
            systems.append((f"{r['id']}: {_short(r)}", z["scores"], z["labels"]))
        styles.append("--" if r["id"].startswith("6") else "-")
    plot_systems(
        systems,
        path,
        title=f"DET, {side} trials",
        p_target=0.01,
        max_prob=0.8,
        min_prob=0.001,
        linestyles=styles,
        legend_outside=True,
    )


def _short(r: dict) -> str:
    names = {
        "1": "out-of-domain baseline",
        "2": "+ in-domain mean",
        "3": "+ PLDA adaptation",
        "4": "in-domain LDA/PLDA",
        "5a": "+ S-norm",
        "5b": "+ AS-norm",
        "6a": "fine-tuned (lower layers frozen)",
        "6b": "fine-tuned (all layers)",
    }
    return names.get(r["id"], r["name"][:30])


def read_metrics(path: str) -> list[dict]:
    out = []
    if not os.path.isfile(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def training_curves(runs: dict[str, str], path: str) -> bool:
    """Loss and accuracy against steps for each training run (name -> its metrics.jsonl)."""
    curves = {n: [h for h in read_metrics(p) if "loss" in h] for n, p in runs.items()}
    curves = {n: c for n, c in curves.items() if c}
    if not curves:
        return False
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for name, hist in curves.items():
        steps = [h["step"] for h in hist]
        axes[0].plot(steps, [h["loss"] for h in hist], label=name)
        axes[1].plot(steps, [h["accuracy"] for h in hist], label=name)
    axes[0].set(xlabel="step", ylabel="cross-entropy", title="training loss")
    axes[1].set(xlabel="step", ylabel="accuracy", title="training accuracy (chunks)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return True


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def write_results(cfg, ctx: dict) -> dict:
    """Stage 6: WORKDIR/results/{results.md, results.json, det.png, det_source.png,
    training_curves.png}, and a copy of results.md in WORKDIR."""
    out_dir = os.path.join(cfg.workdir, "results")
    os.makedirs(out_dir, exist_ok=True)
    rows: list[dict] = []
    with open(ctx["backend_rows"], encoding="utf-8") as f:
        rows += json.load(f)["rows"]
    if ctx.get("finetune_rows"):
        with open(ctx["finetune_rows"], encoding="utf-8") as f:
            rows += json.load(f)["rows"]
    info = ctx.get("source_model_info", {})
    if "pretrained" in info:
        model = f"source model: imported from {info['pretrained']}."
    else:
        model = (
            f"source model: trained from scratch on source_train, frame layers "
            f"{info.get('frame_dims')}, segment layers {info.get('embedding_dims')}, "
            f"{info.get('steps')} steps (final loss {info.get('final_loss', float('nan')):.3f}, "
            f"chunk accuracy {info.get('final_accuracy', float('nan')):.2f})."
        )
    ft = ctx.get("finetune") or {}
    ft_text = ""
    if ft:
        aug = ", ".join(ctx.get("augmentation") or []) or "none"
        ft_text = (
            f"Fine-tuning: output resized to the target_train speakers (zero init), "
            f"{next(iter(ft.values()))['steps']} steps each on target_train + augmented copies "
            f"({aug}); 6a freezes `{cfg.freeze}` (and their BatchNorm statistics), 6b trains all "
            "layers."
        )
    meta = {
        "corpus": ctx.get("corpus", {}),
        "sizes": ctx.get("sizes", {}),
        "features": ctx.get("features", {}),
        "seed": cfg.seed,
        "model": model,
        "finetune": ft_text,
    }
    md = build_markdown(rows, meta)
    md_path = os.path.join(out_dir, "results.md")
    for path in (md_path, os.path.join(cfg.workdir, "results.md")):  # README: WORKDIR/results.md
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write(md)
    det_path = os.path.join(out_dir, "det.png")
    det_plot(rows, det_path, "target")
    outputs = {"results_md": md_path, "det_png": det_path}
    if any(r.get("source") for r in rows):
        outputs["det_source_png"] = os.path.join(out_dir, "det_source.png")
        det_plot(rows, outputs["det_source_png"], "source")
    runs = {}
    if ctx.get("source_model_workdir"):
        runs["source model"] = os.path.join(ctx["source_model_workdir"], "metrics.jsonl")
    for row_id, res in ft.items():
        runs[f"fine-tune {row_id}"] = os.path.join(res["workdir"], "metrics.jsonl")
    curve = os.path.join(out_dir, "training_curves.png")
    if training_curves(runs, curve):
        outputs["training_curves_png"] = curve
    json_path = os.path.join(out_dir, "results.json")
    with atomic_open(json_path, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "rows": rows, "summary": summary_text(rows)}, f, indent=1)
        f.write("\n")
    outputs["results_json"] = json_path
    return outputs
