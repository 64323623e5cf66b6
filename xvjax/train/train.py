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

import dataclasses
import json
import logging
import os
import signal
import time
from typing import Any

import numpy as np

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class TrainData:
    loader: Any  # iterator of sources.TrainBatch with state_dict/load_state_dict/close
    num_speakers: int
    feat_dim: int
    speakers: tuple[str, ...] | None
    description: str


def build_data(config, process_index: int = 0, process_count: int = 1) -> TrainData:
    """The training stream of `config.data` (reads metadata and checks it; no network compute)."""
    from xvjax.data import chunks, sources

    d = config.data
    seed = int(config.seed)
    batch = int(config.train.batch_size)
    if (d.musan or d.rirs) and d.source != "audio":
        raise XvjaxError(
            f"--musan/--rirs augment audio on the fly: use --source=audio with a data dir that has "
            f"wav.scp (data.source is '{d.source}')"
        )
    if d.source == "egs":
        if not d.egs_dir:
            raise XvjaxError("data.source=egs needs data.egs_dir (Kaldi exp/.../egs)")
        loader = sources.EgsLoader(
            d.egs_dir, batch, seed, process_index, process_count, d.get("num_speakers") or None
        )
        if not loader.num_speakers:
            raise XvjaxError(
                f"egs {d.egs_dir}: no pdf2num to tell the number of speakers; set data.num_speakers"
            )
        return TrainData(loader, loader.num_speakers, loader.feat_dim, None, f"egs {d.egs_dir}")
    if d.source == "feats":
        if not d.train_dir:
            raise XvjaxError("no training data: pass --data=DATA_DIR (or data.train_dir)")
        store = sources.FeatsStore(d.train_dir, prep=d.feats_prep, cache=d.cache)
        where = d.train_dir
    elif d.source == "tfds":
        from xvjax.data.tfds_source import TfdsStore

        store = TfdsStore(d.tfds_dir, split=d.get("tfds_split", "train"))
        where = d.tfds_dir
    elif d.source == "audio":
        from xvjax.data.audio_source import AudioStore

        store = AudioStore.from_config(d, seed)
        where = d.train_dir
    else:
        raise XvjaxError(f"unknown data.source '{d.source}' (feats, audio, egs, tfds)")
    table, _ = chunks.build_utt_table(
        store.utt2len, store.utt2spk, int(d.min_chunk), int(d.min_utts_per_spk), source=where
    )
    cfg = chunks.ChunkConfig(
        min_chunk=int(d.min_chunk),
        max_chunk=int(d.max_chunk),
        chunk_quantum=int(d.chunk_quantum),
        frames_per_archive=int(d.frames_per_archive),
        num_repeats=int(d.num_repeats),
        batch_size=batch,
        seed=seed,
    )
    sampler = chunks.ChunkSampler(table, cfg, process_index, process_count)
    if hasattr(store, "make_loader"):
        loader = store.make_loader(sampler, prefetch=int(d.prefetch))
    else:
        loader = sources.ChunkLoader(store, sampler, prefetch=int(d.prefetch))
    return TrainData(loader, table.num_speakers, store.feat_dim, table.speakers, where)


# ----------------------------------------------------------------------------- model


def build_model(config, num_speakers: int, feat_dim: int):
    """(spec, variables) from config.init_from (resized) or from scratch."""
    import jax

    from xvjax.model.spec import xvector_1a_spec
    from xvjax.model.xvector import init_variables, resize_output

    key = jax.random.key(int(config.seed))
    if config.init_from:
        from xvjax.model.checkpoint import load_any

        spec, variables = load_any(config.init_from)
        if spec.input_dim != feat_dim:
            raise XvjaxError(
                f"model {config.init_from} takes {spec.input_dim}-dim input but the training "
                f"features are {feat_dim}-dim (check the MFCC config: num-ceps)"
            )
        out_affine = config.model.get("output_affine", "output.affine")
        old = spec.node(out_affine).dim
        if config.resize_output:
            spec, variables = resize_output(
                spec,
                variables,
                num_speakers,
                jax.random.fold_in(key, 1),
                param_stddev=float(config.output_init.param_stddev),
                bias_stddev=float(config.output_init.bias_stddev),
                output_affine=out_affine,
            )
            log.info(
                "Resized %s from %d to %d outputs (in-domain speakers)",
                out_affine,
                old,
                num_speakers,
            )
        elif old != num_speakers:
            raise XvjaxError(
                f"model {config.init_from} has {old} outputs but the data has {num_speakers} "
                "speakers; set resize_output=True"
            )
    else:
        m = config.model
        spec = xvector_1a_spec(
            input_dim=feat_dim,
            num_speakers=num_speakers,
            frame_dims=tuple(m.frame_dims),
            embedding_dims=tuple(m.embedding_dims),
            bn_momentum=float(m.bn_momentum),
        )
        variables = init_variables(spec, key)
    return spec, variables


