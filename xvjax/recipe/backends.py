"""The backend rows of the transfer recipe, as the sre16/v2 `run.sh` pipes Kaldi's binaries.

A backend `Recipe` says where each piece comes from:

    mean   "source": mean of the source training x-vectors (or the user's mean.vec)
           "adapt":  mean of the unlabelled in-domain set (re-centring, sre16's SRE16-major mean)
    model  "source": LDA + PLDA trained on source_train (or the user's transform.mat + plda)
           "target": LDA + PLDA retrained on the labelled in-domain set (target_train)
    adapt  True: the PLDA adapted to the unlabelled in-domain set (`ivector-adapt-plda`,
           within-covar-scale / between-covar-scale as the recipe: 0.75 / 0.25)
    norm   "" | "snorm" | "asnorm": score normalisation with the unlabelled in-domain cohort

Pipelines (Kaldi equivalents):
    lda  = ivector-compute-lda --total-covariance-factor=0 --dim=D (subtract own mean)
    plda = ivector-compute-plda spk2utt (subtract own mean | transform-vec lda | normalize-length)
    plda_adapted = ivector-adapt-plda plda (adapt set: subtract own mean | lda | normalize-length)
    enroll = ivector-mean spk2utt | subtract mean | lda | normalize-length   (num_utts per model)
    test   = subtract mean | lda | normalize-length
    score  = ivector-plda-scoring --normalize-length=true --num-utts
The LDA dimension is min(lda_dim, x-vector dim, speakers - 1) of its training set.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


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


@dataclasses.dataclass
class Backend:
    """mean (D,), lda (R, D) or (R, D+1) or None, plda on the projected space."""

    mean: np.ndarray
    lda: np.ndarray | None
    plda: object

    def project(self, x: np.ndarray) -> np.ndarray:
        """subtract mean | transform-vec lda | normalize-length; (N, D) -> (N, R) float64."""
        from xvjax.backend import lda, means

        y = means.subtract_mean(x, self.mean)
        if self.lda is not None:
            y = lda.transform_vec(self.lda, y)
        return means.normalize_length(y)[0]


@dataclasses.dataclass
class Labelled:
    """x-vectors of a set: keys, (N, D) matrix, and utt2spk (None for unlabelled sets)."""

    keys: list[str]
    mat: np.ndarray
    utt2spk: dict[str, str] | None = None

    @property
    def spk_ids(self) -> list[str]:
        if self.utt2spk is None:
            raise XvjaxError("this x-vector set has no speaker labels")
        return [self.utt2spk[k] for k in self.keys]

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: self.mat[i] for i, k in enumerate(self.keys)}


def load_xvectors(scp: str, utt2spk: Mapping[str, str] | None = None) -> Labelled:
    from xvjax.kaldi import tables

    table = tables.read_dict("scp:" + scp)
    keys = sorted(table)
    if not keys:
        raise XvjaxError(f"{scp}: no x-vectors")
    mat = np.stack([np.asarray(table[k], np.float64) for k in keys])
    if utt2spk is not None:
        utt2spk = {k: utt2spk[k] for k in keys if k in utt2spk}
    return Labelled(keys, mat, utt2spk)


def fit_lda_plda(train: Labelled, lda_dim: int, em_iters: int = 10):
    """(lda (R, D+1), plda) trained on a labelled set, as the sre16/v2 recipe trains them."""
    from xvjax.backend import lda, means, plda

    spk = train.spk_ids
    num_spk = len(set(spk))
    dim = min(lda_dim, train.mat.shape[1], num_spk - 1)
    if dim < 1:
        raise XvjaxError("LDA needs at least two training speakers")
    x = means.subtract_mean(train.mat)
    lda_mat = lda.compute_lda(x, spk, dim=dim, total_covariance_factor=0.0)
    y = means.normalize_length(lda.transform_vec(lda_mat, x))[0]
    return lda_mat, plda.train_plda(y, spk, num_em_iters=em_iters)


def adapt(backend: Backend, unlabelled: np.ndarray, within: float, between: float) -> Backend:
    """`ivector-adapt-plda` on (subtract own mean | lda | normalize-length) in-domain vectors."""
    from xvjax.backend import adapt as adapt_lib
    from xvjax.backend import lda, means

    y = means.subtract_mean(unlabelled)
    if backend.lda is not None:
        y = lda.transform_vec(backend.lda, y)
    y = means.normalize_length(y)[0]
    return dataclasses.replace(backend, plda=adapt_lib.adapt_plda(backend.plda, y, within, between))


@dataclasses.dataclass
class Trials:
    enroll: list[str]
    test: list[str]
    labels: np.ndarray  # (T,) bool

    @staticmethod
    def read(path: str) -> Trials:
        from xvjax.kaldi import tables

        rows = tables.read_trials(path)
        bad = [r for r in rows if r[2] not in ("target", "nontarget")]
        if bad:
            raise XvjaxError(f"{path}: trial '{bad[0][0]} {bad[0][1]}' has no target|nontarget")
        return Trials(
            [r[0] for r in rows], [r[1] for r in rows], np.array([r[2] == "target" for r in rows])
        )


def _index_of(keys: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """(len(names),) position of each name in keys, -1 where a name is not a key."""
    k = np.asarray(keys, dtype=str)
    if k.size == 0:
        return np.full(len(names), -1)
    order = np.argsort(k)
    n = np.asarray(names, dtype=str)
    pos = np.minimum(np.searchsorted(k[order], n), k.size - 1)
    return np.where(k[order][pos] == n, order[pos], -1)


def score(
    backend: Backend,
    enroll: Labelled,
    test: Labelled,
    trials: Trials,
    norm: str = "",
    cohort: np.ndarray | None = None,
    top_k: int = 100,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """PLDA scores of the trials -> (scores (T',), labels (T',), kept trial indices).

    Enrollment models are speakers of `enroll` (their x-vectors averaged, `ivector-mean spk2utt`);
    trials whose model or test segment has no x-vector are skipped with a warning, as Kaldi does.
    """
    from xvjax.backend import means, scoring, snorm
    from xvjax.kaldi import datadir

    spk2utt = datadir.utt2spk_to_spk2utt(enroll.utt2spk or {})
    spk_means, num_utts = means.speaker_means(enroll.as_dict(), spk2utt)
    models = sorted(spk_means)
    e_all = _index_of(models, trials.enroll)
    t_all = _index_of(test.keys, trials.test)
    kept_mask = (e_all >= 0) & (t_all >= 0)
    kept = np.nonzero(kept_mask)[0].tolist()
    if len(kept) < len(trials.labels):
        log.warning(
            "%d of %d trials have no enrollment model or test x-vector; skipped",
            len(trials.labels) - len(kept),
            len(trials.labels),
        )
    if not kept:
        raise XvjaxError("no trial can be scored (trials name unknown models or test segments)")
    e_idx, t_idx = e_all[kept_mask], t_all[kept_mask]
    counts = np.array([num_utts[m] for m in models])
    e_vec = backend.project(np.stack([spk_means[m] for m in models]))
    t_vec = backend.project(test.mat)
    if not norm:
        s = scoring.score_trials(backend.plda, e_vec, t_vec, e_idx, t_idx, counts)
    else:
        if cohort is None or len(cohort) < 2:
            raise XvjaxError("score normalisation needs a cohort of at least 2 vectors")
        c_vec = backend.project(cohort)
        k = max(1, min(int(top_k), len(c_vec)))
        s = snorm.norm_trial_scores(
            backend.plda, e_vec, t_vec, c_vec, e_idx, t_idx, counts, method=norm, top_k=k
        )
    return np.asarray(s, np.float64), trials.labels[kept], kept


def metrics_of(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """EER (%) as Kaldi's compute-eer and minDCF at p-target 0.01 and 0.005 (compute_min_dcf.py)."""
    from xvjax import metrics

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
    """What backends are built from, for one embedding extractor."""

    source_mean: np.ndarray | None
    source_lda: np.ndarray | None
    source_plda: object | None
    adapt_mean: np.ndarray
    adapt_vectors: np.ndarray
    target_lda: np.ndarray | None
    target_plda: object | None


