"""`train_and_evaluate(config, workdir)`: the transfer-learning training run.

    config = configs/finetune.py:get_config()      (ml_collections ConfigDict, see configs/)
    workdir/
      config.json            the run's config (written at the start)
      model_spec.json        the network being trained (after the output resize)
      speakers.txt           output index -> speaker id
      checkpoints/<step>/    Orbax: TrainState + data position + metadata (keep-last-N)
      tb/                    TensorBoard event files (loss, accuracy, lr, examples/s, dev EER)
      metrics.jsonl          the same, one JSON object per log point
      training_curve.png     loss / accuracy / dev EER against steps
      final/                 the trained model (xvjax model dir: `nnet3-xvector-compute`,
                             `flax-to-nnet3` read it)

Re-running with the same workdir resumes from the latest checkpoint (parameters, optimizer state,
BatchNorm statistics, data position, PRNG): the resumed run equals an uninterrupted one bit for bit
on CPU. SIGINT/SIGTERM stop after the current step and save a checkpoint first.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.fileutil import write_json
from xvjax.model.checkpoint import template_for
from xvjax.train.builders import TrainData, build_data, build_model, model_factors  # noqa: F401
from xvjax.train.runtime import (
    StopFlag,
    export_model,
    plot_curve,
    setup_distributed,
    to_host,
)

log = logging.getLogger("xvjax")

# Fields that do not change what is computed (display, logging, checkpoint cadence).
_COSMETIC = ("train.progress", "train.tensorboard", "train.log_every", "train.checkpoint_every",
             "train.keep_checkpoints", "train.async_checkpoints", "eval.", "dist.",
             "data.prefetch", "data.cache")  # fmt: skip


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ (cosmetic fields ignored)."""
    out = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if name.startswith(_COSMETIC):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{name}.")
        elif a != b:
            out.append(name)
    return out


