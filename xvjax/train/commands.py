"""`xvjax train` (and `xvjax make-tfds-dataset`): command-line shells over `xvjax.train.train`
(and `xvjax.data.tfds_source`).

Imports of jax/flax happen inside the functions so `xvjax --help` stays fast.
"""

from __future__ import annotations

import logging
import os

from xvjax import host_memory
from xvjax.cli import (
    CLUSTER_OPTS,
    Opt,
    Options,
    command,
    join_cluster_of,
    parse_bool,
    setup_logging,
)
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

TRAIN_USAGE = """\
xvjax train --config=configs/finetune.py [--config.FIELD=VALUE ...] [options]
 e.g.: xvjax train --config=configs/finetune.py --init-from=exp/xvector_nnet_1a/final.raw \\
         --data=data/tgt_train_no_sil --workdir=checkpoints/finetune --freeze='tdnn[1-5]' \\
         --musan=musan --rirs=RIRS_NOISES --config.train.num_steps=2000
 Re-running the same command resumes from the latest checkpoint in --workdir; Ctrl-C saves one.
 A resumed run may change the run length, logging, checkpoint cadence and evaluation (and, with a
 warning, learning rates and change caps), nothing else. One run at a time holds a workdir
 (train.lock). A nan/inf loss stops the run with an error naming the step.
 Config fields: see xvjax/train/config.py (base_config) and configs/*.py."""

# option -> (config field, type); these override the config file and --config.* values.
TRAIN_OPTS = {
    "init-from": ("init_from", str, "Kaldi nnet3 .raw or xvjax model dir to start from"),
    "data": ("data.train_dir", str, "Training Kaldi data dir (feats.scp [+vad.scp] or wav.scp)"),
    "source": ("data.source", str, "feats | audio | egs | tfds"),
    "egs-dir": ("data.egs_dir", str, "Kaldi egs dir (egs.*.ark) for --source=egs"),
    "tfds-dir": ("data.tfds_dir", str, "TFDS dataset dir for --source=tfds"),
    "num-workers": (
        "data.num_workers",
        int,
        "Threads making training minibatches (0 = in the training loop); the batches do not "
        "depend on it",
    ),
    "musan": ("data.musan", str, "MUSAN dir for on-the-fly augmentation (--source=audio)"),
    "rirs": ("data.rirs", str, "RIRS_NOISES dir for on-the-fly reverberation (--source=audio)"),
    "freeze": ("optim.freeze", str, "Regex(es) of layers to freeze, e.g. 'tdnn[1-5]'"),
    "train-only": ("optim.train_only", str, "Regex(es) of the only layers to train, e.g. output"),
    "lr-mults": ("optim.lr_mults", str, "Per-layer lr multipliers 'pattern:mult,...'"),
    "optimizer": (
        "optim.optimizer",
        str,
        "sgd (Kaldi momentum) | ngsgd (Kaldi natural-gradient SGD) | adam | adamw",
    ),
    "recompute-bn-batches": (
        "train.recompute_bn_batches",
        int,
        "Training minibatches on which the final model's BatchNorm statistics are re-estimated "
        "(Kaldi's RecomputeStats; 0 = keep the running averages)",
    ),
    "num-steps": ("train.num_steps", int, "Training steps"),
    "batch-size": ("train.batch_size", int, "Global minibatch size"),
    "seed": ("seed", int, "Random seed (data order, init, augmentation)"),
    "dev-data": ("eval.dev_dir", str, "In-domain dev data dir for validation EER"),
    "trials": ("eval.trials", str, "Trials file on --dev-data"),
    "coordinator": (
        "dist.coordinator",
        str,
        "jax.distributed coordinator HOST:PORT, 'auto' "
        "(Slurm, Cloud TPU, GKE, Open MPI) or 'none'; empty: a multi-task Slurm step",
    ),
    "num-processes": ("dist.num_processes", int, "Number of processes (hosts)"),
    "process-id": ("dist.process_id", int, "This process's index"),
}
ENV = {o.name: o.env for o in CLUSTER_OPTS}  # the variables every multi-host command reads


def _train_usage() -> str:
    lines = [TRAIN_USAGE, "", "Options:"]
    lines.append(
        f"  --{'config':<20} : Config file (python, get_config()), optionally FILE:ARG (required)"
    )
    lines.append(f"  --{'config.FIELD':<20} : Override one config field (typed like the field)")
    lines.append(f"  --{'workdir':<20} : Run directory: checkpoints, logs, final model (required)")
    for name, (field, _kind, text) in TRAIN_OPTS.items():
        env = f"; env {ENV[name]}" if name in ENV else ""
        lines.append(f"  --{name:<20} : {text} (sets config.{field}{env})")
    lines.append(f"  --{'verbose':<20} : Verbose level")
    return "\n".join(lines)


