"""Metrics tools: compute-eer (Kaldi's binary), compute-min-dcf (Kaldi's sid/compute_min_dcf.py),
compute-act-dcf, calibrate (logistic regression to log-likelihood ratios), det-plot."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from xvjax import metrics
from xvjax.backend import calibration
from xvjax.backend.score_files import read_lines, read_score_file, write_scores
from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


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
    scores, labels = metrics.read_eer_input(read_lines(scores_rx), scores_rx)
    eer, threshold = metrics.compute_eer(scores, labels)
    log.info("Equal error rate is %s%%, at threshold %s", f"{100.0 * eer:.6g}", f"{threshold:.6g}")
    sys.stdout.write(metrics.format_eer(eer))
    sys.stdout.flush()
    return 0


def _dcf_args(argv, prog: str, what: str):
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
        trials, scores = read_score_file(b)
        write_scores(c, trials, calibration.apply_calibration(cal, scores))
        log.info("Calibrated %d scores.", len(trials))
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
    from xvjax.backend.plots import det_plot

    trial_lines = read_lines(trials_rx)
    systems = []
    for path in score_files:
        scores, labels = metrics.read_scores_and_trials(read_lines(path), trial_lines, path)
        systems.append((os.path.basename(path.rstrip("| ")), scores, labels))
    det_plot(systems, png_wx, title=opts.title, p_target=opts.p_target)
    log.info("Wrote DET plot of %d systems to %s", len(systems), png_wx)
    return 0
