"""The training config: `base_config()` with every field and its default, `check_config` (values
that cannot work, e.g. a negative step count, are refused with the field's name before anything
runs), and the loader for `--config=configs/finetune.py[:arg] --config.a.b=value` command lines
(ml_collections config_flags).

Config files in `configs/` define `get_config()` that starts from `base_config()` and changes a few
fields (flax-examples style).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from xvjax.errors import XvjaxError


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Start: a Kaldi nnet3 .raw or an xvjax model dir; "" = from scratch with `model`.
    c.init_from = ""
    c.resize_output = True  # new output layer sized to the training speakers
    c.output_init = ml_collections.ConfigDict(dict(param_stddev=0.0, bias_stddev=0.0))
    c.model = ml_collections.ConfigDict(
        dict(
            frame_dims=(512, 512, 512, 512, 1500),
            embedding_dims=(512, 512),
            bn_momentum=0.99,
            output_affine="output.affine",
        )
    )
    c.data = ml_collections.ConfigDict(
        dict(
            source="feats",  # feats | audio | egs | tfds
            train_dir="",  # Kaldi data dir (feats: feats.scp [+ vad.scp]; audio: wav.scp)
            feats_prep="auto",  # raw (CMN + VAD here) | prepared (a *_no_sil dir) | auto
            cache=True,
            egs_dir="",
            num_speakers=0,  # egs without pdf2num
            tfds_dir="",
            tfds_split="train",
            min_chunk=200,  # Kaldi --min-frames-per-chunk
            max_chunk=400,  # Kaldi --max-frames-per-chunk
            chunk_quantum=25,  # chunk lengths rounded down to multiples (bounds jit compiles)
            frames_per_archive=1_000_000,  # Kaldi --frames-per-iter
            num_repeats=50,  # Kaldi --num-repeats
            min_utts_per_spk=2,
            # threads making minibatches (0 = in the training loop's thread); the batches are the
            # same whatever the count: raise it to keep accelerators fed (benchmarks/
            # bench_input_pipeline.py estimates how many)
            num_workers=1,
            prefetch=2,  # minibatches made ahead beyond those being made
            # on-the-fly features from audio (source=audio)
            mfcc_config="",  # Kaldi conf/mfcc.conf; "" = voxceleb (16 kHz) / sre16 (8 kHz) by rate
            vad_config="",
            musan="",  # MUSAN dir (noise/ music/ speech/)
            rirs="",  # RIRS_NOISES dir
            # probability that a chunk is augmented (one of reverb/noise/music/babble, equally);
            # the CLI sets 0.5 when --musan/--rirs are given and this is 0
            aug_prob=0.0,
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            optimizer="sgd",  # sgd (Kaldi momentum form) | ngsgd (Kaldi NG-SGD) | adam | adamw
            momentum=0.5,
            initial_lr=0.01,
            final_lr=0.001,
            schedule="exponential",  # exponential (Kaldi) | cosine | constant
            warmup_steps=0,
            weight_decay=0.0,
            b1=0.9,
            b2=0.999,
            freeze="",  # regex(es) on layer names, e.g. "tdnn[1-5]"
            train_only="",  # e.g. "output" or "tdnn[6-7],output"
            lr_mults="",  # e.g. "tdnn[6-7]:0.5,output:2"
            use_model_lr_factors=True,  # Kaldi learning-rate-factor of imported layers (0 = frozen)
            freeze_bn=True,  # BatchNorm stats of frozen layers stay as imported
            max_change=0.75,  # per-layer cap when the model has none (Kaldi relu-batchnorm default)
            max_change_per_layer="",  # e.g. "output:1.5"
            max_param_change=2.0,  # Kaldi --max-param-change
            # True: the rates multiply the gradient of the objective summed over the minibatch, as
            # in nnet3-train, so a Kaldi recipe's --initial/final-effective-lrate carry over;
            # False: they multiply the gradient of the mean over the minibatch.
            lr_on_summed_objective=False,
            # ngsgd: Kaldi's NaturalGradientAffineComponent preconditioner of every trained affine
            # (ranks are capped at (dim + 1) // 2 as Kaldi's defaults are)
            natural_gradient=ml_collections.ConfigDict(
                dict(
                    rank_in=20, rank_out=80, update_period=4, num_samples_history=2000.0, alpha=4.0
                )
            ),
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            num_steps=1000,
            batch_size=64,
            compute_dtype="float32",  # or bfloat16 (params stay float32)
            log_every=20,
            checkpoint_every=200,
            keep_checkpoints=3,
            async_checkpoints=True,
            tensorboard=True,
            progress=True,
            # BatchNorm statistics of the final model re-estimated on this many training
            # minibatches with the final weights (Kaldi's RecomputeStats in nnet3-combine; 16 x 64
            # chunks of 300 frames ~ Kaldi's 3 x 100k combine frames); 0 = keep the running averages
            recompute_bn_batches=16,
        )
    )
    c.eval = ml_collections.ConfigDict(
        dict(
            dev_dir="",  # in-domain dev data dir (features)
            trials="",  # Kaldi trials file on it
            every=0,  # steps between dev EER evaluations (0 = only at the end)
            at_start=True,
            keep_best=False,  # also export the dev-best evaluated step as best/ (early stopping)
            output_node="tdnn6.affine",
            max_utts=0,
        )
    )
    c.dist = ml_collections.ConfigDict(
        dict(coordinator="", num_processes=1, process_id=0, cpu_collectives="gloo")
    )
    return c


CHOICES = {
    "data.source": ("feats", "audio", "egs", "tfds"),
    "data.feats_prep": ("raw", "prepared", "auto"),
    "optim.optimizer": ("sgd", "ngsgd", "adam", "adamw"),
    "optim.schedule": ("exponential", "cosine", "constant"),
    "train.compute_dtype": ("float32", "bfloat16"),
}
# field -> the interval its value must lie in
INTERVALS = {
    "seed": "[0, inf)",
    "output_init.param_stddev": "[0, inf)",
    "output_init.bias_stddev": "[0, inf)",
    "model.bn_momentum": "[0, 1)",
    "data.min_chunk": "[2, inf)",
    "data.chunk_quantum": "[1, inf)",
    "data.frames_per_archive": "[1, inf)",
    "data.num_repeats": "[1, inf)",
    "data.min_utts_per_spk": "[1, inf)",
    "data.num_speakers": "[0, inf)",
    "data.num_workers": "[0, inf)",
    "data.prefetch": "[0, inf)",
    "data.aug_prob": "[0, 1]",
    "optim.momentum": "[0, 1)",
    "optim.initial_lr": "(0, inf)",
    "optim.final_lr": "[0, inf)",
    "optim.warmup_steps": "[0, inf)",
    "optim.weight_decay": "[0, inf)",
    "optim.b1": "[0, 1)",
    "optim.b2": "[0, 1)",
    "optim.max_change": "[0, inf)",
    "optim.max_param_change": "[0, inf)",
    "optim.natural_gradient.rank_in": "[1, inf)",
    "optim.natural_gradient.rank_out": "[1, inf)",
    "optim.natural_gradient.update_period": "[1, inf)",
    "optim.natural_gradient.num_samples_history": "(0, 1e6)",
    "optim.natural_gradient.alpha": "[0, inf)",
    "train.num_steps": "[1, inf)",
    "train.batch_size": "[1, inf)",
    "train.log_every": "[1, inf)",
    "train.checkpoint_every": "[0, inf)",
    "train.keep_checkpoints": "[0, inf)",
    "train.recompute_bn_batches": "[0, inf)",
    "eval.every": "[0, inf)",
    "eval.max_utts": "[0, inf)",
    "dist.num_processes": "[1, inf)",
    "dist.process_id": "[0, inf)",
}


def in_interval(value: float, interval: str) -> bool:
    """Whether `value` lies in `interval`, written "[0, 1)", "(0, inf)", ..."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


