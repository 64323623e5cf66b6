"""CLI: `xvjax nnet3-to-flax`, `xvjax flax-to-nnet3`, `xvjax nnet3-xvector-compute`.

Module-level imports stay light (no jax/flax) so `xvjax --help` is fast.
"""

from __future__ import annotations

import collections
import logging
import os
import time

from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


@command(
    "nnet3-to-flax",
    "Import a Kaldi nnet3 x-vector model (final.raw) as an xvjax model directory",
    usage="""
    Reads a raw nnet3 model (binary or text), derives the network from its graph and writes an
    Orbax checkpoint (params + batch_stats) plus model.json; the Kaldi file is kept as the export
    template so flax-to-nnet3 reproduces it exactly.
    Usage: xvjax nnet3-to-flax [options] <raw-nnet-in> <model-dir-out>
     e.g.: xvjax nnet3-to-flax exp/xvector_nnet_1a/final.raw checkpoints/voxceleb
    """,
    nargs=(2, 2),
)
def nnet3_to_flax_cmd(opts, nnet_in: str, model_dir: str) -> None:
    import os
    import tempfile
    from pathlib import Path

    from xvjax.kaldi import nnet3
    from xvjax.model.checkpoint import save_model
    from xvjax.model.nnet3_import import nnet3_to_flax

    nnet = nnet3.Nnet.read(nnet_in)
    spec, variables = nnet3_to_flax(nnet)
    if os.path.isfile(nnet_in):
        # The original bytes: a read/write cycle would re-round Kaldi's stored averages.
        save_model(model_dir, spec, variables, nnet_template_path=nnet_in)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            template = Path(tmp) / "template.raw"
            nnet.write(str(template), binary=True)
            save_model(model_dir, spec, variables, nnet_template_path=template)
    num_params = sum(
        int(a.size)
        for layer in variables["params"].values()
        for p in layer.values()
        for a in p.values()
    )
    log.info(
        "Imported %s: %d nodes, input dim %d, %d parameters -> %s",
        nnet_in,
        len(spec.nodes),
        spec.input_dim,
        num_params,
        model_dir,
    )


@command(
    "flax-to-nnet3",
    "Export an xvjax model directory as a Kaldi nnet3 raw model",
    usage="""
    Writes the model's weights and BatchNorm statistics back into the Kaldi model it was imported
    from (every other token unchanged), or builds the nnet3 model as Kaldi's xconfig would for a
    model trained from scratch.
    Usage: xvjax flax-to-nnet3 [options] <model-dir-in> <raw-nnet-out>
     e.g.: xvjax flax-to-nnet3 --binary=false checkpoints/adapted final_adapted.raw
    """,
    opts=[Opt("binary", True, "Write in binary mode")],
    nargs=(2, 2),
)
def flax_to_nnet3_cmd(opts, model_dir: str, nnet_out: str) -> None:
    from xvjax.kaldi import nnet3
    from xvjax.model.checkpoint import load_model, template_path
    from xvjax.model.nnet3_export import flax_to_nnet3

    spec, variables = load_model(model_dir)
    tpath = template_path(model_dir)
    template = nnet3.Nnet.read(str(tpath)) if tpath is not None else None
    nnet = flax_to_nnet3(spec, variables, template)
    nnet.write(nnet_out, binary=opts.binary)
    log.info(
        "Wrote %s (%s, %s)",
        nnet_out,
        "binary" if opts.binary else "text",
        "from the import template" if template is not None else "built from the spec",
    )


