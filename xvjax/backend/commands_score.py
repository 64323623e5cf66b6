"""Scoring, score normalisation, metrics, calibration and DET commands (registered on import)."""

from __future__ import annotations

import logging

from xvjax.backend.commands import PLDA_CONFIG_OPTS, read_vectors
from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

BLOCK_OPTS = [
    Opt("block-size", 2048, "Rows (enrolment) and columns (test) per dense scoring block"),
    Opt("precision", "float32", "Dense GEMM precision: float32 or float64"),
]


# ----------------------------------------------------------------------------- helpers
def read_lines(rxfilename: str) -> list[str]:
    """Text lines of an rxfilename (file, `-`, `cmd |`)."""
    from xvjax.kaldi import streams

    with streams.input_stream(rxfilename) as f:
        data = f.read()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise XvjaxError(f"{streams.printable(rxfilename)}: not UTF-8 text") from None


def write_text(wxfilename: str, text: str) -> None:
    """Writes text to a wxfilename atomically (nothing is left behind on failure)."""
    from xvjax.kaldi import streams

    with streams.output_stream(wxfilename) as out:
        out.write(text.encode("utf-8"))


def read_trial_pairs(rxfilename: str) -> list[tuple[str, str]]:
    """`<enroll> <test>` per line (exactly two fields, as ivector-plda-scoring requires)."""
    pairs = []
    for num, line in enumerate(read_lines(rxfilename), 1):
        fields = line.split()
        if len(fields) != 2:
            raise XvjaxError(
                f"{rxfilename}:{num}: bad line (expected two fields: key1 key2): '{line.strip()}'"
                " (for a trials file with labels use \"cut -d' ' -f1,2 trials |\")"
            )
        pairs.append((fields[0], fields[1]))
    return pairs


def read_num_utts(rspec: str) -> dict[str, int]:
    from xvjax.kaldi import tables

    return {k: int(v) for k, v in tables.read_dict(rspec, kind="int32").items()}


def _dtype(name: str):
    import numpy as np

    if name not in ("float32", "float64"):
        raise XvjaxError(f"--precision must be float32 or float64, got '{name}'")
    return np.dtype(name)


def _enroll_counts(keys, vecs, opts):
    """num_utts per enrolment key (1 without --num-utts). As in Kaldi, an enrolment key missing
    from the --num-utts table is skipped with a warning -> (keys, vecs, counts, num_errors)."""
    import numpy as np

    if not opts.num_utts:
        return keys, vecs, np.ones(len(keys)), 0
    table = read_num_utts(opts.num_utts)
    keep = []
    for i, key in enumerate(keys):
        if key in table:
            keep.append(i)
        else:
            log.warning("Number of utterances not given for speaker %s", key)
    counts = np.array([table[keys[i]] for i in keep], dtype=np.float64)
    if np.any(counts <= 0):
        bad = keys[keep[int(np.argmin(counts))]]
        raise XvjaxError(f"--num-utts={opts.num_utts}: speaker '{bad}' has a non-positive count")
    return [keys[i] for i in keep], vecs[keep], counts, len(keys) - len(keep)


def _index_trials(pairs, enroll_keys, test_keys, enroll_name, test_name):
    """Trial indices; unknown keys are skipped with Kaldi's warning -> (ie, it, kept pairs, errs)."""
    import numpy as np

    e_index = {k: i for i, k in enumerate(enroll_keys)}
    t_index = {k: i for i, k in enumerate(test_keys)}
    ie, it, kept, num_err = [], [], [], 0
    for e, t in pairs:
        if e not in e_index:
            log.warning("Key %s not present in %s.", e, enroll_name)
            num_err += 1
            continue
        if t not in t_index:
            log.warning("Key %s not present in %s.", t, test_name)
            num_err += 1
            continue
        ie.append(e_index[e])
        it.append(t_index[t])
        kept.append((e, t))
    return np.array(ie, dtype=np.int64), np.array(it, dtype=np.int64), kept, num_err


def _log_score_stats(scores, num_err) -> None:
    import numpy as np

    if len(scores):
        s = np.asarray(scores, dtype=np.float64)
        mean = s.mean()
        log.info(
            "Mean score was %g, standard deviation was %g",
            mean,
            np.sqrt(max(np.mean(s * s) - mean * mean, 0.0)),
        )
    log.info("Processed %d trials, %d had errors.", len(scores), num_err)


