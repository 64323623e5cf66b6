"""The transfer recipe (Kaldi sre16/v2 `run.sh` style): one source-domain x-vector system moved to a
new domain by every route Snyder lists on kaldi-help, with a results table of how much each helps.

    from xvjax.recipe import transfer
    from xvjax.recipe.config import RecipeConfig
    cfg = RecipeConfig(workdir="exp/demo", preset="tiny")
    summary = transfer.run_recipe(cfg)        # -> {"table": ..., "rows": [...], "seconds": ...}

Stages (each writes its outputs atomically and a marker `WORKDIR/stages/<N>.<name>.json` with its
outputs and a fingerprint of the options it depends on):

    0 data          built-in corpus (`make_corpus`, preset) or the user's data dirs, copied into
                    WORKDIR/data/<set> (the user's dirs are never written to)
    1 features      MFCC + energy VAD per data dir (WORKDIR/data/<set>/{feats,vad}.scp), then
                    sliding CMN + voiced frames (WORKDIR/data/<set>_no_sil), as Kaldi's
                    prepare_feats_for_egs.sh; audio at another rate than the model's is resampled
    2 source_model  trained from scratch on source_train, or the user's `--pretrained final.raw`
    3 embeddings    x-vectors (tdnn6.affine) of every set, WORKDIR/xvectors/source/<set>/xvector.scp
    4 backends      rows 1-5 (out-of-domain baseline, in-domain mean, PLDA adaptation, in-domain
                    LDA/PLDA, + S-norm / adaptive S-norm)
    5 finetune      output resized to the in-domain speakers, lower layers frozen (6a) and all
                    layers trained (6b), on target_train (+ MUSAN/RIR augmented copies); x-vectors
                    and the best backend of rows 1-5 for each
    6 results       WORKDIR/results/{results.md,results.json,det.png,finetune_curve.png}

Sample rates: the source model is a 16 kHz wideband model (voxceleb/v2 MFCCs: 30 ceps, 30 bins,
20-7600 Hz), the target domain is 8 kHz telephone speech. The recipe resamples every utterance
whose rate differs from `sample_rate` to it (band-limited polyphase, scipy `resample_poly`) before
MFCC, so both domains go through one front end and one network: the 0-4 kHz mel bins see the same
frequencies, the bins above 4 kHz see only dither, which is exactly the mismatch a wideband model
meets on telephone data (and what fine-tuning and the in-domain backends must absorb). A narrowband
system instead runs with `--sample-rate=8000` (sre16/v2 MFCCs) and resamples the 16 kHz source.

Augmentation for fine-tuning is done as Kaldi's recipes do it, offline: reverberated (RIRS_NOISES),
noise, music and babble (MUSAN) copies of target_train written by `augment-data-dir` at the target
rate (the 16 kHz MUSAN/RIR sources are resampled to it), a quarter of the utterances each, then the
same features; the fine-tuning set is target_train + these copies. (The trainer's on-the-fly audio
source needs audio at the model's rate, which 8 kHz telephone data is not.)

Resume and `--stage`: with `stage=-1` (default) every stage whose marker matches the current options
is skipped, so an interrupted run continues where it stopped (within a stage, finished data dirs,
x-vector sets and training checkpoints are kept too). `stage=N` re-runs stages N.. (Kaldi's
`--stage`); stages before N must have run. A stage that runs invalidates the markers after it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from xvjax.errors import XvjaxError
from xvjax.fileutil import write_json
from xvjax.recipe import stages
from xvjax.recipe.config import STAGES, RecipeConfig, check_config, fingerprint

log = logging.getLogger("xvjax")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (corpus workers)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class StageRunner:
    """Runs stages in order, skipping the ones already done (see the module docstring)."""

    def __init__(self, cfg: RecipeConfig):
        self.cfg = cfg
        self.dir = os.path.join(cfg.workdir, "stages")
        os.makedirs(self.dir, exist_ok=True)
        self.ctx: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def marker(self, index: int) -> str:
        return os.path.join(self.dir, f"{index}.{STAGES[index]}.json")

    def _read_marker(self, index: int) -> dict | None:
        try:
            with open(self.marker(index), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _invalidate_after(self, index: int) -> None:
        for later in range(index + 1, len(STAGES)):
            path = self.marker(later)
            if os.path.exists(path):
                os.unlink(path)

    def run(self, index: int, func: Callable[[RecipeConfig, dict], dict]) -> dict:
        name = STAGES[index]
        fp = fingerprint(self.cfg, index)
        old = self._read_marker(index)
        start = self.cfg.stage
        if start >= 0 and index < start:
            if old is None:
                raise XvjaxError(
                    f"--stage={start} but stage {index} ({name}) has not run in "
                    f"{self.cfg.workdir}; use a smaller --stage"
                )
            if old.get("fingerprint") != fp:
                log.warning(
                    "stage %d (%s) ran with other options than these; using its outputs anyway "
                    "(--stage=%d)",
                    index,
                    name,
                    start,
                )
            reuse = True
        else:
            reuse = start < 0 and old is not None and old.get("fingerprint") == fp
        if reuse:
            log.info("Stage %d (%s): already done, skipping", index, name)
            self.ctx.update(old["outputs"])
            self.ctx.setdefault("stage_seconds", {})[name] = old.get("seconds", 0.0)
            self.skipped.append(name)
            self.timings[name] = 0.0
            return old["outputs"]
        log.info("Stage %d (%s)", index, name)
        self._invalidate_after(index - 1)
        t0, c0 = time.time(), cpu_seconds()
        outputs = func(self.cfg, self.ctx) or {}
        seconds, cpu = time.time() - t0, cpu_seconds() - c0
        self.cpu[name] = cpu
        self.ctx.update(outputs)
        self.ctx.setdefault("stage_seconds", {})[name] = round(seconds, 2)
        self.timings[name] = seconds
        self.ran.append(name)
        write_json(
            self.marker(index),
            {
                "stage": index,
                "name": name,
                "fingerprint": fp,
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "outputs": outputs,
            },
        )
        log.info("Stage %d (%s) done in %.1f s (%.1f s CPU)", index, name, seconds, cpu)
        return outputs


def run_recipe(cfg: RecipeConfig, until: str | None = None) -> dict:
    """Runs (or resumes) the recipe, to the end or to stage `until` (a name in STAGES) included;
    returns the outputs of every stage and the timings."""
    cfg = cfg.resolved()
    check_config(cfg)
    cfg.workdir = os.path.abspath(cfg.workdir)
    os.makedirs(cfg.workdir, exist_ok=True)
    t0 = time.time()
    runner = StageRunner(cfg)
    funcs = (
        stages.stage_data,
        stages.stage_features,
        stages.stage_source_model,
        stages.stage_embeddings,
        stages.stage_backends,
        stages.stage_finetune,
        stages.stage_results,
    )
    last = STAGES.index(until) if until else len(STAGES) - 1
    for index, func in enumerate(funcs[: last + 1]):
        runner.run(index, func)
    seconds = time.time() - t0
    timings = {k: round(v, 1) for k, v in runner.timings.items()}
    cpu = {k: round(v, 1) for k, v in runner.cpu.items()}
    log.info(
        "Recipe finished in %.1f s wall, %.1f s CPU (%s); results in %s",
        seconds,
        sum(cpu.values()),
        ", ".join(f"{k} {v:.0f}s/{cpu.get(k, 0):.0f}s CPU" for k, v in timings.items()),
        runner.ctx.get("results_md", ""),
    )
    return {
        "seconds": seconds,
        "timings": timings,
        "cpu_seconds": cpu,
        "ran": runner.ran,
        "skipped": runner.skipped,
        **runner.ctx,
    }