def build_pieces(
    source_train: Labelled | None,
    target_train: Labelled | None,
    adapt_set: np.ndarray,
    lda_dim: int,
    em_iters: int,
    user_mean: np.ndarray | None = None,
    user_lda: np.ndarray | None = None,
    user_plda=None,
    need: Sequence[str] = ("source", "target"),
) -> Pieces:
    """Trains the source and in-domain LDA/PLDA (unless the user's Kaldi backend is given)."""
    from xvjax.backend import means

    s_mean = s_lda = s_plda = None
    if "source" in need:
        if user_plda is not None:
            s_plda, s_lda = user_plda, user_lda
            if user_mean is not None:
                s_mean = np.asarray(user_mean, np.float64)
            elif source_train is not None:
                s_mean = means.global_mean(source_train.mat)
            else:
                raise XvjaxError("the Kaldi backend needs --mean (or --src-data to compute it)")
        elif source_train is not None:
            s_mean = means.global_mean(source_train.mat)
            s_lda, s_plda = fit_lda_plda(source_train, lda_dim, em_iters)
    t_lda = t_plda = None
    if "target" in need and target_train is not None:
        t_lda, t_plda = fit_lda_plda(target_train, lda_dim, em_iters)
    return Pieces(s_mean, s_lda, s_plda, means.global_mean(adapt_set), adapt_set, t_lda, t_plda)


def make_backend(recipe: Recipe, p: Pieces, within: float, between: float) -> Backend:
    if recipe.model == "source":
        if p.source_plda is None:
            raise XvjaxError("no source backend (give --src-data or --plda)")
        b = Backend(p.source_mean if recipe.mean == "source" else p.adapt_mean, p.source_lda,
                    p.source_plda)  # fmt: skip
    else:
        if p.target_plda is None:
            raise XvjaxError("no labelled in-domain set to train the in-domain backend")
        b = Backend(p.adapt_mean, p.target_lda, p.target_plda)
    if recipe.adapt:
        b = adapt(b, p.adapt_vectors, within, between)
    return b


BASE_ROWS: tuple[tuple[str, str, Recipe], ...] = (
    ("1", "source model + source mean, LDA, PLDA (out-of-domain baseline)", Recipe()),
    ("2", "+ in-domain mean re-centring", Recipe(mean="adapt")),
    ("3", "+ unsupervised PLDA adaptation", Recipe(mean="adapt", adapt=True)),
    ("4", "LDA + PLDA retrained on labelled in-domain data", Recipe(mean="adapt", model="target")),
)