def parse_train_argv(argv: list[str]):
    """argv -> (config, workdir). Raises XvjaxError on unknown options or bad values."""
    from xvjax.train.config import load_config

    config_arg, workdir, verbose = None, None, 0
    overrides, values = [], {}
    for name, env in ENV.items():
        if os.environ.get(env):
            values[name] = os.environ[env]
    for arg in argv:
        if not arg.startswith("--"):
            raise XvjaxError(f"unexpected argument '{arg}'; options are --name=value (see --help)")
        body = arg[2:]
        name, eq, value = body.partition("=")
        if name.startswith("config."):
            overrides.append(arg)
            continue
        name = name.replace("_", "-")
        if name == "config":
            config_arg = value
        elif name == "workdir":
            workdir = value
        elif name == "verbose":
            verbose = int(value or 1)
        elif name in TRAIN_OPTS:
            if not eq:
                raise XvjaxError(f"option --{name} needs a value (--{name}=VALUE)")
            values[name] = value
        else:
            raise XvjaxError(f"invalid option --{name}; see 'xvjax train --help'")
    if not config_arg:
        raise XvjaxError("--config=FILE is required (e.g. configs/finetune.py)")
    if not workdir:
        raise XvjaxError("--workdir=DIR is required")
    config, _ = load_config(config_arg, overrides)
    for name, value in values.items():
        field, kind, _ = TRAIN_OPTS[name]
        try:
            typed = kind(value) if kind is not bool else parse_bool(value, name)
        except ValueError:
            raise XvjaxError(f"option --{name}: invalid {kind.__name__} value '{value}'") from None
        node = config
        *parents, leaf = field.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = typed
    if values.get("egs-dir") and "source" not in values:
        config.data.source = "egs"
    if values.get("tfds-dir") and "source" not in values:
        config.data.source = "tfds"
    if values.get("musan") or values.get("rirs"):
        # augmentation works on audio: features are then computed on the fly from wav.scp
        if "source" not in values:
            config.data.source = "audio"
        if config.data.aug_prob == 0:
            config.data.aug_prob = 0.5
    return config, workdir, verbose


@command(
    "train",
    "Train or fine-tune an x-vector network (sharded jit, Orbax checkpoints)",
    usage=_train_usage(),
    raw=True,
    resumable=True,
)
def train(argv: list[str]) -> int:
    if "--help" in argv or "-h" in argv:
        print(_train_usage())
        return 0
    config, workdir, verbose = parse_train_argv(list(argv))
    setup_logging("train", verbose)
    # A training run's time is its steps, not its compiles: see xvjax.host_memory.
    host_memory.reuse_freed_memory()
    dist = config.dist
    join_cluster_of(Options(dict(coordinator=dist.coordinator, num_processes=dist.num_processes,
                                 process_id=dist.process_id)))  # fmt: skip
    from xvjax.train.train import train_and_evaluate

    summary = train_and_evaluate(config, workdir)
    if summary["interrupted"]:
        log.warning(
            "Stopped by a signal at step %d; rerun the same command to resume", summary["step"]
        )
        return 130
    log.info("Done: %d steps; final model %s", summary["step"], summary["final_model"])
    return 0


@command(
    "make-tfds-dataset",
    "Write a Kaldi data dir's prepared features as a TFDS dataset (ArrayRecord)",
    usage="xvjax make-tfds-dataset [options] <data-dir> <tfds-data-dir>\n"
    " e.g.: xvjax make-tfds-dataset data/train_no_sil tfds/\n"
    " Train from it with: xvjax train ... --tfds-dir=tfds/xvjax_speech/<name>/1.0.0",
    opts=[
        Opt("name", "default", "Builder config name (the dataset variant)"),
        Opt("feats-prep", "auto", "raw (CMN + VAD here) | prepared | auto"),
        Opt("split", "train", "Split name"),
        Opt("shards", 4, "Number of ArrayRecord shards"),
    ],
    nargs=(2, 2),
)
def make_tfds_dataset(opts, data_dir: str, out_dir: str) -> int:
    from xvjax.data.tfds_source import build_tfds_dataset

    path = build_tfds_dataset(
        data_dir,
        out_dir,
        name=opts.name,
        prep=opts.feats_prep,
        split=opts.split,
        num_shards=opts.shards,
    )
    print(path)
    return 0
