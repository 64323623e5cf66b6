"""The transfer recipe (Kaldi sre16/v2 `run.sh` style): one source-domain x-vector system moved to a
new domain by every route Snyder lists on kaldi-help, with a results table of how much each helps.

    from xvjax.recipe import transfer
    cfg = transfer.RecipeConfig(workdir="exp/demo", preset="tiny")
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

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open

log = logging.getLogger("xvjax")

STAGES = ("data", "features", "source_model", "embeddings", "backends", "finetune", "results")


@dataclasses.dataclass
class RecipeConfig:
    """Every option of the recipe (`xvjax demo --help` lists them with the same names).

    Fields left None take the preset's value (`RECIPE_PRESETS[preset]`).
    """

    workdir: str = "exp/demo"
    stage: int = -1
    preset: str = "default"  # corpus size preset (tiny | default | large) and training sizes
    corpus_seed: int | None = None  # None: the corpus preset's seed
    corpus_options: str | None = None  # "source_train_spk=40,test_utts=4": CorpusConfig overrides
    num_jobs: int = 2
    # The user's data (Kaldi data dirs); when tgt_enroll is given the built-in corpus is not made.
    src_data: str = ""
    src_enroll: str = ""
    src_test: str = ""
    src_trials: str = ""
    tgt_train: str = ""
    tgt_adapt: str = ""
    tgt_enroll: str = ""
    tgt_test: str = ""
    trials: str = ""
    musan: str = ""
    rirs: str = ""
    # The user's Kaldi system (the out-of-domain baseline).
    pretrained: str = ""
    plda: str = ""
    mean: str = ""
    lda: str = ""
    # Features.
    mfcc_config: str = ""  # Kaldi conf/mfcc.conf; "" = voxceleb/v2 16 kHz (30-dim)
    vad_config: str = ""  # "" = the x-vector recipes' conf/vad.conf
    sample_rate: int = 16000  # the model's rate; audio at other rates is resampled to it
    # Network and training.
    seed: int = 0
    frame_dims: str | None = None  # "128,128,128,128,256"
    embedding_dims: str | None = None  # "128,128"
    src_steps: int | None = None
    src_batch_size: int | None = None
    src_lr: float | None = None
    min_chunk: int | None = None
    max_chunk: int | None = None
    ft_steps: int | None = None
    ft_batch_size: int | None = None
    ft_lr: float | None = None
    freeze: str = "tdnn[1-5]"
    augment: bool = True
    # Backend.
    lda_dim: int | None = None
    plda_em_iters: int = 10
    within_covar_scale: float = 0.75  # ivector-adapt-plda, sre16/v2 recipe settings
    between_covar_scale: float = 0.25
    asnorm_top_k: int | None = None
    progress: bool = True

    def resolved(self) -> RecipeConfig:
        """A copy with every None field set from the preset."""
        if self.preset not in RECIPE_PRESETS:
            raise XvjaxError(
                f"unknown preset '{self.preset}' (choose from {', '.join(RECIPE_PRESETS)})"
            )
        values = dict(RECIPE_PRESETS[self.preset])
        out = dataclasses.replace(self)
        for f in dataclasses.fields(self):
            if getattr(out, f.name) is None and f.name in values:
                setattr(out, f.name, values[f.name])
        return out

    @property
    def user_data(self) -> bool:
        return bool(self.tgt_enroll or self.tgt_test or self.trials)

    def corpus_overrides(self) -> dict[str, Any]:
        """`corpus_options` as CorpusConfig field values (typed like the fields)."""
        out: dict[str, Any] = {}
        for item in (self.corpus_options or "").split(","):
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not eq:
                raise XvjaxError(f"--corpus-options: expected name=value, got '{item}'")
            out[key] = value.strip()
        if self.corpus_seed is not None:
            out["seed"] = self.corpus_seed
        return out

    def dims(self, name: str) -> tuple[int, ...]:
        text = getattr(self, name)
        try:
            return tuple(int(v) for v in str(text).split(",") if v.strip())
        except ValueError:
            raise XvjaxError(
                f"--{name.replace('_', '-')}: expected e.g. 128,128, got '{text}'"
            ) from None


# Training sizes per preset. `default` keeps `make demo` under ~10 minutes on 2 CPU cores.
RECIPE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        # More (shorter-lived) source speakers than the corpus's tiny preset: with 12 the source
        # model does not generalise to new speakers and the target rows sit at chance.
        corpus_options="source_train_spk=40,source_train_utts=4",
        frame_dims="64,64,64,64,128",
        embedding_dims="32,32",
        src_steps=150,
        src_batch_size=32,
        src_lr=0.004,
        min_chunk=100,
        max_chunk=100,  # one chunk length: one training-step compilation per run
        ft_steps=60,
        ft_batch_size=32,
        ft_lr=0.002,
        lda_dim=32,
        asnorm_top_k=20,
    ),
    "default": dict(
        corpus_options="",
        frame_dims="128,128,128,128,256",
        embedding_dims="128,128",
        src_steps=1200,
        src_batch_size=32,
        src_lr=0.003,
        min_chunk=100,
        max_chunk=200,
        ft_steps=400,
        ft_batch_size=32,
        ft_lr=0.002,
        lda_dim=32,
        asnorm_top_k=100,
    ),
    "large": dict(
        corpus_options="",
        frame_dims="256,256,256,256,768",
        embedding_dims="256,256",
        src_steps=6000,
        src_batch_size=64,
        src_lr=0.003,
        min_chunk=150,
        max_chunk=300,
        ft_steps=2000,
        ft_batch_size=64,
        ft_lr=0.002,
        lda_dim=100,
        asnorm_top_k=300,
    ),
}

# Options each stage depends on (a stage's fingerprint covers its own and all earlier stages').
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "data": (
        "preset", "corpus_seed", "corpus_options", "src_data", "src_enroll", "src_test", "src_trials", "tgt_train",
        "tgt_adapt", "tgt_enroll", "tgt_test", "trials", "musan", "rirs",
    ),
    "features": ("mfcc_config", "vad_config", "sample_rate"),
    "source_model": (
        "pretrained", "seed", "frame_dims", "embedding_dims", "src_steps", "src_batch_size",
        "src_lr", "min_chunk", "max_chunk",
    ),
    "embeddings": (),
    "backends": (
        "plda", "mean", "lda", "lda_dim", "plda_em_iters", "within_covar_scale",
        "between_covar_scale", "asnorm_top_k",
    ),
    "finetune": ("ft_steps", "ft_batch_size", "ft_lr", "freeze", "augment"),
    "results": (),
}  # fmt: skip


def fingerprint(cfg: RecipeConfig, stage: int) -> str:
    """Hash of the options stages 0..stage depend on."""
    values = {}
    for name in STAGES[: stage + 1]:
        for field in STAGE_FIELDS[name]:
            value = getattr(cfg, field)
            if field in ("src_data", "src_enroll", "src_test", "src_trials", "tgt_train",
                         "tgt_adapt", "tgt_enroll", "tgt_test", "trials", "musan", "rirs",
                         "pretrained", "plda", "mean", "lda", "mfcc_config", "vad_config") and value:  # fmt: skip
                value = os.path.abspath(value)
            values[field] = value
    text = json.dumps(values, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (corpus workers)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def write_json(path: str, obj) -> None:
    """obj as indented, key-sorted JSON, written atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


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


