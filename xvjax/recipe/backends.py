"""The backend rows of the transfer recipe: which pieces each row's backend is built from.

A backend `Recipe` says where each piece comes from:

    mean   "source": mean of the source training x-vectors (or the user's mean.vec)
           "adapt":  mean of the unlabelled in-domain set (re-centring, sre16's SRE16-major mean)
    model  "source": LDA + PLDA trained on source_train (or the user's transform.mat + plda)
           "target": LDA + PLDA retrained on the labelled in-domain set (target_train)
    adapt  True: the PLDA adapted to the unlabelled in-domain set (`ivector-adapt-plda`,
           within-covar-scale / between-covar-scale as the recipe: 0.75 / 0.25)
    norm   "" | "snorm" | "asnorm": score normalisation with the unlabelled in-domain cohort

`build_pieces` fits the source and in-domain systems once per embedding extractor
(`xvjax.backend.system.PldaBackend`, Kaldi's pipelines); `make_backend` assembles a row's backend
from them. `metrics_of` is what a row reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from xvjax import metrics
from xvjax.backend import means
from xvjax.backend.plda import Plda
from xvjax.backend.system import PldaBackend, XvectorSet
from xvjax.errors import XvjaxError


@dataclasses.dataclass(frozen=True)
class Recipe:
    mean: str = "source"
    model: str = "source"
    adapt: bool = False
    norm: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: Mapping) -> Recipe:
        return Recipe(**{k: d[k] for k in ("mean", "model", "adapt", "norm")})

    def describe(self) -> str:
        parts = [
            "source LDA/PLDA" if self.model == "source" else "in-domain LDA/PLDA",
            "source mean" if self.mean == "source" else "in-domain mean",
        ]
        if self.adapt:
            parts.append("adapted PLDA")
        if self.norm:
            parts.append({"snorm": "S-norm", "asnorm": "AS-norm"}[self.norm])
        return ", ".join(parts)


def metrics_of(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """EER (%) as Kaldi's compute-eer and minDCF at p-target 0.01 and 0.005 (compute_min_dcf.py)."""
    eer, _ = metrics.compute_eer(scores, labels)
    dcf1, _ = metrics.compute_min_dcf(scores, labels, 0.01)
    dcf05, _ = metrics.compute_min_dcf(scores, labels, 0.005)
    return {
        "eer": 100.0 * eer,
        "min_dcf_0.01": dcf1,
        "min_dcf_0.005": dcf05,
        "num_target": int(labels.sum()),
        "num_nontarget": int((~labels).sum()),
    }


def better(a: dict, b: dict) -> bool:
    """Is result a better than b on the target trials (EER, then minDCF 0.01)?"""
    return (a["eer"], a["min_dcf_0.01"]) < (b["eer"], b["min_dcf_0.01"])


@dataclasses.dataclass
class Pieces:
    """What backends are built from, for one embedding extractor: the source system (source
    mean, LDA, PLDA), the system retrained in domain (its LDA and PLDA), and the unlabelled
    in-domain set (its mean re-centres; its vectors adapt the PLDA and are the S-norm cohort)."""

    source: PldaBackend | None
    target: PldaBackend | None
    adapt_mean: np.ndarray
    adapt_vectors: np.ndarray


def build_pieces(
    source_train: XvectorSet | None,
    target_train: XvectorSet | None,
    adapt_set: np.ndarray,
    lda_dim: int,
    em_iters: int,
    user_mean: np.ndarray | None = None,
    user_lda: np.ndarray | None = None,
    user_plda: Plda | None = None,
    need: Sequence[str] = ("source", "target"),
) -> Pieces:
    """Trains the source and in-domain LDA/PLDA (unless the user's Kaldi backend is given)."""
    source = target = None
    if "source" in need:
        if user_plda is not None:
            if user_mean is not None:
                mean = np.asarray(user_mean, np.float64)
            elif source_train is not None:
                mean = means.global_mean(source_train.mat)
            else:
                raise XvjaxError("the Kaldi backend needs --mean (or --src-data to compute it)")
            source = PldaBackend(mean, user_lda, user_plda)
        elif source_train is not None:
            source = PldaBackend.fit(source_train, lda_dim, em_iters)
    if "target" in need and target_train is not None:
        target = PldaBackend.fit(target_train, lda_dim, em_iters)
    return Pieces(source, target, means.global_mean(adapt_set), adapt_set)


def make_backend(recipe: Recipe, p: Pieces, within: float, between: float) -> PldaBackend:
    """The backend of one row: the source or in-domain LDA/PLDA, centred with the source or
    in-domain mean, its PLDA adapted to the in-domain set if the recipe says so."""
    if recipe.model == "source":
        if p.source is None:
            raise XvjaxError("no source backend (give --src-data or --plda)")
        b = p.source if recipe.mean == "source" else p.source.with_mean(p.adapt_mean)
    else:
        if p.target is None:
            raise XvjaxError("no labelled in-domain set to train the in-domain backend")
        b = p.target.with_mean(p.adapt_mean)
    if recipe.adapt:
        b = b.adapt(p.adapt_vectors, within, between)
    return b


BASE_ROWS: tuple[tuple[str, str, Recipe], ...] = (
    ("1", "source model + source mean, LDA, PLDA (out-of-domain baseline)", Recipe()),
    ("2", "+ in-domain mean re-centring", Recipe(mean="adapt")),
    ("3", "+ unsupervised PLDA adaptation", Recipe(mean="adapt", adapt=True)),
    ("4", "LDA + PLDA retrained on labelled in-domain data", Recipe(mean="adapt", model="target")),
)
