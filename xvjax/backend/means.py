"""Means, centring and length normalisation (Kaldi `ivector-mean`, `ivector-subtract-global-mean`,
`ivector-normalize-length`), numpy.

Kaldi reads vectors as float32 and keeps them float32 in tables; sums are accumulated in double
for the global mean and in float for per-speaker means. These functions compute in float64 and
return float64; the CLI writes float32 tables like Kaldi (differences are at float32 rounding).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

__all__ = ["global_mean", "speaker_means", "subtract_mean", "normalize_length"]


def global_mean(vectors: np.ndarray) -> np.ndarray:
    """Mean of (N, D) vectors -> (D,) float64 (`ivector-mean <rspec> mean.vec`)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise XvjaxError("no vectors to average")
    return x.sum(axis=0) / x.shape[0]


def speaker_means(
    vectors: Mapping[str, np.ndarray], spk2utt: Mapping[str, Sequence[str]]
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per-speaker averages as `ivector-mean spk2utt ...` computes them.

    vectors: utterance -> (D,) vector; spk2utt: speaker -> utterance list (in table order).
    Returns (spk -> (D,) float32 mean, spk -> num_utts). Utterances without a vector are skipped
    with a warning; speakers with none get no output (warning), as in Kaldi.
    """
    means: dict[str, np.ndarray] = {}
    num_utts: dict[str, int] = {}
    missing = 0
    for spk, utts in spk2utt.items():
        if not utts:
            raise XvjaxError(f"speaker '{spk}' has no utterances in spk2utt")
        found = [vectors[u] for u in utts if u in vectors]
        for u in utts:
            if u not in vectors:
                log.warning("No iVector present in input for utterance %s", u)
                missing += 1
        if not found:
            log.warning("Not producing output for speaker %s since no utterances had iVectors", spk)
            continue
        acc = np.asarray(found[0], dtype=np.float32).copy()
        for v in found[1:]:  # float accumulation, like Kaldi's Vector<BaseFloat>
            acc += np.asarray(v, dtype=np.float32)
        means[spk] = acc * np.float32(1.0 / len(found))
        num_utts[spk] = len(found)
    return means, num_utts


def subtract_mean(vectors: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """x - mean for (N, D) vectors; `mean=None` subtracts the vectors' own mean."""
    x = np.asarray(vectors, dtype=np.float64)
    m = global_mean(x) if mean is None else np.asarray(mean, dtype=np.float64)
    if m.shape[-1] != x.shape[-1]:
        raise XvjaxError(f"mean has dimension {m.shape[-1]}, vectors have {x.shape[-1]}")
    return x - m


def normalize_length(vectors: np.ndarray, scaleup: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`ivector-normalize-length`: rows scaled to length sqrt(D) (scaleup) or 1.

    vectors: (N, D). Returns (normalised (N, D) float64, ratio (N,)): ratio = ||x||/sqrt(D)
    (scaleup) or ||x||; zero vectors are passed through unchanged (Kaldi warns "Zero iVector").
    """
    x = np.asarray(vectors, dtype=np.float64)
    x2 = np.atleast_2d(x)
    norm = np.linalg.norm(x2, axis=1)
    ratio = norm / np.sqrt(x2.shape[1]) if scaleup else norm
    zero = ratio == 0.0
    if np.any(zero):
        log.warning("Zero iVector (%d of them), left unnormalised", int(zero.sum()))
    out = x2 / np.where(zero, 1.0, ratio)[:, None]
    return (out[0], ratio[0]) if x.ndim == 1 else (out, ratio)