@command(
    "nnet3-xvector-compute",
    "Extract x-vectors (Kaldi nnet3-xvector-compute semantics, batched)",
    usage="""
    Propagates features through the network and writes one vector per utterance: the output of
    the network's node named 'output' (as Kaldi) for each chunk, averaged with weights equal to
    the chunks' un-padded lengths. MODEL is a Kaldi raw nnet3 model (file or 'cmd |') or an xvjax
    model dir; in a model dir whose 'output' is the speaker classifier the x-vector node (the
    first affine after statistics pooling) is computed instead. --output-node overrides both.
    Usage: xvjax nnet3-xvector-compute [options] <model> <features-rspecifier> <vector-wspecifier>
     e.g.: xvjax nnet3-xvector-compute --chunk-size=10000 --min-chunk-size=25 \\
             "xvjax nnet3-copy --nnet-config=extract.config final.raw - |" \\
             scp:data/test/feats.scp ark,scp:xvectors.ark,xvectors.scp
           (extract.config: output-node name=output input=tdnn6.affine)
    """,
    opts=[
        Opt(
            "chunk-size",
            -1,
            "If set, extracts x-vectors from chunks of this many frames and averages them; -1 = whole utterance",
        ),
        Opt("min-chunk-size", 100, "Minimum chunk size allowed when extracting x-vectors"),
        Opt(
            "pad-input",
            True,
            "Duplicate the first and last frames of a chunk as required to reach --min-chunk-size",
        ),
        Opt(
            "output-node",
            "",
            "Node to compute instead of 'output' (an nnet3 output-node or component-node name; "
            "xvjax extension)",
        ),
        Opt("batch-size", 64, "Maximum chunks per batch"),
        Opt(
            "max-batch-frames",
            25600,
            "Maximum padded frames per batch (limits memory for long chunks)",
        ),
        Opt("use-gpu", "no", "Accepted for Kaldi compatibility; JAX uses its default device"),
        Opt(
            "cache-capacity",
            64,
            "Accepted for Kaldi compatibility (extract_xvectors.sh passes "
            "it); no effect: xvjax caches one jit program per batch shape",
        ),
    ],
    nargs=(3, 3),
)
def nnet3_xvector_compute_cmd(opts, model: str, feats_rspec: str, vec_wspec: str) -> None:
    from pathlib import Path

    from xvjax.kaldi import tables
    from xvjax.model.checkpoint import load_any
    from xvjax.model.xvector_compute import (
        Extractor,
        check_frontend,
        extract_xvectors,
        extraction_node,
    )

    spec, variables = load_any(model)
    feats_dir = _data_dir_of(feats_rspec)
    if feats_dir is not None:
        check_frontend(spec, feats_dir)
    try:
        node = extraction_node(spec, Path(model).is_dir(), opts.output_node)
    except XvjaxError as e:
        raise XvjaxError(f"{model}: {e}") from None
    log.info("Computing node '%s' (%s, dim %d) of %s", node, spec.resolve(node),
             spec.output_dim(node), model)  # fmt: skip
    opts.output_node = node
    ex = Extractor(spec, variables, opts.output_node, opts.batch_size, opts.max_batch_frames)
    failed: collections.Counter = collections.Counter()  # Skip.kind -> utterances
    num_done = 0
    frames = 0

    def on_error(utt: str, reason) -> None:
        failed[getattr(reason, "kind", "other")] += 1
        log.warning("utterance %s: %s", utt, reason)

    def counted(reader):
        nonlocal frames
        for utt, mat in reader:
            frames += len(mat)
            yield utt, mat

    t0 = time.perf_counter()
    with tables.Writer(vec_wspec) as writer:
        for utt, vec in extract_xvectors(
            spec,
            variables,
            counted(tables.read(feats_rspec)),
            chunk_size=opts.chunk_size,
            min_chunk_size=opts.min_chunk_size,
            pad_input=opts.pad_input,
            output_node=opts.output_node,
            extractor=ex,
            on_error=on_error,
            progress=True,
        ):
            writer[utt] = vec
            num_done += 1
    elapsed = time.perf_counter() - t0
    log.info(
        "Time taken %.2fs: %.0f frames/s (including compilation of %d jit shapes, batch x frames)",
        elapsed,
        frames / max(elapsed, 1e-9),
        len(ex.shapes),
    )
    log.info("Done %d utterances, failed for %d", num_done, failed.total())
    if num_done == 0:
        if not failed:
            raise XvjaxError(f"no x-vectors were extracted: '{feats_rspec}' has no utterances")
        why = "; ".join(f"{kind}: {n}" for kind, n in failed.most_common())
        if "wrong feature dimension" in failed:
            why += f"; the model takes {spec.input_dim}-dimensional features"
        raise XvjaxError(
            f"no x-vectors were extracted: all {failed.total()} utterances failed ({why}; "
            "see the warnings above)"
        )


