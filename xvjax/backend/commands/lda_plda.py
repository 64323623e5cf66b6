"""LDA and PLDA tools: ivector-compute-lda, ivector-compute-plda, ivector-adapt-plda,
ivector-copy-plda."""

from __future__ import annotations

import logging

import numpy as np

from xvjax.backend import lda
from xvjax.backend import plda as plda_lib
from xvjax.backend.adapt import adapt_plda
from xvjax.backend.commands import PLDA_CONFIG_OPTS
from xvjax.backend.vector_tables import read_vectors
from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError
from xvjax.kaldi import plda_io, tables

log = logging.getLogger("xvjax")


@command(
    "ivector-compute-lda",
    "Compute an LDA (affine, also centring) matrix from vectors and utt2spk",
    usage="""
    Reads vectors per utterance and an utt2spk, computes the within- and between-speaker
    covariances and writes an affine LDA projection to --dim dimensions that makes the projected
    within-class covariance unit (--total-covariance-factor=1: the total covariance).
    Usage: xvjax ivector-compute-lda [options] <ivector-rspecifier> <utt2spk-rspecifier> <lda-matrix-out>
    e.g.: xvjax ivector-compute-lda --dim=200 ark:xvectors.ark ark:utt2spk transform.mat""",
    opts=[
        Opt("dim", 100, "Dimension we keep with the LDA transform"),
        Opt(
            "total-covariance-factor",
            0.0,
            "If 0.0 normalize the within-class covariance to unit; if 1.0, the total covariance; "
            "if between, an interpolation",
        ),
        Opt(
            "covariance-floor",
            1.0e-6,
            "Floor the eigenvalues of the interpolated covariance matrix to the product of its "
            "largest eigenvalue and this number",
        ),
        Opt("binary", True, "Write output in binary mode"),
    ],
    nargs=(3, 3),
)
def ivector_compute_lda(opts, rspec, utt2spk_rspec, lda_wx):
    utt2spk = tables.read_text_table(utt2spk_rspec)
    keys, x = read_vectors(rspec)
    keep, num_err = [], 0
    for i, key in enumerate(keys):
        if key not in utt2spk:
            log.warning("utt2spk has no entry for utterance %s, skipping it.", key)
            num_err += 1
            continue
        keep.append(i)
    log.info("Read %d utterances, %d with errors.", len(keep), num_err)
    if not keep:
        raise XvjaxError(f"did not read any utterances (of '{rspec}' found in '{utt2spk_rspec}')")
    log.info("Computing within-class covariance.")
    x = x[keep]
    spk = [utt2spk[keys[i]] for i in keep]
    mat = lda.compute_lda(x, spk, opts.dim, opts.total_covariance_factor, opts.covariance_floor)
    tables.write_matrix(lda_wx, mat.astype(np.float32), binary=opts.binary)
    log.info("Wrote LDA transform to %s", lda_wx)
    return 0


@command(
    "ivector-compute-plda",
    "Train a PLDA model (EM) from vectors and spk2utt",
    usage="""
    Usage: xvjax ivector-compute-plda [options] <spk2utt-rspecifier> <ivector-rspecifier> <plda-out>
    e.g.: xvjax ivector-compute-plda ark:spk2utt ark,s,cs:xvectors.ark plda""",
    opts=[
        Opt("num-em-iters", 10, "Number of iterations of E-M used for PLDA estimation"),
        Opt("binary", True, "Write output in binary mode"),
    ],
    nargs=(3, 3),
)
def ivector_compute_plda(opts, spk2utt_rspec, rspec, plda_wx):
    spk2utt = tables.read_text_lists(spk2utt_rspec)
    keys, x = read_vectors(rspec)
    rows, spk_ids, num_spk_done, num_spk_err, num_utt_err = _rows_by_speaker(
        keys, spk2utt, spk2utt_rspec
    )
    log.info(
        "Accumulated stats from %d speakers (%d with no utterances), consisting of %d utterances "
        "(%d absent from input).",
        num_spk_done,
        num_spk_err,
        len(rows),
        num_utt_err,
    )
    if num_spk_done == 0:
        raise XvjaxError("no stats accumulated, unable to estimate PLDA")
    if num_spk_done == len(rows):
        raise XvjaxError(
            "no speakers with multiple utterances, unable to estimate PLDA (check spk2utt)"
        )
    counts: dict[str, int] = {}
    for s in spk_ids:
        counts[s] = counts.get(s, 0) + 1
    singles = sum(1 for c in counts.values() if c == 1)
    if singles:
        log.info(
            "%d of %d speakers have a single utterance (they inform the between-class "
            "covariance only)",
            singles,
            num_spk_done,
        )
    model = plda_lib.train_plda(x[np.asarray(rows)], spk_ids, opts.num_em_iters)
    plda_io.write_plda(model, plda_wx, binary=opts.binary)
    return 0


