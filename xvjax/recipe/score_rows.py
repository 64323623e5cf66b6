"""Scoring the recipe's rows: backends 1-5 on the source model's x-vectors (stage 4) and the best
backend on each fine-tuned model's x-vectors (stage 5). Scores are written as Kaldi score files
(`<model> <test> <score>`) in WORKDIR/scores/ with a .npz of (scores, labels) for the plots."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os

import numpy as np

from xvjax.backend.system import XvectorSet
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open
from xvjax.kaldi import plda_io, tables
from xvjax.recipe import backends as be

log = logging.getLogger("xvjax")

SIDES = ("target", "source")
EVAL_SETS = {"target": ("target_enroll", "target_test"), "source": ("source_eval_enroll", "source_eval_test")}  # fmt: skip


@contextlib.contextmanager
def quiet():
    """Kaldi-style INFO lines of the backend (PLDA EM iterations, ...) only with --verbose."""
    logger = logging.getLogger("xvjax")
    old = logger.level
    if logger.getEffectiveLevel() >= logging.INFO:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def load_sets(scps: dict[str, str]) -> dict[str, XvectorSet]:
    out = {}
    for name, scp in scps.items():
        utt2spk = None
        if name != "target_adapt":
            utt2spk = tables.read_text_table(os.path.join(os.path.dirname(scp), "utt2spk"))
        out[name] = XvectorSet.read_scp(scp, utt2spk)
    return out


def load_trials(ctx: dict) -> dict[str, Trials]:
    return {side: Trials.read(path, labelled=True) for side, path in ctx.get("trials", {}).items()}


def user_backend(cfg) -> tuple:
    """(mean, lda, plda) of the user's Kaldi backend (None where not given)."""
    if not cfg.plda:
        return None, None, None
    plda = plda_io.read_plda(cfg.plda)
    mean = np.asarray(tables.read_vector(cfg.mean), np.float64) if cfg.mean else None
    lda = np.asarray(tables.read_matrix(cfg.lda), np.float64) if cfg.lda else None
    return mean, lda, plda


def _write_scores(path: str, scored: Trials, scores: np.ndarray) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        for e, t, s in zip(scored.enroll, scored.test, scores, strict=True):
            f.write(f"{e} {t} {s:.6g}\n")


def run_row(
    cfg,
    row_id: str,
    name: str,
    recipe: be.Recipe,
    pieces: be.Pieces,
    sets: dict[str, XvectorSet],
    trials: dict[str, Trials],
    embeddings: str,
) -> dict:
    """One row: the backend of `recipe` scored on the target (and source) trials."""
    with quiet():
        backend = be.make_backend(recipe, pieces, cfg.within_covar_scale, cfg.between_covar_scale)
    cohort = pieces.adapt_vectors if recipe.norm else None
    row = {
        "id": row_id,
        "name": name,
        "recipe": recipe.to_dict(),
        "backend": recipe.describe(),
        "embeddings": embeddings,
        "lda_dim": None if backend.lda is None else int(backend.lda.shape[0]),
    }
    score_dir = os.path.join(cfg.workdir, "scores")
    os.makedirs(score_dir, exist_ok=True)
    for side in SIDES:
        enroll_name, test_name = EVAL_SETS[side]
        if side not in trials or enroll_name not in sets or test_name not in sets:
            row[side] = None
            continue
        with quiet():
            s, scored = backend.score(
                sets[enroll_name],
                sets[test_name],
                trials[side],
                norm=recipe.norm,
                cohort=cohort,
                top_k=int(cfg.asnorm_top_k),
            )
        stem = os.path.join(score_dir, f"row{row_id}_{side}")
        _write_scores(stem + ".scores", scored, s)
        with atomic_open(stem + ".npz", "wb") as f:
            np.savez(f, scores=s, labels=scored.labels)
        row[side] = be.metrics_of(s, scored.labels)
        row[side]["scores"] = stem + ".scores"
    t = row["target"]
    log.info(
        "Row %s (%s): target EER %.2f%%, minDCF0.01 %.3f%s",
        row_id,
        name,
        t["eer"],
        t["min_dcf_0.01"],
        f"; source EER {row['source']['eer']:.2f}%" if row.get("source") else "",
    )
    return row


def _pieces(cfg, sets: dict[str, XvectorSet], need, user=(None, None, None)) -> be.Pieces:
    adapt = sets.get("target_adapt") or sets.get("target_train")
    if adapt is None:
        raise XvjaxError("no in-domain set for the mean / PLDA adaptation / cohort")
    mean, lda, plda = user
    with quiet():
        return be.build_pieces(
            sets.get("source_train"),
            sets.get("target_train"),
            adapt.mat,
            int(cfg.lda_dim),
            int(cfg.plda_em_iters),
            user_mean=mean,
            user_lda=lda,
            user_plda=plda,
            need=need,
        )


