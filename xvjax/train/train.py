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
      best/, best.json       with eval.keep_best: the model of the dev-best evaluated step

Re-running with the same workdir resumes from the latest checkpoint (parameters, optimizer state,
BatchNorm statistics, data position, PRNG): the resumed run equals an uninterrupted one bit for bit
on CPU. SIGINT/SIGTERM stop after the current step and save a checkpoint first.

The loop is here; the run directory (resume, run files, final model) is `workdir.Workdir`, the
metric writing `metric_writers.MetricWriter`, the data `input_pipeline`, the network and the
TrainState `state`, the jitted step `step`.
"""

from __future__ import annotations

import logging

import jax

from xvjax.distributed import join_cluster, to_host
from xvjax.errors import XvjaxError
from xvjax.model.spec import ModelSpec
from xvjax.model.xvector import XVector, init_variables
from xvjax.train import optim
from xvjax.train import step as step_lib
from xvjax.train.dev_set import DevSet
from xvjax.train.input_pipeline import build_data
from xvjax.train.metric_writers import IntervalMetrics, MetricWriter
from xvjax.train.preemption import StopFlag
from xvjax.train.state import create_model, create_train_state
from xvjax.train.workdir import Workdir

log = logging.getLogger("xvjax")


def open_dev_set(config, spec: ModelSpec) -> DevSet | None:
    """The in-domain dev set of `config.eval` (None without one), checked against the network."""
    if not (config.eval.dev_dir and config.eval.trials):
        return None
    dev = DevSet(
        config.eval.dev_dir, config.eval.trials, config.eval.output_node, int(config.eval.max_utts)
    )
    if dev.store.feat_dim != spec.input_dim:
        raise XvjaxError(
            f"dev set {config.eval.dev_dir} has {dev.store.feat_dim}-dim features, the model "
            f"takes {spec.input_dim}"
        )
    return dev


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains as `config` says, in `workdir` (resuming from its latest checkpoint if any).

    Returns a summary dict: {"step", "loss", "accuracy", "dev_eer" (if evaluated), "interrupted",
    "final_model" (path or None), "examples_per_sec"}.
    """
    dist = config.dist
    join_cluster(
        dist.coordinator, dist.num_processes, dist.process_id, dist.get("cpu_collectives", "gloo")
    )
    is_main = jax.process_index() == 0
    num_steps, batch_size = int(config.train.num_steps), int(config.train.batch_size)
    if batch_size % jax.device_count():
        raise XvjaxError(
            f"batch size {batch_size} is not divisible by the {jax.device_count()} devices"
        )

    # Everything is checked (data, model, layer patterns) before anything is written or compiled.
    data = build_data(config, jax.process_index(), jax.process_count())
    run = Workdir(workdir, config)
    resume = run.resume_point()
    if resume is None:
        spec, variables = create_model(config, data.num_speakers, data.feat_dim)
    else:
        spec = resume.spec
        variables = init_variables(spec, jax.random.key(0))  # shapes only; restored below
        log.info("Resuming from %s (step %d)", run.checkpointer().directory, resume.step)
    data.check_model(spec)
    opt = optim.make_optimizer(
        config.optim, variables["params"], num_steps, *optim.model_layer_factors(spec)
    )
    frozen_bn = opt.plan.frozen if config.optim.freeze_bn else ()
    log.info(
        "Layers: %s; BatchNorm statistics frozen in: %s",
        opt.plan.describe(),
        " ".join(frozen_bn) or "none",
    )
    dtype = step_lib.compute_dtype(config.train.compute_dtype)
    dev = open_dev_set(config, spec) if is_main else None
    if is_main:
        run.write_run_files(spec, data.speakers, fresh=resume is None)
    ckpt = run.checkpointer()

    mesh = step_lib.make_mesh()
    state = step_lib.replicate(create_train_state(variables, opt.tx, int(config.seed)), mesh)
    history: list[dict] = []
    if resume is not None:
        state, position, meta = ckpt.restore(resume.step, state)
        data.loader.load_state_dict(position)
        history = list(meta.get("history", []))
    train_step = step_lib.make_train_step(XVector(spec).apply, opt.tx, mesh, frozen_bn, dtype)
    step = int(jax.device_get(state.step.addressable_data(0)))
    writer = MetricWriter(
        run.path,
        num_steps,
        step,
        history,
        active=is_main,
        tensorboard=bool(config.train.tensorboard),
        progress=bool(config.train.progress),
    )

    keep_best = bool(config.eval.get("keep_best")) and dev is not None
    if keep_best and jax.process_count() > 1:
        raise XvjaxError("eval.keep_best needs a single-process run")
    best = run.best_dev() if keep_best and resume is not None else None

    def evaluate() -> float:
        nonlocal best
        variables = to_host(state.variables)
        eer = dev.eer(spec, variables)
        writer.write_scalars(step, {"dev_eer": eer})
        if keep_best and (best is None or eer < best[1]):
            best = (step, eer)
            run.export_best_model(spec, variables, step, eer)
        return eer

    def save() -> None:
        ckpt.save(step, state, data.loader.state_dict(), {"history": writer.history})

    log_every = max(int(config.train.log_every), 1)
    ckpt_every, eval_every = int(config.train.checkpoint_every), int(config.eval.every)
    interval, last, interrupted = IntervalMetrics(), {}, 0
    if step == 0 and dev is not None and config.eval.at_start:
        evaluate()
    with StopFlag() as stop:
        while step < num_steps:
            batch = next(data.loader)
            state, metrics = train_step(
                state, step_lib.shard_batch({"feats": batch.feats, "labels": batch.labels}, mesh)
            )
            step += 1
            interval.add(metrics, batch_size, batch.feats.shape[1])
            writer.step_done()
            if step % log_every == 0 or step == num_steps:
                last = interval.summary(lr=float(opt.schedule(step - 1)))
                writer.write_scalars(step, last)
            if dev is not None and eval_every > 0 and step % eval_every == 0 and step < num_steps:
                evaluate()
            if stop.signum:
                interrupted = stop.signum
                break
            if ckpt_every > 0 and step % ckpt_every == 0 and step < num_steps:
                save()
    writer.close_progress()
    data.loader.close()
    summary = {k: last.get(k) for k in ("loss", "accuracy", "examples_per_sec")}
    summary.update(step=step, interrupted=bool(interrupted), final_model=None)
    if not interrupted and dev is not None:
        summary["dev_eer"] = evaluate()
    save()
    ckpt.wait()
    ckpt.close()
    if interrupted:
        writer.close()
        log.warning(
            "Interrupted at step %d; checkpoint saved in %s; rerun to resume", step, ckpt.directory
        )
        return summary
    final = run.export_final_model(spec, to_host(state.variables))
    if is_main:
        summary["final_model"] = final
        if best is not None:
            summary.update(best_model=run.file("best"), best_step=best[0], best_dev_eer=best[1])
            log.info(
                "Dev-best step %d (dev EER %.2f%%): %s", best[0], 100 * best[1], run.file("best")
            )
        writer.write_training_curve()
        log.info(
            "Trained %d steps (loss %.3f, accuracy %.3f); final model in %s",
            step,
            summary["loss"] or float("nan"),
            summary["accuracy"] or float("nan"),
            final,
        )
    writer.close()
    return summary