def _rows_by_speaker(keys, spk2utt, spk2utt_rspec):
    """Rows of `keys` of each speaker's utterances, with Kaldi's warnings for utterances without
    a vector -> (rows, speaker of each row, #speakers with rows, #without, #utterances missing)."""
    index = {k: i for i, k in enumerate(keys)}
    rows, spk_ids = [], []
    num_spk_done = num_spk_err = num_utt_err = 0
    for spk, utts in spk2utt.items():
        if not utts:
            raise XvjaxError(f"speaker '{spk}' has no utterances in '{spk2utt_rspec}'")
        found = 0
        for utt in utts:
            if utt not in index:
                log.warning("No iVector present in input for utterance %s", utt)
                num_utt_err += 1
                continue
            rows.append(index[utt])
            spk_ids.append(spk)
            found += 1
        if found:
            num_spk_done += 1
        else:
            log.warning("Not producing output for speaker %s since no utterances had iVectors", spk)
            num_spk_err += 1
    return rows, spk_ids, num_spk_done, num_spk_err, num_utt_err


@command(
    "ivector-adapt-plda",
    "Adapt a PLDA model to unlabelled in-domain vectors (Kaldi's unsupervised adaptation)",
    usage="""
    Usage: xvjax ivector-adapt-plda [options] <plda-in> <ivectors-rspecifier> <plda-out>
    e.g.: xvjax ivector-adapt-plda --within-covar-scale=0.75 --between-covar-scale=0.25 plda ark:in_domain.ark plda_adapt""",
    opts=[
        Opt("binary", True, "Write output in binary mode"),
        Opt(
            "within-covar-scale",
            0.3,
            "Scale that determines how much of excess variance in a particular direction gets "
            "attributed to within-class covar",
        ),
        Opt(
            "between-covar-scale",
            0.7,
            "Scale that determines how much of excess variance in a particular direction gets "
            "attributed to between-class covar",
        ),
        Opt(
            "mean-diff-scale",
            1.0,
            "Scale with which to add to the total data variance, the outer product of the "
            "difference between the original mean and the adaptation-data mean",
        ),
    ],
    nargs=(3, 3),
)
def ivector_adapt_plda(opts, plda_rx, rspec, plda_wx):
    model = plda_io.read_plda(plda_rx)
    keys, x = read_vectors(rspec, dim=model.dim)
    if not keys:
        raise XvjaxError(f"no adaptation vectors read from '{rspec}'")
    adapted = adapt_plda(
        model, x, opts.within_covar_scale, opts.between_covar_scale, opts.mean_diff_scale
    )
    plda_io.write_plda(adapted, plda_wx, binary=opts.binary)
    log.info("Adapted PLDA with %d vectors, wrote %s", len(keys), plda_wx)
    return 0


@command(
    "ivector-copy-plda",
    "Copy a PLDA model, optionally smoothing the within-class covariance",
    usage="""
    Usage: xvjax ivector-copy-plda [options] <plda-in> <plda-out>
    e.g.: xvjax ivector-copy-plda --smoothing=0.1 plda plda.smooth0.1""",
    opts=[
        Opt(
            "smoothing",
            0.0,
            "Factor used in smoothing within-class covariance (add this factor times "
            "between-class covar)",
        ),
        Opt("binary", True, "Write output in binary mode"),
        *PLDA_CONFIG_OPTS,
    ],
    nargs=(2, 2),
)
def ivector_copy_plda(opts, plda_rx, plda_wx):
    model = plda_io.read_plda(plda_rx)
    if opts.smoothing != 0.0:
        model = plda_lib.smooth_within_class_covar(model, opts.smoothing)
    plda_io.write_plda(model, plda_wx, binary=opts.binary)
    return 0
