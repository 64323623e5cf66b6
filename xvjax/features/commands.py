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
from contextlib import nullcontext

import numpy as np

from xvjax.cli import CLUSTER_OPTS, Opt, command, join_cluster_of
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
    "allow_downsample": "If true, allow the input waveform to have a higher frequency than the "
    "specified --sample-frequency (and we'll downsample)",
    "allow_upsample": "If true, allow the input waveform to have a lower frequency than the "
    "specified --sample-frequency (and we'll upsample)",
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
    Opt("batch-size", 16, "Frames computed together, in units of 1024 (~10 s of audio); one "
        "compiled shape serves every utterance length (xvjax)"),
    Opt("seed", 0, "Seed of the dither noise (xvjax; Kaldi's dither is not reproducible)"),
    Opt("fft-impl", "kaldi", "kaldi: replay Kaldi's float32 FFT in a compiled host kernel "
        "(Kaldi's numbers, ~1e-4); xla: jnp.fft (differs by float rounding; the fastest, on CPU "
        "too, and stays on accelerators); auto: the faster, xla (xvjax)"),
]  # fmt: skip

_EXTRACT_OPTS = [
    Opt("subtract-mean", False, "Subtract mean of each feature file [CMS]; not recommended"),
    Opt("channel", -1, "Channel to extract (-1 -> expect mono, 0 -> left, 1 -> right)"),
    Opt("min-duration", 0.0, "Minimum duration of segments to process (in seconds)"),
    *_BATCH_OPTS,
    Opt("compress", False, "If true, write compressed matrices (xvjax extension; Kaldi pipes "
        "through copy-feats --compress=true)"),
    Opt("compression-method", 2, "Compression method used with --compress=true (Kaldi's enum 1..7)"),
    Opt("output-format", "kaldi", "Format of the output files [kaldi, htk]"),
    Opt("vtln-map", "", "Map from utterance or speaker-id to vtln warp factor (rspecifier)"),
    Opt("utt2spk", "", "Utterance to speaker-id map rspecifier (if doing VTLN and you have warps "
        "per speaker)"),
    Opt("write-utt2dur", "", "Wspecifier to write duration of each utterance in seconds, e.g. "
        "'ark,t:utt2dur'"),
]  # fmt: skip


def _unusable(utt: str, feats: np.ndarray) -> bool:
    """Kaldi's per-utterance check of input features (empty), and xvjax's (NaN or infinite
    values, which would pass silently into every frame of the output): warns and returns True."""
    if feats.ndim != 2 or feats.size == 0:
        log.warning("Empty feature matrix for utterance %s", utt)
        return True
    if not np.isfinite(feats).all():
        bad = int(np.count_nonzero(~np.isfinite(feats).all(axis=1)))
        log.warning(
            "Features of utterance %s have NaN or infinite values (%d of %d frames); skipping it",
            utt, bad, feats.shape[0],
        )  # fmt: skip
        return True
    return False


def _iter_wav_table(rspec: str, channel: int = -1):
    """Yields (key, samples, rate, error) from a wav rspecifier (`scp:wav.scp`, `scp,p:...`, or
    a wave archive such as `ark:-` from `extract-segments ... ark:- |`).

    Unreadable audio gives `error` (one line) instead of aborting the run.
    """
    spec = tables.parse_rspecifier(rspec)
    if spec.type != "scp":
        yield from _iter_wave_archive(rspec, channel)
        return
    for key, rx in tables.read_scp(spec.filename):
        try:
            samples, rate = audio.read_wav_entry(rx, channel)
        except XvjaxError as e:
            yield key, None, 0, str(e)
            continue
        yield key, samples, rate, None


def _iter_wave_archive(rspec: str, channel: int):
    """(key, samples, rate, error) of a wave archive (Kaldi's WaveHolder tables)."""
    for key, wave in tables.read(rspec, kind=audio.WAVE_CODEC):
        num = wave.data.shape[0]
        if channel == -1 and num != 1:
            yield key, None, 0, f"audio has {num} channels; choose one (--channel)"
        elif channel >= num:
            yield key, None, 0, f"audio has {num} channels, no channel {channel}"
        else:
            yield key, wave.data[max(channel, 0)], wave.rate, None


