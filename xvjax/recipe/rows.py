"""The rows of the transfer recipe's table: each route's backend chosen on the dev trials, then
scored once on the evaluation trials with speaker-bootstrap confidence intervals.

Discipline: every choice a row makes (which candidate backend, its LDA dimension, adaptation
scales, number of clusters, AS-norm top-k, the fine-tuning checkpoint, which network) is the
candidate with the lowest EER (then minDCF 0.01) on the target-domain dev trials, whose speakers
are disjoint from the evaluation speakers. The evaluation trials are scored once per row, after
its choice, and never looked at to choose (tests/test_recipe_rows.py permutes their labels and
checks that no choice moves).

Backend rows (the source network's x-vectors):
    1   out-of-domain baseline: source mean, LDA, PLDA
    2   + in-domain mean re-centring
    3   + PLDA adaptation exactly as Kaldi's sre16/v2 run.sh (0.75 / 0.25)
    3b  + PLDA adaptation, scales chosen on dev
    3c  CORAL: source LDA/PLDA retrained on source x-vectors aligned to the in-domain covariance
    3d  LDA/PLDA on the in-domain set clustered into pseudo-speakers (alone, or interpolated with
        the source PLDA), number of clusters and weight chosen on dev
    4   LDA/PLDA retrained on labelled in-domain data (LDA dimension on dev)
    4b  LDA/PLDA on source + labelled in-domain data pooled (LDA dimension on dev)
    5a/5b  the dev-best of 1-4b + S-norm / AS-norm (top-k on dev), unlabelled in-domain cohort
    5c/5d  the dev-best of the rows without in-domain labels + S-norm / AS-norm
Network rows (stage 5, `finetune_rows`): each fine-tuned network with its backend chosen on dev.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from xvjax import confidence, metrics
from xvjax.backend.system import XvectorSet
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open
from xvjax.kaldi import plda_io, tables
from xvjax.recipe import routes
from xvjax.recipe.routes import BackendRecipe, Backends, Built

log = logging.getLogger("xvjax")

# Trial lists: name -> (enrolment set, test set). "dev" chooses, the others are reported.
TRIAL_SETS = {
    "dev": ("target_dev_enroll", "target_dev_test"),
    "target": ("target_enroll", "target_test"),
    "source": ("source_eval_enroll", "source_eval_test"),
}
REPORTED = ("target", "source")


@contextlib.contextmanager
def quiet():
    """Kaldi-style INFO lines of the backend (PLDA EM iterations, ...) only with --verbose."""
    logger = logging.getLogger("xvjax")
    old = logger.level
    if logger.getEffectiveLevel() >= logging.INFO:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def metrics_of(scores: np.ndarray, labels: np.ndarray) -> dict:
    """EER (%) as Kaldi's compute-eer and minDCF at p-target 0.01 and 0.005 (compute_min_dcf.py)."""
    eer, _ = metrics.compute_eer(scores, labels)
    return {
        "eer": 100.0 * eer,
        **{
            f"min_dcf_{p:g}": metrics.compute_min_dcf(scores, labels, p)[0]
            for p in confidence.P_TARGETS
        },
        "num_target": int(labels.sum()),
        "num_nontarget": int((~labels).sum()),
    }


def dev_key(m: dict) -> tuple[float, float]:
    """What a choice minimises: dev EER, then dev minDCF 0.01."""
    return (m["eer"], m["min_dcf_0.01"])


