"""Whole-data-dir commands: `make-features` (make_mfcc.sh + compute_vad_decision.sh) and
`augment-data-dir` (steps/data/augment_data_dir.py + reverberate_data_dir.py)."""

from __future__ import annotations

import logging
import os

from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError
from xvjax.features.commands import BATCH_OPTS

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
        *BATCH_OPTS,
        Opt("nj", 1, "Ignored (accepted for make_mfcc.sh compatibility)"),
        Opt("progress", True, "Show a progress bar"),
    ],
    nargs=(1, 3),
)
def make_features(opts, data_dir, log_dir=None, mfcc_dir=None):
    from xvjax.features.options import MfccOptions, VadOptions
    from xvjax.features.stream import extract_features
    from xvjax.features.vad import compute_vad_numpy
    from xvjax.kaldi import datadir, tables

    if not os.path.exists(opts.mfcc_config):
        raise XvjaxError(f"MFCC config {opts.mfcc_config} not found (--mfcc-config)")
    if opts.vad_config and not os.path.exists(opts.vad_config):
        raise XvjaxError(f"VAD config {opts.vad_config} not found (--vad-config)")
    mfcc_opts = MfccOptions.from_config_file(opts.mfcc_config)
    vad_opts = VadOptions.from_config_file(opts.vad_config) if opts.vad_config else None
    if vad_opts is not None:
        vad_opts.check()
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


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(",", ":").split(":") if v.strip())
    except ValueError:
        raise XvjaxError(f"--{name}: expected colon-separated numbers, got '{text}'") from None
    if not values:
        raise XvjaxError(f"--{name}: empty list")
    return values


