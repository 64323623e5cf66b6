"""Score normalisation, metrics (Kaldi compute-eer, compute_min_dcf.py), calibration, DET plots."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from xvjax.backend.commands import PLDA_CONFIG_OPTS, read_vectors
from xvjax.backend.commands_score import (
    BLOCK_OPTS,
    _dtype,
    _index_trials,
    _load_dense_inputs,
    _log_score_stats,
    _write_rows,
    read_lines,
    read_trial_pairs,
    write_text,
)
from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


# ----------------------------------------------------------------------------- score files
def read_score_file(rxfilename: str):
    """`<enroll> <test> <score>` lines of an rxfilename -> (pairs, (T,) float64 scores)."""
    from xvjax import metrics

    return metrics.read_score_lines(read_lines(rxfilename), rxfilename)


def _stats_from_score_file(rxfilename: str, top_k):
    """Cohort statistics per first-column key of a cohort score file -> {key: (mean, std)}."""
    import numpy as np

    from xvjax.backend.snorm import cohort_stats_from_scores

    groups: dict[str, list[float]] = {}
    pairs, scores = read_score_file(rxfilename)
    for (key, _), s in zip(pairs, scores, strict=True):
        groups.setdefault(key, []).append(s)
    out = {}
    for key, vals in groups.items():
        if len(vals) < 2:
            raise XvjaxError(f"{rxfilename}: '{key}' has {len(vals)} cohort score; need at least 2")
        st = cohort_stats_from_scores(np.array([vals]), top_k)
        if st.std[0] <= 0.0:
            raise XvjaxError(f"{rxfilename}: cohort scores of '{key}' have zero standard deviation")
        out[key] = (float(st.mean[0]), float(st.std[0]))
    return out


def _norm_from_files(opts, scores_rx, enroll_cohort_rx, test_cohort_rx, scores_wx, top_k):
    import numpy as np

    from xvjax.backend.commands_score import _write_trial_scores
    from xvjax.backend.snorm import CohortStats, normalize_scores

    pairs, raw = read_score_file(scores_rx)
    use_e = opts.method in ("snorm", "asnorm", "znorm")
    use_t = opts.method in ("snorm", "asnorm", "tnorm")
    e_tab = _stats_from_score_file(enroll_cohort_rx, top_k) if use_e else None
    t_tab = _stats_from_score_file(test_cohort_rx, top_k) if use_t else None

    def gather(tab, col, name):
        if tab is None:
            return None
        missing = [p[col] for p in pairs if p[col] not in tab]
        if missing:
            raise XvjaxError(f"'{missing[0]}' has no cohort scores in {name}")
        vals = np.array([tab[p[col]] for p in pairs])
        return CohortStats(vals[:, 0], vals[:, 1])

    e = gather(e_tab, 0, enroll_cohort_rx)
    t = gather(t_tab, 1, test_cohort_rx)
    normed = normalize_scores(np.array(raw), e, t)
    _write_trial_scores(scores_wx, pairs, normed)
    return len(pairs)


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
    import numpy as np

    from xvjax.backend import snorm

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
        num = _norm_from_files(opts, *args, top_k=top_k)
        log.info("Normalised %d scores (%s).", num, opts.method)
        return 0
    model, e_keys, e_vecs, t_keys, t_vecs, counts = _load_dense_inputs(opts, *args[:3])
    c_keys, c_vecs = read_vectors(args[3], "cohort vector", dim=model.dim)
    if len(c_keys) < 2:
        raise XvjaxError(f"the cohort '{args[3]}' needs at least 2 vectors, got {len(c_keys)}")
    dtype = _dtype(opts.precision)
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
        _write_rows(args[4], e_keys, blocks, len(t_keys), dtype)
        if opts.test_keys_out:
            write_text(opts.test_keys_out, "".join(k + "\n" for k in t_keys))
        log.info("Normalised %d x %d scores (%s).", len(e_keys), len(t_keys), opts.method)
        return 0
    from xvjax.backend.commands_score import _write_trial_scores

    ie, it, kept, num_err = _index_trials(
        read_trial_pairs(args[4]), e_keys, t_keys, "enrolment vectors", "test vectors"
    )
    normed = snorm.norm_trials(prep, ie, it)[1] if kept else np.zeros(0)
    _write_trial_scores(args[5], kept, normed)
    _log_score_stats(normed, num_err)
    return 0 if kept else 1


# ----------------------------------------------------------------------------- metrics
@command(
    "compute-eer",
    "Equal error rate exactly as Kaldi's compute-eer (input '<score> target|nontarget')",
    usage="""
    Input is a series of lines, each with two fields: a score and 'target' or 'nontarget'.
    The EER (in percent) is printed to the standard output.
    Usage: xvjax compute-eer <scores-in>
    e.g.: xvjax compute-eer -""",
    nargs=(1, 1),
)
def compute_eer_cmd(opts, scores_rx):
    from xvjax import metrics

    scores, labels = metrics.read_eer_input(read_lines(scores_rx), scores_rx)
    eer, threshold = metrics.compute_eer(scores, labels)
    log.info("Equal error rate is %s%%, at threshold %s", f"{100.0 * eer:.6g}", f"{threshold:.6g}")
    sys.stdout.write(metrics.format_eer(eer))
    sys.stdout.flush()
    return 0


def _dcf_args(argv, prog: str, what: str):
    from xvjax import metrics

    parser = argparse.ArgumentParser(
        prog=f"xvjax {prog}",
        description=f"Compute the {what} along with the threshold at which it occurs "
        "(Kaldi sid/compute_min_dcf.py semantics). Usage: xvjax "
        f"{prog} [options...] <scores-file> <trials-file>",
    )
    parser.add_argument(
        "--p-target",
        type=float,
        dest="p_target",
        default=0.01,
        help="The prior probability of the target speaker in a trial (0.01)",
    )
    parser.add_argument(
        "--c-miss", type=float, dest="c_miss", default=None, help="Cost of a missed detection (1)"
    )
    parser.add_argument(
        "--c-fa", type=float, dest="c_fa", default=None, help="Cost of a spurious detection (1)"
    )
    parser.add_argument("scores_filename", help="scores, lines '<utt1> <utt2> <score>'")
    parser.add_argument("trials_filename", help="trials, lines '<utt1> <utt2> <target/nontarget>'")
    args = parser.parse_args(argv)
    # printed like the script: defaults are the int 1, given values floats ("10.0")
    args.c_miss_text = "1" if args.c_miss is None else str(args.c_miss)
    args.c_fa_text = "1" if args.c_fa is None else str(args.c_fa)
    args.c_miss = 1.0 if args.c_miss is None else args.c_miss
    args.c_fa = 1.0 if args.c_fa is None else args.c_fa
    metrics.check_costs(args.p_target, args.c_miss, args.c_fa)
    return args


def _read_scored_trials(args):
    from xvjax import metrics

    return metrics.read_scores_and_trials(
        read_lines(args.scores_filename), read_lines(args.trials_filename), args.scores_filename
    )


@command(
    "compute-min-dcf",
    "Minimum detection cost exactly as Kaldi's sid/compute_min_dcf.py",
    usage="""
    Usage: xvjax compute-min-dcf [--p-target 0.01] [--c-miss 1] [--c-fa 1] <scores-file> <trials-file>
    e.g.: xvjax compute-min-dcf --p-target 0.01 scores trials""",
    raw=True,
)
def compute_min_dcf_cmd(argv):
    from xvjax import metrics

    args = _dcf_args(argv, "compute-min-dcf", "minimum of the detection cost function")
    scores, labels = _read_scored_trials(args)
    dcf, threshold = metrics.compute_min_dcf(scores, labels, args.p_target, args.c_miss, args.c_fa)
    sys.stdout.write(f"{dcf:.4f}\n")
    sys.stdout.flush()
    log.info(
        "minDCF is %.4f at threshold %.4f (p-target=%s, c-miss=%s,c-fa=%s)",
        dcf,
        threshold,
        args.p_target,
        args.c_miss_text,
        args.c_fa_text,
    )
    return 0


@command(
    "compute-act-dcf",
    "Actual detection cost of calibrated scores (LLRs) at the Bayes threshold",
    usage="""
    Same arguments as compute-min-dcf; scores must be calibrated log-likelihood ratios
    (see 'xvjax calibrate'). Decides 'target' when llr > log(c_fa (1 - p) / (c_miss p)).
    Usage: xvjax compute-act-dcf [--p-target 0.01] [--c-miss 1] [--c-fa 1] <scores-file> <trials-file>""",
    raw=True,
)
def compute_act_dcf_cmd(argv):
    from xvjax import metrics

    args = _dcf_args(argv, "compute-act-dcf", "actual detection cost of calibrated scores")
    scores, labels = _read_scored_trials(args)
    dcf = metrics.compute_act_dcf(scores, labels, args.p_target, args.c_miss, args.c_fa)
    sys.stdout.write(f"{dcf:.4f}\n")
    sys.stdout.flush()
    log.info(
        "actDCF is %.4f (p-target=%s, c-miss=%s,c-fa=%s)",
        dcf,
        args.p_target,
        args.c_miss_text,
        args.c_fa_text,
    )
    return 0


# ----------------------------------------------------------------------------- calibration
@command(
    "calibrate",
    "Train (logistic regression) or apply a score calibration to log-likelihood ratios",
    usage="""
    Usage: xvjax calibrate train [options] <scores-rxfilename> <trials-rxfilename> <calibration-wxfilename>
     or: xvjax calibrate apply <calibration-rxfilename> <scores-rxfilename> <scores-wxfilename>
    Scores are '<enroll> <test> <score>' lines, trials '<enroll> <test> target|nontarget'; the
    calibration is a text vector [ scale offset ] (llr = scale * score + offset).
    e.g.: xvjax calibrate train --p-target=0.01 scores_dev trials_dev calib.vec
          xvjax calibrate apply calib.vec scores_eval scores_eval_llr""",
    opts=[Opt("p-target", 0.01, "Target prior the logistic regression is weighted for")],
    nargs=(4, 4),
)
def calibrate_cmd(opts, mode, a, b, c):
    from xvjax import metrics
    from xvjax.backend import calibration
    from xvjax.backend.commands_score import _write_trial_scores

    if mode == "train":
        scores, labels = metrics.read_scores_and_trials(read_lines(a), read_lines(b), a)
        cal = calibration.train_calibration(scores, labels, opts.p_target)
        calibration.save_calibration(cal, c)
        llr = calibration.apply_calibration(cal, scores)
        log.info(
            "Calibration scale %g offset %g: Cllr %.4f, actDCF(p=%g) %.4f, minDCF %.4f",
            cal.scale,
            cal.offset,
            calibration.cllr(llr, labels),
            opts.p_target,
            metrics.compute_act_dcf(llr, labels, opts.p_target),
            metrics.compute_min_dcf(llr, labels, opts.p_target)[0],
        )
        return 0
    if mode == "apply":
        cal = calibration.load_calibration(a)
        pairs, scores = read_score_file(b)
        _write_trial_scores(c, pairs, calibration.apply_calibration(cal, scores))
        log.info("Calibrated %d scores.", len(pairs))
        return 0
    raise XvjaxError(f"first argument must be 'train' or 'apply', got '{mode}'")


@command(
    "det-plot",
    "DET curve PNG of one or more score files against a trials file",
    usage="""
    Usage: xvjax det-plot [options] <trials-rxfilename> <png-wxfilename> <scores-rxfilename> [<scores-rxfilename> ...]
    e.g.: xvjax det-plot trials det.png scores_plda scores_asnorm""",
    opts=[
        Opt("p-target", 0.01, "Prior for the minDCF shown in the legend"),
        Opt("title", "DET curve", "Plot title"),
    ],
    nargs=(3, None),
)
def det_plot_cmd(opts, trials_rx, png_wx, *score_files):
    from xvjax import metrics
    from xvjax.backend.plots import det_plot

    trial_lines = read_lines(trials_rx)
    systems = []
    for path in score_files:
        scores, labels = metrics.read_scores_and_trials(read_lines(path), trial_lines, path)
        systems.append((os.path.basename(path.rstrip("| ")), scores, labels))
    det_plot(systems, png_wx, title=opts.title, p_target=opts.p_target)
    log.info("Wrote DET plot of %d systems to %s", len(systems), png_wx)
    return 0