class Scorer:
    """Scores built backends on the dev trials (to choose) and on the reported trial lists (once
    per row, with speaker-bootstrap intervals paired across rows)."""

    def __init__(
        self,
        trials: Mapping[str, Trials],
        utt2spk: Mapping[str, Mapping[str, str]],
        num_replicates: int = 1000,
        seed: int = 0,
    ):
        if "dev" not in trials:
            raise XvjaxError("no dev trials: every choice of the recipe is made on them")
        self.trials = dict(trials)
        self.boot: dict[str, confidence.Bootstrap] = {}
        for side, t in trials.items():  # dev too: diagnostics report dev EERs with intervals
            test_spk = utt2spk.get(side, {})
            units = confidence.TrialUnits.from_ids(t.enroll, [test_spk.get(u, u) for u in t.test])
            self.boot[side] = confidence.Bootstrap(units, num_replicates, seed)
        self.replicates: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def score(self, built: Built, sets: Mapping[str, XvectorSet], side: str):
        enroll_name, test_name = TRIAL_SETS[side]
        with quiet():
            s, scored = built.backend.score(
                sets[enroll_name],
                sets[test_name],
                self.trials[side],
                norm=built.norm,
                cohort=built.cohort,
                top_k=max(built.top_k, 1),
            )
        return s, scored

    def dev(self, built: Built, sets: Mapping[str, XvectorSet]) -> dict:
        s, scored = self.score(built, sets, "dev")
        return metrics_of(s, scored.labels)

    def dev_eer_text(self, built: Built, sets: Mapping[str, XvectorSet]) -> str:
        """'dev EER x% [lo, hi]' (speaker-bootstrap 95% interval): for reported dev numbers."""
        s, scored = self.score(built, sets, "dev")
        lo, hi = confidence.interval(self.boot["dev"].replicates(s, scored.labels)["eer"])
        return f"dev EER {metrics_of(s, scored.labels)['eer']:.2f}% [{lo:.2f}, {hi:.2f}]"

    def report(self, built: Built, sets: Mapping[str, XvectorSet], row_id: str, score_dir: str):
        """Metrics with 95% intervals on every reported trial list; writes the score files."""
        out = {}
        for side in REPORTED:
            enroll_name, test_name = TRIAL_SETS[side]
            if side not in self.trials or enroll_name not in sets or test_name not in sets:
                out[side] = None
                continue
            s, scored = self.score(built, sets, side)
            if len(scored) != len(self.trials[side]):
                raise XvjaxError(
                    f"row {row_id}: {len(self.trials[side]) - len(scored)} {side} trials could not "
                    "be scored; every row must score the same trials to be compared"
                )
            m = metrics_of(s, scored.labels)
            reps = self.boot[side].replicates(s, scored.labels)
            self.replicates[(row_id, side)] = reps
            m["ci"] = {k: confidence.interval(v) for k, v in reps.items()}
            stem = os.path.join(score_dir, f"row{row_id}_{side}")
            write_scores(stem + ".scores", scored, s)
            with atomic_open(stem + ".npz", "wb") as f:
                # the replicates too: the report's paired comparisons reuse them (same bootstrap)
                np.savez(f, scores=s, labels=scored.labels,
                         **{f"replicates_{k}": v for k, v in reps.items()})  # fmt: skip
            m["scores"] = stem + ".scores"
            out[side] = m
        return out

    def versus(self, row_id: str, base_id: str, side: str = "target") -> dict | None:
        """Relative EER and minDCF change of a row against another, with paired 95% intervals."""
        a, b = self.replicates.get((row_id, side)), self.replicates.get((base_id, side))
        if a is None or b is None:
            return None
        return {k: confidence.interval(confidence.relative_change(a[k], b[k])) for k in a}


def write_scores(path: str, scored: Trials, scores: np.ndarray) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        for e, t, s in zip(scored.enroll, scored.test, scores, strict=True):
            f.write(f"{e} {t} {s:.6g}\n")


@dataclasses.dataclass
class Choice:
    """The dev-best candidate of a row, and every candidate's dev result."""

    recipe: BackendRecipe
    built: Built
    dev: dict
    tried: list[dict]


def choose(
    candidates: Sequence[BackendRecipe],
    backends: Backends,
    scorer: Scorer,
    sets: Mapping[str, XvectorSet],
) -> Choice:
    """The candidate with the best dev metrics (candidates that cannot be built are skipped)."""
    best: Choice | None = None
    tried = []
    for r in candidates:
        try:
            with quiet():
                built = backends.build(r)
            dev = scorer.dev(built, sets)
        except XvjaxError as e:
            tried.append({"recipe": r.to_dict(), "error": str(e)})
            continue
        tried.append(
            {"recipe": r.to_dict(), "dev_eer": dev["eer"], "dev_min_dcf_0.01": dev["min_dcf_0.01"]}
        )
        if best is None or dev_key(dev) < dev_key(best.dev):
            best = Choice(r, built, dev, [])
    if best is None:
        reasons = "; ".join(sorted({t["error"] for t in tried if "error" in t}))
        raise XvjaxError(f"no candidate backend could be built ({reasons})")
    best.tried = tried
    return best


