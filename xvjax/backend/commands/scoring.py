"""Scoring tools: ivector-plda-scoring, cosine-scoring, ivector-compute-dot-products (trial lists),
score-matrix (dense), score-norm (S-norm, adaptive S-norm, Z-norm, T-norm)."""

from __future__ import annotations

import logging

import numpy as np

from xvjax.backend import score_files
from xvjax.backend.commands import BLOCK_OPTS, PLDA_CONFIG_OPTS
from xvjax.backend.trials import Trials
from xvjax.backend.vector_tables import (
    enroll_num_utts,
    read_finite_vectors,
    read_vectors,
    write_block_rows,
)
from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError
from xvjax.kaldi import plda_io

log = logging.getLogger("xvjax")


def _index_trials(trials_rx, enroll_keys, test_keys, enroll_name, test_name):
    """The trials of a two-field trials file placed among the vectors (unknown keys skipped with
    Kaldi's warnings) -> (enroll_rows, test_rows, the trials kept, number skipped)."""
    trials = Trials.read(trials_rx, labelled=False)
    enroll_rows, test_rows, kept = trials.index(enroll_keys, test_keys)
    num_err = trials.warn_unknown(enroll_rows, test_rows, enroll_name, test_name)
    return enroll_rows[kept], test_rows[kept], trials.subset(kept), num_err


def _log_score_stats(scores, num_err) -> None:
    if len(scores):
        s = np.asarray(scores, dtype=np.float64)
        mean = s.mean()
        log.info(
            "Mean score was %g, standard deviation was %g",
            mean,
            np.sqrt(max(np.mean(s * s) - mean * mean, 0.0)),
        )
    log.info("Processed %d trials, %d had errors.", len(scores), num_err)


# ----------------------------------------------------------------------------- trial lists
@command(
    "ivector-plda-scoring",
    "PLDA log-likelihood ratios for a trial list (Kaldi's output format)",
    usage="""
    Computes log-likelihood ratios for trials using a PLDA model. The trials file has lines
    '<key1> <key2>'; the output has '<key1> <key2> <score>' (trials with an unknown key are skipped
    with a warning). Enrolment vectors are averaged per speaker; --num-utts gives the number of
    utterances per speaker (default 1). Test vectors always count as 1 utterance.
    Usage: xvjax ivector-plda-scoring [options] <plda> <train-ivector-rspecifier> <test-ivector-rspecifier> <trials-rxfilename> <scores-wxfilename>
    e.g.: xvjax ivector-plda-scoring --num-utts=ark:num_utts.ark plda ark:spk_xvectors.ark ark:xvectors.ark trials scores""",
    opts=[
        Opt(
            "num-utts",
            "",
            "Table to read the number of utterances per speaker, e.g. ark:num_utts.ark",
        ),
        *PLDA_CONFIG_OPTS,
    ],
    nargs=(5, 5),
)
def ivector_plda_scoring(opts, plda_rx, train_rspec, test_rspec, trials_rx, scores_wx):
    from xvjax.backend import plda as plda_lib
    from xvjax.backend import scoring

    model = plda_io.read_plda(plda_rx)
    log.info("Reading train iVectors")
    # As in Kaldi, trials whose vectors are absent are skipped and counted; a vector with NaN or
    # infinite values counts as absent.
    e_keys, e_vecs, _ = read_finite_vectors(train_rspec, "training iVector", dim=model.dim)
    if not e_keys:
        raise XvjaxError(f"no training iVectors present in '{train_rspec}'")
    e_keys, e_vecs, counts, num_train_errs = enroll_num_utts(e_keys, e_vecs, opts.num_utts)
    if not e_keys:
        raise XvjaxError(f"no training iVectors present (none has a count in {opts.num_utts})")
    u, e_factor = plda_lib.plda_transform(
        model, e_vecs, counts, opts.normalize_length, opts.simple_length_normalization
    )
    log.info("Read %d training iVectors, errors on %d", len(e_keys), num_train_errs)
    log.info("Average renormalization scale on training iVectors was %g", e_factor.mean())
    log.info("Reading test iVectors")
    t_keys, t_vecs, _ = read_finite_vectors(test_rspec, "test iVector", dim=model.dim)
    if not t_keys:
        raise XvjaxError(f"no test iVectors present in '{test_rspec}'")
    v, t_factor = plda_lib.plda_transform(
        model, t_vecs, 1, opts.normalize_length, opts.simple_length_normalization
    )
    log.info("Read %d test iVectors.", len(t_keys))
    log.info("Average renormalization scale on test iVectors was %g", t_factor.mean())
    ie, it, kept, num_err = _index_trials(
        trials_rx, e_keys, t_keys, "training iVectors", "test iVectors"
    )
    ef = scoring.enroll_features(model, u, counts)
    scores = scoring.score_pairs(ef, scoring.test_features(v), ie, it) if len(kept) else np.zeros(0)
    score_files.write_scores(scores_wx, kept, scores)
    _log_score_stats(np.float32(scores), num_err)
    return 0 if len(kept) else 1


