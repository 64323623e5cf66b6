"""Backend commands with Kaldi's names, options and argument order (vector tools, LDA, PLDA).

Scoring, normalisation, metrics and calibration commands are in `commands_score.py` (imported at the
end). Heavy modules (numpy work, jax) are imported inside the commands so `xvjax --help` stays fast.
"""

from __future__ import annotations

import logging

from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


# ----------------------------------------------------------------------------- shared helpers
def read_vectors(rspec: str, what: str = "vector", dim: int | None = None):
    """Reads a vector table -> (keys, (N, D) float32). Errors name the key: duplicate keys,
    dimension mismatches (with `dim` or the first vector's), NaN/inf values."""
    import numpy as np

    from xvjax.kaldi import tables

    keys, rows, seen = [], [], set()
    for key, vec in tables.read(rspec, kind="vector", dtype=np.float32):
        vec = np.asarray(vec, dtype=np.float32)
        if key in seen:
            raise XvjaxError(f"duplicate {what} '{key}' in '{rspec}'")
        seen.add(key)
        want = dim if dim is not None else (rows[0].shape[0] if rows else None)
        if want is not None and vec.shape[0] != want:
            raise XvjaxError(
                f"{what} '{key}' in '{rspec}' has dimension {vec.shape[0]}, expected {want}"
                + (
                    " (the model's dimension: apply the same transforms as its training data)"
                    if dim
                    else ""
                )
            )
        if not np.all(np.isfinite(vec)):
            raise XvjaxError(f"{what} '{key}' in '{rspec}' contains NaN or infinite values")
        keys.append(key)
        rows.append(vec)
    if not rows:
        return keys, np.zeros((0, dim or 0), dtype=np.float32)
    return keys, np.stack(rows)


def write_vectors(wspec: str, keys, mat) -> None:
    import numpy as np

    from xvjax.kaldi import tables

    with tables.Writer(wspec) as w:
        for key, row in zip(keys, np.asarray(mat, dtype=np.float32), strict=True):
            w[key] = row


# ----------------------------------------------------------------------------- means, lengths
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
    import numpy as np

    from xvjax.backend import means
    from xvjax.kaldi import tables

    if len(args) == 2:
        keys, x = read_vectors(args[0])
        if not keys:
            raise XvjaxError(f"no vectors read from '{args[0]}'")
        mean = means.global_mean(x)
        tables.write_vector(args[1], mean.astype(np.float64), binary=opts.binary)
        log.info("Wrote mean of %d vectors to %s", len(keys), args[1])
        return 0
    spk2utt = tables.read_text_lists(args[0])
    keys, x = read_vectors(args[1])
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
    import numpy as np

    from xvjax.backend import means
    from xvjax.kaldi import tables

    if len(args) == 2:
        keys, x = read_vectors(args[0])
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
        keys, x = read_vectors(args[1], dim=None)
        if keys and x.shape[1] != mean.shape[0]:
            raise XvjaxError(
                f"vector '{keys[0]}' has dimension {x.shape[1]}, the mean {args[0]} has {mean.shape[0]}"
            )
        write_vectors(args[2], keys, means.subtract_mean(x, mean) if opts.subtract_mean else x)
    log.info("Wrote %d mean-subtracted iVectors", len(keys))
    return 0 if keys else 1


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
    import numpy as np

    from xvjax.backend import means

    keys, x = read_vectors(rspec)
    if keys:
        normed, ratio = means.normalize_length(x, scaleup=opts.scaleup)
        out = normed if opts.normalize else x
        write_vectors(wspec, keys, out)
        log.info("Processed %d iVectors.", len(keys))
        log.info(
            "Average ratio of iVector to expected length was %g, standard deviation was %g",
            ratio.mean(),
            np.sqrt(max(np.mean(ratio**2) - ratio.mean() ** 2, 0.0)),
        )
    else:
        write_vectors(wspec, [], [])
        log.info("Processed 0 iVectors.")
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
    import numpy as np

    from xvjax.backend import lda
    from xvjax.kaldi import tables

    transform = np.asarray(tables.read_matrix(transform_rx), dtype=np.float32)
    keys, x = read_vectors(rspec)
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
    log.info("Applied transform to %d vectors.", len(keys))
    return 0 if keys else 1


# ----------------------------------------------------------------------------- LDA, PLDA
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
    import numpy as np

    from xvjax.backend import lda
    from xvjax.kaldi import tables

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
    import numpy as np

    from xvjax.backend import plda as plda_lib
    from xvjax.kaldi import plda_io, tables

    spk2utt = tables.read_text_lists(spk2utt_rspec)
    keys, x = read_vectors(rspec)
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
    from xvjax.backend.adapt import adapt_plda
    from xvjax.kaldi import plda_io

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


PLDA_CONFIG_OPTS = [
    Opt(
        "normalize-length",
        True,
        "If true, do length normalization as part of PLDA (see code for details)",
    ),
    Opt(
        "simple-length-normalization",
        False,
        "If true, replace the default length normalization by scaling to length sqrt(dim)",
    ),
]


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
    from xvjax.backend import plda as plda_lib
    from xvjax.kaldi import plda_io

    model = plda_io.read_plda(plda_rx)
    if opts.smoothing != 0.0:
        model = plda_lib.smooth_within_class_covar(model, opts.smoothing)
    plda_io.write_plda(model, plda_wx, binary=opts.binary)
    return 0