# ------------------------------------------------------------------------------- the row families


@dataclasses.dataclass(frozen=True)
class RowSpec:
    id: str
    name: str
    candidates: Callable[[Backends], list[BackendRecipe]]
    uses_labels: bool
    kaldi: str = ""  # which Kaldi recipe the row reproduces as-is


def _dims(backends: Backends, set_names: Sequence[str]) -> list[int]:
    mats = [backends.sets[n] for n in set_names if n in backends.sets]
    if len(mats) != len(set_names):
        return []
    speakers = sum(len(set(m.spk_ids)) for m in mats)
    return routes.lda_dims(mats[0].mat.shape[1], speakers - 1)


def backend_specs(cfg) -> list[RowSpec]:
    kaldi_scales = (float(cfg.within_covar_scale), float(cfg.between_covar_scale))
    adapt_grid = routes.adaptation_grid()
    return [
        RowSpec("1", "out-of-domain baseline: source mean, LDA, PLDA",
                lambda b: [BackendRecipe()], False),
        RowSpec("2", "+ in-domain mean re-centring",
                lambda b: [BackendRecipe(mean="adapt")], False),
        RowSpec("3", "+ PLDA adaptation as Kaldi's sre16/v2",
                lambda b: [BackendRecipe(mean="adapt", adapt=kaldi_scales)], False,
                kaldi="sre16/v2 run.sh as-is (in-domain mean, ivector-adapt-plda "
                f"--within-covar-scale={kaldi_scales[0]:g} --between-covar-scale={kaldi_scales[1]:g})"),
        RowSpec("3b", "+ PLDA adaptation, scales chosen on dev",
                lambda b: [BackendRecipe(mean="adapt", adapt=s) for s in adapt_grid], False),
        RowSpec("3c", "CORAL: source LDA/PLDA on source x-vectors aligned to the in-domain set",
                lambda b: [BackendRecipe(model="coral", mean="adapt")], False),
        RowSpec("3d", "LDA/PLDA on clustered in-domain data (pseudo-speakers)",
                lambda b: [BackendRecipe(model="pseudo", mean="adapt", clusters=c, interp=w)
                           for c in routes.cluster_counts(len(b.adapt_vectors))
                           for w in (None, *routes.INTERP_WEIGHTS)], False),
        RowSpec("4", "LDA/PLDA retrained on labelled in-domain data",
                lambda b: [BackendRecipe(model="target", mean="adapt", lda_dim=d)
                           for d in _dims(b, ["target_train"])], True),
        RowSpec("4b", "LDA/PLDA on source + labelled in-domain data pooled",
                lambda b: [BackendRecipe(model="pooled", mean="adapt", lda_dim=d)
                           for d in _dims(b, ["source_train", "target_train"])], True),
    ]  # fmt: skip


def with_norms(base: BackendRecipe, cohort_size: int) -> tuple[list, list]:
    """(S-norm candidates, AS-norm candidates over the top-k grid) on top of a chosen backend."""
    s = [dataclasses.replace(base, norm="snorm", top_k=0)]
    a = [dataclasses.replace(base, norm="asnorm", top_k=k) for k in routes.top_ks(cohort_size)]
    return s, a


def row_result(spec_id: str, name: str, choice: Choice, embeddings: str, uses_labels: bool,
               kaldi: str = "", chosen: str = "") -> dict:  # fmt: skip
    return {
        "id": spec_id,
        "name": name,
        "embeddings": embeddings,
        "backend": choice.recipe.describe(choice.built.lda_dim),
        "recipe": choice.recipe.to_dict(),
        "lda_dim": choice.built.lda_dim,
        "uses_labels": uses_labels,
        "kaldi": kaldi,
        "dev": choice.dev,
        "chosen_on_dev": chosen
        or ("" if len(choice.tried) == 1 else f"{len(choice.tried)} candidates"),  # fmt: skip
        "tried": choice.tried,
        "note": choice.built.note,
    }


