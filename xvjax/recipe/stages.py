"""The stages of the transfer recipe (see `xvjax.recipe.transfer` for the overview).

Each `stage_*(cfg, ctx) -> outputs` reads what earlier stages put in `ctx` (paths, JSON-able) and
returns its own outputs; everything it writes is written atomically, and per-item work (a data
dir's features, a set's x-vectors, a training run) is skipped when its `.done` file records the
same options fingerprint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open
from xvjax.recipe.transfer import RecipeConfig, fingerprint

log = logging.getLogger("xvjax")

SOURCE_SETS = ("source_train", "source_eval_enroll", "source_eval_test")
TARGET_SETS = ("target_train", "target_adapt", "target_enroll", "target_test")
DONE = ".done"


def _done(path: str, fp: str) -> bool:
    try:
        with open(os.path.join(path, DONE), encoding="utf-8") as f:
            return f.read().strip() == fp
    except OSError:
        return False


def _mark_done(path: str, fp: str) -> None:
    with atomic_open(os.path.join(path, DONE), "w", encoding="utf-8") as f:
        f.write(fp + "\n")


def _write_json(path: str, obj) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


# ============================================================================ 0 data


def copy_data_dir(src: str, dest: str) -> dict:
    """Copies a Kaldi data dir's tables (wav.scp, segments, feats/vad.scp, utt2*, spk2*) to dest."""
    from xvjax.kaldi import datadir

    d = datadir.load_data_dir(src, check_files=False)
    if d.wav_scp is None and d.feats_scp is None:
        raise XvjaxError(f"data dir {src}: neither wav.scp nor feats.scp")
    from xvjax.kaldi import tables

    feats = dict(tables.read_scp(d.feats_scp)) if d.feats_scp and d.wav_scp is None else None
    vad = dict(tables.read_scp(d.vad_scp)) if feats is not None and d.vad_scp else None
    if feats is not None and vad is None:
        raise XvjaxError(f"data dir {src}: feats.scp without wav.scp needs a vad.scp")
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    out = datadir.write_data_dir(
        dest,
        d.utt2spk,
        wav_scp=d.wav_scp,
        segments=d.segments,
        feats_scp=feats,
        vad_scp=vad,
        utt2num_frames=d.utt2num_frames if feats is not None else None,
        utt2dur=d.utt2dur,
        spk2gender=d.spk2gender,
        validate=False,
    )
    info = {"num_utts": len(out.utt2spk), "num_speakers": len(out.spk2utt)}
    if d.utt2dur:
        info["hours"] = round(sum(d.utt2dur.values()) / 3600.0, 4)
    return info


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
            "target_enroll": cfg.tgt_enroll,
            "target_test": cfg.tgt_test,
        }
        trials_src = {"target": cfg.trials, "source": cfg.src_trials}
        musan, rirs = cfg.musan, cfg.rirs
        corpus = {"preset": "user data", "seed": None}
    else:
        import dataclasses

        from xvjax.data import synthetic

        overrides = cfg.corpus_overrides()
        fields = {f.name: f for f in dataclasses.fields(synthetic.CorpusConfig)}
        for key, value in overrides.items():
            if key not in fields:
                raise XvjaxError(f"--corpus-options: the corpus has no option '{key}'")
            kind = type(getattr(synthetic.PRESETS[cfg.preset], key))
            try:
                overrides[key] = kind(value)
            except ValueError:
                raise XvjaxError(f"--corpus-options: bad value for {key}: '{value}'") from None
        ccfg = synthetic.preset(cfg.preset, **overrides)
        paths = synthetic.make_corpus(
            os.path.join(cfg.workdir, "corpus"), ccfg, num_jobs=cfg.num_jobs, preset_name=cfg.preset
        )
        given = {name: paths[name] for name in SOURCE_SETS + TARGET_SETS}
        trials_src = {"target": paths["target_trials"], "source": paths["source_eval_trials"]}
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
        test_set = "target_test" if side == "target" else "source_eval_test"
        dest = os.path.join(sets[test_set], "trials")
        shutil.copyfile(src, dest + ".tmp")
        os.replace(dest + ".tmp", dest)
        trials[side] = dest
        with open(dest, encoding="utf-8") as f:
            labels = [line.split()[-1] for line in f if line.strip()]
        sizes[test_set]["trials"] = {
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
    }


