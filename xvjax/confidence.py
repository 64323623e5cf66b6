"""Confidence intervals of EER and minDCF by bootstrapping speakers, not trials.

Trials are not independent: every trial of one speaker shares that speaker's voice, so resampling
trials (or using a binomial interval) makes intervals several times too narrow when a corpus has
few speakers and many trials each. Here the unit of resampling is the speaker (Bolle et al.'s
subset bootstrap, as used for NIST SRE): each replicate draws the speakers of the trial list with
replacement, and a trial between speakers a and b (model a, test utterance of b) counts c_a * c_b
times, c being how often each speaker was drawn. A target trial of a speaker drawn twice counts 4
times, as 2 copies of its model meet 2 copies of its test utterances.

- `TrialUnits.from_ids(model_speakers, test_speakers)`: the speaker of each trial's two sides
  (sre-style trials: the model id is the enrolled speaker; the test side's speaker comes from the
  test set's utt2spk; an unlabelled test set makes each test utterance its own unit).
- `Bootstrap(units, num_replicates, seed)`: the replicate weights, the same for every system
  scored on the same trial list, so differences between systems are paired.
- `Bootstrap.replicates(scores, labels)`: per-replicate EER and minDCF (p_target 0.01, 0.005).
  Within a replicate, EER is min over thresholds of max(miss, false-alarm) rate and minDCF is
  compute_min_dcf.py's, both with weighted counts; thresholds are only placed between distinct scores.
- `interval(values)`: the 95% percentile interval; `relative_change(a, b)`: replicates of a/b - 1.

The point estimates reported beside the intervals stay Kaldi's own (`xvjax.metrics`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.metrics import check_costs

P_TARGETS = (0.01, 0.005)


@dataclasses.dataclass(frozen=True)
class TrialUnits:
    """Which resampling unit (speaker) each trial's model side and test side belong to."""

    model: np.ndarray  # (T,) int unit of the enrolment side
    test: np.ndarray  # (T,) int unit of the test side
    num_units: int
    names: tuple[str, ...]

    @staticmethod
    def from_ids(model_speakers: Sequence[str], test_speakers: Sequence[str]) -> TrialUnits:
        """Units from the speaker id of each trial's model and of its test utterance."""
        if len(model_speakers) != len(test_speakers):
            raise XvjaxError("model and test speaker lists differ in length")
        names, inverse = np.unique(
            np.concatenate([np.asarray(model_speakers, str), np.asarray(test_speakers, str)]),
            return_inverse=True,
        )
        n = len(model_speakers)
        return TrialUnits(inverse[:n], inverse[n:], len(names), tuple(names))


class Bootstrap:
    """Speaker-bootstrap replicate weights for one trial list (paired across systems)."""

    def __init__(self, units: TrialUnits, num_replicates: int = 1000, seed: int = 0):
        if num_replicates < 1:
            raise XvjaxError(f"bootstrap needs at least 1 replicate, got {num_replicates}")
        if units.num_units < 2:
            raise XvjaxError("a speaker bootstrap needs trials of at least 2 speakers")
        self.units = units
        self.num_replicates = int(num_replicates)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, units.num_units, size=(self.num_replicates, units.num_units))
        # counts[r, u]: how often unit u was drawn in replicate r
        self.counts = np.zeros((self.num_replicates, units.num_units), np.float64)
        np.add.at(self.counts, (np.arange(self.num_replicates)[:, None], draws), 1.0)

    def weights(self, rows: slice) -> np.ndarray:
        """(replicates in `rows`, T) weight of every trial."""
        c = self.counts[rows]
        return c[:, self.units.model] * c[:, self.units.test]

    def replicates(
        self, scores: np.ndarray, labels: np.ndarray, block: int = 64
    ) -> dict[str, np.ndarray]:
        """{"eer": (R,) in %, "min_dcf_0.01": (R,), "min_dcf_0.005": (R,)} for one system.

        Replicates in which the drawn speakers give no target or no nontarget trial are NaN.
        """
        s = np.asarray(scores, np.float64)
        lab = np.asarray(labels, bool)
        if s.shape != lab.shape or s.shape != self.units.model.shape:
            raise XvjaxError(
                f"{len(s)} scores and {len(lab)} labels for {len(self.units.model)} trials"
            )
        order = np.argsort(s, kind="stable")
        s, lab = s[order], lab[order]
        last = np.r_[s[1:] != s[:-1], True]  # a threshold can only sit after a run of ties
        out = {"eer": [], **{f"min_dcf_{p:g}": [] for p in P_TARGETS}}
        for start in range(0, self.num_replicates, block):
            w = self.weights(slice(start, start + block))[:, order]
            wt, wn = w * lab, w * ~lab
            tot_t, tot_n = wt.sum(1, keepdims=True), wn.sum(1, keepdims=True)
            ok = (tot_t[:, 0] > 0) & (tot_n[:, 0] > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                fnr = (np.cumsum(wt, 1) / tot_t)[:, last]
                fpr = 1.0 - (np.cumsum(wn, 1) / tot_n)[:, last]
            eer = np.min(np.maximum(fnr, fpr), axis=1)
            out["eer"].append(np.where(ok, 100.0 * eer, np.nan))
            for p in P_TARGETS:
                c_def = check_costs(p, 1.0, 1.0)
                dcf = np.min(fnr * p + fpr * (1 - p), axis=1) / c_def
                out[f"min_dcf_{p:g}"].append(np.where(ok, dcf, np.nan))
        return {k: np.concatenate(v) for k, v in out.items()}


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap replicates (NaNs ignored)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(v, [tail, 100.0 - tail])
    return float(lo), float(hi)


def relative_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Replicates of a / b - 1 (NaN where b is 0): paired, so both must come from one Bootstrap."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / b - 1.0, np.nan)
