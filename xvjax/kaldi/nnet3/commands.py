"""nnet3 model and egs commands: nnet3-copy, nnet3-init, nnet3-info, nnet3-copy-egs,
nnet3-merge-egs, nnet3-shuffle-egs, nnet3-subset-egs, nnet3-xvector-get-egs.

Heavy imports stay inside the functions so `xvjax --help` is fast.
"""

from __future__ import annotations

import logging

from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


def _read_text(path: str, what: str) -> str:
    from xvjax.kaldi import streams

    try:
        return streams.read_all(path).decode("utf-8")
    except UnicodeDecodeError:
        raise XvjaxError(f"{what} {path} is not UTF-8 text") from None


@command(
    "nnet3-copy",
    "Copy 'raw' nnet3 neural network, optionally editing it (like Kaldi's nnet3-copy)",
    usage="""
    Usage: xvjax nnet3-copy [options] <nnet-in> <nnet-out>
     e.g.: xvjax nnet3-copy --binary=false 0.raw text.raw
           xvjax nnet3-copy --nnet-config=resize.config final.raw 0.raw
           xvjax nnet3-copy --nnet-config=extract.config final.raw - | ...
           xvjax nnet3-copy --learning-rate=0.008 --scale=0.92 0.raw -
           xvjax nnet3-copy --prepare-for-test=true final.raw final_test.raw
    --nnet-config adds or replaces components and nodes as Kaldi's Nnet::ReadConfig does (new
    components initialised with Kaldi's defaults; random init with non-zero stddevs uses xvjax's
    own RNG (--srand), so it cannot equal Kaldi's numbers; zero stddevs give Kaldi's exact bytes).
    Orphan nodes/components are kept unless --edits=remove-orphans.""",
    opts=[
        Opt("binary", True, "Write output in binary mode"),
        Opt("nnet-config", "", "Config file of components/nodes to add or replace (as nnet3-init)"),
        Opt("learning-rate", -1.0, "If >= 0, set every updatable component's learning rate"),
        Opt("set-dropout-proportion", 0.0, "If > 0, set it in every DropoutComponent"),
        Opt("edits-config", "", "File of edit directives applied after --nnet-config"),
        Opt("edits", "", "Inline edits, ';'-separated, e.g. 'remove-orphans'"),
        Opt("srand", 0, "Seed for random initialisation of new components"),
        Opt("scale", 1.0, "The parameter matrices are scaled by the specified value"),
        Opt(
            "prepare-for-test",
            False,
            "If true, prepares the model for test time: test mode in "
            "dropout and batch-norm components, and CollapseModel() (BatchNorm folded into the "
            "next affine layer)",
        ),
        Opt(
            "batchnorm-test-mode",
            False,
            "Batch-norm components' test mode is set to this value "
            "(overridden by --prepare-for-test)",
        ),
        Opt(
            "kaldi-roundtrip",
            True,
            "Write statistics as Kaldi's nnet3-copy writes them (false: exactly as read)",
        ),
    ],
    nargs=(2, 2),
)
def nnet3_copy(opts, nnet_in: str, nnet_out: str):
    import numpy as np

    from xvjax.kaldi.nnet3 import Nnet
    from xvjax.kaldi.nnet3.collapse import collapse_model
    from xvjax.kaldi.nnet3.edits import (
        apply_edits,
        scale_nnet,
        set_batchnorm_test_mode,
        set_dropout_test_mode,
        set_learning_rate,
    )

    nnet = Nnet.read(nnet_in)
    if opts.nnet_config:
        nnet.apply_config(
            _read_text(opts.nnet_config, "nnet config"), rng=opts.srand, source=opts.nnet_config
        )
    if opts.learning_rate >= 0:
        set_learning_rate(nnet, opts.learning_rate)
    scale_nnet(nnet, opts.scale)
    if opts.set_dropout_proportion > 0:
        for comp in nnet.components.values():
            if comp.type == "DropoutComponent":
                comp.attrs["dropout_proportion"] = float(np.float32(opts.set_dropout_proportion))
    if opts.edits_config:
        apply_edits(nnet, _read_text(opts.edits_config, "edits config"), opts.edits_config)
    if opts.edits:
        apply_edits(nnet, opts.edits, "--edits")
    if opts.prepare_for_test:
        set_batchnorm_test_mode(nnet, True)
        set_dropout_test_mode(nnet, True)
        collapse_model(nnet)
    else:
        set_batchnorm_test_mode(nnet, opts.batchnorm_test_mode)
    nnet.write(nnet_out, binary=opts.binary, kaldi_roundtrip=opts.kaldi_roundtrip)
    log.info("Copied raw neural net from %s to %s", nnet_in, nnet_out)


