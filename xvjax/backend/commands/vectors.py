"""Vector tools: ivector-mean, ivector-subtract-global-mean, ivector-normalize-length, transform-vec."""

from __future__ import annotations

import logging

import numpy as np

from xvjax.backend import lda, means
from xvjax.backend.vector_tables import read_finite_vectors, read_vectors, write_vectors
from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError
from xvjax.kaldi import tables

log = logging.getLogger("xvjax")


@command(
    "ivector-mean",
    "Average vectors globally (mean.vec) or per speaker with spk2utt (and write num_utts)",
    usage="""
    With 3 or 4 arguments, averages vectors over the utterances of each speaker (spk2utt);
    the optional 4th argument writes the number of utterances per speaker (for PLDA scoring).
    With 2 arguments, writes the mean of all input vectors.
    Usage: xvjax ivector-mean <spk2utt-rspecifier> <ivector-rspecifier> <ivector-wspecifier> [<num-utt-wspecifier>]
     or: xvjax ivector-mean <ivector-rspecifier> <mean-wxfilename>
    e.g.: xvjax ivector-mean ark:data/spk2utt scp:xvector.scp ark:spk_xvector.ark ark,t:num_utts.ark
     or: xvjax ivector-mean scp:xvector.scp mean.vec""",
    opts=[Opt("binary", False, "Write output in binary mode (only for files, not tables)")],
    nargs=(2, 4),
)
def ivector_mean(opts, *args):
    if len(args) == 2:
        keys, x = read_vectors(args[0])
        if not keys:
            raise XvjaxError(f"no vectors read from '{args[0]}'")
        mean = means.global_mean(x)
        tables.write_vector(args[1], mean.astype(np.float64), binary=opts.binary)
        log.info("Wrote mean of %d vectors to %s", len(keys), args[1])
        return 0
    spk2utt = tables.read_text_lists(args[0])
    keys, x, _ = read_finite_vectors(args[1])  # a NaN vector counts as absent from the input
    vectors = dict(zip(keys, x, strict=True))
    spk_means, num_utts = means.speaker_means(vectors, spk2utt)
    with tables.Writer(args[2]) as w:
        for spk, vec in spk_means.items():
            w[spk] = vec
    if len(args) == 4:
        with tables.Writer(args[3]) as w:
            for spk, n in num_utts.items():
                w[spk] = int(n)
    num_utt_done = sum(num_utts.values())
    num_utt_err = sum(len(u) for u in spk2utt.values()) - num_utt_done
    log.info(
        "Computed mean of %d speakers (%d with no utterances), consisting of %d utterances "
        "(%d absent from input).",
        len(spk_means),
        len(spk2utt) - len(spk_means),
        num_utt_done,
        num_utt_err,
    )
    if spk_means:
        m = np.stack(list(spk_means.values())).astype(np.float64)
        log.info(
            "Norm of mean of speakers is %g, root-mean-square speaker-iVector length divided by "
            "sqrt(dim) is %g",
            np.linalg.norm(m.mean(axis=0)),
            np.sqrt(np.mean(np.sum(m * m, axis=1))) / np.sqrt(m.shape[1]),
        )
    return 0 if spk_means else 1


