"""Metrics tools: compute-eer (Kaldi's binary), compute-min-dcf (Kaldi's sid/compute_min_dcf.py),
compute-act-dcf, calibrate (logistic regression to log-likelihood ratios), det-plot."""

from __future__ import annotations

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


# compute_min_dcf.py's options; also given as `--p-target 0.01` (spaced_values), as the script
# takes them. The costs default to None so they print as the script prints them: its defaults are
# the int 1, given values floats ("10.0").
_DCF_OPTS = [
    Opt("p-target", 0.01, "The prior probability of the target speaker in a trial"),
    Opt("c-miss", None, "Cost of a missed detection (default 1)", type=float),
    Opt("c-fa", None, "Cost of a spurious detection (default 1)", type=float),
]


def _costs(opts) -> tuple[float, float, str, str]:
    """(c_miss, c_fa, as printed, as printed), checked as compute_min_dcf.py checks them."""
    c_miss = 1.0 if opts.c_miss is None else opts.c_miss
    c_fa = 1.0 if opts.c_fa is None else opts.c_fa
    metrics.check_costs(opts.p_target, c_miss, c_fa)
    texts = ("1" if v is None else str(v) for v in (opts.c_miss, opts.c_fa))
    return c_miss, c_fa, *texts


def _read_scored_trials(scores_rx: str, trials_rx: str):
    return metrics.read_scores_and_trials(read_lines(scores_rx), read_lines(trials_rx), scores_rx)


@command(
    "compute-min-dcf",
    "Minimum detection cost exactly as Kaldi's sid/compute_min_dcf.py",
    usage="""
    Compute the minimum of the detection cost function along with the threshold at which it
    occurs. Options may also be given as '--p-target 0.01', as the script takes them.
    Usage: xvjax compute-min-dcf [options...] <scores-file> <trials-file>
    e.g.: xvjax compute-min-dcf --p-target=0.01 scores trials""",
    opts=_DCF_OPTS,
    nargs=(2, 2),
    spaced_values=True,
)
def compute_min_dcf_cmd(opts, scores_rx, trials_rx):
    c_miss, c_fa, c_miss_text, c_fa_text = _costs(opts)
    scores, labels = _read_scored_trials(scores_rx, trials_rx)
    dcf, threshold = metrics.compute_min_dcf(scores, labels, opts.p_target, c_miss, c_fa)
    sys.stdout.write(f"{dcf:.4f}\n")
    sys.stdout.flush()
    log.info(
        "minDCF is %.4f at threshold %.4f (p-target=%s, c-miss=%s,c-fa=%s)",
        dcf, threshold, opts.p_target, c_miss_text, c_fa_text,
    )  # fmt: skip
    return 0


@command(
    "compute-act-dcf",
    "Actual detection cost of calibrated scores (LLRs) at the Bayes threshold",
    usage="""
    Same arguments as compute-min-dcf; scores must be calibrated log-likelihood ratios
    (see 'xvjax calibrate'). Decides 'target' when llr > log(c_fa (1 - p) / (c_miss p)).
    Usage: xvjax compute-act-dcf [options...] <scores-file> <trials-file>
    e.g.: xvjax compute-act-dcf --p-target=0.01 scores_llr trials""",
    opts=_DCF_OPTS,
    nargs=(2, 2),
    spaced_values=True,
)
def compute_act_dcf_cmd(opts, scores_rx, trials_rx):
    c_miss, c_fa, c_miss_text, c_fa_text = _costs(opts)
    scores, labels = _read_scored_trials(scores_rx, trials_rx)
    dcf = metrics.compute_act_dcf(scores, labels, opts.p_target, c_miss, c_fa)
    sys.stdout.write(f"{dcf:.4f}\n")
    sys.stdout.flush()
    log.info(
        "actDCF is %.4f (p-target=%s, c-miss=%s,c-fa=%s)",
        dcf, opts.p_target, c_miss_text, c_fa_text,
    )  # fmt: skip
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
