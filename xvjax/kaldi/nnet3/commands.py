"""nnet3 model and egs commands: nnet3-copy, nnet3-info, nnet3-copy-egs.

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
    ],
    nargs=(2, 2),
)
def nnet3_copy_egs(opts, rspec: str, wspec: str):
    import numpy as np

    from xvjax.kaldi import egs

    rng = np.random.default_rng(opts.srand)
    num_read = num_written = 0
    with egs.EgsWriter(wspec) as writer:
        for key, eg in egs.read_egs(rspec):
            num_read += 1
            if opts.keep_proportion < 1.0 and rng.random() >= opts.keep_proportion:
                continue
            writer.write(key, eg)
            num_written += 1
    log.info("Read %d neural-network training examples, wrote %d", num_read, num_written)