@command(
    "cosine-scoring",
    "Cosine similarity for a trial list (same arguments as ivector-plda-scoring, no model)",
    usage="""
    Usage: xvjax cosine-scoring [options] <enroll-rspecifier> <test-rspecifier> <trials-rxfilename> <scores-wxfilename>
    e.g.: xvjax cosine-scoring ark:spk_xvectors.ark ark:xvectors.ark trials scores""",
    nargs=(4, 4),
)
def cosine_scoring(opts, enroll_rspec, test_rspec, trials_rx, scores_wx):
    from xvjax.backend import scoring

    e_keys, e_vecs, _ = read_finite_vectors(enroll_rspec, "enrolment vector")
    t_keys, t_vecs, _ = read_finite_vectors(test_rspec, "test vector", dim=e_vecs.shape[1] or None)
    ie, it, kept, num_err = _index_trials(
        trials_rx, e_keys, t_keys, "enrolment vectors", "test vectors"
    )
    scores = scoring.cosine_scores(e_vecs, t_vecs, ie, it) if len(kept) else []
    score_files.write_scores(scores_wx, kept, scores)
    _log_score_stats(scores, num_err)
    return 0 if len(kept) else 1


@command(
    "ivector-compute-dot-products",
    "Dot products of vector pairs listed in a trials file (cosine after length normalisation)",
    usage="""
    Computes dot-products between vectors. The trials file has lines '<key1> <key2>'; the output
    has '<key1> <key2> <dot-product>' (trials with an unknown key are skipped with a warning).
    With vectors normalised by 'ivector-normalize-length --scaleup=false' this is cosine scoring.
    Usage: xvjax ivector-compute-dot-products [options] <trials-in> <ivector1-rspecifier> <ivector2-rspecifier> <scores-out>
    e.g.: xvjax ivector-compute-dot-products trials ark:enroll.ark ark:test.ark trials.scored""",
    nargs=(4, 4),
)
def ivector_compute_dot_products(opts, trials_rx, rspec1, rspec2, scores_wx):
    keys1, vecs1, _ = read_finite_vectors(rspec1, "vector")
    keys2, vecs2, _ = read_finite_vectors(rspec2, "vector", dim=vecs1.shape[1] if keys1 else None)
    ie, it, kept, num_err = _index_trials(
        trials_rx, keys1, keys2, "1st table of ivectors", "2nd table of ivectors"
    )
    dots = np.einsum("ij,ij->i", vecs1[ie], vecs2[it]) if len(kept) else np.zeros(0, np.float32)
    score_files.write_scores(scores_wx, kept, dots)
    if len(kept):
        mean = dots.astype(np.float64).mean()
        log.info(
            "Mean dot-product was %g, standard deviation was %g",
            mean,
            np.sqrt(max(np.mean(dots.astype(np.float64) ** 2) - mean**2, 0.0)),
        )
    log.info("Processed %d trials %d had errors.", len(kept), num_err)
    return 0 if len(kept) else 1


# ----------------------------------------------------------------------------- dense
def _load_dense_inputs(opts, plda_rx, enroll_rspec, test_rspec):
    model = plda_io.read_plda(plda_rx)
    e_keys, e_vecs = read_vectors(enroll_rspec, "enrolment vector", dim=model.dim)
    t_keys, t_vecs = read_vectors(test_rspec, "test vector", dim=model.dim)
    e_keys, e_vecs, counts, _ = enroll_num_utts(e_keys, e_vecs, opts.num_utts)
    if not e_keys or not t_keys:
        raise XvjaxError(
            f"no enrolment vectors in '{enroll_rspec}' or no test vectors in '{test_rspec}'"
        )
    return model, e_keys, e_vecs, t_keys, t_vecs, counts


