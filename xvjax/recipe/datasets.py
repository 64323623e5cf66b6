"""Data preparation for the transfer recipe: copying data dirs, features (MFCC + VAD, then sliding
CMN + voiced frames, with resampling to the model's rate) and augmented copies of target_train.

The jobs themselves are `xvjax.features.datadir_jobs`; this module picks the recipe's settings,
places the outputs in the work dir and skips per-item work whose `.done` file records the same
options fingerprint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil

import numpy as np

from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.features.datadir_jobs import augment_data_dir, import_features, make_features
from xvjax.features.options import (
    RECIPE_CMN,
    RECIPE_VAD,
    SRE16_MFCC,
    VOXCELEB_MFCC,
    AugmentDataDirOptions,
    MfccOptions,
    VadOptions,
)
from xvjax.fileutil import atomic_open
from xvjax.kaldi import datadir, tables
from xvjax.recipe.config import RecipeConfig

log = logging.getLogger("xvjax")

DONE = ".done"


def is_done(path: str, fp: str) -> bool:
    try:
        with open(os.path.join(path, DONE), encoding="utf-8") as f:
            return f.read().strip() == fp
    except OSError:
        return False


def mark_done(path: str, fp: str) -> None:
    with atomic_open(os.path.join(path, DONE), "w", encoding="utf-8") as f:
        f.write(fp + "\n")


def copy_data_dir(src: str, dest: str) -> dict:
    """Copies a Kaldi data dir's tables (wav.scp, segments, feats/vad.scp, utt2*, spk2*) to dest."""
    d = datadir.load_data_dir(src, check_files=False)
    if d.wav_scp is None and d.feats_scp is None:
        raise XvjaxError(f"data dir {src}: neither wav.scp nor feats.scp")
    feats = dict(tables.read_scp(d.feats_scp)) if d.feats_scp and d.wav_scp is None else None
    vad = dict(tables.read_scp(d.vad_scp)) if feats is not None and d.vad_scp else None
    if feats is not None and vad is None:
        raise XvjaxError(f"data dir {src}: feats.scp without wav.scp needs a vad.scp")
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    datadir.write_data_dir(
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
    return data_dir_info(dest)


def data_dir_info(path: str) -> dict:
    """{"num_utts", "num_speakers", "hours" (when utt2dur is there)} of a data dir."""
    d = datadir.load_data_dir(path, check_files=False)
    info = {"num_utts": len(d.utt2spk), "num_speakers": len(d.spk2utt)}
    if d.utt2dur:
        info["hours"] = round(sum(d.utt2dur.values()) / 3600.0, 4)
    return info


def hold_out_dev(train_dir: str, data_root: str, num_speakers: int, seed: int) -> dict:
    """Splits speakers off a labelled in-domain set as the dev set, in place.

    `num_speakers` (0: a fifth, at least 4) speakers drawn with `seed` leave `train_dir`; each one's
    first third of utterances (sorted, at least one) is enrolled in data_root/target_dev_enroll,
    the rest is tested in data_root/target_dev_test, whose `trials` pair every dev speaker with
    every dev test utterance. Returns {"sets", "trials", "speakers", "num_speakers"}.
    """
    d = datadir.load_data_dir(train_dir, check_files=False)
    speakers = sorted(d.spk2utt)
    n = num_speakers or max(4, len(speakers) // 5)
    multi = [s for s in speakers if len(d.spk2utt[s]) >= 2]
    if n < 2 or len(multi) < n or len(speakers) - n < 2:
        raise XvjaxError(
            f"{train_dir}: cannot hold out {n} dev speakers with at least 2 utterances each and "
            f"keep 2 for training ({len(speakers)} speakers, {len(multi)} with 2+ utterances); "
            "give a dev set (--tgt-dev-enroll --tgt-dev-test --dev-trials)"
        )
    rng = np.random.default_rng([seed, 4242])
    dev = sorted(rng.choice(multi, size=n, replace=False).tolist())
    enroll, test = [], {}
    for spk in dev:
        utts = sorted(d.spk2utt[spk])
        k = max(1, len(utts) // 3)
        enroll += utts[:k]
        test.update({u: spk for u in utts[k:]})
    out = {
        "target_dev_enroll": os.path.join(data_root, "target_dev_enroll"),
        "target_dev_test": os.path.join(data_root, "target_dev_test"),
    }
    for name, utts in (("target_dev_enroll", enroll), ("target_dev_test", sorted(test))):
        if os.path.isdir(out[name]):
            shutil.rmtree(out[name])
        datadir.subset_data_dir(train_dir, out[name], utts=utts)
    rest = os.path.join(data_root, ".target_train_rest")
    if os.path.isdir(rest):
        shutil.rmtree(rest)
    datadir.subset_data_dir(train_dir, rest, speakers=[s for s in speakers if s not in dev])
    shutil.rmtree(train_dir)
    os.replace(rest, train_dir)
    trials = os.path.join(out["target_dev_test"], "trials")
    Trials.every_pair(dev, test).write(trials)
    return {"sets": out, "trials": trials, "speakers": dev, "num_speakers": n}


def feature_options(cfg: RecipeConfig):
    """(MfccOptions, VadOptions, CmnOptions) of the recipe.

    Default: the voxceleb/v2 16 kHz config (30 MFCCs, 30 bins, 20-7600 Hz, snip-edges=false) for a
    16 kHz model, or sre16/v2's 8 kHz config (23 MFCCs, 20-3700 Hz) for `--sample-rate=8000`.
    """
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


def make_set_features(cfg: RecipeConfig, data_dir: str) -> str:
    """Features of one data dir (its audio resampled to the model's rate, or its own feats.scp +
    vad.scp when it has no audio) with the prepared copy `<data_dir>_no_sil`; utterances without
    features leave the data dir, as fix_data_dir.sh would drop them. Returns the _no_sil dir."""
    mfcc, vad, cmn = feature_options(cfg)
    no_sil = data_dir.rstrip("/") + "_no_sil"
    archive_dir = os.path.join(os.path.dirname(os.path.normpath(data_dir)), "..", "mfcc")
    d = datadir.load_data_dir(data_dir, check_files=False)
    if d.wav_scp is None:  # the user's features (feats.scp + vad.scp), no audio
        import_features(
            data_dir, no_sil, archive_dir=archive_dir, cmn_opts=cmn, progress=cfg.progress
        )
    else:
        make_features(
            data_dir, mfcc, vad, archive_dir=archive_dir, no_sil_dir=no_sil, cmn_opts=cmn,
            resample_to=int(mfcc.sample_frequency), fft_impl="auto", progress=cfg.progress,
        )  # fmt: skip
    written = datadir.load_data_dir(data_dir, validate=False)  # with feats.scp, vad.scp, ...
    feats = dict(tables.read_scp(written.feats_scp))
    datadir.write_data_dir(
        data_dir, {u: s for u, s in d.utt2spk.items() if u in feats}, wav_scp=d.wav_scp,
        segments=d.segments, feats_scp=feats, vad_scp=written.vad_scp,
        utt2num_frames=written.utt2num_frames, utt2dur=d.utt2dur, spk2gender=d.spk2gender,
        validate=False,
    )  # fmt: skip
    if os.path.isfile(os.path.join(data_dir, "trials")):
        shutil.copyfile(os.path.join(data_dir, "trials"), os.path.join(no_sil, "trials"))
    return no_sil


def features_for(cfg: RecipeConfig, data_dir: str, fp: str) -> str:
    """make_set_features unless already done with these options; returns the _no_sil dir."""
    no_sil = data_dir.rstrip("/") + "_no_sil"
    if is_done(no_sil, fp):
        log.info("%s: features already done", os.path.basename(no_sil))
        return no_sil
    make_set_features(cfg, data_dir)
    mark_done(no_sil, fp)
    return no_sil


def augmentations(musan: str, rirs: str) -> list[tuple[str, AugmentDataDirOptions]]:
    """(suffix, options) of egs/voxceleb/v2/run.sh's augmented copies (reverb, noise, music,
    babble) whose sources exist."""
    out = []
    if rirs:
        out.append(("reverb", AugmentDataDirOptions(rir_lists=(rirs,))))
    if musan:
        kinds = (
            ("noise", dict(fg_noise_dir=f"{musan}/noise", fg_snrs=(15.0, 10.0, 5.0, 0.0),
                           fg_interval=1.0)),
            ("music", dict(bg_noise_dir=f"{musan}/music", bg_snrs=(15.0, 10.0, 8.0, 5.0),
                           num_bg_noises=(1,))),
            ("babble", dict(bg_noise_dir=f"{musan}/speech", bg_snrs=(20.0, 17.0, 15.0, 13.0),
                            num_bg_noises=(3, 4, 5, 6, 7))),
        )  # fmt: skip
        for suffix, fields in kinds:
            folder = fields.get("fg_noise_dir") or fields["bg_noise_dir"]
            if os.path.isdir(folder):
                out.append((suffix, AugmentDataDirOptions(**fields)))
            else:
                log.warning("no %s for %s augmentation; skipped", folder, suffix)
    return out


def augment_train_set(cfg: RecipeConfig, ctx: dict, fp: str) -> tuple[list[str], list[str]]:
    """Augmented copies of target_train (a quarter of its utterances per kind, so the augmented
    set is as large as the clean one, as the recipes subsample their augmented sets); returns
    (the augmented _no_sil dirs, the kinds used)."""
    kinds = augmentations(ctx.get("musan", ""), ctx.get("rirs", ""))
    if not kinds:
        return [], []
    src = ctx["sets"]["target_train"]
    utts = sorted(datadir.load_data_dir(src, check_files=False).utt2spk)
    order = np.random.default_rng(cfg.seed).permutation(len(utts))
    out_dirs = []
    data_root = os.path.join(cfg.workdir, "data")
    for k, (suffix, opts) in enumerate(kinds):
        name = f"target_train_{suffix}"
        aug_dir = os.path.join(data_root, name)
        no_sil = aug_dir + "_no_sil"
        if not is_done(no_sil, fp):
            part = [utts[i] for i in order[k :: len(kinds)]]
            subset = os.path.join(data_root, f".{name}_subset")
            datadir.subset_data_dir(src, subset, utts=part)
            opts = dataclasses.replace(opts, utt_suffix=suffix, random_seed=cfg.seed + 17 * (k + 1))
            if os.path.isdir(aug_dir):
                shutil.rmtree(aug_dir)
            augment_data_dir(subset, aug_dir, opts, progress=cfg.progress)
            shutil.rmtree(subset, ignore_errors=True)
            make_set_features(cfg, aug_dir)
            mark_done(no_sil, fp)
        out_dirs.append(no_sil)
    return out_dirs, [s for s, _ in kinds]
