"""Why unsupervised PLDA adaptation helps or hurts on the recipe's data (results.md section).

Measured on the source network's x-vectors, on the dev trials only (these are measurements, not
choices; the evaluation trials are not looked at):
- the in-domain between- and within-class covariance in the source PLDA's space against the
  model's (1 and psi), and how the in-domain excess variance is split by adaptation versus by the
  in-domain labels (`xvjax.backend.adapt.adaptation_diagnostics`; the labelled in-domain set is
  used for this diagnosis only);
- the dev EER of sre16/v2's adaptation (row 3) with a quarter, half and all of the adaptation set;
- with length normalisation after centring (Kaldi's order) versus centring after it;
- the adaptation scales the dev set prefers (row 3b's candidates).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from xvjax.backend import adapt, means
from xvjax.backend.system import XvectorSet
from xvjax.recipe.routes import BackendRecipe, Backends, Built

FRACTIONS = (0.25, 0.5, 1.0)


def adaptation_diagnostics(cfg, backends: Backends, sets: Mapping[str, XvectorSet], scorer,
                           row3b: dict | None) -> dict:  # fmt: skip
    scales = (float(cfg.within_covar_scale), float(cfg.between_covar_scale))
    source = backends.source()
    x = backends.adapt_vectors
    prepared = source.with_mean(means.global_mean(x)).project(x)
    labelled_name = "target_train" if "target_train" in sets else "target_dev_enroll"
    labelled = sets.get(labelled_name)
    lab_y = lab_spk = None
    if labelled is not None and labelled.utt2spk:
        lab_y = source.with_mean(backends.adapt_mean).project(labelled.mat)
        lab_spk = labelled.spk_ids
    out = {
        "scales": scales,
        "labelled_set": labelled_name,
        "covariances": adapt.adaptation_diagnostics(source.plda, prepared, lab_y, lab_spk, *scales),
    }
    base = source.with_mean(backends.adapt_mean)
    measurements = []
    rng = np.random.default_rng([cfg.seed, 15])
    order = rng.permutation(len(x))
    for frac in FRACTIONS:
        sub = x[order[: max(2, round(frac * len(x)))]]
        built = Built(base.adapt(sub, *scales), "", None, 0, None)
        measurements.append(
            f"{frac:.0%} of the adaptation set ({len(sub)} vectors): "
            + scorer.dev_eer_text(built, sets)
        )
    # Centring after length normalisation: the adaptation data normalised first.
    z = source.with_mean(source.mean).project(x)
    z = z - z.mean(axis=0)
    plda = adapt.adapt_plda(source.plda, z, *scales)
    centred_after = Built(dataclasses.replace(base, plda=plda), "", None, 0, None)
    measurements.append(
        "adaptation data centred after length normalisation (instead of before, as Kaldi): "
        + scorer.dev_eer_text(centred_after, sets)
    )
    no_adapt = scorer.dev_eer_text(Built(base, "", None, 0, None), sets)
    measurements.append(f"no adaptation (row 2's backend): {no_adapt}")
    if row3b:
        tried = sorted((t for t in row3b["tried"] if "dev_eer" in t), key=lambda t: t["dev_eer"])
        best, worst = tried[0], tried[-1]
        kaldi = next((t for t in tried if tuple(t["recipe"]["adapt"]) == scales), None)
        measurements.append(
            f"adaptation scales on dev ({len(tried)} pairs): best "
            f"{BackendRecipe.from_dict(best['recipe']).adapt} at {best['dev_eer']:.2f}%, worst "
            f"{BackendRecipe.from_dict(worst['recipe']).adapt} at {worst['dev_eer']:.2f}%"
            + (f", sre16/v2's {scales} at {kaldi['dev_eer']:.2f}%" if kaldi else "")
        )
    out["measurements"] = measurements
    return out