def _compute_feats(opts, wav_rspec: str, feats_wspec: str, cls) -> int:
    from xvjax.features.stream import extract_features

    fopts = _build(cls, opts)
    num_utts = num_success = 0
    skipped = []
    warps, durations = _vtln_warps(opts), {}

    def source():
        for key, samples, rate, error in _iter_wav_table(wav_rspec, opts.channel):
            if error is None and len(samples) / float(rate) < opts.min_duration:
                error = (
                    f"File: {key} is too short ({len(samples) / rate:g} sec): producing no output."
                )
            if error is None and warps is not None and warps(key) is None:
                error = f"No vtln-map entry for utterance-id (or speaker-id) {key}"
            if error is not None:
                skipped.append((key, error))
                continue
            durations[key] = np.float32(len(samples)) / np.float32(rate)
            yield key, samples, rate

    method = opts.compression_method if opts.compress else None
    dur_writer = tables.Writer(opts.write_utt2dur) if opts.write_utt2dur else nullcontext()
    with (
        _feature_writer(feats_wspec, method, opts.output_format, fopts) as writer,
        dur_writer as utt2dur,
    ):
        results = extract_features(
            source(), fopts, batch_size=opts.batch_size, seed=opts.seed, fft_impl=opts.fft_impl,
            warp_of=warps,
        )  # fmt: skip
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
            if utt2dur is not None:
                utt2dur[result.key] = float(durations.pop(result.key))
            num_success += 1
            if num_utts % 10 == 0:
                log.info("Processed %d utterances", num_utts)
        for key, error in skipped:
            num_utts += 1
            log.warning("Failed to compute features for utterance %s: %s", key, error)
    log.info(" Done %d out of %d utterances.", num_success, num_utts)
    return 0 if num_success else 1


def _vtln_warps(opts):
    """--vtln-map (per utterance, or per speaker through --utt2spk): utt -> warp or None."""
    if opts.utt2spk and not opts.vtln_map:
        raise XvjaxError("the --utt2spk option is only needed if the --vtln-map option is used")
    if not opts.vtln_map:
        return None
    warps = tables.read_dict(opts.vtln_map, kind="float")
    utt2spk = tables.read_text_table(opts.utt2spk) if opts.utt2spk else None
    if utt2spk is None:
        return warps.get
    return lambda utt: warps.get(utt2spk.get(utt, ""))