@command(
    "ivector-subtract-global-mean",
    "Copy a vector table subtracting a global mean (given mean.vec, or the table's own mean)",
    usage="""
    Usage: xvjax ivector-subtract-global-mean <ivector-rspecifier> <ivector-wspecifier>
     or: xvjax ivector-subtract-global-mean <mean-rxfilename> <ivector-rspecifier> <ivector-wspecifier>
    e.g.: xvjax ivector-subtract-global-mean mean.vec scp:xvector.scp ark:-""",
    opts=[Opt("subtract-mean", True, "If true, subtract mean; if false, just copy the input")],
    nargs=(2, 3),
)
def ivector_subtract_global_mean(opts, *args):
    if len(args) == 2:
        keys, x, skipped = read_finite_vectors(args[0])
        log.info("Read %d iVectors.", len(keys))
        if keys:
            mean = means.global_mean(x)  # double, like Kaldi's accumulator
            log.info("Norm of iVector mean was %g", np.linalg.norm(mean))
            if opts.subtract_mean:  # float vector minus the double mean, stored as float
                x = means.subtract_mean(x, mean)
        write_vectors(args[1], keys, x)
    else:
        # Kaldi reads the mean as float and subtracts in float: float32(mean) then a float64
        # subtraction rounded to float32 gives the same numbers
        mean = np.asarray(tables.read_vector(args[0]), dtype=np.float32)
        if not np.isfinite(mean).all():
            raise XvjaxError(f"the mean {args[0]} has NaN or infinite values")
        keys, x, skipped = read_finite_vectors(args[1], dim=None)
        if keys and x.shape[1] != mean.shape[0]:
            raise XvjaxError(
                f"vector '{keys[0]}' has dimension {x.shape[1]}, the mean {args[0]} has {mean.shape[0]}"
            )
        write_vectors(args[2], keys, means.subtract_mean(x, mean) if opts.subtract_mean else x)
    log.info("Wrote %d mean-subtracted iVectors%s", len(keys), _skipped_text(skipped))
    return 0 if keys else 1


def _skipped_text(skipped: list[str]) -> str:
    return f", skipped {len(skipped)} with NaN or infinite values" if skipped else ""


@command(
    "ivector-normalize-length",
    "Normalize vector lengths to sqrt(dim) (or 1 with --scaleup=false)",
    usage="""
    Usage: xvjax ivector-normalize-length [options] <ivector-rspecifier> <ivector-wspecifier>
    e.g.: xvjax ivector-normalize-length ark:xvectors.ark ark:normalized.ark""",
    opts=[
        Opt("normalize", True, "Set this to false to disable normalization"),
        Opt("scaleup", True, "If 'true', the normalized iVector is scaled-up by 'sqrt(dim)'"),
    ],
    nargs=(2, 2),
)
def ivector_normalize_length(opts, rspec, wspec):
    keys, x, skipped = read_finite_vectors(rspec)
    if keys:
        normed, ratio = means.normalize_length(x, scaleup=opts.scaleup)
        out = normed if opts.normalize else x
        write_vectors(wspec, keys, out)
        log.info("Processed %d iVectors%s.", len(keys), _skipped_text(skipped))
        log.info(
            "Average ratio of iVector to expected length was %g, standard deviation was %g",
            ratio.mean(),
            np.sqrt(max(np.mean(ratio**2) - ratio.mean() ** 2, 0.0)),
        )
    else:
        write_vectors(wspec, [], [])
        log.info("Processed 0 iVectors%s.", _skipped_text(skipped))
    return 0 if keys else 1


@command(
    "transform-vec",
    "Apply a linear (D columns) or affine (D+1 columns) matrix to every vector",
    usage="""
    Usage: xvjax transform-vec [options] <transform-rxfilename> <feats-rspecifier> <feats-wspecifier>
    e.g.: xvjax transform-vec transform.mat ark:xvectors.ark ark:xvectors_lda.ark""",
    nargs=(3, 3),
)
def transform_vec_cmd(opts, transform_rx, rspec, wspec):
    transform = np.asarray(tables.read_matrix(transform_rx), dtype=np.float32)
    if not np.isfinite(transform).all():
        raise XvjaxError(f"the transform {transform_rx} has NaN or infinite values")
    keys, x, skipped = read_finite_vectors(rspec)
    if keys:
        cols = transform.shape[1]
        if cols not in (x.shape[1], x.shape[1] + 1):
            raise XvjaxError(
                f"dimension mismatch: vector '{keys[0]}' has dimension {x.shape[1]} and "
                f"{transform_rx} has {cols} columns"
            )
        out = lda.transform_vec(transform, x)
    else:
        out = np.zeros((0, transform.shape[0]))
    write_vectors(wspec, keys, out)
    log.info("Applied transform to %d vectors%s.", len(keys), _skipped_text(skipped))
    return 0 if keys else 1
