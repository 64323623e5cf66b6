"""The stages of the transfer recipe (see `xvjax.recipe.transfer` for the overview).

Each `stage_*(cfg, ctx) -> outputs` reads what earlier stages put in `ctx` (paths, JSON-able) and
returns its own outputs; everything it writes is written atomically, and per-item work (a data
dir's features, a set's x-vectors, a training run) is skipped when its `.done` file records the
same options fingerprint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil

from xvjax.errors import XvjaxError
from xvjax.features.options import read_frontend_conf, write_frontend_conf
from xvjax.fileutil import atomic_open, atomic_path, write_json
from xvjax.kaldi import datadir, tables
from xvjax.model.checkpoint import load_any, load_model, save_model
from xvjax.model.xvector_compute import Extractor, check_frontend, extract_xvectors
from xvjax.recipe import diagnostics, report, rows
from xvjax.recipe.config import RecipeConfig, fingerprint
from xvjax.recipe.datasets import (
    DONE,
    augment_train_set,
    copy_data_dir,
    data_dir_info,
    feature_options,
    features_for,
    hold_out_dev,
    is_done,
    mark_done,
)
from xvjax.recipe.routes import Backends
from xvjax.synthetic import corpus as demo_corpus
from xvjax.train.config import base_config
from xvjax.train.train import train_and_evaluate

log = logging.getLogger("xvjax")

SOURCE_SETS = ("source_train", "source_eval_enroll", "source_eval_test")
TARGET_SETS = ("target_train", "target_adapt", "target_dev_enroll", "target_dev_test",
               "target_enroll", "target_test")  # fmt: skip
# trial list -> the test set its trials file is copied into
TRIAL_TEST_SETS = {"target": "target_test", "dev": "target_dev_test", "source": "source_eval_test"}


# ============================================================================ 0 data


def stage_data(cfg: RecipeConfig, ctx: dict) -> dict:
    data_root = os.path.join(cfg.workdir, "data")
    trials = {}
    if cfg.user_data:
        given = {
            "source_train": cfg.src_data,
            "source_eval_enroll": cfg.src_enroll,
            "source_eval_test": cfg.src_test,
            "target_train": cfg.tgt_train,
            "target_adapt": cfg.tgt_adapt,
            "target_dev_enroll": cfg.tgt_dev_enroll,
            "target_dev_test": cfg.tgt_dev_test,
            "target_enroll": cfg.tgt_enroll,
            "target_test": cfg.tgt_test,
        }
        trials_src = {"target": cfg.trials, "dev": cfg.dev_trials, "source": cfg.src_trials}
        musan, rirs = cfg.musan, cfg.rirs
        corpus = {"preset": "user data", "seed": None}
    else:
        overrides = cfg.corpus_overrides()
        fields = {f.name: f for f in dataclasses.fields(demo_corpus.CorpusConfig)}
        for key, value in overrides.items():
            if key not in fields:
                raise XvjaxError(f"--corpus-options: the corpus has no option '{key}'")
            kind = type(getattr(demo_corpus.PRESETS[cfg.preset], key))
            try:
                overrides[key] = kind(value)
            except ValueError:
                raise XvjaxError(f"--corpus-options: bad value for {key}: '{value}'") from None
        ccfg = demo_corpus.preset(cfg.preset, **overrides)
        paths = demo_corpus.make_corpus(
            os.path.join(cfg.workdir, "corpus"), ccfg, num_jobs=cfg.num_jobs, preset_name=cfg.preset
        )
        given = {name: paths[name] for name in SOURCE_SETS + TARGET_SETS}
        trials_src = {
            "target": paths["target_trials"],
            "dev": paths["target_dev_trials"],
            "source": paths["source_eval_trials"],
        }
        musan, rirs = cfg.musan or paths["musan"], cfg.rirs or paths["rirs"]
        with open(paths["corpus_json"], encoding="utf-8") as f:
            meta = json.load(f)
        corpus = {
            "preset": cfg.preset,
            "overrides": {k: v for k, v in overrides.items() if k != "seed"},
            "seed": meta["seed"],
            "source_rate": meta["source_rate"],
            "target_rate": meta["target_rate"],
            "path": os.path.dirname(paths["corpus_json"]),
        }
    sets, sizes = {}, {}
    for name, src in given.items():
        if not src:
            continue
        dest = os.path.join(data_root, name)
        sizes[name] = copy_data_dir(src, dest)
        sets[name] = dest
    if "target_adapt" not in sets:
        log.warning("no unlabelled in-domain set (--tgt-adapt): using target_train without labels")
    for side, src in trials_src.items():
        if not src:
            continue
        dest = os.path.join(sets[TRIAL_TEST_SETS[side]], "trials")
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        trials[side] = dest
    if "dev" not in trials:
        dev = hold_out_dev(sets["target_train"], data_root, cfg.dev_speakers, cfg.seed)
        sets.update(dev["sets"])
        trials["dev"] = dev["trials"]
        for name in ("target_train", *dev["sets"]):
            sizes[name] = data_dir_info(sets[name])
        log.info(
            "No dev set given: %d speakers of --tgt-train held out as the dev set (%s); every "
            "choice is made on its trials",
            dev["num_speakers"],
            ", ".join(dev["speakers"]),
        )
        held_out = dev["speakers"]
    else:
        held_out = []
    for side, path in trials.items():
        labels = [r[2] for r in tables.read_trials(path)]
        sizes[TRIAL_TEST_SETS[side]]["trials"] = {
            "target": labels.count("target"),
            "nontarget": labels.count("nontarget"),
        }
    for name, info in sizes.items():
        log.info("data/%s: %s", name, info)
    return {
        "sets": sets,
        "trials": trials,
        "musan": musan if musan and os.path.isdir(musan) else "",
        "rirs": rirs if rirs and os.path.isdir(rirs) else "",
        "corpus": corpus,
        "sizes": sizes,
        "dev_held_out": held_out,
    }


# ============================================================================ 1 features


def stage_features(cfg: RecipeConfig, ctx: dict) -> dict:
    mfcc, _, _ = feature_options(cfg)
    fp = fingerprint(cfg, 1)
    no_sil = {name: features_for(cfg, path, fp) for name, path in ctx["sets"].items()}
    return {
        "no_sil": no_sil,
        "feat_dim": mfcc.num_ceps,
        "features": {
            "mfcc": f"{mfcc.num_ceps} MFCCs, {mfcc.num_mel_bins} mel bins "
            f"{mfcc.low_freq:g}-{mfcc.high_freq if mfcc.high_freq > 0 else mfcc.sample_frequency / 2 + mfcc.high_freq:g} Hz "
            f"at {mfcc.sample_frequency:g} Hz",
            "resample_to": cfg.sample_rate,
        },
    }


# ============================================================================ 2 source model


def _train(config, workdir: str, fp: str) -> dict:
    """train_and_evaluate in `workdir`; a finished run with the same fingerprint is reused, an
    interrupted one resumes from its checkpoint, a run with other options is started afresh."""
    final = os.path.join(workdir, "final")
    stamp = os.path.join(workdir, "recipe_fingerprint")
    old = None
    if os.path.isfile(stamp):
        with open(stamp, encoding="utf-8") as f:
            old = f.read().strip()
    if old == fp and os.path.isdir(final) and os.path.isfile(os.path.join(workdir, DONE)):
        log.info("%s: already trained", workdir)
        with open(os.path.join(workdir, DONE), encoding="utf-8") as f:
            return json.load(f)
    if old != fp and os.path.isdir(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    with atomic_open(stamp, "w", encoding="utf-8") as f:
        f.write(fp + "\n")
    summary = train_and_evaluate(config, workdir)
    if summary.get("interrupted") or not summary.get("final_model"):
        raise XvjaxError(f"training in {workdir} was interrupted; rerun to resume")
    summary = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))}
    write_json(os.path.join(workdir, DONE), summary)
    return summary


def train_config(cfg: RecipeConfig, train_dir: str, *, finetune: bool, freeze: str = ""):
    """The trainer's ConfigDict for the source model (Adam, cosine) or a fine-tuning run."""
    c = base_config()
    c.seed = cfg.seed
    c.init_from = ""
    c.model.frame_dims = cfg.dims("frame_dims")
    c.model.embedding_dims = cfg.dims("embedding_dims")
    c.optim.optimizer = "adam"
    c.optim.schedule = "cosine"
    c.optim.max_change = 0.0
    c.optim.max_param_change = 0.0
    c.optim.freeze = freeze
    c.data.source = "feats"
    c.data.train_dir = train_dir
    c.data.feats_prep = "prepared"
    c.data.min_chunk = int(cfg.min_chunk)
    c.data.max_chunk = int(cfg.max_chunk)
    c.data.chunk_quantum = 25
    c.data.num_repeats = 20
    c.data.frames_per_archive = 200_000
    c.train.progress = bool(cfg.progress)
    c.train.log_every = 10
    c.train.async_checkpoints = False
    if finetune and cfg.finetune_optimizer() == "ngsgd":
        # Kaldi's run_xvector_1a.sh values carry over as they are (see configs/finetune.py).
        c.optim.optimizer = "ngsgd"
        c.optim.momentum = 0.5
        c.optim.schedule = "exponential"
        c.optim.lr_on_summed_objective = True
        c.optim.initial_lr, c.optim.final_lr = 0.001, 0.0001
        c.optim.max_change = 0.75
        c.optim.max_param_change = 2.0
    elif finetune:
        c.optim.initial_lr = float(cfg.ft_lr)
        c.optim.final_lr = float(cfg.ft_lr) / 10
        c.optim.warmup_steps = 20
    if finetune:
        c.train.num_steps = int(cfg.ft_steps)
        c.train.batch_size = int(cfg.ft_batch_size)
    else:
        c.optim.initial_lr = float(cfg.src_lr)
        c.optim.final_lr = float(cfg.src_lr) / 10
        c.optim.warmup_steps = 50
        c.train.num_steps = int(cfg.src_steps)
        c.train.batch_size = int(cfg.src_batch_size)
    c.train.checkpoint_every = max(100, int(c.train.num_steps) // 4)
    return c


def stage_source_model(cfg: RecipeConfig, ctx: dict) -> dict:
    exp = os.path.join(cfg.workdir, "exp")
    if cfg.pretrained:
        spec, variables = load_any(cfg.pretrained)
        if spec.input_dim != ctx["feat_dim"]:
            raise XvjaxError(
                f"--pretrained {cfg.pretrained} takes {spec.input_dim}-dim input but the features "
                f"are {ctx['feat_dim']}-dim (give the model's --mfcc-config)"
            )
        final = os.path.join(exp, "source_model", "final")
        template = cfg.pretrained if os.path.isfile(cfg.pretrained) else None
        save_model(final, spec, variables, nnet_template_path=template)
        log.info("Imported %s as the source model (%s)", cfg.pretrained, final)
        return {"source_model": final, "source_model_info": {"pretrained": cfg.pretrained}}
    if "source_train" not in ctx["no_sil"]:
        raise XvjaxError("no source training data (--src-data) to train the source model")
    workdir = os.path.join(exp, "source_model")
    config = train_config(cfg, ctx["no_sil"]["source_train"], finetune=False)
    summary = _train(config, workdir, fingerprint(cfg, 2))
    info = {
        "trained_on": "source_train",
        "steps": summary.get("step"),
        "final_loss": summary.get("loss"),
        "final_accuracy": summary.get("accuracy"),
        "frame_dims": list(cfg.dims("frame_dims")),
        "embedding_dims": list(cfg.dims("embedding_dims")),
    }
    return {
        "source_model": os.path.join(workdir, "final"),
        "source_model_info": info,
        "source_model_workdir": workdir,
    }


# ============================================================================ 3 embeddings


def extract_set(
    model_dir: str, feats_dir: str, out_dir: str, fp: str, progress: bool, extractor=None
) -> str:
    """x-vectors (tdnn6.affine, whole utterances, min chunk 25 padded) of a _no_sil data dir ->
    out_dir/xvector.{ark,scp} (+ utt2spk/spk2utt copies); skipped when done with `fp`."""
    scp = os.path.join(out_dir, "xvector.scp")
    if is_done(out_dir, fp) and os.path.isfile(scp):
        return scp
    os.makedirs(out_dir, exist_ok=True)
    if extractor is None:
        spec, variables = load_model(model_dir)
        extractor = Extractor(spec, variables)
    spec = extractor.spec
    check_frontend(spec, feats_dir)
    errors: list[str] = []
    num = 0
    ark = os.path.join(out_dir, "xvector.ark")
    with tables.Writer(f"ark,scp:{ark},{scp}") as w:
        for utt, vec in extract_xvectors(
            spec,
            None,
            tables.read("scp:" + os.path.join(feats_dir, "feats.scp")),
            chunk_size=-1,
            min_chunk_size=25,
            pad_input=True,
            on_error=lambda u, r: errors.append(f"{u}: {r}"),
            extractor=extractor,
            progress=progress,
        ):
            w[utt] = vec
            num += 1
    if errors:
        log.warning(
            "%s: %d utterances gave no x-vector (e.g. %s)", feats_dir, len(errors), errors[0]
        )
    if not num:
        raise XvjaxError(f"{feats_dir}: no x-vectors extracted")
    for name in ("utt2spk", "spk2utt"):
        shutil.copyfile(os.path.join(feats_dir, name), os.path.join(out_dir, name))
    mark_done(out_dir, fp)
    log.info("x-vectors of %s: %d utterances -> %s", os.path.basename(feats_dir), num, scp)
    return scp


def extract_all(cfg, ctx, model_dir: str, tag: str, names, fp: str) -> dict[str, str]:
    """x-vectors of the named sets with one model (one Extractor: jit shapes are shared)."""
    extractor = None
    out = {}
    for name in names:
        feats_dir = ctx["no_sil"].get(name)
        if feats_dir is None:
            continue
        out_dir = os.path.join(cfg.workdir, "xvectors", tag, name)
        if extractor is None and not is_done(out_dir, fp):
            extractor = Extractor(*load_model(model_dir))
        out[name] = extract_set(model_dir, feats_dir, out_dir, fp, cfg.progress, extractor)
    if extractor is not None:
        log.info("x-vectors with %s: %d batch shapes", tag, len(extractor.shapes))
    return out


def stage_embeddings(cfg: RecipeConfig, ctx: dict) -> dict:
    names = list(ctx["no_sil"])
    scps = extract_all(cfg, ctx, ctx["source_model"], "source", names, fingerprint(cfg, 3))
    return {"xvectors": {"source": scps}}


# ============================================================================ 4 backends


def stage_backends(cfg: RecipeConfig, ctx: dict) -> dict:
    """Rows 1-5d on the source network's x-vectors, every choice on the dev trials."""
    sets = rows.load_sets(ctx["xvectors"]["source"])
    scorer = rows.make_scorer(cfg, ctx)
    backends = Backends(sets, int(cfg.lda_dim), int(cfg.plda_em_iters), rows.user_backend(cfg))
    score_dir = os.path.join(cfg.workdir, "scores")
    emb = "source network" + (" (Kaldi, imported)" if cfg.pretrained else "")
    table, choices = rows.backend_rows(cfg, backends, sets, scorer, score_dir, emb)
    out_dir = os.path.join(cfg.workdir, "backends")
    files = {rid: rows.save_backend(c.built, os.path.join(out_dir, f"row{rid}"))
             for rid, c in choices.items()}  # fmt: skip
    pseudo = choices.get("3d")
    clusters = None
    if pseudo is not None:
        n = pseudo.recipe.clusters
        labels = backends.pseudo_set(n).utt2spk
        clusters = os.path.join(out_dir, "target_adapt_clusters.utt2spk")
        tables.write_text_table(clusters, labels)
        log.info("target_adapt clustered into %d pseudo-speakers (chosen on dev): %s", n, clusters)
    row3b = next((r for r in table if r["id"] == "3b"), None)
    with rows.quiet():
        diag = diagnostics.adaptation_diagnostics(cfg, backends, sets, scorer, row3b)
    path = os.path.join(out_dir, "rows.json")
    write_json(path, {"rows": table, "files": files, "diagnostics": diag})
    return {"backend_rows": path, "adapt_clusters": clusters}


# ============================================================================ 5 fine-tuning


def trainer_dev_dir(cfg: RecipeConfig, ctx: dict) -> tuple[str, str]:
    """The dev set as the trainer's dev evaluation reads it: one data dir (enrollment utterances
    under their speaker, test utterances each their own id, so a model averages enrollment only)
    and the dev trials."""
    enroll, test = (ctx["no_sil"]["target_dev_enroll"], ctx["no_sil"]["target_dev_test"])
    out = os.path.join(cfg.workdir, "data", "target_dev_trainer_no_sil")
    e, t = (
        datadir.load_data_dir(enroll, check_files=False),
        datadir.load_data_dir(test, check_files=False),
    )
    utt2spk = {**e.utt2spk, **{u: u for u in t.utt2spk}}
    feats = {**dict(tables.read_scp(e.feats_scp)), **dict(tables.read_scp(t.feats_scp))}
    if os.path.isdir(out):
        shutil.rmtree(out)
    datadir.write_data_dir(out, utt2spk, feats_scp=feats, validate=False)
    copy_frontend_conf(enroll, out)
    return out, ctx["trials"]["dev"]


def copy_frontend_conf(src: str, dest: str) -> None:
    """The front-end record (conf/) of the features a derived data dir lists."""
    record = read_frontend_conf(src)
    if record:
        write_frontend_conf(dest, record)


def pseudo_labelled_dir(cfg: RecipeConfig, ctx: dict, clusters: str) -> str:
    """target_adapt's prepared features with the dev-chosen cluster labels as speakers."""
    src = datadir.load_data_dir(ctx["no_sil"]["target_adapt"], check_files=False)
    labels = tables.read_text_table(clusters)
    out = os.path.join(cfg.workdir, "data", "target_adapt_pseudo_no_sil")
    if os.path.isdir(out):
        shutil.rmtree(out)
    feats = dict(tables.read_scp(src.feats_scp))
    datadir.write_data_dir(
        out, {u: labels[u] for u in feats if u in labels}, feats_scp=feats, validate=False
    )
    copy_frontend_conf(ctx["no_sil"]["target_adapt"], out)
    return out


def finetune_run(cfg: RecipeConfig, ctx: dict, row: str, train_dir: str, freeze: str, seed: int,
                 fp: str, dev: tuple[str, str]) -> dict:  # fmt: skip
    """One fine-tuning run (output resized to train_dir's speakers), its dev-best step kept."""
    tag = f"finetune_{row}" + (f"_seed{seed}" if seed != cfg.seed else "")
    workdir = os.path.join(cfg.workdir, "exp", tag)
    config = train_config(cfg, train_dir, finetune=True, freeze=freeze)
    config.seed = seed
    config.init_from = ctx["source_model"]
    config.resize_output = True
    config.eval.dev_dir, config.eval.trials = dev
    config.eval.every = int(cfg.ft_eval_every)
    config.eval.at_start = False
    config.eval.keep_best = True
    summary = _train(config, workdir, f"{fp}{tag}")
    model = summary.get("best_model") or os.path.join(workdir, "final")
    scps = extract_all(cfg, ctx, model, tag, list(ctx["no_sil"]), f"{fp}{tag}")
    return {
        "row": row,
        "seed": seed,
        "model": model,
        "workdir": workdir,
        "freeze": freeze or "nothing",
        "train_dir": os.path.basename(train_dir),
        "steps": summary.get("step"),
        "best_step": summary.get("best_step"),
        "best_dev_eer_cosine": summary.get("best_dev_eer"),
        "final_loss": summary.get("loss"),
        "final_accuracy": summary.get("accuracy"),
        "xvectors": scps,
    }


FT_ROWS = {
    "6a": "fine-tuned, {freeze} frozen",
    "6b": "fine-tuned, all layers",
    "6c": "fine-tuned on the clustered in-domain set (no in-domain labels), all layers",
}


def stage_finetune(cfg: RecipeConfig, ctx: dict) -> dict:
    """Rows 6a-6c (each network's backend chosen on dev) and 7 (the dev-best fine-tuned network
    with in-domain mean, adapted PLDA and score normalisation, chosen on dev)."""
    fp = fingerprint(cfg, 5)
    runs = []
    kinds: list[str] = []
    if "target_train" in ctx["no_sil"]:
        train_dirs = [ctx["no_sil"]["target_train"]]
        if cfg.augment:
            aug_dirs, kinds = augment_train_set(cfg, ctx, fp)
            train_dirs += aug_dirs
            if not kinds:
                log.warning(
                    "no MUSAN/RIRS_NOISES (--musan, --rirs): fine-tuning without augmentation"
                )
        combined = train_dirs[0]
        if len(train_dirs) > 1:
            combined = os.path.join(cfg.workdir, "data", "target_train_combined_no_sil")
            datadir.combine_data_dirs(combined, train_dirs)
            copy_frontend_conf(train_dirs[0], combined)
        runs += [("6a", combined, cfg.freeze), ("6b", combined, "")]
    else:
        log.warning("no labelled in-domain set: no fine-tuning on in-domain labels (rows 6a, 6b)")
    if cfg.pseudo_ft and ctx.get("adapt_clusters"):
        runs.append(("6c", pseudo_labelled_dir(cfg, ctx, ctx["adapt_clusters"]), ""))
    if not runs:
        return {"finetune": {}}
    dev = trainer_dev_dir(cfg, ctx)
    scorer = rows.make_scorer(cfg, ctx)
    score_dir = os.path.join(cfg.workdir, "scores")
    results, table, spreads = {}, [], {}
    for k in range(cfg.seeds):
        seed = cfg.seed + k
        for row, train_dir, freeze in runs:
            res = finetune_run(cfg, ctx, row, train_dir, freeze, seed, fp, dev)
            sets = rows.load_sets(res["xvectors"])
            backends = Backends(sets, int(cfg.lda_dim), int(cfg.plda_em_iters))
            choice = rows.best_backend(backends, scorer, sets, cfg, labels=row != "6c")
            if k == 0:
                results[row] = res | {"choice": choice}
                name = FT_ROWS[row].format(freeze=f"`{freeze}`")
                r = rows.row_result(row, name, choice, f"fine-tuned {row}", row != "6c",
                                    chosen=f"backend of {len(choice.tried)} candidates, step "
                                    f"{res['best_step']}")  # fmt: skip
                r.update(finetune={k2: v for k2, v in res.items() if k2 != "xvectors"})
                r.update(scorer.report(choice.built, sets, row, score_dir))
                rows.log_row(r)
                table.append(r)
            else:
                spreads.setdefault(row, []).append(
                    {"seed": seed, **rows.eval_metrics(scorer, choice.built, sets)}
                )
    labelled = [r for r in ("6a", "6b") if r in results]
    if labelled:
        best = min(labelled, key=lambda r: rows.dev_key(results[r]["choice"].dev))
        sets = rows.load_sets(results[best]["xvectors"])
        backends = Backends(sets, int(cfg.lda_dim), int(cfg.plda_em_iters))
        choice = rows.combined_backend(backends, scorer, sets)
        name = f"row {best} network (dev-best fine-tuning) + in-domain mean + adapted PLDA + norm"
        r = rows.row_result("7", name, choice, f"fine-tuned {best}", True,
                            chosen=f"network {best} on dev, backend of {len(choice.tried)} candidates")  # fmt: skip
        r.update(scorer.report(choice.built, sets, "7", score_dir))
        rows.log_row(r)
        table.append(r)
    for r in table:
        r["seeds"] = spreads.get(r["id"], [])
    path = os.path.join(cfg.workdir, "finetune", "rows.json")
    write_json(path, {"rows": table})
    return {
        "finetune": {
            row: {k: v for k, v in res.items() if k not in ("choice", "xvectors")}
            for row, res in results.items()
        },  # fmt: skip
        "finetune_rows": path,
        "augmentation": kinds,
    }


# ============================================================================ 6 results


def stage_results(cfg: RecipeConfig, ctx: dict) -> dict:
    return report.write_results(cfg, ctx, rows.make_scorer(cfg, ctx))