def _feature_writer(wspec: str, method: int | None, output_format: str, fopts):
    """Kaldi matrices, or HTK feature files (--output-format=htk: 10 ms period, MFCC or FBANK
    kind with _E (energy) or _0 (C0), as Kaldi writes them)."""
    if output_format == "kaldi":
        return tables.Writer(wspec, compression_method=method)
    if output_format != "htk":
        raise XvjaxError(f"invalid --output-format={output_format} (kaldi or htk)")
    if method is not None:
        raise XvjaxError("--compress=true cannot be used with --output-format=htk")
    from xvjax.kaldi.htk import HtkCodec

    base = 0o6 if isinstance(fopts, MfccOptions) else 0o7
    return tables.Writer(wspec, codec=HtkCodec(base | (0o100 if fopts.use_energy else 0o20000)))


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
            if _unusable(utt, feats):
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
        "%d had empty (or non-finite) features, and %d were completely unvoiced.",
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
            if _unusable(utt, feats):
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
    opts=[
        Opt(
            "select-unvoiced-frames",
            False,
            "Reverses the operation of this program and "
            "selects unvoiced frames instead (the option of Kaldi's diarization branches)",
        ),
    ],  # fmt: skip
    nargs=(3, 3),
)
def select_voiced_frames_cmd(opts, feats_rspec, vad_rspec, feats_wspec):
    num_done = num_err = 0
    vad = tables.RandomAccess(vad_rspec)
    with tables.Writer(feats_wspec) as writer:
        for utt, feats in tables.read(feats_rspec):
            if _unusable(utt, feats):
                num_err += 1
                continue
            if utt not in vad:
                log.warning("No VAD input found for utterance %s", utt)
                num_err += 1
                continue
            voiced = np.asarray(vad[utt])
            if not np.isfinite(voiced).all():
                log.warning("VAD decisions of utterance %s have NaN or infinite values", utt)
                num_err += 1
                continue
            if len(voiced) != feats.shape[0]:
                log.warning(
                    "Mismatch in number for frames %d for features and VAD %d, for utterance %s",
                    feats.shape[0], len(voiced), utt,
                )  # fmt: skip
                num_err += 1
                continue
            keep = (voiced != 0.0) != opts.select_unvoiced_frames
            if not keep.any():
                kind = "unvoiced" if opts.select_unvoiced_frames else "voiced"
                log.warning("No features were judged as %s for utterance %s", kind, utt)
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
    " e.g.: xvjax make-features --mfcc-config=conf/mfcc.conf --vad-config=conf/vad.conf data/train\n"
    " Several hosts (--coordinator, or a Slurm step / TPU slice): each process computes a share of\n"
    " the utterances balanced by duration into raw_mfcc_<name>.N.ark (N = process index + 1, as\n"
    " make_mfcc.sh's jobs); process 0 then writes the data dir's tables for all of them.",
    opts=[
        Opt("mfcc-config", "conf/mfcc.conf", "MFCC config file (Kaldi options)"),
        Opt("vad-config", "conf/vad.conf", "VAD config file; empty: no VAD"),
        Opt("compress", True, "Compress the MFCC archive (copy-feats --compress)"),
        Opt("compression-method", 1, "Kaldi compression method (1 = automatic)"),
        Opt("write-utt2num-frames", True, "Write <data-dir>/utt2num_frames"),
        *_BATCH_OPTS,
        Opt("nj", 1, "Ignored (accepted for make_mfcc.sh compatibility; for several processes "
            "see --coordinator)"),
        Opt("progress", True, "Show a progress bar"),
        *CLUSTER_OPTS,
    ],
    nargs=(1, 3),
)  # fmt: skip
def make_features(opts, data_dir, log_dir=None, mfcc_dir=None):
    from xvjax.features import datadir_jobs

    join_cluster_of(opts)

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