# ============================================================================ 1 features


def feature_options(cfg: RecipeConfig):
    """(MfccOptions, VadOptions, CmnOptions) of the recipe.

    Default: the voxceleb/v2 16 kHz config (30 MFCCs, 30 bins, 20-7600 Hz, snip-edges=false) for a
    16 kHz model, or sre16/v2's 8 kHz config (23 MFCCs, 20-3700 Hz) for `--sample-rate=8000`.
    """
    from xvjax.features.options import (
        RECIPE_CMN,
        RECIPE_VAD,
        SRE16_MFCC,
        VOXCELEB_MFCC,
        MfccOptions,
        VadOptions,
    )

    if cfg.mfcc_config:
        mfcc = MfccOptions.from_config_file(cfg.mfcc_config)
    else:
        mfcc = VOXCELEB_MFCC if cfg.sample_rate == 16000 else SRE16_MFCC
    if int(mfcc.sample_frequency) != cfg.sample_rate:
        raise XvjaxError(
            f"the MFCC config is for {mfcc.sample_frequency:g} Hz but --sample-rate={cfg.sample_rate}"
        )
    if not mfcc.use_energy:
        raise XvjaxError("the energy VAD needs --use-energy=true in the MFCC config")
    vad = VadOptions.from_config_file(cfg.vad_config) if cfg.vad_config else RECIPE_VAD
    mfcc.check()
    vad.check()
    return mfcc, vad, RECIPE_CMN