@command(
    "nnet3-init",
    "Initialise an nnet3 network from a config file (like Kaldi's nnet3-init)",
    usage="""
    Usage: xvjax nnet3-init [options] [<existing-nnet-in>] <config-in> <raw-nnet-out>
     e.g.: xvjax nnet3-init --srand=3 configs/final.config 0.raw
    Random initial parameters come from xvjax's RNG (--srand), not Kaldi's, so they differ from
    Kaldi's numbers; the structure and every other value are Kaldi's.""",
    opts=[
        Opt("binary", True, "Write output in binary mode"),
        Opt("srand", 0, "Seed for the random initial parameters"),
    ],
    nargs=(2, 3),
)
def nnet3_init(opts, *args):
    from xvjax.kaldi.nnet3 import Nnet

    *existing, config, nnet_out = args
    nnet = Nnet.read(existing[0]) if existing else Nnet()
    nnet.apply_config(_read_text(config, "nnet config"), rng=opts.srand, source=config)
    nnet.write(nnet_out, binary=opts.binary)
    log.info("Initialized raw neural net and wrote it to %s", nnet_out)


@command(
    "nnet3-info",
    "Print some text information about 'raw' nnet3 neural network, to standard output",
    usage="""
    Usage: xvjax nnet3-info [options] <raw-nnet>
     e.g.: xvjax nnet3-info 0.raw
    Prints Kaldi's text: context, number of parameters, modulus, the config lines with dims and
    one summary line per component (parameter norms and percentiles, stored statistics).""",
    nargs=(1, 1),
)
def nnet3_info(opts, nnet_in: str):
    import sys

    from xvjax.kaldi.nnet3 import Nnet

    sys.stdout.write(Nnet.read(nnet_in).info())


@command(
    "nnet3-copy-egs",
    "Copy nnet3 training examples (NnetExample archives), binary or text",
    usage="""
    Usage: xvjax nnet3-copy-egs [options] <egs-rspecifier> <egs-wspecifier>
     e.g.: xvjax nnet3-copy-egs ark:egs.1.ark ark,t:egs.1.txt
           xvjax nnet3-copy-egs --keep-proportion=0.5 --srand=1 ark:egs.ark ark:-
    Compressed inputs are copied without decompressing (byte-identical to Kaldi in binary).""",
    opts=[
        Opt("keep-proportion", 1.0, "Fraction of examples to keep (random, --srand)"),
        Opt("srand", 0, "Seed for --keep-proportion"),
        Opt(
            "frame",
            "",
            "Select a single frame from each multi-frame example: a number 0, 1, "
            "etc. to select a frame with a given index, or 'random' to select a random frame",
        ),
        Opt("left-context", -1, "Can be used to truncate the feature left-context that we output"),
        Opt(
            "right-context", -1, "Can be used to truncate the feature right-context that we output"
        ),
        Opt(
            "frame-shift",
            0,
            "Shift the time values (except the ivector input), after any frame selection",
        ),
    ],
    nargs=(2, 2),
)
def nnet3_copy_egs(opts, rspec: str, wspec: str):
    import numpy as np

    from xvjax.kaldi import egs
    from xvjax.kaldi.egs_streams import select_from_example

    rng = np.random.default_rng(opts.srand)
    select = opts.frame or opts.left_context != -1 or opts.right_context != -1 or opts.frame_shift
    num_read = num_written = 0
    with egs.EgsWriter(wspec) as writer:
        for key, eg in egs.read_egs(rspec):
            num_read += 1
            if opts.keep_proportion < 1.0 and rng.random() >= opts.keep_proportion:
                continue
            if select:
                eg = select_from_example(eg, opts.frame, opts.left_context, opts.right_context,
                                         opts.frame_shift, rng)  # fmt: skip
                if eg is None:  # no output at --frame (Kaldi skips it)
                    continue
            writer.write(key, eg)
            num_written += 1
    log.info("Read %d neural-network training examples, wrote %d", num_read, num_written)


