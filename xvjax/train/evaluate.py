"""Validation during training: x-vectors of an in-domain dev set, cosine scoring, Kaldi EER.

Trials are Kaldi's `<enroll> <test> target|nontarget` lines. An id that is an utterance of the dev
set uses its x-vector; an id that is a speaker of the dev set (sre16-style enrollment) uses the mean
x-vector of that speaker's utterances. Scores are cosines of x-vectors centred on the dev-set mean.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


@dataclasses.dataclass(frozen=True)
class Trials:
    enroll: tuple[str, ...]
    test: tuple[str, ...]
    target: np.ndarray  # (num_trials,) bool


def read_trials(path: str) -> Trials:
    enroll, test, target = [], [], []
    try:
        with open(path, encoding="utf-8") as f:
            for num, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 3 or parts[2] not in ("target", "nontarget"):
                    raise XvjaxError(f"{path}:{num}: expected '<enroll> <test> target|nontarget'")
                enroll.append(parts[0])
                test.append(parts[1])
                target.append(parts[2] == "target")
    except OSError as e:
        raise XvjaxError(f"cannot read trials {path}: {e.strerror}") from None
    if not target:
        raise XvjaxError(f"trials file {path} is empty")
    return Trials(tuple(enroll), tuple(test), np.asarray(target, bool))


def cosine_scores(
    embeddings: dict[str, np.ndarray], trials: Trials, utt2spk: dict[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of the trials whose two sides have x-vectors (others are skipped)."""
    keys = sorted(embeddings)
    if not keys:
        raise XvjaxError("no dev x-vectors to score")
    mat = np.stack([embeddings[k] for k in keys]).astype(np.float64)
    mean = mat.mean(axis=0)
    vec = {k: embeddings[k].astype(np.float64) - mean for k in keys}
    spk_utts: dict[str, list[str]] = {}
    for utt, spk in (utt2spk or {}).items():
        if utt in vec:
            spk_utts.setdefault(spk, []).append(utt)

    def side(name: str) -> np.ndarray | None:
        if name in vec:
            return vec[name]
        if name in spk_utts:
            return np.mean([vec[u] for u in spk_utts[name]], axis=0)
        return None

    scores, labels, skipped = [], [], 0
    for e, t, lab in zip(trials.enroll, trials.test, trials.target, strict=True):
        a, b = side(e), side(t)
        if a is None or b is None:
            skipped += 1
            continue
        denom = np.linalg.norm(a) * np.linalg.norm(b)
        scores.append(float(a @ b / denom) if denom > 0 else 0.0)
        labels.append(bool(lab))
    if skipped:
        log.warning(
            "%d of %d dev trials have no x-vector on one side and were skipped",
            skipped,
            len(trials.target),
        )
    return np.asarray(scores), np.asarray(labels, bool)


class DevSet:
    """An in-domain dev data dir + trials; `eer(spec, variables)` extracts and scores."""

    def __init__(
        self, data_dir: str, trials_path: str, output_node: str = "tdnn6.affine", max_utts: int = 0
    ):
        from xvjax.data.sources import FeatsStore

        self.store = FeatsStore(data_dir, prep="auto", cache=True)
        self.trials = read_trials(trials_path)
        self.output_node = output_node
        needed = set(self.trials.enroll) | set(self.trials.test)
        utts = [u for u in self.store.utt2len if u in needed or self.store.utt2spk.get(u) in needed]
        if max_utts > 0:
            utts = utts[:max_utts]
        if not utts:
            raise XvjaxError(f"dev set {data_dir}: no utterance appears in trials {trials_path}")
        self.utts = utts
        self.feats = {u: self.store.load(u) for u in utts}
        self._extractor = None

    def embeddings(self, spec, variables) -> dict[str, np.ndarray]:
        """x-vectors of the dev utterances; `variables` are host (numpy) arrays."""
        import jax

        from xvjax.model.extract import Extractor, extract_xvectors

        if self._extractor is None or self._extractor.spec != spec:
            self._extractor = Extractor(spec, variables, self.output_node, 64, 64 * 400)
        else:  # same jitted function, new weights
            self._extractor.variables = jax.device_put(variables)
        out = extract_xvectors(
            spec,
            variables,
            ((u, self.feats[u]) for u in self.utts),
            chunk_size=10000,
            min_chunk_size=25,
            output_node=self.output_node,
            extractor=self._extractor,
        )
        return dict(out)

    def eer(self, spec, variables) -> float:
        from xvjax.metrics import compute_eer

        emb = self.embeddings(spec, variables)
        scores, labels = cosine_scores(emb, self.trials, self.store.utt2spk)
        if labels.all() or not labels.any():
            raise XvjaxError("dev trials need both target and nontarget trials")
        eer, _ = compute_eer(scores, labels)
        return float(eer)