def save_pieces(p: be.Pieces, out_dir: str, cfg) -> dict[str, str]:
    """The backends as Kaldi files (so Kaldi's scoring binaries, or --plda/--mean/--lda, use them):
    source/{mean.vec,transform.mat,plda}, adapt/{mean.vec,plda_adapt}, target/{transform.mat,plda}
    (mean.vec in text form, as ivector-mean writes it)."""
    files = {}

    def put(name, kind, value):
        if value is None:
            return
        path = os.path.join(out_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if kind == "vec":
            tables.write_vector(path, np.asarray(value, np.float64), binary=False)
        elif kind == "mat":
            tables.write_matrix(path, np.asarray(value, np.float64))
        else:
            plda_io.write_plda(value, path)
        files[name] = path

    if p.source is not None:
        put("source/mean.vec", "vec", p.source.mean)
        put("source/transform.mat", "mat", p.source.lda)
        put("source/plda", "plda", p.source.plda)
    put("adapt/mean.vec", "vec", p.adapt_mean)
    if p.source is not None:
        adapted = p.source.with_mean(p.adapt_mean).adapt(
            p.adapt_vectors, cfg.within_covar_scale, cfg.between_covar_scale
        )
        put("adapt/plda_adapt", "plda", adapted.plda)
    if p.target is not None:
        put("target/transform.mat", "mat", p.target.lda)
        put("target/plda", "plda", p.target.plda)
    return files


def best_row(rows: list[dict]) -> dict:
    best = rows[0]
    for r in rows[1:]:
        if be.better(r["target"], best["target"]):
            best = r
    return best


def backend_rows(cfg, ctx: dict) -> dict:
    """Rows 1-4, then the best of them with S-norm (5a) and adaptive S-norm (5b)."""
    sets = load_sets(ctx["xvectors"]["source"])
    trials = load_trials(ctx)
    if "target" not in trials:
        raise XvjaxError("no target trials")
    user = user_backend(cfg)
    pieces = _pieces(cfg, sets, ("source", "target"), user)
    with quiet():
        files = save_pieces(pieces, os.path.join(cfg.workdir, "backends"), cfg)
    emb = "source model" + (" (Kaldi, imported)" if cfg.pretrained else "")
    rows = []
    for row_id, name, recipe in be.BASE_ROWS:
        if recipe.model == "target" and pieces.target is None:
            log.warning("row %s skipped: no labelled in-domain set", row_id)
            continue
        rows.append(run_row(cfg, row_id, name, recipe, pieces, sets, trials, emb))
    best = best_row(rows)
    for row_id, norm, label in (("5a", "snorm", "S-norm"), ("5b", "asnorm", "adaptive S-norm")):
        recipe = dataclasses.replace(be.Recipe.from_dict(best["recipe"]), norm=norm)
        top = f", top {cfg.asnorm_top_k}" if norm == "asnorm" else ""
        name = f"best of 1-4 (row {best['id']}) + {label} (in-domain cohort{top})"
        rows.append(run_row(cfg, row_id, name, recipe, pieces, sets, trials, emb))
    overall = best_row(rows)
    log.info(
        "Best backend on the source model's x-vectors: row %s (%s)",
        overall["id"],
        overall["backend"],
    )
    return {"rows": rows, "best_of_1_4": best["id"], "best": overall["id"], "files": files}


def best_recipe(ctx: dict) -> be.Recipe:
    with open(ctx["backend_rows"], encoding="utf-8") as f:
        data = json.load(f)
    best = next(r for r in data["rows"] if r["id"] == data["best"])
    return be.Recipe.from_dict(best["recipe"])


def best_recipe_id(ctx: dict) -> str:
    with open(ctx["backend_rows"], encoding="utf-8") as f:
        return json.load(f)["best"]


def sets_needed(ctx: dict) -> list[str]:
    """x-vector sets a fine-tuned model needs for the best backend (and the source reference)."""
    recipe = best_recipe(ctx)
    names = [
        "target_adapt",
        "target_enroll",
        "target_test",
        "source_eval_enroll",
        "source_eval_test",
    ]
    names.append("target_train")
    if recipe.model == "source" or recipe.mean == "source":
        names.append("source_train")
    return [n for n in names if n in ctx["no_sil"]]


def finetune_rows(cfg, ctx: dict, results: dict) -> dict:
    """Rows 6a/6b: each fine-tuned model's x-vectors with the best backend of rows 1-5, refitted
    on that model's x-vectors (its own source/in-domain LDA+PLDA, means, cohort)."""
    recipe = best_recipe(ctx)
    best_id = best_recipe_id(ctx)
    trials = load_trials(ctx)
    rows = []
    labels = {"6a": "fine-tuned, {freeze} frozen", "6b": "fine-tuned, all layers trained"}
    for row_id, res in results.items():
        sets = load_sets(res["xvectors"])
        r = recipe
        if r.model == "source" and "source_train" not in sets:
            # The user's Kaldi PLDA belongs to the original network, not to the fine-tuned one.
            log.warning(
                "row %s: no source_train x-vectors for a source backend; using in-domain", row_id
            )
            r = dataclasses.replace(r, model="target", mean="adapt")
        need = ("source",) if r.model == "source" or r.mean == "source" else ()
        pieces = _pieces(cfg, sets, need + ("target",) if r.model == "target" else need)
        name = labels[row_id].format(freeze=res["freeze"]) + f" + best backend (row {best_id})"
        rows.append(run_row(cfg, row_id, name, r, pieces, sets, trials, f"fine-tuned {row_id}"))
    return {"rows": rows}
