"""Clustering-based pseudo-labels for an unlabelled in-domain set, and the backends trained on them
(issue #15: in-domain LDA/PLDA from pseudo-speakers, alone or interpolated with the source PLDA).

    labels = cluster.ahc(adapt.mat, "plda", plda_backend=source, threshold=thr)
    utt2spk = pseudo_utt2spk(adapt.keys, labels)                   # utt -> clu0007
    pseudo = XvectorSet(adapt.keys, adapt.mat, utt2spk)
    alone = fit_pseudo_label_backend(pseudo, lda_dim=150)           # own mean, LDA and PLDA
    in_domain = fit_pseudo_label_backend(pseudo, space=source)     # PLDA in the source's space
    backend = source.interpolate(in_domain, weight=0.5)             # adapt.interpolate_plda

The stopping threshold comes from `cluster.choose_threshold` (a labelled set, e.g. source-domain
speakers: the cut with the best purity/coverage F1) or from `choose_threshold_dev` here (an
in-domain dev set with trials: the candidate whose pseudo-label backend has the lowest EER).
Clusters smaller than `min_cluster_size` (default 2: the singletons, mostly vectors the clustering
could not place) are left out of training; a clustering with fewer than two clusters of two or
more utterances is refused, since PLDA needs within-speaker scatter from several speakers.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from xvjax.backend import cluster
from xvjax.backend.plda import train_plda
from xvjax.backend.system import PldaBackend, XvectorSet
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.metrics import compute_eer

log = logging.getLogger("xvjax")

__all__ = ["pseudo_utt2spk", "fit_pseudo_label_backend", "choose_threshold_dev"]


def pseudo_utt2spk(keys: Sequence[str], labels, prefix: str = "clu") -> dict[str, str]:
    """utt -> pseudo-speaker `<prefix><label>` for (N,) keys and (N,) integer cluster labels.

    Labels are zero-padded to one width, so the speakers sort (C order) as their numbers do.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != len(keys):
        raise XvjaxError(f"{len(keys)} keys but {lab.size} cluster labels")
    if len(set(keys)) != len(keys):
        dup = next(k for k, c in Counter(keys).items() if c > 1)
        raise XvjaxError(f"duplicate key '{dup}' among the clustered vectors")
    if lab.size and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0):
        raise XvjaxError("cluster labels must be non-negative integers")
    width = len(str(int(lab.max()))) if lab.size else 1
    return {k: f"{prefix}{int(c):0{width}d}" for k, c in zip(keys, lab, strict=True)}


def _training_rows(xvset: XvectorSet, min_cluster_size: int) -> tuple[np.ndarray, list[str]]:
    """Rows and labels of the clusters with >= min_cluster_size utterances; refuses a clustering
    with fewer than two clusters of two or more utterances."""
    if xvset.utt2spk is None:
        raise XvjaxError("the x-vector set has no pseudo-labels (utt2spk)")
    missing = [k for k in xvset.keys if k not in xvset.utt2spk]
    if missing:
        raise XvjaxError(f"utterance '{missing[0]}' has no pseudo-label ({len(missing)} without)")
    spk = xvset.spk_ids
    sizes = Counter(spk)
    num_multi = sum(1 for c in sizes.values() if c >= max(2, min_cluster_size))
    if num_multi < 2:
        raise XvjaxError(
            f"pseudo-labels give {len(sizes)} clusters of {len(spk)} utterances, {num_multi} of "
            f"them with {max(2, min_cluster_size)} or more; PLDA training needs at least two "
            "clusters of two utterances (change the clustering threshold or number of clusters)"
        )
    rows = np.array([i for i, s in enumerate(spk) if sizes[s] >= min_cluster_size])
    dropped = sum(1 for c in sizes.values() if c < min_cluster_size)
    log.info(
        "Pseudo-labels: %d clusters of %d or more utterances (%d utterances); left out %d "
        "smaller clusters (%d utterances)",
        len(sizes) - dropped,
        min_cluster_size,
        len(rows),
        dropped,
        len(spk) - len(rows),
    )
    return rows, [spk[i] for i in rows]