def resampled_audio(d, rate: int, counter: dict):
    """(utt, samples, rate) of a data dir with every utterance resampled to `rate` if needed.

    Band-limited polyphase resampling (scipy `resample_poly`); 8 kHz telephone audio upsampled to
    16 kHz keeps its 0-4 kHz content and has (almost) nothing above, which is how a wideband
    model sees narrowband data.
    """
    from scipy import signal

    for utt, samples, sr in d.iter_audio(skip_errors=True):
        if int(sr) != rate:
            g = math.gcd(int(sr), rate)
            samples = signal.resample_poly(samples.astype(np.float64), rate // g, int(sr) // g)
            samples = samples.astype(np.float32)
            counter["resampled"] = counter.get("resampled", 0) + 1
            counter.setdefault("from_rates", set()).add(int(sr))
        yield utt, samples, rate


def make_set_features(data_dir: str, mfcc, vad_opts, cmn, progress: bool = True) -> dict:
    """MFCC + VAD of `data_dir` (feats.scp, vad.scp, utt2num_frames; raw MFCCs compressed as
    make_mfcc.sh does) and the prepared copy `<data_dir>_no_sil` (sliding CMN + voiced frames,
    prepare_feats_for_egs.sh). VAD and CMN are computed from the uncompressed MFCCs."""
    from xvjax.features.cmvn import sliding_cmn_numpy
    from xvjax.features.extract import extract_features
    from xvjax.features.vad import compute_vad_numpy
    from xvjax.kaldi import datadir, tables

    d = datadir.load_data_dir(data_dir, check_files=False)
    name = os.path.basename(os.path.normpath(data_dir))
    ark_dir = os.path.join(os.path.dirname(os.path.normpath(data_dir)), "..", "mfcc")
    ark_dir = os.path.abspath(ark_dir)
    os.makedirs(ark_dir, exist_ok=True)
    no_sil = data_dir.rstrip("/") + "_no_sil"
    raw_ark = os.path.join(ark_dir, f"raw_mfcc_{name}.ark")
    vad_ark = os.path.join(ark_dir, f"vad_{name}.ark")
    ns_ark = os.path.join(ark_dir, f"xvector_feats_{name}.ark")
    counter: dict = {}
    num_frames, voiced_frames = {}, {}
    failed = unvoiced = 0

    def prepared(utt, feats, voiced, w_raw, w_vad, w_ns):
        nonlocal unvoiced
        w_raw[utt] = feats
        w_vad[utt] = voiced
        num_frames[utt] = len(feats)
        keep = voiced > 0.5
        if not keep.any():
            log.warning("No frames were judged voiced for utterance %s (dropped)", utt)
            unvoiced += 1
            return
        w_ns[utt] = sliding_cmn_numpy(feats, cmn)[keep]
        voiced_frames[utt] = int(keep.sum())

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(d.utt2spk), unit="utt", desc=f"features {name}", leave=False)
    with (
        tables.Writer(f"ark,scp:{raw_ark},{raw_ark[:-4]}.scp", compression_method=1) as w_raw,
        tables.Writer(f"ark,scp:{vad_ark},{vad_ark[:-4]}.scp") as w_vad,
        tables.Writer(f"ark,scp:{ns_ark},{ns_ark[:-4]}.scp") as w_ns,
    ):
        if d.wav_scp is None:  # the user's features (feats.scp + vad.scp), no audio
            vads = tables.RandomAccess(d.vad_rspecifier())
            for utt, feats in tables.read(d.feats_rspecifier()):
                prepared(
                    utt, np.asarray(feats, np.float32), np.asarray(vads[utt]), w_raw, w_vad, w_ns
                )
                if bar is not None:
                    bar.update(1)
        else:
            audio = resampled_audio(d, int(mfcc.sample_frequency), counter)
            for r in extract_features(audio, mfcc, batch_size=16, fft_impl="xla"):
                if bar is not None:
                    bar.update(1)
                if r.error is not None:
                    log.warning("Failed to compute features for utterance %s: %s", r.key, r.error)
                    failed += 1
                    continue
                prepared(r.key, r.feats, compute_vad_numpy(r.feats, vad_opts), w_raw, w_vad, w_ns)
    if bar is not None:
        bar.close()
    if not voiced_frames:
        raise XvjaxError(f"{data_dir}: no utterance gave usable features (see the warnings)")
    raw = dict(tables.read_scp(raw_ark[:-4] + ".scp"))
    vad = dict(tables.read_scp(vad_ark[:-4] + ".scp"))
    ns = dict(tables.read_scp(ns_ark[:-4] + ".scp"))
    # Utterances without features leave the data dirs, as fix_data_dir.sh would drop them.
    utt2spk_raw = {u: s for u, s in d.utt2spk.items() if u in raw}
    utt2spk_ns = {u: s for u, s in d.utt2spk.items() if u in ns}
    gender = d.spk2gender
    datadir.write_data_dir(
        data_dir, utt2spk_raw, wav_scp=d.wav_scp, segments=d.segments, feats_scp=raw,
        vad_scp=vad, utt2num_frames=num_frames, utt2dur=d.utt2dur, spk2gender=gender,
        validate=False,
    )  # fmt: skip
    datadir.write_data_dir(
        no_sil, utt2spk_ns, feats_scp=ns, utt2num_frames=voiced_frames, spk2gender=gender,
        validate=False,
    )  # fmt: skip
    for src in ("trials",):
        if os.path.isfile(os.path.join(data_dir, src)):
            shutil.copyfile(os.path.join(data_dir, src), os.path.join(no_sil, src))
    if counter.get("resampled"):
        log.info(
            "%s: %d utterances resampled from %s Hz to %g Hz before MFCC",
            name, counter["resampled"], "/".join(map(str, sorted(counter["from_rates"]))),
            mfcc.sample_frequency,
        )  # fmt: skip
    total = sum(num_frames.values())
    log.info(
        "%s: %d utterances, %d frames, %.1f%% voiced; %d failed, %d without voiced frames",
        name, len(num_frames), total, 100.0 * sum(voiced_frames.values()) / max(total, 1),
        failed, unvoiced,
    )  # fmt: skip
    return {
        "no_sil": no_sil,
        "num_utts": len(voiced_frames),
        "frames": total,
        "voiced_frames": sum(voiced_frames.values()),
        "resampled": counter.get("resampled", 0),
    }


def features_for(cfg: RecipeConfig, data_dir: str, fp: str) -> str:
    """make_set_features unless already done with these options; returns the _no_sil dir."""
    no_sil = data_dir.rstrip("/") + "_no_sil"
    if _done(no_sil, fp):
        log.info("%s: features already done", os.path.basename(no_sil))
        return no_sil
    mfcc, vad, cmn = feature_options(cfg)
    make_set_features(data_dir, mfcc, vad, cmn, cfg.progress)
    _mark_done(no_sil, fp)
    return no_sil


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
    from xvjax.train.train import train_and_evaluate

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
    _write_json(os.path.join(workdir, DONE), summary)
    return summary