def check_config(cfg: RecipeConfig) -> None:
    """Clear errors for inconsistent options, before any compute is spent."""
    if cfg.user_data:
        missing = [
            n for n in ("tgt_enroll", "tgt_test", "trials", "tgt_train") if not getattr(cfg, n)
        ]
        if missing:
            raise XvjaxError(
                "with your own data give all of --tgt-train, --tgt-enroll, --tgt-test and "
                f"--trials (missing: {', '.join('--' + m.replace('_', '-') for m in missing)})"
            )
        if not cfg.pretrained and not cfg.src_data:
            raise XvjaxError("give --src-data (to train the source model) or --pretrained")
        if not cfg.src_data and not cfg.plda:
            raise XvjaxError(
                "the out-of-domain baseline needs a source backend: give --plda (and --mean, "
                "--lda) from your Kaldi system, or --src-data to train one"
            )
        src_eval = [cfg.src_enroll, cfg.src_test, cfg.src_trials]
        if any(src_eval) and not all(src_eval):
            raise XvjaxError(
                "source reference trials need all of --src-enroll --src-test --src-trials"
            )
    for name in ("src_data", "src_enroll", "src_test", "tgt_train", "tgt_adapt", "tgt_enroll",
                 "tgt_test", "musan", "rirs"):  # fmt: skip
        path = getattr(cfg, name)
        if path and not os.path.isdir(path):
            raise XvjaxError(f"--{name.replace('_', '-')}={path}: no such directory")
    for name in ("trials", "src_trials", "plda", "mean", "lda", "mfcc_config", "vad_config"):
        path = getattr(cfg, name)
        if path and not os.path.isfile(path):
            raise XvjaxError(f"--{name.replace('_', '-')}={path}: no such file")
    if cfg.pretrained and not os.path.exists(cfg.pretrained):
        raise XvjaxError(f"--pretrained={cfg.pretrained}: no such file or model directory")
    if (cfg.mean or cfg.lda) and not cfg.plda:
        raise XvjaxError("--mean/--lda describe a Kaldi backend: give its --plda too")
    if cfg.sample_rate not in (8000, 16000):
        raise XvjaxError(f"--sample-rate must be 8000 or 16000, got {cfg.sample_rate}")


def run_recipe(cfg: RecipeConfig) -> dict:
    """Runs (or resumes) the whole recipe; returns the results summary (see report.build_results)."""
    from xvjax.recipe import stages

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
    for index, func in enumerate(funcs):
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