def _comma_floats(text: str, name: str) -> list[float]:
    """A comma-separated option value (`--snrs='20.0,15.0'`), as Kaldi's ConvertStringToReal."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise XvjaxError(f"--{name}: expected comma-separated numbers, got '{text}'") from None


@command(
    "wav-reverberate",
    "Corrupt a wave file with a room impulse response and additive noises (Kaldi's algorithm)",
    usage="""
    Corrupts the wave files supplied via input pipe with the specified room-impulse response
    (rir_matrix) and additive noise distortions (specified by corresponding files).
    Usage: xvjax wav-reverberate [options...] <wav-in-rxfilename> <wav-out-wxfilename>
     e.g.: xvjax wav-reverberate --duration=20.25 --impulse-response=rir.wav \\
             --additive-signals='noise1.wav,noise2.wav' --snrs='20.0,15.0' \\
             --start-times='0,17.8' input.wav output.wav
    Inputs may be files, 'cmd |' pipes (as the wav.scp lines augment_data_dir.py and
    reverberate_data_dir.py write) or '-'. SNRs are relative to the early reverberation energy
    when there is an impulse response; output samples are truncated to 16 bits.""",
    opts=[
        Opt("multi-channel-output", False, "Specifies if the output should be multi-channel or "
            "not"),
        Opt("shift-output", True, "If true, the reverberated waveform will be shifted by the "
            "amount of the peak position of the RIR and the length of the output waveform will be "
            "equal to the input waveform. If false, the length of the output waveform will be "
            "equal to (original input length + rir length - 1)"),
        Opt("input-wave-channel", 0, "Specifies the channel to be used from input as only a "
            "single channel will be used to generate reverberated output"),
        Opt("rir-channel", 0, "Specifies the channel of the room impulse response, it will only "
            "be used when multi-channel-output is false"),
        Opt("noise-channel", 0, "Specifies the channel of the noise file, it will only be used "
            "when multi-channel-output is false"),
        Opt("impulse-response", "", "File with the impulse response for reverberating the input "
            "wave. It can be either a file in wav format or a piped command"),
        Opt("additive-signals", "", "A comma separated list of additive signals (filenames or "
            "piped commands). Requires --snrs and --start-times"),
        Opt("snrs", "", "A comma separated list of SNRs (dB); the additive signals are scaled "
            "according to these SNRs"),
        Opt("start-times", "", "A comma separated list of start times (seconds) referring to the "
            "input signal; additive signals starting past its end are ignored"),
        Opt("normalize-output", True, "If true, then after reverberating and possibly adding "
            "noise, scale so that the signal energy is the same as the original input signal"),
        Opt("duration", 0.0, "If nonzero, the duration (secs) of the output signal: the first "
            "t secs if shorter than the input, else the signal repeated to fill it"),
        Opt("volume", 0.0, "If nonzero, a scaling factor on the signal that is applied after "
            "reverberating and possibly adding noise (implies --normalize-output=false)"),
    ],
    nargs=(2, 2),
)  # fmt: skip
def wav_reverberate(opts, wav_in: str, wav_out: str):
    from xvjax.features.reverberate import output_length, reverberate_channel
    from xvjax.kaldi.audio import WAVE_CODEC, Wave

    def read(rx: str, what: str) -> Wave:
        try:
            return tables.read_object(rx, WAVE_CODEC)
        except XvjaxError as e:
            raise XvjaxError(f"{what} '{rx}': {e}") from None

    wave = read(wav_in, "input")
    if opts.input_wave_channel >= wave.data.shape[0]:
        raise XvjaxError(f"input has {wave.data.shape[0]} channels, no --input-wave-channel="
                         f"{opts.input_wave_channel}")  # fmt: skip
    rir = read(opts.impulse_response, "impulse response") if opts.impulse_response else None
    noises = []
    if opts.additive_signals:
        if not opts.snrs or not opts.start_times:
            raise XvjaxError(
                "--additive-signals option requires --snrs and --start-times to be set"
            )
        for rx in opts.additive_signals.split(","):
            noise = read(rx, "additive signal")
            if noise.rate != wave.rate:
                raise XvjaxError(f"additive signal '{rx}' has sample rate {noise.rate:g}, the "
                                 f"input {wave.rate:g}")  # fmt: skip
            noises.append(noise)
    snrs = _comma_floats(opts.snrs, "snrs") if opts.snrs else []
    starts = _comma_floats(opts.start_times, "start-times") if opts.start_times else []
    num_channels = 1
    if opts.multi_channel_output:
        if rir is None:
            raise XvjaxError("--multi-channel-output=true needs an --impulse-response")
        num_channels = rir.data.shape[0]
        if any(n.data.shape[0] != num_channels for n in noises):
            raise XvjaxError("with --multi-channel-output every additive signal needs as many "
                             "channels as the impulse response")  # fmt: skip
    elif rir is not None and opts.rir_channel >= rir.data.shape[0]:
        raise XvjaxError(f"the impulse response has no channel {opts.rir_channel}")
    elif any(opts.noise_channel >= n.data.shape[0] for n in noises):
        raise XvjaxError(f"an additive signal has no channel {opts.noise_channel}")
    num_out = output_length(wave.data.shape[1], wave.rate, opts.duration, opts.shift_output,
                            0 if rir is None else rir.data.shape[1])  # fmt: skip
    channels = []
    for c in range(num_channels):
        rir_c = opts.rir_channel if not opts.multi_channel_output else c
        noise_c = opts.noise_channel if not opts.multi_channel_output else c
        channels.append(reverberate_channel(
            wave.data[opts.input_wave_channel], wave.rate,
            rir=None if rir is None else rir.data[rir_c],
            rir_rate=None if rir is None else rir.rate,
            noises=[n.data[noise_c] for n in noises], snrs=snrs, start_times=starts,
            shift_output=opts.shift_output, normalize_output=opts.normalize_output,
            volume=opts.volume, num_output=num_out,
        ))  # fmt: skip
    tables.write_object(wav_out, Wave(np.stack(channels), wave.rate), codec=WAVE_CODEC)
    return 0


@command(
    "compute-cmvn-stats",
    "Compute cepstral mean and variance normalization statistics (per utterance, speaker, or global)",
    usage="""
    Compute cepstral mean and variance normalization statistics. If wspecifier provided:
    per-utterance by default, or per-speaker if spk2utt option provided; if wxfilename: global.
    Usage: xvjax compute-cmvn-stats [options] <feats-rspecifier> (<stats-wspecifier>|<stats-wxfilename>)
     e.g.: xvjax compute-cmvn-stats --spk2utt=ark:data/train/spk2utt scp:data/train/feats.scp \\
             ark,scp:cmvn.ark,data/train/cmvn.scp
    Statistics are (2, dim+1) double matrices: sums, count (last column of row 0), sums of
    squares.""",
    opts=[
        Opt("spk2utt", "", "rspecifier for speaker to utterance-list map"),
        Opt("binary", True, "write in binary mode (applies only to global CMN/CVN)"),
        Opt("weights", "", "rspecifier for a vector of floats for each utterance, that's a "
            "per-frame weight"),
    ],
    nargs=(2, 2),
)  # fmt: skip
def compute_cmvn_stats(opts, feats_rspec: str, stats_out: str):
    from xvjax.features.cmvn_stats import acc_cmvn_stats, init_cmvn_stats

    weights = tables.RandomAccess(opts.weights, kind="vector") if opts.weights else None
    num_done = num_err = 0

    def accumulate(utt, feats, stats) -> bool:
        w = None
        if weights is not None:
            if utt not in weights:
                log.warning("No weights available for utterance %s", utt)
                return False
            w = weights[utt]
            if len(w) != feats.shape[0]:
                log.warning("Weights for utterance %s have wrong dimension %d vs. %d", utt,
                            len(w), feats.shape[0])  # fmt: skip
                return False
        acc_cmvn_stats(stats, feats, w)
        return True

    if tables.is_wspecifier(stats_out):
        with tables.Writer(stats_out) as writer:
            if opts.spk2utt:
                feats = tables.RandomAccess(feats_rspec, kind="matrix")
                for spk, utts in tables.read_text_lists(opts.spk2utt).items():
                    stats = None
                    for utt in utts:
                        if utt not in feats:
                            log.warning("Did not find features for utterance %s", utt)
                            num_err += 1
                            continue
                        mat = feats[utt]
                        stats = init_cmvn_stats(mat.shape[1]) if stats is None else stats
                        ok = accumulate(utt, mat, stats)
                        num_done, num_err = num_done + ok, num_err + (not ok)
                    if stats is None:
                        log.warning("No stats accumulated for speaker %s", spk)
                    else:
                        writer[spk] = stats
            else:
                for utt, mat in tables.read(feats_rspec, kind="matrix"):
                    stats = init_cmvn_stats(mat.shape[1])
                    if not accumulate(utt, mat, stats):
                        num_err += 1
                        continue
                    writer[utt] = stats
                    num_done += 1
    else:
        if opts.spk2utt:
            raise XvjaxError("--spk2utt option not compatible with wxfilename as output "
                             "(did you forget ark:?)")  # fmt: skip
        stats = None
        for utt, mat in tables.read(feats_rspec, kind="matrix"):
            stats = init_cmvn_stats(mat.shape[1]) if stats is None else stats
            ok = accumulate(utt, mat, stats)
            num_done, num_err = num_done + ok, num_err + (not ok)
        if stats is None:
            raise XvjaxError(f"no features in {feats_rspec}")
        tables.write_object(stats_out, stats.astype(np.float32), opts.binary)
        log.info("Wrote global CMVN stats to %s", stats_out)
    log.info("Done accumulating CMVN stats for %d utterances; %d had errors.", num_done, num_err)
    return 0 if num_done else 1


@command(
    "apply-cmvn",
    "Apply cepstral mean and (optionally) variance normalization (per utterance or speaker)",
    usage="""
    Apply cepstral mean and (optionally) variance normalization. Per-utterance by default, or
    per-speaker if utt2spk option provided.
    Usage: xvjax apply-cmvn [options] (<cmvn-stats-rspecifier>|<cmvn-stats-rxfilename>) <feats-rspecifier> <feats-wspecifier>
     e.g.: xvjax apply-cmvn --utt2spk=ark:data/train/utt2spk scp:data/train/cmvn.scp \\
             scp:data/train/feats.scp ark:-
    With --norm-means=false the features are copied (decoded if they were compressed).""",
    opts=[
        Opt("utt2spk", "", "rspecifier for utterance to speaker map"),
        Opt("norm-vars", False, "If true, normalize variances"),
        Opt("norm-means", True, "You can set this to false to turn off mean normalization"),
        Opt("skip-dims", "", "Dimensions for which to skip normalization: colon-separated list "
            "of integers, e.g. 13:14:15"),
        Opt("reverse", False, "If true, apply CMVN in a reverse sense, so as to transform "
            "zero-mean, unit-variance input into data with the given mean and variance"),
    ],
    nargs=(3, 3),
)  # fmt: skip
def apply_cmvn_cmd(opts, stats_in: str, feats_rspec: str, feats_wspec: str):
    from xvjax.features.cmvn_stats import apply_cmvn, fake_stats_for_dims

    if opts.norm_vars and not opts.norm_means:
        raise XvjaxError("you cannot normalize the variance but not the mean")
    try:
        skip = [int(d) for d in opts.skip_dims.split(":") if d != ""] if opts.skip_dims else []
    except ValueError:
        raise XvjaxError(f"bad --skip-dims={opts.skip_dims} (colon-separated integers)") from None
    num_done = num_err = 0
    if not opts.norm_means:
        with tables.Writer(feats_wspec) as writer:
            for utt, mat in tables.read(feats_rspec, kind="matrix"):
                writer[utt] = mat
                num_done += 1
        log.info("Copied %d utterances.", num_done)
        return 0 if num_done else 1
    if tables.is_rspecifier(stats_in):
        table = tables.RandomAccess(stats_in, kind="matrix", dtype=np.float64)
        utt2spk = tables.read_text_table(opts.utt2spk) if opts.utt2spk else None
        global_stats = None
    else:
        if opts.utt2spk:
            raise XvjaxError("--utt2spk option not compatible with rxfilename as input "
                             "(did you forget ark:?)")  # fmt: skip
        global_stats = tables.read_matrix(stats_in, dtype=np.float64)
    with tables.Writer(feats_wspec) as writer:
        for utt, mat in tables.read(feats_rspec, kind="matrix"):
            if global_stats is not None:
                stats = global_stats
            else:
                key = utt2spk.get(utt) if utt2spk is not None else utt
                if key is None or key not in table:
                    log.warning("No normalization statistics available for key %s, producing "
                                "no output for this utterance", utt)  # fmt: skip
                    num_err += 1
                    continue
                stats = table[key]
            if skip:
                stats = fake_stats_for_dims(stats, skip)
            try:
                writer[utt] = apply_cmvn(stats, mat, opts.norm_vars, opts.reverse)
            except XvjaxError as e:
                raise XvjaxError(f"utterance {utt}: {e}") from None
            num_done += 1
    what = "mean and variance" if opts.norm_vars else "mean"
    log.info("Applied cepstral %s normalization to %d utterances, errors on %d", what, num_done,
             num_err)  # fmt: skip
    return 0 if num_done else 1