@command(
    "augment-data-dir",
    "Write an augmented copy of a data dir (augment_data_dir.py / reverberate_data_dir.py).",
    usage="Usage: xvjax augment-data-dir [options] <input-data-dir> <output-data-dir>\n"
    " One kind per call, as in Kaldi's x-vector recipes:\n"
    "  reverb: --rir-lists=RIRS_NOISES/simulated_rirs/smallroom/rir_list,"
    "RIRS_NOISES/simulated_rirs/mediumroom/rir_list --utt-suffix=reverb\n"
    "  noise:  --fg-noise-dir=musan/noise --fg-snrs=15:10:5:0 --fg-interval=1 --utt-suffix=noise\n"
    "  music:  --bg-noise-dir=musan/music --bg-snrs=15:10:8:5 --num-bg-noises=1 --utt-suffix=music\n"
    "  babble: --bg-noise-dir=musan/speech --bg-snrs=20:17:15:13 --num-bg-noises=3:4:5:6:7 "
    "--utt-suffix=babble\n"
    " Noise dirs may be a MUSAN folder, a folder of wavs or a Kaldi data dir (wav.scp).\n"
    " Writes 16-bit wavs to <output-data-dir>/wavs/ and a data dir pointing at them.",
    opts=[
        Opt("rir-lists", "", "Comma-separated RIRS_NOISES rir_list files (or data dirs of RIRs)"),
        Opt("fg-noise-dir", "", "Foreground noise source (MUSAN noise, wav folder or data dir)"),
        Opt("bg-noise-dir", "", "Background noise source (MUSAN music/speech, ... )"),
        Opt("fg-snrs", "20:10:0", "Colon-separated foreground SNRs (dB)"),
        Opt("bg-snrs", "20:10:0", "Colon-separated background SNRs (dB)"),
        Opt("num-bg-noises", "1", "Colon-separated choices of the number of background noises"),
        Opt("fg-interval", 0.0, "Seconds between foreground noises"),
        Opt("utt-suffix", "", "Suffix added to utterance ids (utt-suffix)"),
        Opt("utt-prefix", "", "Prefix added to utterance ids (prefix-utt)"),
        Opt("modify-spk-id", False, "Also add the prefix/suffix to speaker ids"),
        Opt("random-seed", 123, "Seed (same seed -> identical output)"),
        Opt(
            "max-source-seconds",
            60.0,
            "Keep the first seconds of each noise file (memory cap; "
            "background noises only use the first utterance-length, so exact when >= the longest "
            "utterance; 0: no cap)",
        ),
        Opt("progress", True, "Show a progress bar"),
    ],
    nargs=(2, 2),
)
def augment_data_dir(opts, in_dir, out_dir):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from xvjax.features import augment, noise_banks
    from xvjax.features.stream import bucket_length
    from xvjax.kaldi import audio, datadir, tables

    kinds = [k for k in ("rir_lists", "fg_noise_dir", "bg_noise_dir") if getattr(opts, k)]
    if len(kinds) != 1:
        raise XvjaxError("give exactly one of --rir-lists, --fg-noise-dir, --bg-noise-dir")
    if not opts.utt_suffix and not opts.utt_prefix:
        raise XvjaxError("give --utt-suffix or --utt-prefix so augmented ids differ from the input")
    d = datadir.load_data_dir(in_dir, check_files=False)
    if os.path.abspath(in_dir) == os.path.abspath(out_dir):
        raise XvjaxError("input and output data dirs must differ")
    first = next(iter(d.iter_audio(skip_errors=True)), None)
    if first is None:
        raise XvjaxError(f"{in_dir}: no readable audio")
    rate = int(first[2])
    cap = opts.max_source_seconds or None
    if opts.rir_lists:
        specs = [s for p in opts.rir_lists.split(",") for s in noise_banks.resolve(p, "rirs")]
        bank = noise_banks.load_specs(specs, rate, None, scale=1.0 / 32768.0)
    elif opts.fg_noise_dir:
        bank = noise_banks.load_specs(noise_banks.resolve(opts.fg_noise_dir, "noise"), rate, cap)
    else:
        bank = noise_banks.load_specs(noise_banks.resolve(opts.bg_noise_dir, "music"), rate, cap)
    fg_snrs, bg_snrs = _floats(opts.fg_snrs, "fg-snrs"), _floats(opts.bg_snrs, "bg-snrs")
    counts = tuple(int(c) for c in _floats(opts.num_bg_noises, "num-bg-noises"))
    interval = int(round(opts.fg_interval * rate))

    # The bank is an argument, not a closure constant: captured arrays would be baked into every
    # compiled bucket shape as (large) HLO constants.
    @jax.jit
    def run(key, x, n, bank):
        if opts.rir_lists:
            i = jax.random.randint(key, (), 0, bank.size)
            return augment.reverberate(x, n, bank.segment(i), bank.lengths[i])
        if opts.fg_noise_dir:
            return augment.add_foreground(key, x, n, bank, fg_snrs, interval, 64)[0]
        return augment.add_background(key, x, n, bank, bg_snrs, counts)[0]

    def new_id(x):
        return f"{opts.utt_prefix}-{x}" if opts.utt_prefix else f"{x}-{opts.utt_suffix}"

    wav_dir = os.path.abspath(os.path.join(out_dir, "wavs"))
    os.makedirs(wav_dir, exist_ok=True)
    base = jax.random.key(opts.random_seed)
    utt2spk, wav_scp, utt2uniq = {}, {}, {}
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(d.utts), unit="utt", desc="augment-data-dir")
    for index, (utt, samples, sr) in enumerate(d.iter_audio(skip_errors=True)):
        if bar is not None:
            bar.update(1)
        if sr != rate or samples.ndim != 1 or not np.all(np.isfinite(samples)) or not len(samples):
            log.warning(
                "skipping utterance %s: bad audio (rate %s, %d samples)", utt, sr, len(samples)
            )
            continue
        padded = np.zeros(bucket_length(len(samples)), np.float32)
        padded[: len(samples)] = samples
        out = run(jax.random.fold_in(base, index), jnp.asarray(padded), len(samples), bank)
        new = new_id(utt)
        path = os.path.join(wav_dir, f"{new}.wav")
        audio.write_wav(path, np.asarray(out)[: len(samples)], int(sr))
        spk = d.utt2spk[utt]
        utt2spk[new] = new_id(spk) if opts.modify_spk_id else spk
        wav_scp[new] = path
        utt2uniq[new] = utt
    if bar is not None:
        bar.close()
    if not utt2spk:
        raise XvjaxError(f"{in_dir}: no utterance could be augmented")
    gender = None
    if d.spk2gender and opts.modify_spk_id:
        gender = {new_id(s): g for s, g in d.spk2gender.items()}
    elif d.spk2gender:
        gender = dict(d.spk2gender)
    utt2dur = None
    if d.utt2dur:
        utt2dur = {new_id(u): v for u, v in d.utt2dur.items() if new_id(u) in utt2spk}
    datadir.write_data_dir(out_dir, utt2spk, wav_scp=wav_scp, spk2gender=gender, utt2dur=utt2dur)
    # utt2uniq (augmented id -> source id), as Kaldi's scripts write it, so egs/valid splits can
    # keep copies of one recording together.
    tables.write_text_table(os.path.join(out_dir, "utt2uniq"), utt2uniq)
    log.info("Wrote %d augmented utterances to %s", len(utt2spk), out_dir)
    return 0
