"""Kaldi-style feature commands: compute-mfcc-feats, compute-fbank-feats, compute-vad,
apply-cmvn-sliding, select-voiced-frames, and the whole-data-dir jobs make-features and
augment-data-dir (`xvjax.features.datadir_jobs`).

Argument order and option names are Kaldi's (`--config=conf/mfcc.conf` works). Modules that import
JAX are imported inside the commands, so `xvjax --help` stays fast and compute-vad,
apply-cmvn-sliding and select-voiced-frames run without JAX.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError
from xvjax.features.cmvn import sliding_cmn_numpy
from xvjax.features.options import (
    AugmentDataDirOptions,
    CmnOptions,
    FbankOptions,
    MfccOptions,
    VadOptions,
)
from xvjax.features.vad import compute_vad_numpy
from xvjax.kaldi import audio, tables

log = logging.getLogger("xvjax")

_HELP = {
    "sample_frequency": "Waveform data sample frequency (must match the waveform file)",
    "frame_length": "Frame length in milliseconds",
    "frame_shift": "Frame shift in milliseconds",
    "dither": "Dithering constant (0.0 means no dither)",
    "preemphasis_coefficient": "Coefficient for use in signal preemphasis",
    "remove_dc_offset": "Subtract mean from waveform on each frame",
    "window_type": "Type of window (hamming|hanning|povey|rectangular|sine|blackman)",
    "round_to_power_of_two": "If true, round window size to power of two by zero-padding the FFT input",
    "blackman_coeff": "Constant coefficient for generalized Blackman window",
    "snip_edges": "If true, output only frames that completely fit in the file; if false, the "
    "number of frames depends only on the frame-shift and the data is reflected at the ends",
    "num_mel_bins": "Number of triangular mel-frequency bins",
    "low_freq": "Low cutoff frequency for mel bins",
    "high_freq": "High cutoff frequency for mel bins (if <= 0, offset from Nyquist)",
    "vtln_low": "Low inflection point in piecewise linear VTLN warping function",
    "vtln_high": "High inflection point in piecewise linear VTLN warping function (if negative, "
    "offset from Nyquist)",
    "vtln_warp": "Vtln warp factor",
    "use_energy": "Use energy (not C0) in MFCC computation / add an energy column to fbank",
    "energy_floor": "Floor on energy (absolute, not relative) in MFCC computation",
    "raw_energy": "If true, compute energy before preemphasis and windowing",
    "htk_compat": "If true, put energy or C0 last and use a factor of sqrt(2) on C0",
    "num_ceps": "Number of cepstra in MFCC computation (including C0)",
    "cepstral_lifter": "Constant that controls scaling of MFCCs",
    "use_log_fbank": "If true, produce log-filterbank, else produce linear",
    "use_power": "If true, use power, else use magnitude",
    "vad_energy_threshold": "Constant term in energy threshold for VAD (also see --vad-energy-mean-scale)",
    "vad_energy_mean_scale": "If this is set to s, to get the actual threshold we let m be the mean "
    "log-energy of the file, and use s*m + vad-energy-threshold",
    "vad_frames_context": "Number of frames of context on each side of central frame, in window "
    "for which energy is monitored",
    "vad_proportion_threshold": "Parameter controlling the proportion of frames within the window "
    "that need to have more energy than the threshold",
    "cmn_window": "Window in frames for running average CMN computation",
    "min_cmn_window": "Minimum CMN window used at start of decoding (adds latency only at start); "
    "only applicable if center == false, ignored if center==true",
    "center": "If true, use a window centered on the current frame (to the extent possible, "
    "modulo end effects); if false, window is to the left",
    "norm_vars": "If true, normalize variance to one",
}


def _opts_of(cls) -> list[Opt]:
    defaults = cls()
    return [
        Opt(f.name.replace("_", "-"), getattr(defaults, f.name), _HELP.get(f.name, f.name))
        for f in dataclasses.fields(cls)
    ]


def _build(cls, opts):
    values = {f.name: getattr(opts, f.name) for f in dataclasses.fields(cls)}
    built = cls(**values)
    built.check()
    return built


# Options of `stream.extract_features`, for the MFCC/fbank commands and make-features.
_BATCH_OPTS = [
    Opt("batch-size", 16, "Utterances computed together in one batch (xvjax)"),
    Opt("seed", 0, "Seed of the dither noise (xvjax; Kaldi's dither is not reproducible)"),
    Opt("fft-impl", "kaldi", "kaldi: replay Kaldi's float32 FFT in a compiled host kernel "
        "(Kaldi's numbers, ~1e-4; the fastest on CPU); xla: jnp.fft (stays on accelerators, "
        "differs by float rounding); auto: kaldi on CPU, xla on accelerators (xvjax)"),
]  # fmt: skip

_EXTRACT_OPTS = [
    Opt("subtract-mean", False, "Subtract mean of each feature file [CMS]; not recommended"),
    Opt("channel", -1, "Channel to extract (-1 -> expect mono, 0 -> left, 1 -> right)"),
    Opt("min-duration", 0.0, "Minimum duration of segments to process (in seconds)"),
    *_BATCH_OPTS,
    Opt("compress", False, "If true, write compressed matrices (xvjax extension; Kaldi pipes "
        "through copy-feats --compress=true)"),
    Opt("compression-method", 2, "Compression method used with --compress=true (Kaldi's enum 1..7)"),
]  # fmt: skip


def _iter_wav_table(rspec: str, channel: int = -1):
    """Yields (key, samples, rate, error) from a wav rspecifier (`scp:wav.scp`, `scp,p:...`).

    Unreadable audio gives `error` (one line) instead of aborting the run.
    """
    spec = tables.parse_rspecifier(rspec)
    if spec.type != "scp":
        raise XvjaxError(
            f"'{rspec}': only scp: wav tables are supported (wav.scp entries may be paths, "
            "'cmd |' pipes or ark:offset)"
        )
    for key, rx in tables.read_scp(spec.filename):
        try:
            samples, rate = audio.read_wav_entry(rx, channel)
        except XvjaxError as e:
            yield key, None, 0, str(e)
            continue
        yield key, samples, rate, None


def _compute_feats(opts, wav_rspec: str, feats_wspec: str, cls) -> int:
    from xvjax.features.stream import extract_features

    fopts = _build(cls, opts)
    num_utts = num_success = 0
    skipped = []

    def source():
        for key, samples, rate, error in _iter_wav_table(wav_rspec, opts.channel):
            if error is None and len(samples) / float(rate) < opts.min_duration:
                error = (
                    f"File: {key} is too short ({len(samples) / rate:g} sec): producing no output."
                )
            if error is not None:
                skipped.append((key, error))
                continue
            yield key, samples, rate

    method = opts.compression_method if opts.compress else None
    with tables.Writer(feats_wspec, compression_method=method) as writer:
        results = extract_features(
            source(), fopts, batch_size=opts.batch_size, seed=opts.seed, fft_impl=opts.fft_impl
        )
        for result in results:
            while skipped:
                key, error = skipped.pop(0)
                num_utts += 1
                log.warning("Failed to compute features for utterance %s: %s", key, error)
            num_utts += 1
            if result.error is not None:
                log.warning(
                    "Failed to compute features for utterance %s: %s", result.key, result.error
                )
                continue
            feats = result.feats
            if opts.subtract_mean:
                feats = (feats - feats.mean(axis=0, dtype=np.float64)).astype(np.float32)
            writer[result.key] = feats
            num_success += 1
            if num_utts % 10 == 0:
                log.info("Processed %d utterances", num_utts)
        for key, error in skipped:
            num_utts += 1
            log.warning("Failed to compute features for utterance %s: %s", key, error)
    log.info(" Done %d out of %d utterances.", num_success, num_utts)
    return 0 if num_success else 1


@command(
    "compute-mfcc-feats",
    "Create MFCC feature files (Kaldi's numbers to float rounding, batched in JAX).",
    usage="Usage: xvjax compute-mfcc-feats [options...] <wav-rspecifier> <feats-wspecifier>\n"
    " e.g.: xvjax compute-mfcc-feats --config=conf/mfcc.conf scp:data/train/wav.scp "
    "ark,scp:mfcc/raw_mfcc.ark,mfcc/raw_mfcc.scp",
    opts=_opts_of(MfccOptions) + _EXTRACT_OPTS,
    nargs=(2, 2),
)
def compute_mfcc_feats(opts, wav_rspec, feats_wspec):
    return _compute_feats(opts, wav_rspec, feats_wspec, MfccOptions)


@command(
    "compute-fbank-feats",
    "Create log-mel filterbank feature files (Kaldi's numbers to float rounding, batched in JAX).",
    usage="Usage: xvjax compute-fbank-feats [options...] <wav-rspecifier> <feats-wspecifier>\n"
    " e.g.: xvjax compute-fbank-feats --num-mel-bins=80 scp:wav.scp ark:fbank.ark",
    opts=_opts_of(FbankOptions) + _EXTRACT_OPTS,
    nargs=(2, 2),
)
def compute_fbank_feats(opts, wav_rspec, feats_wspec):
    return _compute_feats(opts, wav_rspec, feats_wspec, FbankOptions)


@command(
    "compute-vad",
    "Energy-based voice activity detection; outputs a 0/1 vector per utterance.",
    usage="Usage: xvjax compute-vad [options] <feats-rspecifier> <vad-wspecifier>\n"
    " e.g.: xvjax compute-vad --config=conf/vad.conf scp:feats.scp ark:vad.ark",
    opts=_opts_of(VadOptions),
    nargs=(2, 2),
)
def compute_vad_cmd(opts, feats_rspec, vad_wspec):
    vopts = _build(VadOptions, opts)
    num_done = num_err = num_unvoiced = 0
    tot_length = tot_decision = 0.0
    with tables.Writer(vad_wspec) as writer:
        for utt, feats in tables.read(feats_rspec):
            if feats.ndim != 2 or feats.size == 0:
                log.warning("Empty feature matrix for utterance %s", utt)
                num_err += 1
                continue
            voiced = compute_vad_numpy(feats, vopts)
            total = float(voiced.sum())
            if total == 0.0:
                log.warning("No frames were judged voiced for utterance %s", utt)
                num_unvoiced += 1
            else:
                num_done += 1
            tot_decision += total
            tot_length += len(voiced)
            writer[utt] = voiced
    log.info(
        "Applied energy based voice activity detection; processed %d utterances successfully; "
        "%d had empty features, and %d were completely unvoiced.",
        num_done, num_err, num_unvoiced,
    )  # fmt: skip
    if tot_length:
        log.info(
            "Proportion of voiced frames was %g over %d frames.",
            tot_decision / tot_length, int(tot_length),
        )  # fmt: skip
    return 0 if num_done else 1


@command(
    "apply-cmvn-sliding",
    "Apply sliding-window cepstral mean (and optionally variance) normalization per utterance.",
    usage="Usage: xvjax apply-cmvn-sliding [options] <feats-rspecifier> <feats-wspecifier>\n"
    " e.g.: xvjax apply-cmvn-sliding --norm-vars=false --center=true --cmn-window=300 "
    "scp:feats.scp ark:cmn.ark",
    opts=_opts_of(CmnOptions),
    nargs=(2, 2),
)
def apply_cmvn_sliding(opts, feats_rspec, feats_wspec):
    copts = _build(CmnOptions, opts)
    num_done = num_err = 0
    with tables.Writer(feats_wspec) as writer:
        for utt, feats in tables.read(feats_rspec):
            if feats.ndim != 2 or feats.size == 0:
                log.warning("Empty feature matrix for utterance %s", utt)
                num_err += 1
                continue
            writer[utt] = sliding_cmn_numpy(feats, copts)
            num_done += 1
    kind = "mean and variance" if copts.norm_vars else "mean"
    log.info(
        "Applied sliding-window cepstral %s normalization to %d utterances, %d had errors.",
        kind, num_done, num_err,
    )  # fmt: skip
    return 0 if num_done else 1


@command(
    "select-voiced-frames",
    "Select a subset of frames of the input files, based on the output of compute-vad.",
    usage="Usage: xvjax select-voiced-frames [options] <feats-rspecifier> <vad-rspecifier> "
    "<feats-wspecifier>\n e.g.: xvjax select-voiced-frames scp:feats.scp scp:vad.scp ark:-",
    nargs=(3, 3),
)
def select_voiced_frames_cmd(opts, feats_rspec, vad_rspec, feats_wspec):
    num_done = num_err = 0
    vad = tables.RandomAccess(vad_rspec)
    with tables.Writer(feats_wspec) as writer:
        for utt, feats in tables.read(feats_rspec):
            if feats.ndim != 2 or feats.size == 0:
                log.warning("Empty feature matrix for utterance %s", utt)
                num_err += 1
                continue
            if utt not in vad:
                log.warning("No VAD input found for utterance %s", utt)
                num_err += 1
                continue
            voiced = np.asarray(vad[utt])
            if len(voiced) != feats.shape[0]:
                log.warning(
                    "Mismatch in number for frames %d for features and VAD %d, for utterance %s",
                    feats.shape[0], len(voiced), utt,
                )  # fmt: skip
                num_err += 1
                continue
            keep = voiced != 0.0
            if not keep.any():
                log.warning("No features were judged as voiced for utterance %s", utt)
                num_err += 1
                continue
            writer[utt] = np.ascontiguousarray(feats[keep])
            num_done += 1
    log.info(
        "Done selecting voiced frames; processed %d utterances, %d had errors.", num_done, num_err
    )
    return 0 if num_done else 1


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
        *_BATCH_OPTS,
        Opt("nj", 1, "Ignored (accepted for make_mfcc.sh compatibility)"),
        Opt("progress", True, "Show a progress bar"),
    ],
    nargs=(1, 3),
)
def make_features(opts, data_dir, log_dir=None, mfcc_dir=None):
    from xvjax.features import datadir_jobs

    if not os.path.exists(opts.mfcc_config):
        raise XvjaxError(f"MFCC config {opts.mfcc_config} not found (--mfcc-config)")
    if opts.vad_config and not os.path.exists(opts.vad_config):
        raise XvjaxError(f"VAD config {opts.vad_config} not found (--vad-config)")
    mfcc_opts = MfccOptions.from_config_file(opts.mfcc_config)
    vad_opts = VadOptions.from_config_file(opts.vad_config) if opts.vad_config else None
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    datadir_jobs.make_features(
        data_dir, mfcc_opts, vad_opts, archive_dir=mfcc_dir,
        compression_method=opts.compression_method if opts.compress else None,
        write_utt2num_frames=opts.write_utt2num_frames, batch_size=opts.batch_size,
        seed=opts.seed, fft_impl=opts.fft_impl, progress=opts.progress,
    )  # fmt: skip
    return 0


def _numbers(text: str, name: str) -> tuple[float, ...]:
    """A colon-separated option value (`--fg-snrs=15:10:5:0`) as numbers."""
    try:
        values = tuple(float(v) for v in text.replace(",", ":").split(":") if v.strip())
    except ValueError:
        raise XvjaxError(f"--{name}: expected colon-separated numbers, got '{text}'") from None
    if not values:
        raise XvjaxError(f"--{name}: empty list")
    return values


def _colon_list(values) -> str:
    return ":".join(f"{v:g}" for v in values)


_AUGMENT = AugmentDataDirOptions()


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
        Opt(
            "rir-lists",
            ",".join(_AUGMENT.rir_lists),
            "Comma-separated RIRS_NOISES rir_list files (or data dirs of RIRs)",
        ),
        Opt(
            "fg-noise-dir",
            _AUGMENT.fg_noise_dir,
            "Foreground noise source (MUSAN noise, wav folder or data dir)",
        ),
        Opt(
            "bg-noise-dir",
            _AUGMENT.bg_noise_dir,
            "Background noise source (MUSAN music/speech, ... )",
        ),
        Opt("fg-snrs", _colon_list(_AUGMENT.fg_snrs), "Colon-separated foreground SNRs (dB)"),
        Opt("bg-snrs", _colon_list(_AUGMENT.bg_snrs), "Colon-separated background SNRs (dB)"),
        Opt(
            "num-bg-noises",
            _colon_list(_AUGMENT.num_bg_noises),
            "Colon-separated choices of the number of background noises",
        ),
        Opt("fg-interval", _AUGMENT.fg_interval, "Seconds between foreground noises"),
        Opt("utt-suffix", _AUGMENT.utt_suffix, "Suffix added to utterance ids (utt-suffix)"),
        Opt("utt-prefix", _AUGMENT.utt_prefix, "Prefix added to utterance ids (prefix-utt)"),
        Opt("modify-spk-id", _AUGMENT.modify_spk_id, "Also add the prefix/suffix to speaker ids"),
        Opt("random-seed", _AUGMENT.random_seed, "Seed (same seed -> identical output)"),
        Opt(
            "max-source-seconds",
            _AUGMENT.max_source_seconds,
            "Keep the first seconds of each noise file (memory cap; background noises only use "
            "the first utterance-length, so exact when >= the longest utterance; 0: no cap)",
        ),
        Opt("progress", True, "Show a progress bar"),
    ],
    nargs=(2, 2),
)
def augment_data_dir(opts, in_dir, out_dir):
    from xvjax.features import datadir_jobs

    aug_opts = AugmentDataDirOptions(
        rir_lists=tuple(opts.rir_lists.split(",")) if opts.rir_lists else (),
        fg_noise_dir=opts.fg_noise_dir,
        bg_noise_dir=opts.bg_noise_dir,
        fg_snrs=_numbers(opts.fg_snrs, "fg-snrs"),
        bg_snrs=_numbers(opts.bg_snrs, "bg-snrs"),
        num_bg_noises=tuple(int(c) for c in _numbers(opts.num_bg_noises, "num-bg-noises")),
        fg_interval=opts.fg_interval,
        utt_suffix=opts.utt_suffix,
        utt_prefix=opts.utt_prefix,
        modify_spk_id=opts.modify_spk_id,
        random_seed=opts.random_seed,
        max_source_seconds=opts.max_source_seconds,
    )
    datadir_jobs.augment_data_dir(in_dir, out_dir, aug_opts, progress=opts.progress)
    return 0
