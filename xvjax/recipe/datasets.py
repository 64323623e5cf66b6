"""Data preparation for the transfer recipe: copying data dirs, features (MFCC + VAD, then sliding
CMN + voiced frames, with resampling to the model's rate) and augmented copies of target_train.

Per-item work is skipped when its `.done` file records the same options fingerprint.
"""

from __future__ import annotations

import logging
import math
import os
import shutil

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open
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
    from xvjax.features.stream import extract_features
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
    if is_done(no_sil, fp):
        log.info("%s: features already done", os.path.basename(no_sil))
        return no_sil
    mfcc, vad, cmn = feature_options(cfg)
    make_set_features(data_dir, mfcc, vad, cmn, cfg.progress)
    mark_done(no_sil, fp)
    return no_sil


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
    from xvjax.cli import Options
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
    cmd = datadir_commands.augment_data_dir.command
    for k, (suffix, sub) in enumerate(kinds):
        name = f"target_train_{suffix}"
        aug_dir = os.path.join(data_root, name)
        no_sil = aug_dir + "_no_sil"
        if not is_done(no_sil, fp):
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
            mark_done(no_sil, fp)
        out_dirs.append(no_sil)
    return out_dirs, [s for s, _ in kinds]
