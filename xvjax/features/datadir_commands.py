"""Whole-data-dir commands: `make-features` (make_mfcc.sh + compute_vad_decision.sh) and
`augment-data-dir` (steps/data/augment_data_dir.py + reverberate_data_dir.py)."""

from __future__ import annotations

import logging
import os

from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


@command(
    "make-features",
    "MFCC + energy VAD for a whole data dir (make_mfcc.sh + compute_vad_decision.sh), batched.",
    usage="Usage: xvjax make-features [options] <data-dir> [<log-dir> [<mfcc-dir>]]\n"
    " Writes <mfcc-dir>/raw_mfcc_<name>.{ark,scp}, vad_<name>.{ark,scp} and <data-dir>/feats.scp,\n"
    " vad.scp, utt2num_frames (mfcc-dir defaults to <data-dir>/data).\n"
    " e.g.: xvjax make-features --mfcc-config=conf/mfcc.conf --vad-config=conf/vad.conf data/train",
    opts=[
        Opt("mfcc-config", "conf/mfcc.conf", "MFCC config file (Kaldi options)"),
        Opt("vad-config", "conf/vad.conf", "VAD config file; empty: no VAD"),
        Opt("compress", True, "Compress the MFCC archive (copy-feats --compress)"),
        Opt("compression-method", 1, "Kaldi compression method (1 = automatic)"),
        Opt("write-utt2num-frames", True, "Write <data-dir>/utt2num_frames"),
        Opt("batch-size", 16, "Utterances per batch"),
        Opt("seed", 0, "Dither seed"),
        Opt("fft-impl", "kaldi", "kaldi (identical to Kaldi) or xla"),
        Opt("nj", 1, "Ignored (accepted for make_mfcc.sh compatibility)"),
        Opt("progress", True, "Show a progress bar"),
    ],
    nargs=(1, 3),
)
def make_features(opts, data_dir, log_dir=None, mfcc_dir=None):
    from xvjax.features.extract import extract_features
    from xvjax.features.options import MfccOptions, VadOptions
    from xvjax.features.vad import compute_vad_numpy
    from xvjax.kaldi import datadir, tables

    if not os.path.exists(opts.mfcc_config):
        raise XvjaxError(f"MFCC config {opts.mfcc_config} not found (--mfcc-config)")
    mfcc_opts = MfccOptions.from_config_file(opts.mfcc_config)
    vad_opts = VadOptions.from_config_file(opts.vad_config) if opts.vad_config else None
    if vad_opts is not None and not os.path.exists(opts.vad_config):
        raise XvjaxError(f"VAD config {opts.vad_config} not found (--vad-config)")
    d = datadir.load_data_dir(data_dir, check_files=False)
    if d.wav_scp is None:
        raise XvjaxError(f"{data_dir}: no wav.scp")
    name = os.path.basename(os.path.normpath(data_dir))
    mfcc_dir = os.path.abspath(mfcc_dir or os.path.join(data_dir, "data"))
    os.makedirs(mfcc_dir, exist_ok=True)
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    ark = os.path.join(mfcc_dir, f"raw_mfcc_{name}.ark")
    scp = os.path.join(mfcc_dir, f"raw_mfcc_{name}.scp")
    utts = d.utts
    errors: list[str] = []

    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(utts), unit="utt", desc=f"make-features {name}")
    num_frames: dict[str, int] = {}
    method = opts.compression_method if opts.compress else None
    with tables.Writer(f"ark,scp:{ark},{scp}", compression_method=method) as writer:
        for r in extract_features(d.iter_audio(skip_errors=True), mfcc_opts, opts.batch_size, seed=opts.seed,
                                  fft_impl=opts.fft_impl):  # fmt: skip
            if bar is not None:
                bar.update(1)
            if r.error is not None:
                log.warning("Failed to compute features for utterance %s: %s", r.key, r.error)
                errors.append(r.key)
                continue
            writer[r.key] = r.feats
            num_frames[r.key] = r.feats.shape[0]
    if bar is not None:
        bar.close()
    if not num_frames:
        raise XvjaxError(f"{data_dir}: no utterance gave features (see the warnings above)")
    missing = len(utts) - len(num_frames)
    if missing:
        log.warning(
            "%d of %d utterances produced no features (run fix-data-dir to drop them)",
            missing, len(utts),
        )  # fmt: skip
    vad_scp = None
    if vad_opts is not None:
        vad_ark = os.path.join(mfcc_dir, f"vad_{name}.ark")
        vad_scp = os.path.join(mfcc_dir, f"vad_{name}.scp")
        unvoiced = 0
        with tables.Writer(f"ark,scp:{vad_ark},{vad_scp}") as writer:
            # Like compute_vad_decision.sh: VAD on the features as stored (compressed or not).
            for utt, feats in tables.read("scp:" + scp):
                voiced = compute_vad_numpy(feats, vad_opts)
                if not voiced.any():
                    log.warning("No frames were judged voiced for utterance %s", utt)
                    unvoiced += 1
                writer[utt] = voiced
        log.info("VAD: %d utterances, %d completely unvoiced", len(num_frames), unvoiced)
    feats_scp = {k: v for k, v in tables.read_scp(scp)}
    tables.write_text_table(os.path.join(data_dir, "feats.scp"), feats_scp)
    if vad_scp is not None:
        tables.write_text_table(
            os.path.join(data_dir, "vad.scp"), {k: v for k, v in tables.read_scp(vad_scp)}
        )
    if opts.write_utt2num_frames:
        tables.write_text_table(
            os.path.join(data_dir, "utt2num_frames"), {k: str(v) for k, v in num_frames.items()}
        )
    log.info(
        "Succeeded creating MFCC features for %s: %d utterances, %d had errors.",
        name, len(num_frames), missing,
    )  # fmt: skip
    return 0
