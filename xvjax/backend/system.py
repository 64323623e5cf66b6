"""The PLDA backend as one system: mean -> LDA -> length norm -> PLDA, fitted, adapted and scored
the way Kaldi's sre16/v2 `run.sh` pipes its binaries.

    fit    mean = ivector-mean (train)
           lda  = ivector-compute-lda --total-covariance-factor=0 --dim=R (subtract own mean)
           plda = ivector-compute-plda spk2utt (subtract own mean | transform-vec lda |
                  ivector-normalize-length)
    adapt  plda = ivector-adapt-plda plda (in-domain: subtract own mean | lda | normalize-length)
    interpolate  plda = covariance interpolation with an in-domain PLDA trained in the same space
           (same mean and LDA; `adapt.interpolate_plda`)
    score  enroll = ivector-mean spk2utt | subtract mean | lda | normalize-length (num_utts each)
           test   = subtract mean | lda | normalize-length
           ivector-plda-scoring --normalize-length=true --num-utts, optionally S-norm or
           adaptive S-norm against a cohort (`xvjax.backend.snorm`)

The LDA dimension is min(lda_dim, x-vector dim, speakers - 1) of the training set. Swapping the
mean (`with_mean`) is the in-domain re-centring of the recipes (mean.vec of the in-domain set).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import numpy as np

from xvjax.backend import adapt as adapt_lib
from xvjax.backend import lda, means, scoring, snorm
from xvjax.backend.plda import Plda, train_plda
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.kaldi import datadir, tables

log = logging.getLogger("xvjax")

__all__ = ["XvectorSet", "PldaBackend"]


@dataclasses.dataclass
class XvectorSet:
    """x-vectors of a set: keys (N,), matrix (N, D) float64, utt2spk (None for unlabelled sets)."""

    keys: list[str]
    mat: np.ndarray
    utt2spk: dict[str, str] | None = None

    @staticmethod
    def read_scp(scp: str, utt2spk: Mapping[str, str] | None = None) -> XvectorSet:
        """The x-vectors of `xvector.scp` in sorted key order (utt2spk kept for their keys)."""
        table = tables.read_dict("scp:" + scp)
        keys = sorted(table)
        if not keys:
            raise XvjaxError(f"{scp}: no x-vectors")
        mat = np.stack([np.asarray(table[k], np.float64) for k in keys])
        if utt2spk is not None:
            utt2spk = {k: utt2spk[k] for k in keys if k in utt2spk}
        return XvectorSet(keys, mat, utt2spk)

    @property
    def spk_ids(self) -> list[str]:
        if self.utt2spk is None:
            raise XvjaxError("this x-vector set has no speaker labels")
        return [self.utt2spk[k] for k in self.keys]

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: self.mat[i] for i, k in enumerate(self.keys)}

    def speaker_means(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """`ivector-mean spk2utt`: (speakers sorted, (S, D) float32 means, (S,) num_utts)."""
        spk2utt = datadir.utt2spk_to_spk2utt(self.utt2spk or {})
        spk_means, num_utts = means.speaker_means(self.as_dict(), spk2utt)
        speakers = sorted(spk_means)
        if not speakers:
            return [], np.zeros((0, self.mat.shape[1]), np.float32), np.zeros(0, np.int64)
        return (
            speakers,
            np.stack([spk_means[s] for s in speakers]),
            np.array([num_utts[s] for s in speakers]),
        )


@dataclasses.dataclass(frozen=True)
class PldaBackend:
    """mean (D,), lda (R, D) or (R, D+1) affine or None, and a PLDA on the projected space."""

    mean: np.ndarray
    lda: np.ndarray | None
    plda: Plda

    @staticmethod
    def fit(train: XvectorSet, lda_dim: int, em_iters: int = 10) -> PldaBackend:
        """Mean, LDA and PLDA of a labelled set, as the sre16/v2 recipe trains them."""
        spk = train.spk_ids
        dim = min(lda_dim, train.mat.shape[1], len(set(spk)) - 1)
        if dim < 1:
            raise XvjaxError("LDA needs at least two training speakers")
        mean = means.global_mean(train.mat)
        x = means.subtract_mean(train.mat, mean)
        lda_mat = lda.compute_lda(x, spk, dim=dim, total_covariance_factor=0.0)
        y = means.normalize_length(lda.transform_vec(lda_mat, x))[0]
        return PldaBackend(mean, lda_mat, train_plda(y, spk, num_em_iters=em_iters))

    def with_mean(self, mean: np.ndarray) -> PldaBackend:
        """The same LDA and PLDA, centring with another mean (e.g. the in-domain mean.vec)."""
        return dataclasses.replace(self, mean=np.asarray(mean, np.float64))

    def adapt(
        self, unlabelled: np.ndarray, within_covar_scale: float, between_covar_scale: float
    ) -> PldaBackend:
        """`ivector-adapt-plda` on (subtract own mean | lda | normalize-length) (N, D) vectors."""
        y = self._lda_length_norm(means.subtract_mean(unlabelled))
        plda = adapt_lib.adapt_plda(self.plda, y, within_covar_scale, between_covar_scale)
        return dataclasses.replace(self, plda=plda)

    def interpolate(self, in_domain: PldaBackend, weight: float) -> PldaBackend:
        """This backend with its PLDA interpolated with `in_domain`'s (`adapt.interpolate_plda`,
        weight = the in-domain share). Both must share the mean and LDA (one input space), as a
        PLDA trained with `pseudo_labels.fit_pseudo_label_backend(..., space=self)` does."""
        same_lda = (self.lda is None) == (in_domain.lda is None) and (
            self.lda is None or np.array_equal(self.lda, in_domain.lda)
        )
        if not (same_lda and np.array_equal(self.mean, in_domain.mean)):
            raise XvjaxError(
                "cannot interpolate PLDAs of backends with different means or LDA: train the "
                "in-domain PLDA in this backend's space (project its vectors with this backend)"
            )
        plda = adapt_lib.interpolate_plda(self.plda, in_domain.plda, weight)
        return dataclasses.replace(self, plda=plda)

    def project(self, x: np.ndarray) -> np.ndarray:
        """subtract mean | transform-vec lda | normalize-length; (N, D) -> (N, R) float64."""
        return self._lda_length_norm(means.subtract_mean(x, self.mean))

    def _lda_length_norm(self, centred: np.ndarray) -> np.ndarray:
        y = centred if self.lda is None else lda.transform_vec(self.lda, centred)
        return means.normalize_length(y)[0]

    def score(
        self,
        enroll: XvectorSet,
        test: XvectorSet,
        trials: Trials,
        norm: str = "",
        cohort: np.ndarray | None = None,
        top_k: int = 100,
    ) -> tuple[np.ndarray, Trials]:
        """PLDA scores of the trials -> (scores (T',) float64, the T' trials scored, in order).

        Enrolment models are the speakers of `enroll` (their x-vectors averaged, with num_utts);
        trials whose model or test segment has no x-vector are skipped with a warning. norm:
        "" (raw LLRs), "snorm" or "asnorm" (adaptive S-norm over the top_k cohort scores; the
        cohort (C, D) is raw x-vectors, projected like the test side).
        """
        models, model_means, counts = enroll.speaker_means()
        e_rows, t_rows, kept = trials.index(models, test.keys)
        if not kept.all():
            log.warning(
                "%d of %d trials have no enrollment model or test x-vector; skipped",
                int((~kept).sum()),
                len(trials),
            )
        if not kept.any():
            raise XvjaxError("no trial can be scored (trials name unknown models or test segments)")
        e_rows, t_rows = e_rows[kept], t_rows[kept]
        e_vec, t_vec = self.project(model_means), self.project(test.mat)
        if not norm:
            s = scoring.score_trials(self.plda, e_vec, t_vec, e_rows, t_rows, counts)
        else:
            if cohort is None or len(cohort) < 2:
                raise XvjaxError("score normalisation needs a cohort of at least 2 vectors")
            c_vec = self.project(cohort)
            k = max(1, min(int(top_k), len(c_vec)))
            s = snorm.norm_trial_scores(
                self.plda, e_vec, t_vec, c_vec, e_rows, t_rows, counts, method=norm, top_k=k
            )
        return np.asarray(s, np.float64), trials.subset(kept)