# ----------------------------------------------------------------------------- main loop


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains as `config` says, in `workdir` (resuming from its latest checkpoint if any).

    Returns a summary dict: {"step", "loss", "accuracy", "dev_eer" (if evaluated), "interrupted",
    "final_model" (path or None), "examples_per_sec"}.
    """
    setup_distributed(config)
    import jax
    import jax.numpy as jnp

    from xvjax.model.spec import ModelSpec
    from xvjax.model.xvector import XVector, init_variables
    from xvjax.train import optim
    from xvjax.train import step as step_lib
    from xvjax.train.checkpointing import Checkpointer
    from xvjax.train.state import create_train_state

    workdir = os.path.abspath(workdir)
    pid, nproc = jax.process_index(), jax.process_count()
    is_main = pid == 0
    num_steps = int(config.train.num_steps)
    batch_size = int(config.train.batch_size)
    if batch_size % jax.device_count():
        raise XvjaxError(
            f"batch size {batch_size} is not divisible by the {jax.device_count()} devices"
        )

    # Everything is checked (data, model, layer patterns) before anything is written or compiled.
    data = build_data(config, pid, nproc)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    spec_path = os.path.join(workdir, "model_spec.json")
    ckpt, resume_step = None, None

    def open_checkpointer():
        return Checkpointer(
            ckpt_dir,
            max_to_keep=int(config.train.keep_checkpoints),
            async_save=bool(config.train.async_checkpoints),
        )

    if os.path.isdir(ckpt_dir) and os.path.isfile(spec_path):
        ckpt = open_checkpointer()
        resume_step = ckpt.latest_step()
    if resume_step is not None:
        with open(spec_path, encoding="utf-8") as f:
            spec = ModelSpec.from_json(f.read())
        variables = init_variables(spec, jax.random.key(0))  # shapes only; restored below
        log.info("Resuming from %s (step %d)", ckpt.directory, resume_step)
    else:
        spec, variables = build_model(config, data.num_speakers, data.feat_dim)
    if spec.input_dim != data.feat_dim:
        raise XvjaxError(
            f"model takes {spec.input_dim}-dim input, features are {data.feat_dim}-dim"
        )
    if spec.output_dim("output") != data.num_speakers:
        raise XvjaxError(
            f"model has {spec.output_dim('output')} outputs, the data has {data.num_speakers} speakers"
        )
    caps, factors = model_factors(spec)
    opt = optim.make_optimizer(config.optim, variables["params"], num_steps, caps, factors)
    frozen_bn = opt.plan.frozen if config.optim.freeze_bn else ()
    log.info(
        "Layers: %s; BatchNorm statistics frozen in: %s",
        opt.plan.describe(),
        " ".join(frozen_bn) or "none",
    )
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(config.train.compute_dtype)
    if dtype is None:
        raise XvjaxError(
            f"train.compute_dtype must be float32 or bfloat16, got {config.train.compute_dtype}"
        )
    dev = None
    if config.eval.dev_dir and config.eval.trials and is_main:
        from xvjax.train.dev_set import DevSet

        dev = DevSet(
            config.eval.dev_dir,
            config.eval.trials,
            config.eval.output_node,
            int(config.eval.max_utts),
        )
        if dev.store.feat_dim != spec.input_dim:
            raise XvjaxError(
                f"dev set {config.eval.dev_dir} has {dev.store.feat_dim}-dim features, the model "
                f"takes {spec.input_dim}"
            )

    if is_main:
        from xvjax.fileutil import atomic_open

        os.makedirs(workdir, exist_ok=True)
        if resume_step is None:
            with atomic_open(spec_path, "w", encoding="utf-8") as f:
                f.write(spec.to_json() + "\n")
            if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
                os.remove(os.path.join(workdir, "metrics.jsonl"))  # a fresh run in an old workdir
        new_cfg = json.loads(config.to_json_best_effort())
        cfg_path = os.path.join(workdir, "config.json")
        if resume_step is not None and os.path.isfile(cfg_path):
            with open(cfg_path, encoding="utf-8") as f:
                changed = config_changes(json.load(f), new_cfg)
            if changed:
                log.warning(
                    "Resuming with a config that differs from the checkpointed run's in: %s "
                    "(the resumed run will not equal an uninterrupted one)",
                    ", ".join(changed),
                )
        write_json(cfg_path, new_cfg)
        if data.speakers is not None:
            with atomic_open(os.path.join(workdir, "speakers.txt"), "w", encoding="utf-8") as f:
                f.writelines(f"{i} {s}\n" for i, s in enumerate(data.speakers))
    if ckpt is None:
        ckpt = open_checkpointer()

    mesh = step_lib.make_mesh()
    model = XVector(spec)
    state = step_lib.replicate(create_train_state(variables, opt.tx, int(config.seed)), mesh)
    history: list[dict] = []
    if resume_step is not None:
        state, position, meta = ckpt.restore(resume_step, state)
        data.loader.load_state_dict(position)
        history = list(meta.get("history", []))
    train_step = step_lib.make_train_step(model.apply, opt.tx, mesh, frozen_bn, dtype)
    start = int(jax.device_get(state.step.addressable_data(0)))

    writer = None
    if is_main and config.train.tensorboard:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(os.path.join(workdir, "tb"))

    def log_point(entry: dict) -> None:
        history.append(entry)
        if not is_main:
            return
        with open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        if writer is not None:
            for k, v in entry.items():
                if k != "step":
                    writer.add_scalar(k, v, entry["step"])
            writer.flush()

    def evaluate(step: int) -> float:
        eer = dev.eer(spec, to_host(state.variables))
        log.info("Step %d: dev EER %.2f%% (cosine)", step, 100 * eer)
        log_point({"step": step, "dev_eer": eer})
        return eer

    def save(step: int) -> None:
        ckpt.save(step, state, data.loader.state_dict(), {"history": history})

    from tqdm import tqdm

    bar = tqdm(
        total=num_steps,
        initial=start,
        unit="step",
        desc="train",
        disable=not (is_main and config.train.progress) or None,
        dynamic_ncols=True,
    )
    every = max(int(config.train.log_every), 1)
    ckpt_every = int(config.train.checkpoint_every)
    eval_every = int(config.eval.every)
    acc_metrics: list = []
    t_last, n_last, frames_last = time.perf_counter(), 0, 0
    interrupted = 0
    last: dict = {}
    step = start
    if start == 0 and dev is not None and config.eval.at_start:
        evaluate(0)
    with StopFlag() as stop:
        while step < num_steps:
            batch = next(data.loader)
            state, metrics = train_step(
                state, step_lib.shard_batch({"feats": batch.feats, "labels": batch.labels}, mesh)
            )
            step += 1
            acc_metrics.append(metrics)
            n_last += batch_size
            frames_last += batch_size * batch.feats.shape[1]
            bar.update(1)
            if step % every == 0 or step == num_steps:
                vals = jax.device_get(
                    [{k: v.addressable_data(0) for k, v in m.items()} for m in acc_metrics]
                )
                now = time.perf_counter()
                last = {
                    "step": step,
                    "loss": float(np.mean([v["loss"] for v in vals])),
                    "accuracy": float(np.mean([v["accuracy"] for v in vals])),
                    "lr": float(opt.schedule(step - 1)),
                    "examples_per_sec": n_last / max(now - t_last, 1e-9),
                    "frames_per_sec": frames_last / max(now - t_last, 1e-9),
                }
                log_point(last)
                bar.set_postfix(
                    loss=f"{last['loss']:.3f}",
                    acc=f"{last['accuracy']:.2f}",
                    lr=f"{last['lr']:.2g}",
                    eg_s=f"{last['examples_per_sec']:.0f}",
                )
                if bar.disable and is_main:  # no terminal: Kaldi-style progress lines instead
                    log.info(
                        "Step %d/%d: loss %.4f, accuracy %.3f, lr %.3g, %.1f examples/s",
                        step,
                        num_steps,
                        last["loss"],
                        last["accuracy"],
                        last["lr"],
                        last["examples_per_sec"],
                    )
                acc_metrics, t_last, n_last, frames_last = [], time.perf_counter(), 0, 0
            if dev is not None and eval_every > 0 and step % eval_every == 0 and step < num_steps:
                evaluate(step)
            if stop.signum:
                interrupted = stop.signum
                break
            if ckpt_every > 0 and step % ckpt_every == 0 and step < num_steps:
                save(step)
    bar.close()
    data.loader.close()
    if not interrupted and dev is not None:
        summary_eer = evaluate(step)
    save(step)
    ckpt.wait()
    ckpt.close()
    summary = {k: last.get(k) for k in ("loss", "accuracy", "examples_per_sec")}
    summary.update(step=step, interrupted=bool(interrupted), final_model=None)
    if interrupted:
        log.warning(
            "Interrupted at step %d; checkpoint saved in %s; rerun to resume", step, ckpt.directory
        )
        return summary
    if dev is not None:
        summary["dev_eer"] = summary_eer
    final = os.path.join(workdir, "final")
    # Keep the imported Kaldi model as export template, so flax-to-nnet3 preserves its tokens.
    template = template_for(config.init_from) if config.get("init_from") else None
    export_model(final, spec, to_host(state.variables), template=template)
    if is_main:
        summary["final_model"] = final
        if history:
            plot_curve(history, os.path.join(workdir, "training_curve.png"))
        if writer is not None:
            writer.close()
        log.info(
            "Trained %d steps (loss %.3f, accuracy %.3f); final model in %s",
            step,
            summary["loss"] or float("nan"),
            summary["accuracy"] or float("nan"),
            final,
        )
    return summary