def _write_trial_scores(wx, kept, scores) -> None:
    """`<enroll> <test> <score>` lines as `ivector-plda-scoring` prints them: each score a float
    (rounded to float32 once, for the whole array) printed at precision 7."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64).astype(np.float32).tolist()
    write_text(wx, "".join(f"{e} {t} {s:.7g}\n" for (e, t), s in zip(kept, values, strict=True)))


# ----------------------------------------------------------------------------- PLDA scoring
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
    import numpy as np

    from xvjax.backend import plda as plda_lib
    from xvjax.backend import scoring
    from xvjax.kaldi import plda_io

    model = plda_io.read_plda(plda_rx)
    log.info("Reading train iVectors")
    e_keys, e_vecs = read_vectors(train_rspec, "training iVector", dim=model.dim)
    if not e_keys:
        raise XvjaxError(f"no training iVectors present in '{train_rspec}'")
    e_keys, e_vecs, counts, num_train_errs = _enroll_counts(e_keys, e_vecs, opts)
    if not e_keys:
        raise XvjaxError(f"no training iVectors present (none has a count in {opts.num_utts})")
    u, e_factor = plda_lib.plda_transform(
        model, e_vecs, counts, opts.normalize_length, opts.simple_length_normalization
    )
    log.info("Read %d training iVectors, errors on %d", len(e_keys), num_train_errs)
    log.info("Average renormalization scale on training iVectors was %g", e_factor.mean())
    log.info("Reading test iVectors")
    t_keys, t_vecs = read_vectors(test_rspec, "test iVector", dim=model.dim)
    if not t_keys:
        raise XvjaxError(f"no test iVectors present in '{test_rspec}'")
    v, t_factor = plda_lib.plda_transform(
        model, t_vecs, 1, opts.normalize_length, opts.simple_length_normalization
    )
    log.info("Read %d test iVectors.", len(t_keys))
    log.info("Average renormalization scale on test iVectors was %g", t_factor.mean())
    pairs = read_trial_pairs(trials_rx)
    ie, it, kept, num_err = _index_trials(
        pairs, e_keys, t_keys, "training iVectors", "test iVectors"
    )
    ef = scoring.enroll_features(model, u, counts)
    scores = scoring.score_pairs(ef, scoring.test_features(v), ie, it) if kept else np.zeros(0)
    _write_trial_scores(scores_wx, kept, scores)
    _log_score_stats(np.float32(scores), num_err)
    return 0 if kept else 1


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

    e_keys, e_vecs = read_vectors(enroll_rspec, "enrolment vector")
    t_keys, t_vecs = read_vectors(test_rspec, "test vector", dim=e_vecs.shape[1] or None)
    ie, it, kept, num_err = _index_trials(
        read_trial_pairs(trials_rx), e_keys, t_keys, "enrolment vectors", "test vectors"
    )
    scores = scoring.cosine_scores(e_vecs, t_vecs, ie, it) if kept else []
    _write_trial_scores(scores_wx, kept, scores)
    _log_score_stats(scores, num_err)
    return 0 if kept else 1


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
    import numpy as np

    keys1, vecs1 = read_vectors(rspec1, "vector")
    keys2, vecs2 = read_vectors(rspec2, "vector", dim=vecs1.shape[1] if keys1 else None)
    ie, it, kept, num_err = _index_trials(
        read_trial_pairs(trials_rx), keys1, keys2, "1st table of ivectors", "2nd table of ivectors"
    )
    dots = np.einsum("ij,ij->i", vecs1[ie], vecs2[it]) if kept else np.zeros(0, np.float32)
    _write_trial_scores(scores_wx, kept, dots)
    if kept:
        mean = dots.astype(np.float64).mean()
        log.info(
            "Mean dot-product was %g, standard deviation was %g",
            mean,
            np.sqrt(max(np.mean(dots.astype(np.float64) ** 2) - mean**2, 0.0)),
        )
    log.info("Processed %d trials %d had errors.", len(kept), num_err)
    return 0 if kept else 1


def _write_rows(wspec, keys, blocks, num_cols, dtype) -> None:
    """Assembles row blocks from `iter_score_blocks` and writes one vector per enrolment key."""
    import numpy as np

    from xvjax.kaldi import tables

    with tables.Writer(wspec) as w:
        buf, row0 = None, None
        for r0, c0, blk in blocks:
            if r0 != row0:
                if buf is not None:
                    for i, row in enumerate(buf):
                        w[keys[row0 + i]] = row
                buf, row0 = np.empty((blk.shape[0], num_cols), dtype=np.float32), r0
            buf[:, c0 : c0 + blk.shape[1]] = blk
        if buf is not None:
            for i, row in enumerate(buf):
                w[keys[row0 + i]] = row


def _load_dense_inputs(opts, plda_rx, enroll_rspec, test_rspec):
    from xvjax.kaldi import plda_io

    model = plda_io.read_plda(plda_rx)
    e_keys, e_vecs = read_vectors(enroll_rspec, "enrolment vector", dim=model.dim)
    t_keys, t_vecs = read_vectors(test_rspec, "test vector", dim=model.dim)
    e_keys, e_vecs, counts, _ = _enroll_counts(e_keys, e_vecs, opts)
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
    blocks = scoring.iter_score_blocks(
        ef, tf, block_size=opts.block_size, dtype=_dtype(opts.precision)
    )
    _write_rows(scores_wspec, e_keys, blocks, len(t_keys), _dtype(opts.precision))
    if opts.test_keys_out:
        write_text(opts.test_keys_out, "".join(k + "\n" for k in t_keys))
    log.info("Scored %d x %d = %d trials.", len(e_keys), len(t_keys), len(e_keys) * len(t_keys))
    return 0
