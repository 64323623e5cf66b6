"""Fine-tuning with Kaldi's NG-SGD vs momentum SGD vs Adam: dev EER against training steps.

Setups (`--setups`):
  kaldi  the Kaldi-trained fixture model (fixtures/kaldi/nnet3/small/final.raw: 30-dim 16 kHz MFCCs,
         12 outputs) fine-tuned on the built-in corpus' in-domain telephone training set (upsampled
         to 16 kHz, the voxceleb/v2 front end); dev EER (cosine, Kaldi compute-eer) on the corpus'
         in-domain dev trials (target_dev_enroll/test; the eval trials are not looked at).
  fake   a small x-vector net trained from scratch (Adam) on feature-level fake speakers of domain 0
         (`xvjax.synthetic.fake_feats`), fine-tuned on domain 1, dev EER on held-out domain-1 speakers.

Every run is Snyder's transfer recipe as `configs/finetune.py` sets it up (output resized to the
in-domain speakers and zero-initialised, `--freeze` layers frozen with their BatchNorm statistics,
Kaldi max-change 0.75 / 1.5 and max-param-change 2, BN statistics recomputed at the end), with:
  ngsgd  Kaldi's NG-SGD, momentum 0.5, Kaldi's rates (run_xvector_1a.sh: effective lrate 0.001 ->
         0.0001, on the objective summed over the minibatch), times --lr-scale
  sgd    the same without the natural gradient
  adam   Adam, 0.001 -> 0.0001 on the mean objective, times --lr-scale

    .venv/bin/python benchmarks/bench_finetune_optimizers.py --workdir=exp/bench_ft
    .venv/bin/python benchmarks/bench_finetune_optimizers.py --setups=fake --steps=200 --lr-scale=3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time

from xvjax.backend.trials import Trials
from xvjax.kaldi.datadir import combine_data_dirs
from xvjax.model.checkpoint import load_any
from xvjax.recipe.config import RecipeConfig, fingerprint
from xvjax.recipe.datasets import features_for
from xvjax.recipe.stages import stage_data
from xvjax.synthetic.fake_feats import write_fake_data_dir, write_trials
from xvjax.train.config import base_config
from xvjax.train.train import train_and_evaluate

FIXTURE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "..", "shared", "fixtures", "kaldi", "nnet3", "small", "final.raw",
)  # fmt: skip
OPTIMIZERS = {
    "ngsgd": dict(optimizer="ngsgd", lr_on_summed_objective=True, initial_lr=0.001,
                  final_lr=0.0001, schedule="exponential"),
    "sgd": dict(optimizer="sgd", lr_on_summed_objective=True, initial_lr=0.001, final_lr=0.0001,
                schedule="exponential"),
    "adam": dict(optimizer="adam", initial_lr=0.001, final_lr=0.0001, schedule="cosine"),
}  # fmt: skip


def finetune_config(args, init_from: str, train_dir: str, dev_dir: str, optimizer: str):
    """configs/finetune.py's setup with one optimizer's rates (see the module docstring)."""
    c = base_config()
    c.seed = args.seed
    c.init_from = init_from
    c.optim.freeze = args.freeze
    c.optim.momentum = 0.5
    for key, value in OPTIMIZERS[optimizer].items():
        c.optim[key] = value
    c.optim.initial_lr *= args.lr_scale
    c.optim.final_lr *= args.lr_scale
    c.data.train_dir = train_dir
    c.data.feats_prep = "prepared"
    c.data.min_chunk = c.data.max_chunk = args.chunk
    c.data.frames_per_archive = 100_000
    c.train.num_steps, c.train.batch_size = args.steps, args.batch_size
    c.train.recompute_bn_batches = args.recompute_bn_batches
    c.train.log_every, c.train.checkpoint_every = args.eval_every, 0
    c.train.async_checkpoints = c.train.progress = c.train.tensorboard = False
    c.eval.dev_dir, c.eval.trials = dev_dir, os.path.join(dev_dir, "trials")
    c.eval.every, c.eval.at_start = args.eval_every, True
    return c


def corpus_setup(args) -> tuple[str, str, str]:
    """(init model, in-domain train dir, dev dir with trials) from the built-in corpus."""
    cfg = RecipeConfig(
        workdir=os.path.join(args.workdir, "corpus"),
        preset="tiny",
        corpus_options=args.corpus_options,
        progress=False,
    ).resolved()
    data = stage_data(cfg, {})
    fp = fingerprint(cfg, 1)
    sets = ("target_train", "target_dev_enroll", "target_dev_test")
    prepared = {n: features_for(cfg, data["sets"][n], fp) for n in sets}
    dev = os.path.join(args.workdir, "corpus", "target_dev_no_sil")
    combine_data_dirs(dev, [prepared["target_dev_enroll"], prepared["target_dev_test"]])
    with open(data["trials"]["dev"], encoding="utf-8") as src:
        with open(os.path.join(dev, "trials"), "w", encoding="utf-8") as dst:
            dst.write(src.read())
    return os.path.abspath(FIXTURE), prepared["target_train"], dev


def fake_setup(args) -> tuple[str, str, str]:
    """(source model trained here, domain-1 train dir, domain-1 dev dir with trials)."""
    root = os.path.join(args.workdir, "fake")
    common = dict(feat_dim=20, min_frames=200, max_frames=320)
    write_fake_data_dir(f"{root}/src", 40, 8, seed=1, domain=0, spk_prefix="s", **common)
    write_fake_data_dir(f"{root}/tgt", 30, 8, seed=2, domain=1, spk_prefix="t", **common)
    dev = write_fake_data_dir(f"{root}/dev", 30, 6, seed=3, domain=1, spk_prefix="e", **common)
    write_trials(f"{root}/dev/trials", dev)
    source = os.path.join(root, "source_model")
    if not os.path.isdir(os.path.join(source, "final")):
        c = base_config()
        c.model.frame_dims, c.model.embedding_dims = (64, 64, 64, 64, 128), (64, 64)
        c.data.train_dir = f"{root}/src"
        c.data.min_chunk = c.data.max_chunk = args.chunk
        c.data.frames_per_archive = 100_000
        c.optim.optimizer, c.optim.schedule = "adam", "cosine"
        c.optim.initial_lr, c.optim.final_lr = 0.003, 0.0003
        c.optim.max_change = c.optim.max_param_change = 0.0
        c.train.num_steps, c.train.batch_size, c.train.log_every = 300, 32, 50
        c.train.async_checkpoints = c.train.progress = c.train.tensorboard = False
        train_and_evaluate(c, source)
    return os.path.join(source, "final"), f"{root}/tgt", f"{root}/dev"


def run(args, setup: str, optimizer: str, init_from, train_dir, dev_dir) -> dict:
    frozen = re.sub(r"\W", "", args.freeze) or "none"
    tag = f"{setup}-{optimizer}-x{args.lr_scale:g}-bn{args.recompute_bn_batches}-freeze{frozen}"
    workdir = os.path.join(args.workdir, "runs", tag)
    done = os.path.join(workdir, "bench.json")
    if os.path.isfile(done):
        with open(done, encoding="utf-8") as f:
            return json.load(f)
    started = time.perf_counter()
    summary = train_and_evaluate(
        finetune_config(args, init_from, train_dir, dev_dir, optimizer), workdir
    )
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    out = {
        "eer": {r["step"]: r["dev_eer"] for r in rows if "dev_eer" in r},
        "loss": {r["step"]: r["loss"] for r in rows if "loss" in r},
        "seconds": time.perf_counter() - started,
        "final_eer": summary["dev_eer"],
    }
    with open(done, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default="exp/bench_finetune_optimizers")
    p.add_argument("--setups", default="kaldi,fake")
    p.add_argument("--optimizers", default="ngsgd,sgd,adam")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=200, help="chunk length (frames)")
    p.add_argument("--freeze", default="tdnn[1-5]")
    p.add_argument("--lr-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--recompute-bn-batches",
        type=int,
        default=base_config().train.recompute_bn_batches,
        help="minibatches for the final BatchNorm statistics (0 = the running averages)",
    )
    p.add_argument(
        "--corpus-options",
        default="min_dur=4,max_dur=6,source_train_spk=4,source_eval_spk=2,target_train_spk=40,"
        "target_train_utts=8,target_dev_spk=30,target_eval_spk=2,test_utts=5,target_adapt_spk=2",
        help="built-in corpus options (the tiny preset with the default preset's in-domain sizes)",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    setups = {"kaldi": corpus_setup, "fake": fake_setup}
    for setup in args.setups.split(","):
        init_from, train_dir, dev_dir = setups[setup](args)
        spec, _ = load_any(init_from)
        trials = Trials.read(os.path.join(dev_dir, "trials"), labelled=True)
        print(
            f"\n== {setup}: {init_from} ({spec.input_dim}-dim input) fine-tuned on {train_dir}; "
            f"dev {len(trials)} trials ({int(trials.labels.sum())} target); "
            f"freeze {args.freeze or 'none'}; batch {args.batch_size} x {args.chunk} frames; "
            f"lr x{args.lr_scale:g}; final BN statistics "
            + (
                f"recomputed on {args.recompute_bn_batches} minibatches"
                if args.recompute_bn_batches
                else "running averages"
            )
        )
        results = {
            opt: run(args, setup, opt, init_from, train_dir, dev_dir)
            for opt in args.optimizers.split(",")
        }
        steps = sorted({int(s) for r in results.values() for s in r["eer"]})
        print("dev EER (%) at step: " + "".join(f"{s:>7}" for s in steps) + "   s/run")
        for opt, r in results.items():
            eer = {int(k): v for k, v in r["eer"].items()}
            cells = "".join(f"{100 * eer[s]:7.2f}" if s in eer else "      -" for s in steps)
            print(f"  {opt:<18}{cells}   {r['seconds']:5.0f}")
        print("train loss at step:  " + "".join(f"{s:>7}" for s in steps))
        for opt, r in results.items():
            loss = {int(k): v for k, v in r["loss"].items()}
            cells = "".join(f"{loss[s]:7.3f}" if s in loss else "      -" for s in steps)
            print(f"  {opt:<18}{cells}")


if __name__ == "__main__":
    main()
