"""Results of the transfer recipe: the table (markdown + JSON, printed), the DET plot (one curve per
row) and the training curves (source model and fine-tuning runs)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from xvjax import confidence
from xvjax.backend.plots import det_plot as plot_systems
from xvjax.fileutil import atomic_open, atomic_path

log = logging.getLogger("xvjax")

METRICS = ("eer", "min_dcf_0.01", "min_dcf_0.005")


def _value(m: dict, key: str) -> str:
    return f"{m[key]:.2f}" if key == "eer" else f"{m[key]:.3f}"


def _with_ci(m: dict | None, key: str) -> str:
    """`12.34 [10.1, 14.9]`: the point estimate (Kaldi's) and its 95% speaker-bootstrap interval."""
    if not m:
        return "n/a"
    lo, hi = m["ci"][key]
    fmt = "{:.2f}" if key == "eer" else "{:.3f}"
    return f"{_value(m, key)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def change_text(change: dict | None, key: str = "eer") -> str:
    """`-31% [-40, -22]`: the relative change of a row against row 1, with its paired interval."""
    if not change or key not in change:
        return ""
    v, (lo, hi) = change[key]
    return f"{100 * v:+.0f}% [{100 * lo:+.0f}, {100 * hi:+.0f}]"


def verdict(change: dict | None, key: str = "eer") -> str:
    """'better' / 'worse' only when the paired interval of the change excludes 0."""
    if not change or key not in change:
        return ""
    _, (lo, hi) = change[key]
    return "better" if hi < 0 else "worse" if lo > 0 else "no measurable difference"


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table: every row's dev EER (what it was chosen on), then its evaluation metrics
    with 95% intervals, its change against row 1, and the source-domain reference EER."""
    head = (
        "| Row | Route | Backend (chosen on dev) | LDA dim | In-domain labels | Dev EER (%) "
        "| Target EER (%) [95% CI] | vs row 1 [95% CI] | minDCF 0.01 [95% CI] "
        "| minDCF 0.005 [95% CI] | Trials (tar / non) | Source EER (%) [95% CI] |"
    )
    sep = "|" + "|".join(["---"] * 5 + ["---:"] * 7) + "|"
    lines = [head, sep]
    for r in rows:
        t = r.get("target")
        cells = [
            r["id"] + (" (Kaldi)" if r.get("kaldi") else ""),
            r["name"],
            r.get("backend", ""),
            str(r.get("lda_dim") or ""),
            "yes" if r.get("uses_labels") else "no",
            f"{r['dev']['eer']:.2f}",
            _with_ci(t, "eer"),
            change_text(r.get("vs_row1")) if r["id"] != "1" else "",
            _with_ci(t, "min_dcf_0.01"),
            _with_ci(t, "min_dcf_0.005"),
            f"{t['num_target']} / {t['num_nontarget']}" if t else "",
            _with_ci(r.get("source"), "eer"),
        ]
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


def dev_best(rows: Sequence[dict], labels: bool = True) -> dict | None:
    """The row with the lowest dev EER (then minDCF 0.01): the route the dev set chooses."""
    cands = [r for r in rows if r.get("target") and (labels or not r.get("uses_labels"))]
    if not cands:
        return None
    return min(cands, key=lambda r: (r["dev"]["eer"], r["dev"]["min_dcf_0.01"]))


def _route_line(what: str, r: dict, base: dict) -> str:
    t = r["target"]
    lo, hi = t["ci"]["eer"]
    change = r.get("vs_row1")
    v = verdict(change)
    judged = (
        f"{change_text(change)} relative to row 1 ({v} at 95%)"
        if change
        else "(no row 1 to compare)"
    )
    return (
        f"{what}: row {r['id']} ({r['name']}; {r.get('backend', '')}), chosen on dev "
        f"(dev EER {r['dev']['eer']:.2f}%): target EER {t['eer']:.2f}% [{lo:.2f}, {hi:.2f}] on "
        f"{t['num_target']} target / {t['num_nontarget']} nontarget trials, {judged}; "
        f"minDCF0.01 {t['min_dcf_0.01']:.3f} vs {base['target']['min_dcf_0.01']:.3f}."
    )


def summary_text(rows: Sequence[dict]) -> str:
    """The dev-chosen routes and what the intervals say about them."""
    base = next((r for r in rows if r["id"] == "1" and r.get("target")), None)
    if base is None:
        return ""
    out = []
    b = base["target"]
    if base.get("source"):
        out.append(
            f"Out-of-domain baseline (row 1): target EER {b['eer']:.2f}% "
            f"[{b['ci']['eer'][0]:.2f}, {b['ci']['eer'][1]:.2f}] vs {base['source']['eer']:.2f}% "
            "on the source-domain trials."
        )
    best = dev_best(rows)
    if best is not None:
        out.append(_route_line("Dev-chosen best route", best, base))
    nl = dev_best(rows, labels=False)
    if nl is not None and nl is not best:
        out.append(_route_line("Dev-chosen best route without in-domain labels", nl, base))
    better = [r["id"] for r in rows if verdict(r.get("vs_row1")) == "better"]
    worse = [r["id"] for r in rows if verdict(r.get("vs_row1")) == "worse"]
    same = [r["id"] for r in rows if verdict(r.get("vs_row1")) == "no measurable difference"]
    out.append(
        "Against row 1 (paired 95% intervals of the relative EER change): "
        f"better: {', '.join(better) or 'none'}; worse: {', '.join(worse) or 'none'}; "
        f"no measurable difference: {', '.join(same) or 'none'}."
    )
    return " ".join(out)


def choices_text(rows: Sequence[dict], dev: dict) -> str:
    """Which set chose what, row by row."""
    lines = [
        f"Every choice was made on the dev trials ({dev.get('what', 'target_dev')}: "
        f"{dev.get('target', '?')} target / {dev.get('nontarget', '?')} nontarget trials, "
        "speakers disjoint from the evaluation's); the evaluation trials were scored once per row "
        "and never used to choose.",
        "",
    ]
    for r in rows:
        what = r.get("chosen_on_dev") or "no choice (a fixed recipe)"
        note = f"; {r['note']}" if r.get("note") else ""
        lines.append(f"- Row {r['id']}: {what}{note}.")
    return "\n".join(lines)


def seeds_text(rows: Sequence[dict]) -> str:
    """The spread of the trained rows over reruns with other seeds (`--seeds`)."""
    lines = []
    for r in rows:
        if not r.get("seeds") or not r.get("target"):
            continue
        eers = [r["target"]["eer"]] + [s["eer"] for s in r["seeds"]]
        lines.append(
            f"- Row {r['id']}: target EER over {len(eers)} seeds: mean {np.mean(eers):.2f}%, "
            f"sd {np.std(eers, ddof=1):.2f}, range {min(eers):.2f}-{max(eers):.2f}%."
        )
    return "\n".join(lines)


def diagnostics_text(diag: dict | None) -> str:
    """Why PLDA adaptation helps or hurts on this data (see backend.adapt.adaptation_diagnostics)."""
    if not diag:
        return ""
    d = diag["covariances"]
    lines = [
        "In the source PLDA's space (per dimension; the model's within-class variance is 1, its "
        f"between-class variance {d['model_between']:.3f}, total {d['model_total']:.3f}): the "
        f"unlabelled in-domain set's total variance is {d['unlabelled_total']:.3f}; its excess over "
        f"the model ({d['excess_directions']} of {d['dim']} directions) is {d['excess']:.3f}, of "
        f"which PLDA adaptation ({diag['scales'][0]:g}/{diag['scales'][1]:g}) adds "
        f"{d['adapt_adds_within']:.3f} to within-class and {d['adapt_adds_between']:.3f} to "
        "between-class variance."
    ]
    if "labelled_within" in d:
        lines.append(
            f"The labelled in-domain data ({diag.get('labelled_set', '?')}, used only for this "
            f"diagnosis) has within-class variance {d['labelled_within']:.3f} and between-class "
            f"{d['labelled_between']:.3f}; in the directions adaptation changes, its excess is "
            f"{d['labels_excess_within']:+.3f} within-class and {d['labels_excess_between']:+.3f} "
            "between-class."
        )
    for item in diag.get("measurements", []):
        lines.append(f"- {item}")
    return "\n".join(lines)


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
    if meta.get("runtime"):
        parts.append(meta["runtime"])
    parts += ["", format_sizes(meta.get("sizes", {})), "", format_table(rows), ""]
    text = summary_text(rows)
    if text:
        parts += [text, ""]
    parts += ["## Choices", "", choices_text(rows, meta.get("dev", {})), ""]
    seeds = seeds_text(rows)
    if seeds:
        parts += ["## Training randomness", "", seeds, ""]
    diag = diagnostics_text(meta.get("diagnostics"))
    if diag:
        parts += ["## PLDA adaptation on this data", "", diag, ""]
    parts.append(
        "EER as Kaldi's compute-eer, minDCF as sid/compute_min_dcf.py (c-miss = c-fa = 1). "
        "Intervals: 95% percentile intervals of a speaker bootstrap (speakers resampled with "
        "replacement, a trial between speakers a and b weighted by how often each was drawn; "
        f"{meta.get('bootstrap', '?')} replicates, `xvjax.confidence`), paired across rows for "
        "the change against row 1. A route is called better or worse than row 1 only when that "
        "interval excludes 0."
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
        styles.append("--" if r["id"][0] in "67" else "-")
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
        "3": "+ PLDA adaptation (Kaldi)",
        "3b": "+ PLDA adaptation (dev scales)",
        "3c": "CORAL",
        "3d": "clustered in-domain PLDA",
        "4": "in-domain LDA/PLDA",
        "4b": "pooled LDA/PLDA",
        "5a": "best + S-norm",
        "5b": "best + AS-norm",
        "5c": "best no-label + S-norm",
        "5d": "best no-label + AS-norm",
        "6a": "fine-tuned (lower layers frozen)",
        "6b": "fine-tuned (all layers)",
        "6c": "fine-tuned on clusters",
        "7": "fine-tuned + adapted backend",
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


def compare_rows(rows: Sequence[dict], scorer) -> None:
    """Adds each row's paired change against row 1 (`vs_row1`: metric -> (value, (lo, hi))),
    recomputed from the score files with the run's bootstrap (the same replicates for every row)."""
    base = next((r for r in rows if r["id"] == "1" and r.get("target")), None)
    if base is None:
        return
    reps = {}
    for r in rows:
        if r.get("target"):
            boot = scorer.boot["target"]
            with np.load(os.path.splitext(r["target"]["scores"])[0] + ".npz") as z:
                saved = {k: z[f"replicates_{k}"] for k in METRICS if f"replicates_{k}" in z}
                if len(saved) == len(METRICS) and all(
                    len(v) == boot.num_replicates for v in saved.values()
                ):
                    reps[r["id"]] = saved  # written by Scorer.report with this bootstrap
                else:
                    reps[r["id"]] = boot.replicates(z["scores"], z["labels"])
    for r in rows:
        if r["id"] == "1" or r["id"] not in reps:
            continue
        r["vs_row1"] = {}
        for k in METRICS:
            point = (
                r["target"][k] / base["target"][k] - 1 if base["target"][k] > 0 else float("nan")
            )
            change = confidence.relative_change(reps[r["id"]][k], reps["1"][k])
            r["vs_row1"][k] = (point, confidence.interval(change))


def runtime_text(stage_seconds: dict) -> str:
    done = {k: v for k, v in stage_seconds.items() if k != "results"}
    if not done:
        return ""
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in done.items())
    return (
        f"Run time before this report: {sum(done.values()) / 60:.1f} min wall on "
        f"{os.cpu_count()} cores ({parts}; a stage reused from an earlier run counts its first run)."
    )


