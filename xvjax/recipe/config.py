"""The transfer recipe's options (`RecipeConfig`, `xvjax demo --help`), presets and stage fingerprints."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from xvjax.errors import XvjaxError

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