def model_factors(spec) -> tuple[dict[str, float], dict[str, float]]:
    """Per-layer Kaldi `max-change` and `learning-rate-factor` recorded in the model spec."""
    caps, factors = {}, {}
    for node in spec.nodes:
        layer = node.var_path[0]
        if "max-change" in node.kaldi:
            caps[layer] = float(node.kaldi["max-change"])
        if "learning-rate-factor" in node.kaldi:
            factors[layer] = float(node.kaldi["learning-rate-factor"])
    return caps, factors


# ----------------------------------------------------------------------------- helpers


def to_host(tree):
    """Numpy copy of a (replicated) pytree of global arrays; works on every process."""
    import jax

    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def setup_distributed(config) -> None:
    """jax.distributed from config.dist (or JAX's own cluster auto-detection when empty)."""
    import jax

    dist = config.dist
    if int(dist.num_processes) <= 1 and not dist.coordinator:
        return
    if not dist.coordinator:
        raise XvjaxError("multi-process training needs --coordinator=HOST:PORT")
    jax.config.update("jax_cpu_collectives_implementation", dist.get("cpu_collectives", "gloo"))
    jax.distributed.initialize(
        coordinator_address=dist.coordinator,
        num_processes=int(dist.num_processes),
        process_id=int(dist.process_id),
    )
    log.info(
        "Process %d of %d joined %s", jax.process_index(), jax.process_count(), dist.coordinator
    )


class _StopFlag:
    """SIGINT/SIGTERM -> finish the current step, checkpoint, exit."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum:  # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("Got signal %d: saving a checkpoint after this step, then stopping", signum)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _write_json(path: str, obj) -> None:
    from xvjax.fileutil import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def plot_curve(history: list[dict], path: str) -> None:
    """Loss, accuracy and dev EER against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xvjax.fileutil import atomic_path

    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "dev_eer" in h]
    fig, axes = plt.subplots(1, 3 if evals else 2, figsize=(12 if evals else 8, 3.2))
    axes[0].plot([h["step"] for h in train], [h["loss"] for h in train])
    axes[0].set(xlabel="step", ylabel="cross-entropy", title="training loss")
    axes[1].plot([h["step"] for h in train], [h["accuracy"] for h in train])
    axes[1].set(xlabel="step", ylabel="accuracy", title="training accuracy")
    if evals:
        axes[2].plot([h["step"] for h in evals], [100 * h["dev_eer"] for h in evals], "o-")
        axes[2].set(xlabel="step", ylabel="EER (%)", title="dev EER (cosine)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def export_model(path: str, spec, variables) -> None:
    """The final model as an xvjax model dir (`xvjax.model.checkpoint.save_model` layout).

    Single process: `save_model`. Multi-process: process 0 writes it with an Orbax checkpointer whose
    barriers involve only process 0 (`save_model`'s would wait for the other processes), then all
    processes meet at a barrier.
    """
    import jax

    from xvjax.model.checkpoint import save_model

    if jax.process_count() == 1:
        save_model(path, spec, variables)
        return
    if jax.process_index() == 0:
        import shutil
        import tempfile

        import orbax.checkpoint as ocp

        from xvjax.model import checkpoint as model_ckpt

        parent = os.path.dirname(os.path.abspath(path))
        tmp = tempfile.mkdtemp(prefix=".final.", suffix=".tmp", dir=parent)
        try:
            with open(os.path.join(tmp, model_ckpt.SPEC_FILE), "w", encoding="utf-8") as f:
                f.write(spec.to_json() + "\n")
            opts = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
            with ocp.StandardCheckpointer(multiprocessing_options=opts) as ckptr:
                ckptr.save(os.path.join(tmp, model_ckpt.VARS_DIR), variables)
                ckptr.wait_until_finished()
            if os.path.exists(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("xvjax-train-final-export")


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
        from xvjax.train.evaluate import DevSet

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
        _write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort()))
        if data.speakers is not None:
            with open(os.path.join(workdir, "speakers.txt"), "w", encoding="utf-8") as f:
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
    with _StopFlag() as stop:
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
    export_model(final, spec, to_host(state.variables))
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