def field_value(config, field: str):
    """The value of a dotted field (`"optim.natural_gradient.alpha"`) of a ConfigDict."""
    node = config
    for part in field.split("."):
        node = node[part]
    return node


def check_config(config) -> None:
    """Raises XvjaxError naming the first field whose value cannot work (a negative step count, an
    empty batch, an unknown optimizer, ...): called before anything is read, written or compiled."""
    for field, allowed in CHOICES.items():
        value = field_value(config, field)
        if value not in allowed:
            raise XvjaxError(f"config {field}='{value}': choose one of {', '.join(allowed)}")
    for field, interval in INTERVALS.items():
        value = field_value(config, field)
        if not in_interval(value, interval):
            raise XvjaxError(f"config {field}={value}: must be in {interval}")
    dims = (*config.model.frame_dims, *config.model.embedding_dims)
    if any(int(d) < 1 for d in dims):
        raise XvjaxError(f"config model.frame_dims/embedding_dims {dims}: every width must be >= 1")
    if config.data.max_chunk < config.data.min_chunk:
        raise XvjaxError(
            f"config data.max_chunk={config.data.max_chunk}: must be >= data.min_chunk "
            f"({config.data.min_chunk})"
        )
    if config.optim.schedule == "exponential" and config.optim.final_lr <= 0:
        raise XvjaxError(
            f"config optim.final_lr={config.optim.final_lr}: the exponential schedule needs a "
            "rate > 0 (or set optim.schedule=cosine|constant)"
        )
    if config.dist.process_id >= config.dist.num_processes:
        raise XvjaxError(
            f"config dist.process_id={config.dist.process_id}: must be < dist.num_processes "
            f"({config.dist.num_processes})"
        )


def load_config(
    config_arg: str, overrides: Sequence[str] = ()
) -> tuple[ml_collections.ConfigDict, list[str]]:
    """`configs/x.py[:arg]` + ["--config.a.b=v", ...] -> (ConfigDict, the override strings).

    Overrides are typed by the field they set (ml_collections' config_flags rules).
    """
    path = config_arg.split(":", 1)[0]
    if not os.path.isfile(path):
        raise XvjaxError(f"config file {path} does not exist")
    base = None
    for item in overrides:
        if not item.startswith("--config."):
            raise XvjaxError(f"expected --config.FIELD=VALUE, got '{item}'")
        field = item[len("--config.") :].split("=", 1)[0]
        if base is None:
            base, _ = load_config(config_arg)
        node = base
        for part in field.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                raise XvjaxError(f"config has no field '{field}' (from {item})")
            node = node[part]
    fv = flags.FlagValues()
    argv = ["xvjax-train", f"--config={config_arg}", *overrides]
    config_flags.DEFINE_config_file(
        "config", default=None, flag_values=fv, lock_config=True, sys_argv=argv
    )
    try:
        fv(argv, known_only=False)
        cfg = fv.config
    except flags.Error as e:
        raise XvjaxError(f"config: {e}") from None
    except Exception as e:  # errors raised by the user's config file
        raise XvjaxError(f"cannot load config '{config_arg}': {type(e).__name__}: {e}") from None
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise XvjaxError(f"config file {config_arg} did not give a ConfigDict from get_config()")
    return cfg, list(overrides)