def fit_pseudo_label_backend(
    xvset: XvectorSet,
    lda_dim: int | None = None,
    em_iters: int = 10,
    *,
    space: PldaBackend | None = None,
    min_cluster_size: int = 2,
) -> PldaBackend:
    """An in-domain backend trained on pseudo-labels (`xvset.utt2spk`, e.g. `pseudo_utt2spk`).

    Give one of lda_dim (own mean, LDA to lda_dim and PLDA: `PldaBackend.fit`, the backend
    "alone") and space (a backend whose mean and LDA project the vectors; only the PLDA is
    trained, so it can be interpolated with that backend's: `PldaBackend.interpolate`).
    Clusters smaller than min_cluster_size are left out; fewer than two clusters of two or more
    utterances is an error.
    """
    if (lda_dim is None) == (space is None):
        raise XvjaxError(
            "give either lda_dim (the pseudo-label backend's own LDA) or space (the backend whose "
            "mean and LDA project the vectors), not both"
        )
    if min_cluster_size < 1:
        raise XvjaxError(f"minimum cluster size must be >= 1, got {min_cluster_size}")
    rows, spk = _training_rows(xvset, min_cluster_size)
    keys = [xvset.keys[i] for i in rows]
    mat = xvset.mat[rows]
    if space is None:
        utt2spk = dict(zip(keys, spk, strict=True))
        return PldaBackend.fit(XvectorSet(keys, mat, utt2spk), lda_dim, em_iters)
    if space.mean.shape[0] != mat.shape[1]:
        raise XvjaxError(
            f"x-vectors have dimension {mat.shape[1]}, the backend expects {space.mean.shape[0]}"
        )
    plda = train_plda(space.project(mat), spk, num_em_iters=em_iters)
    return PldaBackend(space.mean, space.lda, plda)


def choose_threshold_dev(
    adapt: XvectorSet,
    source: PldaBackend,
    enroll: XvectorSet,
    test: XvectorSet,
    trials: Trials,
    candidates: Sequence[float],
    *,
    similarity: str = "plda",
    weight: float = 1.0,
    em_iters: int = 10,
    min_cluster_size: int = 2,
    block_size: int = 2048,
    dtype=np.float32,
) -> cluster.ThresholdChoice:
    """The clustering threshold, among `candidates`, whose pseudo-label backend has the lowest EER
    on a labelled in-domain dev set.

    adapt: the unlabelled in-domain x-vectors, clustered once (average linkage of `similarity`
    through `source`, down to the lowest candidate) and cut at each candidate. For each cut, a
    PLDA is trained on the pseudo-labels in `source`'s space, interpolated with the source PLDA
    with in-domain share `weight` (1: the pseudo-label PLDA alone), and scores the dev `trials`
    (enroll, test as in `PldaBackend.score`). Candidates whose clustering cannot train a PLDA
    are reported with EER NaN; if none can, that is an error.
    """
    if trials.labels is None:
        raise XvjaxError("choosing a threshold on a dev set needs labelled trials")
    if not candidates:
        raise XvjaxError("no candidate thresholds given")
    thresholds = sorted({float(c) for c in candidates}, reverse=True)
    d = cluster.dendrogram(
        adapt.mat,
        similarity,
        source,
        threshold=thresholds[-1],
        block_size=block_size,
        dtype=dtype,
    )
    rows = []
    for thr in thresholds:
        labels = cluster.cut(d, threshold=thr)
        pseudo = XvectorSet(adapt.keys, adapt.mat, pseudo_utt2spk(adapt.keys, labels))
        num_clusters = int(labels.max()) + 1
        try:
            backend = fit_pseudo_label_backend(
                pseudo, em_iters=em_iters, space=source, min_cluster_size=min_cluster_size
            )
        except XvjaxError as e:
            log.warning("threshold %g (%d clusters): %s", thr, num_clusters, e)
            rows.append((thr, num_clusters, math.nan))
            continue
        if weight < 1.0:
            backend = source.interpolate(backend, weight)
        scores, scored = backend.score(enroll, test, trials)
        eer = compute_eer(scores, scored.labels)[0]
        log.info("threshold %g: %d clusters, dev EER %.2f%%", thr, num_clusters, 100 * eer)
        rows.append((thr, num_clusters, eer))
    valid = [r for r in rows if not math.isnan(r[2])]
    if not valid:
        raise XvjaxError(
            "no candidate threshold gave at least two clusters of two utterances; try lower "
            "thresholds (more merging)"
        )
    best = min(valid, key=lambda r: r[2])  # the highest threshold among equal EERs
    log.info("Chose threshold %g: %d clusters, dev EER %.2f%%", best[0], best[1], 100 * best[2])
    return cluster.ThresholdChoice(best[0], best[1], "dev EER", best[2], tuple(rows))
