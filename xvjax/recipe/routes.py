"""The backend routes of the transfer recipe: what each table row's backend is built from, and the
candidates the dev set chooses between.

A `BackendRecipe` is one point of that space:

    model   "source"  LDA + PLDA of source_train (or the user's Kaldi transform.mat + plda)
            "target"  LDA + PLDA retrained on the labelled in-domain set (target_train)
            "pooled"  LDA + PLDA on source_train and target_train together
            "coral"   LDA + PLDA of source_train after correlation alignment to the in-domain set
                      (whitened with the source covariance, re-coloured with the in-domain one)
            "pseudo"  LDA + PLDA on the unlabelled in-domain set, labelled by clustering it into
                      `clusters` speakers (alone), or that PLDA trained in the source LDA space and
                      interpolated with the source PLDA (`interp` = its weight)
    mean    "source" the mean of the model's training set (or the user's mean.vec)
            "adapt"  the mean of the unlabelled in-domain set (re-centring, sre16's mean.vec)
    adapt   (within, between): the PLDA adapted to the unlabelled in-domain set
            (`ivector-adapt-plda --within-covar-scale --between-covar-scale`)
    norm    "" | "snorm" | "asnorm" (top_k): score normalisation, unlabelled in-domain cohort
    lda_dim LDA dimension (capped at speakers - 1 of the training set; the cap is reported)

`Backends` fits and caches the pieces for one embedding extractor (one network's x-vectors);
`FAMILIES` lists the candidate sets the recipe's rows choose from on the dev trials.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Mapping

import numpy as np

from xvjax.backend import cluster, coral, means, pseudo_labels
from xvjax.backend.system import PldaBackend, XvectorSet
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

LABELLED_MODELS = ("target", "pooled")


@dataclasses.dataclass(frozen=True)
class BackendRecipe:
    model: str = "source"
    mean: str = "source"
    adapt: tuple[float, float] | None = None
    lda_dim: int | None = None
    clusters: int | None = None
    interp: float | None = None
    norm: str = ""
    top_k: int = 0

    @property
    def uses_labels(self) -> bool:
        """Does it need labelled in-domain training data (target_train)?"""
        return self.model in LABELLED_MODELS

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["adapt"] = list(self.adapt) if self.adapt else None
        return d

    @staticmethod
    def from_dict(d: Mapping) -> BackendRecipe:
        d = dict(d)
        d["adapt"] = tuple(d["adapt"]) if d.get("adapt") else None
        return BackendRecipe(**d)

    def describe(self, lda_dim: int | None = None) -> str:
        model = {
            "source": "source LDA/PLDA",
            "target": "in-domain LDA/PLDA",
            "pooled": "pooled source + in-domain LDA/PLDA",
            "coral": "CORAL-aligned source LDA/PLDA",
            "pseudo": f"LDA/PLDA on {self.clusters} in-domain clusters"
            if self.interp is None
            else f"source LDA, PLDA interpolated with {self.clusters} in-domain clusters' "
            f"(weight {self.interp:g})",
        }[self.model]
        parts = [model + (f" (dim {lda_dim})" if lda_dim else "")]
        parts.append("source mean" if self.mean == "source" else "in-domain mean")
        if self.adapt:
            parts.append(f"adapted PLDA {self.adapt[0]:g}/{self.adapt[1]:g}")
        if self.norm == "snorm":
            parts.append("S-norm")
        elif self.norm == "asnorm":
            parts.append(f"AS-norm top {self.top_k}")
        return ", ".join(parts)


@dataclasses.dataclass
class Built:
    """A row's backend and what it scores with."""

    backend: PldaBackend
    norm: str  # "" | "snorm" | "asnorm"
    cohort: np.ndarray | None  # raw x-vectors of the S-norm cohort
    top_k: int
    lda_dim: int | None
    note: str = ""  # e.g. "AS-norm top-k clamped to the cohort"