def train_config(cfg: RecipeConfig, train_dir: str, *, finetune: bool, freeze: str = ""):
    """The trainer's ConfigDict for the source model (Adam, cosine) or a fine-tuning run."""
    from xvjax.train.config import base_config

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
    if finetune:
        c.optim.initial_lr = float(cfg.ft_lr)
        c.optim.final_lr = float(cfg.ft_lr) / 10
        c.optim.warmup_steps = 20
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
    from xvjax.model.checkpoint import load_any, save_model

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
    from xvjax.kaldi import tables
    from xvjax.model.checkpoint import load_model
    from xvjax.model.extract import Extractor, extract_xvectors

    scp = os.path.join(out_dir, "xvector.scp")
    if _done(out_dir, fp) and os.path.isfile(scp):
        return scp
    os.makedirs(out_dir, exist_ok=True)
    if extractor is None:
        spec, variables = load_model(model_dir)
        extractor = Extractor(spec, variables)
    spec = extractor.spec
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
    _mark_done(out_dir, fp)
    log.info("x-vectors of %s: %d utterances -> %s", os.path.basename(feats_dir), num, scp)
    return scp


def extract_all(cfg, ctx, model_dir: str, tag: str, names, fp: str) -> dict[str, str]:
    """x-vectors of the named sets with one model (one Extractor: jit shapes are shared)."""
    from xvjax.model.checkpoint import load_model
    from xvjax.model.extract import Extractor

    extractor = None
    out = {}
    for name in names:
        feats_dir = ctx["no_sil"].get(name)
        if feats_dir is None:
            continue
        out_dir = os.path.join(cfg.workdir, "xvectors", tag, name)
        if extractor is None and not _done(out_dir, fp):
            extractor = Extractor(*load_model(model_dir))
        out[name] = extract_set(model_dir, feats_dir, out_dir, fp, cfg.progress, extractor)
    if extractor is not None:
        log.info("x-vectors with %s: %d jit shapes compiled", tag, len(extractor.shapes))
    return out


def stage_embeddings(cfg: RecipeConfig, ctx: dict) -> dict:
    names = list(ctx["no_sil"])
    scps = extract_all(cfg, ctx, ctx["source_model"], "source", names, fingerprint(cfg, 3))
    return {"xvectors": {"source": scps}}


# ============================================================================ 4 backends


def stage_backends(cfg: RecipeConfig, ctx: dict) -> dict:
    from xvjax.recipe import evaluate

    rows = evaluate.backend_rows(cfg, ctx)
    path = os.path.join(cfg.workdir, "backends", "rows.json")
    _write_json(path, rows)
    return {"backend_rows": path}


# ============================================================================ 5 fine-tuning


AUGMENTATIONS = (
    # (suffix, augment-data-dir options) as egs/voxceleb/v2/run.sh (reverb, noise, music, babble)
    ("reverb", {"rir_lists": "RIRS"}),
    ("noise", {"fg_noise_dir": "MUSAN/noise", "fg_snrs": "15:10:5:0", "fg_interval": 1.0}),
    ("music", {"bg_noise_dir": "MUSAN/music", "bg_snrs": "15:10:8:5", "num_bg_noises": "1"}),
    (
        "babble",
        {"bg_noise_dir": "MUSAN/speech", "bg_snrs": "20:17:15:13", "num_bg_noises": "3:4:5:6:7"},
    ),
)