def backend_rows(
    cfg, backends: Backends, sets: Mapping[str, XvectorSet], scorer: Scorer, score_dir: str,
    embeddings: str,
) -> tuple[list[dict], dict[str, Choice]]:  # fmt: skip
    """Rows 1-5d on one network's x-vectors (see the module docstring) -> (rows, choices)."""
    rows, choices, skipped = [], {}, {}
    for spec in backend_specs(cfg):
        cands = spec.candidates(backends)
        if not cands or (spec.uses_labels and "target_train" not in backends.sets):
            skipped[spec.id] = "no labelled in-domain set"
            log.warning("row %s skipped: %s", spec.id, skipped[spec.id])
            continue
        try:
            choice = choose(cands, backends, scorer, sets)
        except XvjaxError as e:
            skipped[spec.id] = str(e)
            log.warning("row %s skipped: %s", spec.id, e)
            continue
        choices[spec.id] = (spec, choice)
        rows.append(
            row_result(spec.id, spec.name, choice, embeddings, spec.uses_labels, spec.kaldi)
        )
    if not choices:
        first = next(iter(skipped.items()), ("-", "no backend rows configured"))
        raise XvjaxError(
            f"no backend could be built on the {embeddings} x-vectors "
            f"({len(skipped)} rows skipped; row {first[0]}: {first[1]})"
        )
    best = min(choices.values(), key=lambda sc: dev_key(sc[1].dev))
    no_label = [sc for sc in choices.values() if not sc[0].uses_labels]
    # Without a no-label row (all failed) 5c/5d are not made: `best` stands in and is skipped below.
    best_nl = min(no_label, key=lambda sc: dev_key(sc[1].dev)) if no_label else best
    cohort = len(backends.adapt_vectors)
    for (sid_s, sid_a), (spec, choice), what in (
        (("5a", "5b"), best, "the dev-best of rows 1-4b"),
        (("5c", "5d"), best_nl, "the dev-best row without in-domain labels"),
    ):
        if sid_s == "5c" and best_nl is best:
            continue  # the same backend: 5a/5b already are these rows
        s_cands, a_cands = with_norms(choice.recipe, cohort)
        for sid, cands, label in ((sid_s, s_cands, "S-norm"), (sid_a, a_cands, "AS-norm")):
            c = choose(cands, backends, scorer, sets)
            name = f"{what} (row {spec.id}) + {label}, in-domain cohort"
            rows.append(row_result(sid, name, c, embeddings, spec.uses_labels,
                                   chosen=f"row {spec.id} on dev" + (
                                       f", top-k {c.recipe.top_k}" if label == "AS-norm" else "")))  # fmt: skip
            choices[sid] = (dataclasses.replace(spec, id=sid), c)
    for row in rows:
        built = choices[row["id"]][1].built
        row.update(scorer.report(built, sets, row["id"], score_dir))
        log_row(row)
    return rows, {rid: choice for rid, (_, choice) in choices.items()}


def best_backend(
    backends: Backends, scorer: Scorer, sets: Mapping[str, XvectorSet], cfg, labels: bool,
    families: Sequence[str] | None = None,
) -> Choice:  # fmt: skip
    """The dev-best backend over every family (those without in-domain labels if not `labels`),
    then with S-norm / AS-norm if that is better on dev: a fine-tuned network's backend."""
    cands = []
    for spec in backend_specs(cfg):
        if (spec.uses_labels and not labels) or (families and spec.id not in families):
            continue
        if spec.uses_labels and "target_train" not in backends.sets:
            continue
        cands += spec.candidates(backends)
    return choose_with_norm(cands, backends, scorer, sets)


def choose_with_norm(
    cands: Sequence[BackendRecipe], backends: Backends, scorer: Scorer,
    sets: Mapping[str, XvectorSet],
) -> Choice:  # fmt: skip
    """The dev-best of `cands`, then with S-norm / AS-norm if that is better on dev (every
    candidate tried is kept in `tried`)."""
    choice = choose(cands, backends, scorer, sets)
    s_cands, a_cands = with_norms(choice.recipe, len(backends.adapt_vectors))
    normed = choose(s_cands + a_cands, backends, scorer, sets)
    best = normed if dev_key(normed.dev) < dev_key(choice.dev) else choice
    best.tried = choice.tried + normed.tried
    return best


