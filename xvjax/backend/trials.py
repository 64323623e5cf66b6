"""Trial lists: which enrolment model is compared with which test segment, and the answer.

A Kaldi trials file has one trial a line, `<enroll> <test> target|nontarget`; scoring binaries
read the unlabelled form `<enroll> <test>` (`cut -d' ' -f1,2 trials`). `Trials` holds either, in
file order (an id may appear in many trials). `Trials.index` maps the ids of every trial to rows
of the enrolment and test matrices in one sorted lookup; trials with an unknown id are not
scored, as Kaldi's scoring binaries skip them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open
from xvjax.kaldi import tables

log = logging.getLogger("xvjax")

__all__ = ["Trials", "rows_of"]

TWO_FIELDS_HINT = "(for a trials file with labels use \"cut -d' ' -f1,2 trials |\")"


def rows_of(keys: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """(len(names),) int64 row of each name in `keys` (unique), -1 where a name is not a key."""
    k = np.asarray(keys, dtype=str)
    n = np.asarray(names, dtype=str)
    if k.size == 0:
        return np.full(n.size, -1, dtype=np.int64)
    order = np.argsort(k, kind="stable")
    sorted_keys = k[order]
    if np.any(sorted_keys[1:] == sorted_keys[:-1]):
        dup = sorted_keys[1:][sorted_keys[1:] == sorted_keys[:-1]][0]
        raise XvjaxError(f"duplicate key '{dup}' in the vectors the trials are looked up in")
    pos = np.minimum(np.searchsorted(sorted_keys, n), k.size - 1)
    return np.where(sorted_keys[pos] == n, order[pos], -1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Trials:
    """T trials: enroll (T,) and test (T,) ids, labels (T,) bool (True = target) or None."""

    enroll: list[str]
    test: list[str]
    labels: np.ndarray | None = None

    def __post_init__(self):
        if len(self.enroll) != len(self.test) or (
            self.labels is not None and len(self.labels) != len(self.enroll)
        ):
            raise XvjaxError("a trial list needs as many test ids (and labels) as enrolment ids")

    def __len__(self) -> int:
        return len(self.enroll)

    @staticmethod
    def read(rxfilename: str, labelled: bool | None = None) -> Trials:
        """Reads `<enroll> <test> [target|nontarget]` lines (`xvjax.kaldi.tables.read_trials`).

        labelled: True requires a label on every line, False requires two fields a line (as
        Kaldi's scoring binaries do), None accepts either form (not mixed).
        """
        rows = tables.read_trials(rxfilename)
        third = next((r for r in rows if r[2] is not None), None)
        if labelled is False and third is not None:
            raise XvjaxError(
                f"{rxfilename}: bad line (expected two fields: key1 key2): "
                f"'{' '.join(third)}' {TWO_FIELDS_HINT}"
            )
        enroll, test = [r[0] for r in rows], [r[1] for r in rows]
        if not labelled and third is None:
            return Trials(enroll, test)
        bad = next((r for r in rows if r[2] not in ("target", "nontarget")), None)
        if bad is not None:
            raise XvjaxError(
                f"{rxfilename}: trial '{bad[0]} {bad[1]}' has no target|nontarget label"
            )
        return Trials(enroll, test, np.array([r[2] == "target" for r in rows], dtype=bool))

    @staticmethod
    def every_pair(models: Sequence[str], test_utt2spk: Mapping[str, str]) -> Trials:
        """sre-style trials: every model (a speaker id) against every test utterance, sorted;
        a trial is a target when the test utterance's speaker is the model."""
        enroll, test, labels = [], [], []
        for m in sorted(models):
            for utt in sorted(test_utt2spk):
                enroll.append(m)
                test.append(utt)
                labels.append(test_utt2spk[utt] == m)
        return Trials(enroll, test, np.array(labels, dtype=bool))

    def write(self, path: str) -> None:
        """`<enroll> <test> target|nontarget` lines (labelled trials only), written atomically."""
        if self.labels is None:
            raise XvjaxError(f"{path}: these trials have no labels to write")
        with atomic_open(path, "w", encoding="utf-8") as f:
            for e, t, lab in zip(self.enroll, self.test, self.labels, strict=True):
                f.write(f"{e} {t} {'target' if lab else 'nontarget'}\n")

    def index(
        self, enroll_keys: Sequence[str], test_keys: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of each trial's ids among `enroll_keys` and `test_keys` (each unique).

        Returns (enroll_rows (T,), test_rows (T,), kept (T,) bool): -1 where an id is unknown,
        kept where both are known.
        """
        enroll_rows = rows_of(enroll_keys, self.enroll)
        test_rows = rows_of(test_keys, self.test)
        return enroll_rows, test_rows, (enroll_rows >= 0) & (test_rows >= 0)

    def warn_unknown(
        self, enroll_rows: np.ndarray, test_rows: np.ndarray, enroll_name: str, test_name: str
    ) -> int:
        """Kaldi's warning for every trial `index` could not place (its enrolment id if that is
        unknown, else its test id) -> the number of such trials."""
        skipped = np.nonzero((enroll_rows < 0) | (test_rows < 0))[0]
        for i in skipped:
            if enroll_rows[i] < 0:
                log.warning("Key %s not present in %s.", self.enroll[i], enroll_name)
            else:
                log.warning("Key %s not present in %s.", self.test[i], test_name)
        return len(skipped)

    def subset(self, mask: np.ndarray) -> Trials:
        """The trials where `mask` (T,) bool is true, in order."""
        keep = np.nonzero(mask)[0].tolist()
        return Trials(
            [self.enroll[i] for i in keep],
            [self.test[i] for i in keep],
            None if self.labels is None else self.labels[keep],
        )
