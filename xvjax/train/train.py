"""`train_and_evaluate(config, workdir)`: the transfer-learning training run.

    config = configs/finetune.py:get_config()      (ml_collections ConfigDict, see configs/)
    workdir/
      train.lock             held while a run trains here (a second run is refused)
      config.json            the run's config (written at the start; "resumes": changes on resume)
      model_spec.json        the network being trained (after the output resize)
      speakers.txt           output index -> speaker id
      checkpoints/<step>/    Orbax: TrainState + data position + metadata (keep-last-N)
      tb/                    TensorBoard event files (loss, accuracy, lr, examples/s, dev EER)
      metrics.jsonl          the same, one JSON object per log point
      training_curve.png     loss / accuracy / dev EER against steps
      final/                 the trained model (xvjax model dir: `nnet3-xvector-compute`,
                             `flax-to-nnet3` read it), its BatchNorm statistics re-estimated on
                             `train.recompute_bn_batches` training minibatches with the final
                             weights (Kaldi's RecomputeStats in nnet3-combine; frozen BN layers
                             keep theirs)
      best/, best.json       with eval.keep_best: the model of the dev-best evaluated step

Re-running with the same workdir resumes from the latest checkpoint (parameters, optimizer state,
BatchNorm statistics, data position, PRNG): the resumed run equals an uninterrupted one bit for bit
on CPU. SIGINT/SIGTERM stop after the current step and save a checkpoint first.

Nothing is written before the config, the data, the model and (on resume) the config's compatibility
with the checkpointed run's are checked. A step whose loss or gradient is nan/inf stops the run with
an error naming the step, and leaves the weights as they were: no checkpoint or model with a
non-finite value is ever written.

The loop is here; the run directory (resume, run files, final model) is `workdir.Workdir`, the
metric writing `metric_writers.MetricWriter`, the data `input_pipeline`, the network and the
TrainState `state`, the jitted step `step`.
"""

from __future__ import annotations

import contextlib
import logging

import jax
import numpy as np

from xvjax.distributed import join_cluster, to_host
from xvjax.errors import XvjaxError
from xvjax.model.spec import ModelSpec
from xvjax.model.xvector import XVector, init_variables, recompute_batch_stats
from xvjax.train import natural_gradient, optim
from xvjax.train import step as step_lib
from xvjax.train.config import check_config
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


def check_step_finite(step: int, metrics: dict, feats) -> None:
    """Raises XvjaxError if the step's loss, gradient or optimizer state was nan/inf (the step left
    the state as it was), saying whether the minibatch `feats` (this process's rows) had non-finite
    values."""
    if bool(np.asarray(metrics["finite"].addressable_data(0))):
        return
    loss = float(np.asarray(metrics["loss"].addressable_data(0)))
    cause = (
        "the minibatch has nan/inf features: check the training data"
        if not np.isfinite(feats).all()
        else "the features are finite: training diverged (try a lower learning rate)"
    )
    raise XvjaxError(f"step {step}: non-finite loss ({loss}), gradient or optimizer state; {cause}")


def recompute_bn_stats(spec, state, data, mesh, frozen_bn, num_batches: int) -> dict:
    """Host variables of `state` whose BatchNorm statistics are re-estimated with the final weights
    on the next `num_batches` training minibatches (Kaldi's RecomputeStats at the end of
    training); BN layers in `frozen_bn` keep theirs."""
    layers = [
        n.var_path[0]
        for n in spec.nodes
        if n.op == "batchnorm" and n.var_path[0] not in frozen_bn and n.name not in frozen_bn
    ]
    variables = to_host(state.variables)
    if not layers:
        return variables
    moments = step_lib.make_batch_moments(spec, mesh, frozen_bn)
    batches = (
        step_lib.shard_batch({"feats": next(data.loader).feats}, mesh)["feats"]
        for _ in range(num_batches)
    )
    variables = recompute_batch_stats(
        spec,
        variables,
        batches,
        frozen_bn,
        moments_fn=lambda _, feats: to_host(moments(state.variables, feats)),
    )
    log.info(
        "Recomputed the BatchNorm statistics of %s on %d training minibatches",
        " ".join(layers),
        num_batches,
    )
    return variables


