"""Validation during training: x-vectors of an in-domain dev set, cosine scoring, Kaldi EER.

Trials are Kaldi's `<enroll> <test> target|nontarget` lines (`xvjax.backend.trials.Trials`). An id that is an utterance of the dev
set uses its x-vector; an id that is a speaker of the dev set (sre16-style enrollment) uses the mean
x-vector of that speaker's utterances. Scores are cosines of x-vectors centred on the dev-set mean.
"""

from __future__ import annotations

import logging

import numpy as np

from xvjax.backend import scoring
from xvjax.backend.trials import Trials
from xvjax.data.stores import FeatsStore
from xvjax.errors import XvjaxError
from xvjax.metrics import compute_eer
from xvjax.model.xvector_compute import Extractor, check_frontend, extract_xvectors

log = logging.getLogger("xvjax")


def cosine_scores(
    embeddings: dict[str, np.ndarray], trials: Trials, utt2spk: dict[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of the labelled trials whose two sides have x-vectors (others are skipped).

    A side is an utterance's centred x-vector or a speaker's mean of them; the cosines are
    `xvjax.backend.scoring.cosine_scores` over the kept trials (one batched expression).
    """
    keys = sorted(embeddings)
    if not keys:
        raise XvjaxError("no dev x-vectors to score")
    mat = np.stack([embeddings[k] for k in keys]).astype(np.float64)
    mat -= mat.mean(axis=0)
    row = {k: i for i, k in enumerate(keys)}
    spk_rows: dict[str, list[int]] = {}
    for utt, spk in (utt2spk or {}).items():
        if utt in row:
            spk_rows.setdefault(spk, []).append(row[utt])
    spks = [s for s in sorted(spk_rows) if s not in row]  # an utterance id wins over a speaker id
    sides = (
        np.concatenate([mat, np.stack([mat[spk_rows[s]].mean(axis=0) for s in spks])])
        if spks
        else mat
    )
    ie, it, kept = trials.index(keys + spks, keys + spks)
    if not kept.all():
        log.warning(
            "%d of %d dev trials have no x-vector on one side and were skipped",
            int((~kept).sum()),
            len(trials),
        )
    scores = scoring.cosine_scores(sides, sides, ie[kept], it[kept])
    return scores, np.asarray(trials.labels[kept], bool)


class DevSet:
    """An in-domain dev data dir + trials; `eer(spec, variables)` extracts and scores."""

    def __init__(
        self, data_dir: str, trials_path: str, output_node: str = "tdnn6.affine", max_utts: int = 0
    ):
        self.data_dir = data_dir
        self.store = FeatsStore(data_dir, prep="auto", cache=True)
        self.trials = Trials.read(trials_path, labelled=True)
        if not len(self.trials):
            raise XvjaxError(f"trials file {trials_path} is empty")
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
        if self._extractor is None or self._extractor.spec != spec:
            check_frontend(spec, self.data_dir)
            self._extractor = Extractor(spec, variables, self.output_node, 64, 64 * 400)
        else:  # same jitted function, new weights
            self._extractor.variables = variables
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
        emb = self.embeddings(spec, variables)
        scores, labels = cosine_scores(emb, self.trials, self.store.utt2spk)
        if labels.all() or not labels.any():
            raise XvjaxError("dev trials need both target and nontarget trials")
        eer, _ = compute_eer(scores, labels)
        return float(eer)