@command(
    "nnet3-merge-egs",
    "Merge nnet3 training examples into minibatches (one NnetExample per minibatch)",
    usage="""
    This copies nnet training examples from input to output, but while doing so it merges many
    NnetExample objects into one, forming a minibatch consisting of a single NnetExample.
    Usage: xvjax nnet3-merge-egs [options] <egs-rspecifier> <egs-wspecifier>
     e.g.: xvjax nnet3-merge-egs --minibatch-size=64 ark:egs.1.ark ark:-
    --minibatch-size: '256', '128,256', '64:128' (a range) or per example size '128=64/256=32'.
    Keys are merged-<i>-<size>; examples left at the end that no allowed size takes are
    discarded (logged).""",
    opts=[
        Opt("minibatch-size", "256", "Minibatch size(s): e.g. 256, 128:256, 128=64/256=32"),
        Opt("compress", False, "If true, compress the output examples"),
        Opt("measure-output-frames", "deprecated", "Deprecated, ignored"),
        Opt("discard-partial-minibatches", "deprecated", "Deprecated, ignored"),
    ],
    nargs=(2, 2),
)
def nnet3_merge_egs(opts, rspec: str, wspec: str):
    from xvjax.kaldi import egs
    from xvjax.kaldi.egs_streams import MergeStats, merge_egs, parse_minibatch_size

    for name in ("measure_output_frames", "discard_partial_minibatches"):
        if getattr(opts, name) != "deprecated":
            log.warning(
                "The --%s option is deprecated and will be ignored.", name.replace("_", "-")
            )
    rules = parse_minibatch_size(opts.minibatch_size)
    stats = MergeStats()
    with egs.EgsWriter(wspec) as writer:
        for key, eg in merge_egs(egs.read_egs(rspec), rules, opts.compress, stats):
            writer.write(key, eg)
    stats.log()
    return 0 if writer.num_written else 1


@command(
    "nnet3-shuffle-egs",
    "Copy nnet3 examples in a random order (all in memory, or partially with --buffer-size)",
    usage="""
    Copy examples for neural network training, from the input to output, but randomly shuffle
    the order. This program will keep all of the examples in memory at once, unless you use the
    --buffer-size option.
    Usage: xvjax nnet3-shuffle-egs [options] <egs-rspecifier> <egs-wspecifier>
     e.g.: xvjax nnet3-shuffle-egs --srand=1 ark:train.egs ark:shuffled.egs
    The order depends on --srand but is xvjax's, not Kaldi's (std::shuffle is not reproducible).""",
    opts=[
        Opt("srand", 0, "Seed for random number generator"),
        Opt(
            "buffer-size",
            0,
            "If >0, size of a buffer we use to do limited-memory partial "
            "randomization; otherwise, do full randomization",
        ),
    ],
    nargs=(2, 2),
)
def nnet3_shuffle_egs(opts, rspec: str, wspec: str):
    from xvjax.kaldi import egs
    from xvjax.kaldi.egs_streams import shuffle_egs

    with egs.EgsWriter(wspec) as writer:
        for key, eg in shuffle_egs(egs.read_egs(rspec), opts.srand, opts.buffer_size):
            writer.write(key, eg)
    partial = "using a buffer (partial randomization)" if opts.buffer_size else ""
    log.info("Shuffled order of %d neural-network training examples %s", writer.num_written,
             partial)  # fmt: skip
    return 0 if writer.num_written else 1