@command(
    "score-matrix",
    "Dense enrolment x test PLDA score matrix, blocked and sharded over devices",
    usage="""
    Scores every enrolment vector against every test vector in blocks of --block-size (memory
    bounded by the block), sharded over the available devices. Writes one float vector per
    enrolment key (scores against the test vectors in table order); --test-keys-out writes that
    column order, one key per line.
    Usage: xvjax score-matrix [options] <plda> <enroll-rspecifier> <test-rspecifier> <scores-wspecifier>
    e.g.: xvjax score-matrix --num-utts=ark:num_utts.ark --test-keys-out=cols.txt plda ark:spk.ark ark:test.ark ark:scores.ark""",
    opts=[
        Opt("num-utts", "", "Table of the number of utterances per enrolment speaker"),
        Opt("test-keys-out", "", "Write the test keys (column order) to this file"),
        *PLDA_CONFIG_OPTS,
        *BLOCK_OPTS,
    ],
    nargs=(4, 4),
)
def score_matrix_cmd(opts, plda_rx, enroll_rspec, test_rspec, scores_wspec):
    from xvjax.backend import scoring

    model, e_keys, e_vecs, t_keys, t_vecs, counts = _load_dense_inputs(
        opts, plda_rx, enroll_rspec, test_rspec
    )
    ef = scoring.prepare_enroll(
        model, e_vecs, counts, opts.normalize_length, opts.simple_length_normalization
    )
    tf = scoring.prepare_test(
        model, t_vecs, opts.normalize_length, opts.simple_length_normalization
    )
    dtype = scoring.precision_dtype(opts.precision)
    blocks = scoring.iter_score_blocks(ef, tf, block_size=opts.block_size, dtype=dtype)
    write_block_rows(scores_wspec, e_keys, blocks, len(t_keys))
    if opts.test_keys_out:
        score_files.write_lines(opts.test_keys_out, t_keys)
    log.info("Scored %d x %d = %d trials.", len(e_keys), len(t_keys), len(e_keys) * len(t_keys))
    return 0


# ----------------------------------------------------------------------------- normalisation
def _norm_score_files(method, top_k, scores_rx, enroll_cohort_rx, test_cohort_rx, scores_wx):
    """score-norm's first form: a score file normalised with cohort score files."""
    from xvjax.backend import snorm

    trials, raw = score_files.read_score_file(scores_rx)
    if not len(raw):
        raise XvjaxError(f"no scores in '{scores_rx}'")
    e_stats = t_stats = None
    if method in snorm.ENROLL_SIDE:
        e_stats = _cohort_stats(enroll_cohort_rx, top_k)
    if method in snorm.TEST_SIDE:
        t_stats = _cohort_stats(test_cohort_rx, top_k)
    normed = snorm.normalize_score_list(
        trials, raw, e_stats, t_stats, (enroll_cohort_rx, test_cohort_rx)
    )
    score_files.write_scores(scores_wx, trials, normed)
    log.info("Normalised %d scores (%s).", len(trials), method)


def _cohort_stats(cohort_rx: str, top_k: int | None) -> dict[str, tuple[float, float]]:
    from xvjax.backend import snorm

    cohort = score_files.read_score_file(cohort_rx)
    if not len(cohort[1]):
        raise XvjaxError(f"no cohort scores in '{cohort_rx}'")
    return snorm.cohort_stats_by_key(*cohort, top_k, cohort_rx)