def write_results(cfg, ctx: dict, scorer) -> dict:
    """Stage 6: WORKDIR/results/{results.md, results.json, det.png, det_source.png,
    training_curves.png}, and a copy of results.md in WORKDIR."""
    out_dir = os.path.join(cfg.workdir, "results")
    os.makedirs(out_dir, exist_ok=True)
    rows: list[dict] = []
    with open(ctx["backend_rows"], encoding="utf-8") as f:
        backend = json.load(f)
    rows += backend["rows"]
    if ctx.get("finetune_rows"):
        with open(ctx["finetune_rows"], encoding="utf-8") as f:
            rows += json.load(f)["rows"]
    compare_rows(rows, scorer)
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
        steps = ", ".join(f"{row} step {res.get('best_step')} of {res.get('steps')}"
                          for row, res in ft.items())  # fmt: skip
        opt = (
            "Kaldi's natural-gradient SGD at Kaldi's rates (0.001 -> 0.0001, summed objective)"
            if cfg.finetune_optimizer() == "ngsgd"
            else f"Adam at {cfg.ft_lr:g} with a cosine schedule"
        )
        ft_text = (
            f"Fine-tuning: output resized to the training set's speakers (zero init), {opt}, "
            f"dev EER every {cfg.ft_eval_every} steps and the dev-best step kept "
            f"({steps}); 6a/6b on target_train + augmented copies ({aug}), 6a freezes "
            f"`{cfg.freeze}` (and their BatchNorm statistics); 6c on the unlabelled in-domain set "
            "with the dev-chosen clusters of row 3d as speakers (no augmentation)."
        )
    dev = {
        "what": "target_dev"
        if not ctx.get("dev_held_out")
        else f"{len(ctx['dev_held_out'])} speakers held out of target_train",  # fmt: skip
        **ctx.get("sizes", {}).get("target_dev_test", {}).get("trials", {}),
    }
    meta = {
        "corpus": ctx.get("corpus", {}),
        "sizes": ctx.get("sizes", {}),
        "features": ctx.get("features", {}),
        "seed": cfg.seed,
        "model": model,
        "finetune": ft_text,
        "dev": dev,
        "bootstrap": cfg.bootstrap,
        "diagnostics": backend.get("diagnostics"),
        "runtime": runtime_text(ctx.get("stage_seconds", {})),
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


def read_result_rows(json_path: str) -> dict[str, dict]:
    """The rows of a `results.json` the recipe wrote, by row id ("1", "6a", "7", ...)."""
    with open(json_path, encoding="utf-8") as f:
        return {r["id"]: r for r in json.load(f)["rows"]}