@command(
    "nnet3-subset-egs",
    "Write a random subset of nnet3 examples, of a given size",
    usage="""
    Creates a random subset of the input examples, of a specified size. Uses no more memory than
    the size of the subset.
    Usage: xvjax nnet3-subset-egs [options] <egs-rspecifier> <egs-wspecifier>
     e.g.: xvjax nnet3-subset-egs --n=1000 --srand=1 ark:egs.1.ark ark:subset.egs
    The choice depends on --srand but is xvjax's, not Kaldi's.""",
    opts=[
        Opt("srand", 0, "Seed for random number generator"),
        Opt("n", 1000, "Number of examples to output"),
        Opt("randomize-order", True, "If true, randomize the order of the output"),
    ],
    nargs=(2, 2),
)
def nnet3_subset_egs(opts, rspec: str, wspec: str):
    from xvjax.kaldi import egs
    from xvjax.kaldi.egs_streams import subset_egs

    subset, num_read = subset_egs(egs.read_egs(rspec), opts.n, opts.srand, opts.randomize_order)
    egs.write_egs(wspec, subset)
    log.info("Selected a subset of %d out of %d neural-network training examples", len(subset),
             num_read)  # fmt: skip
    return 0 if num_read else 1


@command(
    "nnet3-xvector-get-egs",
    "Get x-vector training examples: feature chunks with speaker labels, from a ranges file",
    usage="""
    Get examples for training an nnet3 neural network for the xvector system. Each output
    example contains a chunk of features from some utterance along with a speaker label. The
    location and length of the feature chunks are specified in the 'ranges' file. Each line is
      <source-utterance> <relative-output-archive-index> <absolute-archive-index> <start-frame-index> <num-frames> <speaker-label>
    where <relative-output-archive-index> is a zero-based index into the wspecifiers given on
    the command line and <absolute-archive-index> is ignored.
    Usage: xvjax nnet3-xvector-get-egs [options] <ranges-filename> <features-rspecifier> <egs-0-out> [<egs-1-out> ... <egs-N-1-out>]
     e.g.: xvjax nnet3-xvector-get-egs --num-pdfs=7000 ranges.1 scp:feats.scp ark:egs_temp.1.ark ark:egs_temp.2.ark""",
    opts=[
        Opt("compress", True, "If true, write egs in compressed format"),
        Opt("num-pdfs", -1, "Number of speakers in the training list"),
    ],
    nargs=(3, None),
)
def nnet3_xvector_get_egs(opts, ranges: str, feats_rspec: str, *egs_wspecs: str):
    from contextlib import ExitStack

    from xvjax.kaldi import egs, tables
    from xvjax.kaldi.egs_streams import read_ranges, xvector_chunk_example

    if opts.num_pdfs <= 0:
        raise XvjaxError("--num-pdfs must be set to the number of speakers (labels)")
    chunks = read_ranges(ranges)
    for utt_chunks in chunks.values():
        for c in utt_chunks:
            if c.archive >= len(egs_wspecs):
                raise XvjaxError(
                    f"{ranges}: chunk {c.key} goes to output {c.archive} but only "
                    f"{len(egs_wspecs)} output wspecifiers were given"
                )
    num_done = num_err = num_written = 0
    with ExitStack() as stack:
        writers = [stack.enter_context(egs.EgsWriter(w)) for w in egs_wspecs]
        for utt, feats in tables.read(feats_rspec, kind="matrix"):
            if utt not in chunks:
                log.warning("Could not create examples from utterance %s because it has no "
                            "entry in the ranges input file.", utt)  # fmt: skip
                num_err += 1
                continue
            for c in chunks[utt]:
                eg = xvector_chunk_example(feats, c, opts.num_pdfs, opts.compress)
                if eg is None:
                    log.warning("Unable to create examples for utterance %s. Requested chunk size "
                                "of %d but utterance has only %d frames.", utt, c.length,
                                feats.shape[0])  # fmt: skip
                    continue
                writers[c.archive].write(c.key, eg)
                num_written += 1
            num_done += 1
    log.info("Finished generating examples, successfully processed %d feature files, wrote %d "
             "examples; %d files had errors.", num_done, num_written, num_err)  # fmt: skip
    return 1 if num_written == 0 or num_err > num_done else 0