class Backends:
    """Fits the pieces of every backend recipe for one network's x-vectors, once each.

    sets: x-vectors of source_train, target_train (labelled; may be absent), target_adapt
    (unlabelled), by name. user: the user's Kaldi (mean, lda, plda) of the source system, used
    instead of fitting on source_train.
    """

    def __init__(
        self,
        sets: Mapping[str, XvectorSet],
        lda_dim: int,
        em_iters: int,
        user: tuple = (None, None, None),
    ):
        self.sets = sets
        self.lda_dim = int(lda_dim)
        self.em_iters = int(em_iters)
        self.user = user
        adapt = sets.get("target_adapt")
        if adapt is None:
            raise XvjaxError("no unlabelled in-domain set (target_adapt) for the in-domain routes")
        self.adapt_vectors = adapt.mat
        self.adapt_mean = means.global_mean(adapt.mat)
        self._cache: dict = {}

    def _once(self, key, make: Callable):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _set(self, name: str) -> XvectorSet:
        if name not in self.sets:
            raise XvjaxError(f"no {name} x-vectors for this route")
        return self.sets[name]

    def source(self, lda_dim: int | None = None) -> PldaBackend:
        mean, lda, plda = self.user
        if plda is not None:  # the user's Kaldi backend belongs to the imported network only
            if mean is None:
                mean = means.global_mean(self._set("source_train").mat)
            return PldaBackend(np.asarray(mean, np.float64), lda, plda)
        dim = lda_dim or self.lda_dim
        return self._once(("source", dim), lambda: self._fit(self._set("source_train"), dim))

    def _fit(self, xvset: XvectorSet, dim: int) -> PldaBackend:
        return PldaBackend.fit(xvset, dim, self.em_iters)

    def labelled(self, model: str, lda_dim: int | None) -> PldaBackend:
        dim = lda_dim or self.lda_dim
        if model == "target":
            return self._once(("target", dim), lambda: self._fit(self._set("target_train"), dim))
        # pooled: source and in-domain speakers together (ids prefixed: sets may share names)
        return self._once(("pooled", dim), lambda: self._fit(self._pooled(), dim))

    def _pooled(self) -> XvectorSet:
        src, tgt = self._set("source_train"), self._set("target_train")
        keys = [f"s:{k}" for k in src.keys] + [f"t:{k}" for k in tgt.keys]
        utt2spk = {f"s:{k}": f"s:{s}" for k, s in zip(src.keys, src.spk_ids, strict=True)}
        utt2spk.update({f"t:{k}": f"t:{s}" for k, s in zip(tgt.keys, tgt.spk_ids, strict=True)})
        return XvectorSet(keys, np.concatenate([src.mat, tgt.mat]), utt2spk)

    def coral(self, lda_dim: int | None) -> PldaBackend:
        dim = lda_dim or self.lda_dim

        def make():
            src = self._set("source_train")
            align = coral.fit_coral(src.mat, self.adapt_vectors)
            return self._fit(XvectorSet(src.keys, align.apply(src.mat), src.utt2spk), dim)

        return self._once(("coral", dim), make)

    def pseudo_labels(self, num_clusters: int) -> np.ndarray:
        """(N,) cluster of each target_adapt x-vector: average-linkage AHC of PLDA scores of the
        source backend centred on the in-domain mean (what the recipe has before any label)."""

        def make():
            scorer = self.source().with_mean(self.adapt_mean)
            return cluster.ahc(
                self.adapt_vectors,
                similarity="plda",
                plda_backend=scorer,
                num_clusters=int(num_clusters),
            )

        return self._once(("clusters", num_clusters), make)

    def pseudo_set(self, num_clusters: int) -> XvectorSet:
        adapt = self._set("target_adapt")
        labels = self.pseudo_labels(num_clusters)
        utt2spk = pseudo_labels.pseudo_utt2spk(adapt.keys, labels)
        return XvectorSet(adapt.keys, adapt.mat, utt2spk)

    def pseudo(self, num_clusters: int, interp: float | None, lda_dim: int | None) -> PldaBackend:
        dim = lda_dim or self.lda_dim

        def make():
            pseudo = self.pseudo_set(num_clusters)
            if interp is None:
                return pseudo_labels.fit_pseudo_label_backend(pseudo, dim, self.em_iters)
            # In the source LDA space (centred on the in-domain mean): the pseudo-label PLDA,
            # interpolated with the source PLDA.
            space = self.source(lda_dim).with_mean(self.adapt_mean)
            in_domain = pseudo_labels.fit_pseudo_label_backend(
                pseudo, em_iters=self.em_iters, space=space
            )
            return space.interpolate(in_domain, float(interp))

        return self._once(("pseudo", num_clusters, interp, dim), make)

    def build(self, r: BackendRecipe) -> Built:
        if r.model == "source":
            b = self.source(r.lda_dim)
        elif r.model in LABELLED_MODELS:
            b = self.labelled(r.model, r.lda_dim)
        elif r.model == "coral":
            b = self.coral(r.lda_dim)
        elif r.model == "pseudo":
            if not r.clusters:
                raise XvjaxError("a pseudo-label backend needs a number of clusters")
            b = self.pseudo(r.clusters, r.interp, r.lda_dim)
        else:
            raise XvjaxError(f"unknown backend model '{r.model}'")
        if r.mean == "adapt":
            b = b.with_mean(self.adapt_mean)
        if r.adapt:
            b = b.adapt(self.adapt_vectors, *r.adapt)
        cohort, top_k, note = None, 0, ""
        if r.norm:
            cohort = self.adapt_vectors
            top_k = r.top_k
            if r.norm == "asnorm" and top_k > len(cohort):
                note = f"AS-norm top-k {top_k} clamped to the cohort's {len(cohort)}"
                log.warning("%s", note)
                top_k = len(cohort)
        lda_dim = None if b.lda is None else int(b.lda.shape[0])
        return Built(b, r.norm, cohort, top_k, lda_dim, note)


# ------------------------------------------------------------------------------- the search space

ADAPT_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)
LDA_DIMS = (8, 16, 24, 32, 48, 64, 100, 150, 200)
TOP_KS = (10, 25, 50, 100, 200, 300, 500)
CLUSTER_FRACTIONS = (0.025, 0.05, 0.1, 0.2, 0.4)  # clusters per in-domain utterance
INTERP_WEIGHTS = (0.25, 0.5, 0.75, 1.0)


def lda_dims(max_dim: int, cap: int) -> list[int]:
    """LDA dimensions to try: the grid up to the x-vector dimension and speakers - 1."""
    dims = [d for d in LDA_DIMS if d <= min(max_dim, cap)]
    return dims or [min(max_dim, cap)]


def top_ks(cohort_size: int) -> list[int]:
    ks = [k for k in TOP_KS if k < cohort_size]
    return ks + [cohort_size] if cohort_size not in ks else ks


def cluster_counts(num_utts: int) -> list[int]:
    return sorted({max(2, round(f * num_utts)) for f in CLUSTER_FRACTIONS if f * num_utts >= 2})


def adaptation_grid() -> list[tuple[float, float]]:
    return [(w, b) for w, b in itertools.product(ADAPT_SCALES, ADAPT_SCALES) if w or b]