def augment_train_set(cfg: RecipeConfig, ctx: dict, fp: str) -> tuple[list[str], list[str]]:
    """Augmented copies of target_train (a quarter of its utterances per kind, so the augmented
    set is as large as the clean one, as the recipes subsample their augmented sets); returns
    (the augmented _no_sil dirs, the kinds used)."""
    from xvjax.cli import REGISTRY, Options
    from xvjax.features import datadir_commands
    from xvjax.kaldi import datadir

    musan, rirs = ctx.get("musan", ""), ctx.get("rirs", "")
    src = ctx["sets"]["target_train"]
    utts = sorted(datadir.load_data_dir(src, check_files=False).utt2spk)
    order = np.random.default_rng(cfg.seed).permutation(len(utts))
    kinds = []
    for suffix, opts in AUGMENTATIONS:
        needs_rirs = "rir_lists" in opts
        if (needs_rirs and not rirs) or (not needs_rirs and not musan):
            continue
        sub = dict(opts)
        for k, v in sub.items():
            if isinstance(v, str):
                sub[k] = v.replace("RIRS", rirs).replace("MUSAN", musan)
        folder = sub.get("fg_noise_dir") or sub.get("bg_noise_dir")
        if folder and not os.path.isdir(folder):
            log.warning("no %s for %s augmentation; skipped", folder, suffix)
            continue
        kinds.append((suffix, sub))
    if not kinds:
        return [], []
    out_dirs = []
    data_root = os.path.join(cfg.workdir, "data")
    cmd = REGISTRY["augment-data-dir"]
    assert cmd.func is datadir_commands.augment_data_dir
    for k, (suffix, sub) in enumerate(kinds):
        name = f"target_train_{suffix}"
        aug_dir = os.path.join(data_root, name)
        no_sil = aug_dir + "_no_sil"
        if not _done(no_sil, fp):
            part = [utts[i] for i in order[k :: len(kinds)]]
            subset = os.path.join(data_root, f".{name}_subset")
            datadir.subset_data_dir(src, subset, utts=part)
            values = {o.name.replace("-", "_"): o.default for o in cmd.opts}
            values.update(sub, utt_suffix=suffix, random_seed=cfg.seed + 17 * (k + 1))
            values["progress"] = cfg.progress
            if os.path.isdir(aug_dir):
                shutil.rmtree(aug_dir)
            datadir_commands.augment_data_dir(Options(values), subset, aug_dir)
            shutil.rmtree(subset, ignore_errors=True)
            mfcc, vad, cmn = feature_options(cfg)
            make_set_features(aug_dir, mfcc, vad, cmn, cfg.progress)
            _mark_done(no_sil, fp)
        out_dirs.append(no_sil)
    return out_dirs, [s for s, _ in kinds]


def stage_finetune(cfg: RecipeConfig, ctx: dict) -> dict:
    from xvjax.kaldi import datadir
    from xvjax.recipe import evaluate

    if "target_train" not in ctx["no_sil"]:
        log.warning("no labelled in-domain set: no fine-tuning")
        return {"finetune": {}}
    fp = fingerprint(cfg, 5)
    train_dirs = [ctx["no_sil"]["target_train"]]
    kinds: list[str] = []
    if cfg.augment:
        aug_dirs, kinds = augment_train_set(cfg, ctx, fp)
        train_dirs += aug_dirs
        if not kinds:
            log.warning(
                "no MUSAN/RIRS_NOISES sets (--musan, --rirs): fine-tuning without augmentation"
            )
    if len(train_dirs) > 1:
        combined = os.path.join(cfg.workdir, "data", "target_train_combined_no_sil")
        datadir.combine_data_dirs(combined, train_dirs)
    else:
        combined = train_dirs[0]
    results = {}
    runs = (("6a", cfg.freeze), ("6b", ""))
    for row, freeze in runs:
        workdir = os.path.join(cfg.workdir, "exp", f"finetune_{row}")
        config = train_config(cfg, combined, finetune=True, freeze=freeze)
        config.init_from = ctx["source_model"]
        config.resize_output = True
        summary = _train(config, workdir, fp + row)
        model = os.path.join(workdir, "final")
        needed = evaluate.sets_needed(ctx)
        scps = extract_all(cfg, ctx, model, f"finetune_{row}", needed, fp + row)
        results[row] = {
            "model": model,
            "workdir": workdir,
            "freeze": freeze or "nothing",
            "steps": summary.get("step"),
            "final_loss": summary.get("loss"),
            "final_accuracy": summary.get("accuracy"),
            "xvectors": scps,
        }
    rows = evaluate.finetune_rows(cfg, ctx, results)
    path = os.path.join(cfg.workdir, "finetune", "rows.json")
    _write_json(path, rows)
    return {
        "finetune": results,
        "finetune_rows": path,
        "finetune_train_dir": combined,
        "augmentation": kinds,
    }


# ============================================================================ 6 results


def stage_results(cfg: RecipeConfig, ctx: dict) -> dict:
    from xvjax.recipe import report

    return report.write_results(cfg, ctx)