def build_model_and_optimizer(config, data, run: Workdir, resume):
    """(spec, variables, optimizer, BatchNorm-frozen layers) of a new run, or of the run being
    resumed (its variables are then shapes only, restored from the checkpoint)."""
    if resume is None:
        spec, variables = create_model(config, data.num_speakers, data.feat_dim)
    else:
        spec = resume.spec
        variables = init_variables(spec, jax.random.key(0))  # shapes only; restored below
        log.info("Resuming from %s (step %d)", run.checkpointer().directory, resume.step)
    data.check_model(spec)
    opt = optim.make_optimizer(
        config.optim,
        variables["params"],
        int(config.train.num_steps),
        *optim.model_layer_factors(spec),
        natural_gradient_affines=natural_gradient.tapped_affines(spec),
        batch_size=int(config.train.batch_size),
    )
    frozen_bn = opt.plan.frozen if config.optim.freeze_bn else ()
    log.info(
        "Layers: %s; BatchNorm statistics frozen in: %s",
        opt.plan.describe(),
        " ".join(frozen_bn) or "none",
    )
    return spec, variables, opt, frozen_bn


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains as `config` says, in `workdir` (resuming from its latest checkpoint if any).

    Returns a summary dict: {"step", "loss", "accuracy", "dev_eer" (if evaluated), "interrupted",
    "final_model" (path or None), "examples_per_sec"}.
    """
    check_config(config)
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
    spec, variables, opt, frozen_bn = build_model_and_optimizer(config, data, run, resume)
    dtype = step_lib.compute_dtype(config.train.compute_dtype)
    dev = open_dev_set(config, spec) if is_main else None
    changes = run.check_resume(resume, data.speakers) if resume is not None else {}
    keep_best = bool(config.eval.get("keep_best")) and dev is not None
    if keep_best and jax.process_count() > 1:
        raise XvjaxError("eval.keep_best needs a single-process run")
    best = run.best_dev() if keep_best and resume is not None else None

    # The workdir lock, checkpoints, data, signal handlers, writer: released however the run ends.
    with contextlib.ExitStack() as stack:
        if is_main:
            stack.enter_context(run.lock(resume))
            run.write_run_files(spec, data.speakers, resume, changes)
        ckpt = stack.enter_context(contextlib.closing(run.checkpointer()))
        stack.callback(data.loader.close)
        stop = stack.enter_context(StopFlag())
        mesh = step_lib.make_mesh()
        state = step_lib.replicate(create_train_state(variables, opt.tx, int(config.seed)), mesh)
        history: list[dict] = []
        if resume is not None:
            state, position, meta = ckpt.restore(resume.step, state)
            data.loader.load_state_dict(position)
            history = list(meta.get("history", []))
        train_step = step_lib.make_train_step(
            XVector(spec).apply,
            opt.tx,
            mesh,
            frozen_bn,
            dtype,
            tapped_affines=[a.node for a in opt.tapped],
            frozen_params=opt.plan.frozen,
        )
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
        stack.enter_context(contextlib.closing(writer))

        def evaluate(variables=None) -> float:
            nonlocal best
            variables = to_host(state.variables) if variables is None else variables
            eer = dev.eer(spec, variables)
            writer.write_scalars(step, {"dev_eer": eer})
            if keep_best and (best is None or eer < best[1]):
                best = (step, eer)
                run.export_best_model(spec, variables, step, eer)
            return eer

        def save() -> None:
            ckpt.save(step, state, data.loader.state_dict(), {"history": writer.history})

        log_every = int(config.train.log_every)
        ckpt_every, eval_every = int(config.train.checkpoint_every), int(config.eval.every)
        interval, last, interrupted = IntervalMetrics(), {}, 0
        if step == 0 and dev is not None and config.eval.at_start:
            evaluate()
        while step < num_steps:
            batch = next(data.loader)
            state, metrics = train_step(
                state, step_lib.shard_batch({"feats": batch.feats, "labels": batch.labels}, mesh)
            )
            step += 1
            check_step_finite(step, metrics, batch.feats)
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
        summary = {k: last.get(k) for k in ("loss", "accuracy", "examples_per_sec")}
        summary.update(step=step, interrupted=bool(interrupted), final_model=None)
        save()  # the training state: a rerun in this workdir redoes what follows identically
        ckpt.wait()
        if interrupted:
            log.warning(
                "Interrupted at step %d; checkpoint saved in %s; rerun to resume",
                step,
                ckpt.directory,
            )
            return summary
        final_variables = to_host(state.variables)
        if config.train.recompute_bn_batches > 0:
            final_variables = recompute_bn_stats(
                spec, state, data, mesh, frozen_bn, int(config.train.recompute_bn_batches)
            )
        if dev is not None:
            summary["dev_eer"] = evaluate(final_variables)
        final = run.export_final_model(spec, final_variables)
        if is_main:
            summary["final_model"] = final
            if best is not None:
                summary.update(best_model=run.file("best"), best_step=best[0], best_dev_eer=best[1])
                log.info(
                    "Dev-best step %d (dev EER %.2f%%): %s",
                    best[0],
                    100 * best[1],
                    run.file("best"),
                )
            writer.write_training_curve()
            log.info(
                "Trained %d steps (loss %.3f, accuracy %.3f); final model in %s",
                step,
                summary["loss"] or float("nan"),
                summary["accuracy"] or float("nan"),
                final,
            )
        return summary