def combined_backend(backends: Backends, scorer: Scorer, sets: Mapping[str, XvectorSet]) -> Choice:
    """Row 7's backend: in-domain mean + PLDA adaptation (scales on dev) of the source, in-domain
    or pooled LDA/PLDA (on dev), then S-norm / AS-norm if better on dev."""
    models = ["source"] + [m for m in routes.LABELLED_MODELS if "target_train" in backends.sets]
    cands = [BackendRecipe(model=m, mean="adapt", adapt=s)
             for m in models for s in routes.adaptation_grid()]  # fmt: skip
    return choose_with_norm(cands, backends, scorer, sets)


def eval_metrics(scorer: Scorer, built: Built, sets: Mapping[str, XvectorSet]) -> dict:
    """Point metrics on the evaluation trials (another seed's rerun of a row: no files, no CI)."""
    s, scored = scorer.score(built, sets, "target")
    return metrics_of(s, scored.labels)


def log_row(row: dict) -> None:
    t, d = row.get("target"), row["dev"]
    lo, hi = t["ci"]["eer"] if t else (float("nan"), float("nan"))
    log.info(
        "Row %s (%s): dev EER %.2f%%; target EER %.2f%% [%.2f, %.2f], minDCF0.01 %.3f%s",
        row["id"], row["name"], d["eer"], t["eer"] if t else float("nan"), lo, hi,
        t["min_dcf_0.01"] if t else float("nan"),
        f"; source EER {row['source']['eer']:.2f}%" if row.get("source") else "",
    )  # fmt: skip


# ------------------------------------------------------------------------------- inputs of a stage

UNLABELLED = ("target_adapt",)


def load_sets(scps: Mapping[str, str]) -> dict[str, XvectorSet]:
    """x-vector sets by name (WORKDIR/xvectors/<model>/<set>/xvector.scp + its utt2spk)."""
    out = {}
    for name, scp in scps.items():
        utt2spk = None
        if name not in UNLABELLED:
            utt2spk = tables.read_text_table(os.path.join(os.path.dirname(scp), "utt2spk"))
        out[name] = XvectorSet.read_scp(scp, utt2spk)
    return out


def make_scorer(cfg, ctx: Mapping) -> Scorer:
    """The dev and reported trial lists of the run, with the speakers of their test utterances."""
    trials = {side: Trials.read(path, labelled=True) for side, path in ctx["trials"].items()}
    utt2spk = {
        side: tables.read_text_table(os.path.join(ctx["sets"][TRIAL_SETS[side][1]], "utt2spk"))
        for side in trials
    }
    return Scorer(trials, utt2spk, int(cfg.bootstrap), int(cfg.seed))


def user_backend(cfg) -> tuple:
    """(mean, lda, plda) of the user's Kaldi backend (None where not given)."""
    if not cfg.plda:
        return None, None, None
    plda = plda_io.read_plda(cfg.plda)
    mean = np.asarray(tables.read_vector(cfg.mean), np.float64) if cfg.mean else None
    lda = np.asarray(tables.read_matrix(cfg.lda), np.float64) if cfg.lda else None
    return mean, lda, plda


def save_backend(built: Built, out_dir: str) -> dict[str, str]:
    """A row's backend as Kaldi files (mean.vec in text form, transform.mat, plda), so Kaldi's
    scoring binaries (or `--plda/--mean/--lda`) can use it."""
    b = built.backend
    os.makedirs(out_dir, exist_ok=True)
    files = {"mean": os.path.join(out_dir, "mean.vec"), "plda": os.path.join(out_dir, "plda")}
    tables.write_vector(files["mean"], np.asarray(b.mean, np.float64), binary=False)
    if b.lda is not None:
        files["lda"] = os.path.join(out_dir, "transform.mat")
        tables.write_matrix(files["lda"], np.asarray(b.lda, np.float64))
    plda_io.write_plda(b.plda, files["plda"])
    return files
