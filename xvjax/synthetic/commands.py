"""`xvjax make-demo-corpus`: write the built-in two-domain demo corpus."""

from __future__ import annotations

import logging

from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

# Every size/seed/rate field of CorpusConfig is an option; None means "the preset's value".
# (Listed here, not introspected, so `xvjax --help` does not import numpy/scipy.)
_CORPUS_FIELDS = (
    ("seed", int, "Random seed: the corpus bytes depend only on the options"),
    ("source-rate", int, "Sample rate of the source-domain wavs (16000, or 8000 downsampled)"),
    (
        "target-rate",
        int,
        "Sample rate of the telephone-band target wavs (8000, or 16000 upsampled)",
    ),
    ("min-dur", float, "Shortest utterance (seconds)"),
    ("max-dur", float, "Longest utterance (seconds)"),
    ("source-train-spk", int, "Speakers in source_train"),
    ("source-train-utts", int, "Utterances per source_train speaker"),
    ("source-eval-spk", int, "Speakers in source_eval_enroll/test"),
    ("target-train-spk", int, "Speakers in target_train (labelled)"),
    ("target-train-utts", int, "Utterances per target_train speaker"),
    ("target-adapt-spk", int, "Speakers behind the unlabelled target_adapt set"),
    ("target-adapt-utts", int, "Utterances per target_adapt speaker"),
    ("target-dev-spk", int, "Speakers in target_dev_enroll/test (the dev set)"),
    ("target-eval-spk", int, "Speakers in target_enroll/test"),
    ("enroll-utts", int, "Enrollment utterances per eval speaker"),
    ("test-utts", int, "Test utterances per eval speaker"),
    ("target-snr-min", float, "Lowest SNR (dB) of target-domain background noise"),
    ("target-snr-max", float, "Highest SNR (dB) of target-domain background noise"),
    ("target-noise-prob", float, "Probability a target utterance gets background noise"),
    ("target-reverb-prob", float, "Probability a target utterance is reverberated"),
    ("target-handset-db", float, "Std (dB) of the random handset EQ peaks"),
    ("target-variability", float, "Within-speaker variation of the target domain (source: 1)"),
    ("musan-noise", int, "Files in musan/noise"),
    ("musan-music", int, "Files in musan/music"),
    ("musan-speech", int, "Files in musan/speech"),
    ("musan-dur", float, "Length of each MUSAN file (seconds)"),
    ("rir-rooms", int, "Rooms per room size in RIRS_NOISES/simulated_rirs"),
    ("rirs-per-room", int, "RIRs per room"),
)


@command(
    "make-demo-corpus",
    "Write the built-in two-domain demo corpus (Kaldi data dirs, MUSAN and RIRS_NOISES layouts)",
    usage="""
    xvjax make-demo-corpus [options] <out-dir>
    Writes <out-dir>/data/{source_train,source_eval_enroll,source_eval_test,target_train,
    target_adapt,target_dev_enroll,target_dev_test,target_enroll,target_test} (trials in
    source_eval_test/, target_dev_test/ and target_test/),
    <out-dir>/musan, <out-dir>/RIRS_NOISES and <out-dir>/corpus.json. Source domain: 16 kHz clean
    synthetic speech; target domain: other speakers and voices, telephone band at 8 kHz with noise,
    reverberation and random handsets. Presets: tiny (CI), default (the demo), large.
     e.g.: xvjax make-demo-corpus --preset=tiny --num-jobs=2 exp/demo/corpus
    """,
    opts=[
        Opt("preset", "default", "Size preset: tiny, default or large"),
        Opt("num-jobs", 2, "Parallel worker processes (one speaker per task)"),
        Opt("force", False, "Regenerate even if <out-dir>/corpus.json matches the options"),
        *(
            Opt(name, None, f"{text} (default: the preset's)", type=kind)
            for name, kind, text in _CORPUS_FIELDS
        ),
    ],
    nargs=(1, 1),
    resumable=True,
)
def make_demo_corpus(opts, out_dir):
    from xvjax.synthetic import corpus

    overrides = {}
    for name, _, _ in _CORPUS_FIELDS:
        value = getattr(opts, name.replace("-", "_"))
        if value is not None:
            overrides[name.replace("-", "_")] = value
    cfg = corpus.preset(opts.preset, **overrides)
    if opts.num_jobs < 1:
        raise XvjaxError(f"--num-jobs must be at least 1, got {opts.num_jobs}")
    paths = corpus.make_corpus(
        out_dir, cfg, num_jobs=opts.num_jobs, preset_name=opts.preset, force=opts.force
    )
    changed = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "none"
    log.info(
        f"Corpus '{opts.preset}' (seed {cfg.seed}, overrides: {changed}) is in {out_dir}; "
        f"description: {paths['corpus_json']}"
    )