@command(
    "score-norm",
    "S-norm, adaptive S-norm, Z-norm or T-norm of scores with a cohort",
    usage="""
    Normalises scores with cohort statistics (mean and population std over the cohort, or over
    its --top-k highest scores for asnorm): znorm (s-mu_e)/sd_e, tnorm (s-mu_t)/sd_t,
    snorm/asnorm 1/2 of their sum. Three forms:
    1) score files (any scorer):  <scores-in> <enroll-cohort-scores> <test-cohort-scores> <scores-out>
       cohort score files have lines '<enroll|test key> <cohort key> <score>'.
    2) PLDA, trial list:  <plda> <enroll-rspecifier> <test-rspecifier> <cohort-rspecifier> <trials> <scores-out>
    3) PLDA, dense matrix: <plda> <enroll-rspecifier> <test-rspecifier> <cohort-rspecifier> <scores-wspecifier>
       (one row vector per enrolment key; --test-keys-out writes the column order).
    With a PLDA, cohort statistics are computed once per enrolment model and test segment (the
    test vector taken as a 1-utterance enrolment vs the cohort), blocked and sharded over devices.
    e.g.: xvjax score-norm --method=asnorm --top-k=300 --num-utts=ark:num_utts.ark plda ark:spk.ark ark:test.ark ark:cohort.ark trials scores_asnorm""",
    opts=[
        Opt("method", "snorm", "snorm, asnorm, znorm or tnorm"),
        Opt("top-k", 0, "Cohort scores used per side for asnorm (0 = the whole cohort)"),
        Opt("num-utts", "", "Table of the number of utterances per enrolment speaker"),
        Opt("test-keys-out", "", "Dense form: write the test keys (column order) to this file"),
        *PLDA_CONFIG_OPTS,
        *BLOCK_OPTS,
    ],
    nargs=(4, 6),
)
def score_norm(opts, *args):
    from xvjax.backend import scoring, snorm

    if opts.method not in snorm.METHODS:
        raise XvjaxError(f"--method must be one of {', '.join(snorm.METHODS)}, got '{opts.method}'")
    if opts.top_k < 0:
        raise XvjaxError(f"--top-k must be >= 0, got {opts.top_k}")
    if opts.method == "asnorm" and opts.top_k == 0:
        raise XvjaxError("--method=asnorm needs --top-k (e.g. --top-k=300)")
    top_k = (
        opts.top_k if opts.method == "asnorm" or (opts.top_k and opts.method != "snorm") else None
    )
    if len(args) == 4:
        _norm_score_files(opts.method, top_k, *args)
        return 0
    model, e_keys, e_vecs, t_keys, t_vecs, counts = _load_dense_inputs(opts, *args[:3])
    c_keys, c_vecs = read_vectors(args[3], "cohort vector", dim=model.dim)
    if len(c_keys) < 2:
        raise XvjaxError(f"the cohort '{args[3]}' needs at least 2 vectors, got {len(c_keys)}")
    dtype = scoring.precision_dtype(opts.precision)
    prep = snorm.prepare_norm(
        model,
        e_vecs,
        t_vecs,
        c_vecs,
        counts,
        method=opts.method,
        top_k=top_k,
        normalize_length=opts.normalize_length,
        simple_length_norm=opts.simple_length_normalization,
        block_size=opts.block_size,
        dtype=dtype,
    )
    if len(args) == 5:
        blocks = snorm.iter_norm_blocks(prep, block_size=opts.block_size, dtype=dtype)
        write_block_rows(args[4], e_keys, blocks, len(t_keys))
        if opts.test_keys_out:
            score_files.write_lines(opts.test_keys_out, t_keys)
        log.info("Normalised %d x %d scores (%s).", len(e_keys), len(t_keys), opts.method)
        return 0
    ie, it, kept, num_err = _index_trials(
        args[4], e_keys, t_keys, "enrolment vectors", "test vectors"
    )
    normed = snorm.norm_trials(prep, ie, it)[1] if len(kept) else np.zeros(0)
    score_files.write_scores(args[5], kept, normed)
    _log_score_stats(normed, num_err)
    return 0 if len(kept) else 1


@command(
    "ivector-plda-scoring-dense",
    "PLDA scores between all pairs of segments of each recording (speaker diarization)",
    usage="""
    Perform PLDA scoring for speaker diarization. The input reco2utt should be of the form
    <recording-id> <seg1> <seg2> ... <segN> and there should be one iVector for each segment.
    PLDA scoring is performed between all pairs of iVectors in a recording and outputs an archive
    of score matrices, one for each recording-id. The rows and columns of the matrix correspond
    to the order of the segments in reco2utt.
    Usage: xvjax ivector-plda-scoring-dense [options] <plda> <reco2utt> <ivectors-rspecifier> <scores-wspecifier>
     e.g.: xvjax ivector-plda-scoring-dense plda ark:reco2utt scp:ivectors.scp ark:scores.ark""",
    opts=[
        *PLDA_CONFIG_OPTS,
        Opt("target-energy", 0.5, "Reduce dimensionality of i-vectors using a recording-dependent "
            "PCA such that this fraction of the total energy remains"),
    ],
    nargs=(4, 4),
)  # fmt: skip
def ivector_plda_scoring_dense(opts, plda_rx: str, reco2utt: str, vec_rspec: str, wspec: str):
    from xvjax.backend.dense_scoring import dense_plda_scores
    from xvjax.kaldi import tables

    if opts.target_energy > 1.0:
        raise XvjaxError(f"--target-energy must be <= 1.0, got {opts.target_energy}")
    plda = plda_io.read_plda(plda_rx)
    vectors = tables.RandomAccess(vec_rspec, kind="vector")
    num_done = num_err = 0
    with tables.Writer(wspec) as writer:
        for reco, segs in tables.read_text_lists(reco2utt).items():
            missing = [s for s in segs if s not in vectors]
            if missing:
                raise XvjaxError(f"no iVector present in input for utterance {missing[0]}")
            if not segs:
                log.warning("Not producing output for recording %s since no segments had "
                            "iVectors", reco)  # fmt: skip
                num_err += 1
                continue
            x = np.stack([vectors[s] for s in segs])
            writer[reco] = dense_plda_scores(plda, x, opts.target_energy, opts.normalize_length,
                                             opts.simple_length_normalization)  # fmt: skip
            num_done += 1
    log.info("Processed %d recordings, %d had errors.", num_done, num_err)
    return 0 if num_done else 1
