"""The transfer recipe's options (`RecipeConfig`, `xvjax demo --help`), presets and stage fingerprints."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from xvjax.errors import XvjaxError
from xvjax.kaldi.config_files import read_config_file

STAGES = ("data", "features", "source_model", "embeddings", "backends", "finetune", "results")


def _opt(default, help: str, kind: type | None = None):
    """A recipe option: its `xvjax demo --help` text (and type when the default is None)."""
    return dataclasses.field(default=default, metadata={"help": help, "type": kind})


@dataclasses.dataclass
class RecipeConfig:
    """Every option of the recipe; `xvjax demo` takes each as `--name-with-dashes`.

    Fields left None take the preset's value (`RECIPE_PRESETS[preset]`).
    """

    workdir: str = _opt(
        "exp/demo", "Where everything goes (data, features, models, x-vectors, results)"
    )
    stage: int = _opt(
        -1,
        "Re-run from this stage (0 data, 1 features, 2 source model, 3 embeddings, "
        "4 backends, 5 fine-tuning, 6 results); -1 resumes, skipping stages already done",
    )
    preset: str = _opt(
        "default", "Corpus and training sizes: tiny (tests), default (the demo), large"
    )
    corpus_seed: int | None = _opt(None, "Seed of the built-in corpus (default: the preset's)", int)
    corpus_options: str | None = _opt(
        None,
        "Corpus size/seed overrides, e.g. "
        "source_train_spk=40,test_utts=4 (make-demo-corpus option "
        "names with _)",
        str,
    )
    num_jobs: int = _opt(2, "Worker processes for the corpus generator")
    # The user's data (Kaldi data dirs); when tgt_enroll is given the built-in corpus is not made.
    src_data: str = _opt(
        "", "Source-domain labelled data dir (trains the source model and backend)"
    )
    src_enroll: str = _opt("", "Source-domain enrollment data dir (source reference trials)")
    src_test: str = _opt("", "Source-domain test data dir (source reference trials)")
    src_trials: str = _opt("", "Source-domain trials file")
    tgt_train: str = _opt("", "In-domain labelled data dir (LDA/PLDA retraining, fine-tuning)")
    tgt_adapt: str = _opt(
        "", "In-domain unlabelled data dir (mean, PLDA adaptation, clustering, S-norm cohort)"
    )
    tgt_enroll: str = _opt(
        "", "In-domain evaluation enrollment data dir (its speakers are the trials' models)"
    )
    tgt_test: str = _opt("", "In-domain evaluation test data dir")
    trials: str = _opt(
        "",
        "In-domain evaluation trials (<model> <test-utt> target|nontarget); "
        "scored once per row, never used to choose",
    )
    # The dev set every choice is made on (in-domain, speakers disjoint from the evaluation's).
    tgt_dev_enroll: str = _opt(
        "", "In-domain dev enrollment data dir (every choice is made on the dev trials)"
    )
    tgt_dev_test: str = _opt("", "In-domain dev test data dir")
    dev_trials: str = _opt("", "In-domain dev trials file")
    dev_speakers: int = _opt(
        0,
        "Without --tgt-dev-*: hold out this many --tgt-train speakers as "
        "the dev set (0: a fifth of them, at least 4)",
    )
    musan: str = _opt("", "MUSAN dir (noise/ music/ speech/) for fine-tuning augmentation")
    rirs: str = _opt("", "RIRS_NOISES dir for fine-tuning augmentation")
    # The user's Kaldi system (the out-of-domain baseline).
    pretrained: str = _opt("", "Kaldi final.raw (or xvjax model dir) used as the source model")
    plda: str = _opt("", "Kaldi PLDA of the source system (out-of-domain baseline backend)")
    mean: str = _opt("", "Kaldi mean.vec of the source system")
    lda: str = _opt("", "Kaldi transform.mat (LDA) of the source system")
    # Features.
    mfcc_config: str = _opt(
        "",
        "Kaldi MFCC config (default: conf/mfcc_16k.conf, or "
        "conf/mfcc_8k.conf with --sample-rate=8000)",
    )
    vad_config: str = _opt("", "Kaldi VAD config (default: conf/vad.conf)")
    sample_rate: int | None = _opt(
        None,
        "The model's sample rate; audio at other rates is resampled to it (default: the "
        "--mfcc-config's sample-frequency; else the rate an xvjax --pretrained model was trained "
        "at; else the target domain's band on the built-in corpus (8000: it beat 16000 on every "
        "dev row there); else 16000)",
        int,
    )
    # Network and training.
    seed: int = _opt(0, "Seed of training, augmentation and chunk sampling")
    frame_dims: str | None = _opt(
        None, "Widths of the frame layers tdnn1-5, e.g. 128,128,128,128,256", str
    )
    embedding_dims: str | None = _opt(
        None, "Widths of the segment layers tdnn6-7, e.g. 128,128", str
    )
    src_steps: int | None = _opt(None, "Training steps of the source model", int)
    src_batch_size: int | None = _opt(None, "Minibatch of the source model", int)
    src_lr: float | None = _opt(
        None, "Peak learning rate (Adam, cosine) of the source model", float
    )
    min_chunk: int | None = _opt(None, "Shortest training chunk (frames)", int)
    max_chunk: int | None = _opt(None, "Longest training chunk (frames)", int)
    ft_steps: int | None = _opt(None, "Training steps of each fine-tuning run", int)
    ft_batch_size: int | None = _opt(None, "Minibatch of the fine-tuning runs", int)
    ft_lr: float | None = _opt(
        None, "Peak learning rate (Adam, cosine) of the fine-tuning runs", float
    )
    ft_optimizer: str = _opt(
        "auto",
        "Fine-tuning optimizer: adam (--ft-lr, cosine), ngsgd (Kaldi's natural-gradient SGD at "
        "Kaldi's rates 0.001 -> 0.0001 on the summed objective, the model's max-change and "
        "learning-rate factors), or auto: ngsgd for a Kaldi --pretrained nnet3 model, adam for "
        "an xvjax model",
    )
    ft_eval_every: int | None = _opt(
        None, "Dev EER every N fine-tuning steps; the dev-best step is the fine-tuned model", int
    )
    freeze: str = _opt("tdnn[1-5]", "Layers frozen in fine-tuning run 6a (regex on layer names)")
    augment: bool = _opt(True, "Augment the fine-tuning data with MUSAN/RIRS_NOISES copies")
    pseudo_ft: bool = _opt(
        True, "Row 6c: fine-tune on the in-domain set labelled by clustering (no in-domain labels)"
    )
    seeds: int = _opt(1, "Train the fine-tuned rows with this many seeds and report their spread")
    # Backend.
    lda_dim: int | None = _opt(
        None,
        "LDA dimension of the source system (in-domain ones are "
        "chosen on dev; capped at speakers - 1)",
        int,
    )
    plda_em_iters: int = _opt(10, "PLDA EM iterations (ivector-compute-plda --num-em-iters)")
    within_covar_scale: float = _opt(
        0.75, "ivector-adapt-plda --within-covar-scale of row 3 (sre16/v2's)"
    )
    between_covar_scale: float = _opt(0.25, "ivector-adapt-plda --between-covar-scale of row 3")
    bootstrap: int = _opt(1000, "Speaker-bootstrap replicates behind every 95% interval")
    progress: bool = _opt(True, "Show progress bars")

    def resolved(self) -> RecipeConfig:
        """A copy with every None field set from the preset."""
        if self.preset not in RECIPE_PRESETS:
            raise XvjaxError(
                f"unknown preset '{self.preset}' (choose from {', '.join(RECIPE_PRESETS)})"
            )
        if self.ft_optimizer not in ("auto", "adam", "ngsgd"):
            raise XvjaxError(f"--ft-optimizer={self.ft_optimizer}: choose auto, adam or ngsgd")
        values = dict(RECIPE_PRESETS[self.preset])
        out = dataclasses.replace(self)
        for f in dataclasses.fields(self):
            if getattr(out, f.name) is None and f.name in values:
                setattr(out, f.name, values[f.name])
        if out.sample_rate is None:
            out.sample_rate = out.default_sample_rate()
        return out

    def default_sample_rate(self) -> int:
        """The MFCC config's rate, else an xvjax --pretrained model's (model.json records its front
        end), else the target's band: the built-in corpus' telephone target
        (8 kHz; with a 16 kHz model its x-vectors were worse on every dev row of the demo), or
        16 kHz for user data (pass --sample-rate=8000 for telephone speech, as Kaldi's sre16)."""
        if self.mfcc_config:
            for line in read_config_file(self.mfcc_config):
                name, _, value = line.partition("=")
                if name == "--sample-frequency":
                    return int(float(value))
            return 16000  # Kaldi's default sample-frequency
        model_json = os.path.join(self.pretrained, "model.json") if self.pretrained else ""
        if os.path.isfile(model_json):  # an xvjax model records the front end it was trained on
            try:
                with open(model_json, encoding="utf-8") as f:
                    rate = ((json.load(f).get("frontend") or {}).get("mfcc") or {}).get(
                        "sample-frequency"
                    )
            except (OSError, ValueError, AttributeError):
                rate = None  # unreadable here: the source-model stage says what is wrong
            if rate:
                return int(float(rate))
        if not self.user_data:
            return int(self.corpus_overrides().get("target_rate", 8000))
        return 16000

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

    def finetune_optimizer(self) -> str:
        """adam | ngsgd: `auto` gives a Kaldi seed (an nnet3 file, not an xvjax model dir) the
        optimizer its rates were set for (benchmarks/bench_finetune_optimizers.py)."""
        if self.ft_optimizer != "auto":
            return self.ft_optimizer
        kaldi_seed = bool(self.pretrained) and not os.path.isdir(self.pretrained)
        return "ngsgd" if kaldi_seed else "adam"

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
        ft_eval_every=20,
        lda_dim=32,
    ),
    "default": dict(
        corpus_options="",
        frame_dims="128,128,128,128,256",
        embedding_dims="128,128",
        src_steps=600,
        src_batch_size=32,
        src_lr=0.003,
        min_chunk=100,
        max_chunk=200,
        ft_steps=200,
        ft_batch_size=32,
        ft_lr=0.002,
        ft_eval_every=50,
        lda_dim=32,
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
        ft_eval_every=200,
        lda_dim=100,
    ),
}