@command(
    "nnet3-compute",
    "Propagate features through a network and write the per-frame output (Kaldi's chunking)",
    usage="""
    Propagate the features through raw neural network model and write the output.
    If --apply-exp=true, apply the Exp() function to the output before writing it out.
    Usage: xvjax nnet3-compute [options] <nnet-in> <features-rspecifier> <matrix-wspecifier>
     e.g.: xvjax nnet3-compute final.raw scp:feats.scp ark:nnet_prediction.ark
    <nnet-in> is a Kaldi raw nnet3 model (file or 'cmd |') or an xvjax model dir; its node
    'output' is computed for every frame, in chunks of --frames-per-chunk frames with the
    network's context around them. After statistics pooling a frame's output pools the frames
    of its own chunk, as in Kaldi, so it depends on --frames-per-chunk. i-vector inputs and
    --frame-subsampling-factor other than 1 are not supported.""",
    opts=[
        Opt("frames-per-chunk", 50, "Number of frames in each chunk that is separately "
            "evaluated by the neural net"),
        Opt("extra-left-context", 0, "Number of frames of additional left-context to add on top "
            "of the neural net's inherent left context"),
        Opt("extra-right-context", 0, "Number of frames of additional right-context to add on "
            "top of the neural net's inherent right context"),
        Opt("extra-left-context-initial", -1, "If >= 0, overrides the --extra-left-context value "
            "at the start of an utterance"),
        Opt("extra-right-context-final", -1, "If >= 0, overrides the --extra-right-context value "
            "at the end of an utterance"),
        Opt("frame-subsampling-factor", 1, "Required if the frame-rate of the output is less "
            "than the frame-rate of the input (only 1 is supported)"),
        Opt("acoustic-scale", 1.0, "Scaling factor for the outputs"),
        Opt("apply-exp", False, "If true, apply exp function to output"),
        Opt("use-priors", False, "If true, subtract the logs of the priors stored with the model "
            "(a .mdl file; not supported)"),
        Opt("ivectors", "", "Rspecifier for iVectors (not supported)"),
        Opt("online-ivectors", "", "Rspecifier for iVectors estimated online (not supported)"),
        Opt("use-gpu", "no", "Accepted for Kaldi compatibility; JAX uses its default device"),
    ],
    nargs=(3, 3),
)  # fmt: skip
def nnet3_compute_cmd(opts, model: str, feats_rspec: str, out_wspec: str):
    from pathlib import Path

    import numpy as np

    from xvjax.kaldi import nnet3, tables
    from xvjax.model.checkpoint import load_model, template_path
    from xvjax.model.nnet3_compute import ChunkOptions, FrameComputer
    from xvjax.model.nnet3_export import flax_to_nnet3
    from xvjax.model.nnet3_import import nnet3_to_flax

    if opts.use_priors or opts.ivectors or opts.online_ivectors:
        raise XvjaxError("--use-priors, --ivectors and --online-ivectors are not supported")
    if opts.frame_subsampling_factor != 1:
        raise XvjaxError("only --frame-subsampling-factor=1 is supported (x-vector networks)")
    if Path(model).is_dir():
        spec, variables = load_model(model)
        tpath = template_path(model)
        template = nnet3.Nnet.read(str(tpath)) if tpath is not None else None
        nnet = flax_to_nnet3(spec, variables, template)
    else:
        nnet = nnet3.Nnet.read(model)
        spec, variables = nnet3_to_flax(nnet)
    context = nnet.context()
    chunking = ChunkOptions(
        opts.frames_per_chunk, opts.extra_left_context, opts.extra_right_context,
        opts.extra_left_context_initial, opts.extra_right_context_final, opts.acoustic_scale,
    )  # fmt: skip
    computer = FrameComputer(spec, variables, context, chunking)
    log.info("Computing node 'output' (%s, dim %d) with left/right context %d/%d",
             computer.target, computer.dim, *context)  # fmt: skip
    num_success = num_fail = frames = 0
    t0 = time.perf_counter()
    with tables.Writer(out_wspec) as writer:
        for utt, feats in tables.read(feats_rspec, kind="matrix"):
            if len(feats) == 0:
                log.warning("Zero-length utterance: %s", utt)
                num_fail += 1
                continue
            if not np.all(np.isfinite(feats)):
                log.warning("utterance %s: features contain NaN or infinite values; skipped", utt)
                num_fail += 1
                continue
            try:
                out = computer.compute(feats)
            except XvjaxError as e:
                log.warning("utterance %s: %s", utt, e)
                num_fail += 1
                continue
            writer[utt] = np.exp(out) if opts.apply_exp else out
            frames += len(feats)
            num_success += 1
    elapsed = time.perf_counter() - t0
    log.info("Time taken %.2fs: real-time factor assuming 100 frames/sec is %.3g", elapsed,
             elapsed * 100.0 / max(frames, 1))  # fmt: skip
    log.info("Done %d utterances, failed for %d", num_success, num_fail)
    return 0 if num_success else 1


def _data_dir_of(rspec: str) -> str | None:
    """The data dir behind `scp:<dir>/feats.scp` (whose conf/ says how the features were made)."""
    from xvjax.kaldi.specifiers import parse_rspecifier

    try:
        spec = parse_rspecifier(rspec)
    except XvjaxError:
        return None
    if spec.type != "scp" or os.path.basename(spec.filename) != "feats.scp":
        return None
    return os.path.dirname(spec.filename) or "."