# Options each stage depends on (a stage's fingerprint covers its own and all earlier stages').
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "data": (
        "preset", "corpus_seed", "corpus_options", "src_data", "src_enroll", "src_test", "src_trials", "tgt_train",
        "tgt_adapt", "tgt_enroll", "tgt_test", "trials", "tgt_dev_enroll", "tgt_dev_test",
        "dev_trials", "dev_speakers", "musan", "rirs",
    ),
    "features": ("mfcc_config", "vad_config", "sample_rate"),
    "source_model": (
        "pretrained", "seed", "frame_dims", "embedding_dims", "src_steps", "src_batch_size",
        "src_lr", "min_chunk", "max_chunk",
    ),
    "embeddings": (),
    "backends": (
        "plda", "mean", "lda", "lda_dim", "plda_em_iters", "within_covar_scale",
        "between_covar_scale", "bootstrap",
    ),
    "finetune": ("ft_steps", "ft_batch_size", "ft_lr", "freeze", "augment", "ft_eval_every",
                 "pseudo_ft", "seeds"),
    "results": (),
}  # fmt: skip


def fingerprint(cfg: RecipeConfig, stage: int) -> str:
    """Hash of the options stages 0..stage depend on."""
    values = {}
    for name in STAGES[: stage + 1]:
        for field in STAGE_FIELDS[name]:
            value = getattr(cfg, field)
            if field in ("src_data", "src_enroll", "src_test", "src_trials", "tgt_train",
                         "tgt_adapt", "tgt_enroll", "tgt_test", "trials", "tgt_dev_enroll",
                         "tgt_dev_test", "dev_trials", "musan", "rirs", "pretrained", "plda", "mean", "lda", "mfcc_config", "vad_config") and value:  # fmt: skip
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
        dev = [cfg.tgt_dev_enroll, cfg.tgt_dev_test, cfg.dev_trials]
        if any(dev) and not all(dev):
            raise XvjaxError(
                "a dev set needs all of --tgt-dev-enroll --tgt-dev-test --dev-trials (or none: "
                "then --dev-speakers speakers of --tgt-train are held out as the dev set)"
            )
        src_eval = [cfg.src_enroll, cfg.src_test, cfg.src_trials]
        if any(src_eval) and not all(src_eval):
            raise XvjaxError(
                "source reference trials need all of --src-enroll --src-test --src-trials"
            )
    for name in ("src_data", "src_enroll", "src_test", "tgt_train", "tgt_adapt", "tgt_enroll",
                 "tgt_test", "tgt_dev_enroll", "tgt_dev_test", "musan", "rirs"):  # fmt: skip
        path = getattr(cfg, name)
        if path and not os.path.isdir(path):
            raise XvjaxError(f"--{name.replace('_', '-')}={path}: no such directory")
    for name in ("trials", "src_trials", "dev_trials", "plda", "mean", "lda", "mfcc_config",
                 "vad_config"):  # fmt: skip
        path = getattr(cfg, name)
        if path and not os.path.isfile(path):
            raise XvjaxError(f"--{name.replace('_', '-')}={path}: no such file")
    if cfg.pretrained and not os.path.exists(cfg.pretrained):
        raise XvjaxError(f"--pretrained={cfg.pretrained}: no such file or model directory")
    if (cfg.mean or cfg.lda) and not cfg.plda:
        raise XvjaxError("--mean/--lda describe a Kaldi backend: give its --plda too")
    for name in ("seeds", "bootstrap"):
        if getattr(cfg, name) < 1:
            raise XvjaxError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.dev_speakers < 0:
        raise XvjaxError(f"--dev-speakers must not be negative, got {cfg.dev_speakers}")
    if cfg.sample_rate not in (8000, 16000):
        raise XvjaxError(f"--sample-rate must be 8000 or 16000, got {cfg.sample_rate}")
