"""Where a training run's numbers go: one writer for metrics.jsonl, TensorBoard and the console
(as `clu.metric_writers` does), and the training-curve plot at the end.

    writer = MetricWriter(workdir, num_steps, start_step, history, active=is_main,
                          tensorboard=True, progress=True)
    interval = IntervalMetrics()
    ...                                            # each step:
    interval.add(metrics, batch_size, frames)
    writer.step_done()
    writer.write_scalars(step, interval.summary(lr))          # every log_every steps
    writer.write_scalars(step, {"dev_eer": eer})              # after a dev evaluation
    writer.close_progress(); writer.write_training_curve(); writer.close()

Every process keeps the history (it goes into the checkpoints, so a resumed run's curve covers the
whole run); only the active process (process 0) writes files and the console. metrics.jsonl holds
the history: one JSON object per step (a dev EER computed at a log step joins that step's line), and
a resumed run starts it again from the checkpoint's history, so lines written after that checkpoint
by the interrupted run go (TensorBoard purges those events too). The console is a tqdm
bar with the latest loss, accuracy, lr and examples/s; without a terminal (or with
`train.progress=False`) Kaldi-style log lines take its place.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping

import jax
import numpy as np
from matplotlib.figure import Figure
from tensorboardX import SummaryWriter
from tqdm import tqdm

from xvjax.fileutil import atomic_open, atomic_path

log = logging.getLogger("xvjax")


class IntervalMetrics:
    """Training metrics of the steps since the last log point: means and throughput."""

    def __init__(self):
        self._start()

    def _start(self) -> None:
        self.metrics: list[dict] = []
        self.examples = 0
        self.frames = 0
        self.started = time.perf_counter()

    def add(self, metrics: Mapping[str, jax.Array], num_examples: int, num_frames: int) -> None:
        """One step's metrics (replicated global arrays) on a batch of `num_examples` chunks of
        `num_frames` frames."""
        self.metrics.append(metrics)
        self.examples += num_examples
        self.frames += num_examples * num_frames

    def summary(self, lr: float) -> dict[str, float]:
        """{loss, accuracy (means over the interval), lr (the learning rate of its last step),
        examples_per_sec, frames_per_sec}; starts the next interval."""
        values = jax.device_get(
            [{k: v.addressable_data(0) for k, v in m.items()} for m in self.metrics]
        )
        seconds = max(time.perf_counter() - self.started, 1e-9)
        out = {
            "loss": float(np.mean([v["loss"] for v in values])),
            "accuracy": float(np.mean([v["accuracy"] for v in values])),
            "lr": lr,
            "examples_per_sec": self.examples / seconds,
            "frames_per_sec": self.frames / seconds,
        }
        self._start()
        return out


class MetricWriter:
    """Writes a training run's scalars to `workdir`/metrics.jsonl, `workdir`/tb (TensorBoard) and the
    console; `history` is the run's list of log points so far (from its checkpoint when resuming)."""

    def __init__(
        self,
        workdir: str,
        num_steps: int,
        start_step: int,
        history: list[dict],
        *,
        active: bool,
        tensorboard: bool,
        progress: bool,
    ):
        self.workdir = workdir
        self.num_steps = num_steps
        self.history = history
        self.active = active
        self._jsonl = os.path.join(workdir, "metrics.jsonl")
        self._last_line_at = 0  # byte offset of the last line of metrics.jsonl
        self._tensorboard = None
        if active:
            lines = [(json.dumps(entry) + "\n").encode() for entry in history]
            with atomic_open(self._jsonl, "wb") as f:
                f.writelines(lines)
            self._last_line_at = sum(map(len, lines[:-1]))
            if tensorboard:
                self._tensorboard = SummaryWriter(
                    os.path.join(workdir, "tb"), purge_step=start_step + 1 if start_step else None
                )
        # disable=None: tqdm turns itself off when stderr is not a terminal
        self._bar = tqdm(
            total=num_steps,
            initial=start_step,
            unit="step",
            desc="train",
            disable=not (active and progress) or None,
            dynamic_ncols=True,
        )

    def step_done(self) -> None:
        self._bar.update(1)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """One log point: {"step": step, **scalars} joins the history (merged into the last entry
        if that is of the same step) and, on the active process, metrics.jsonl, TensorBoard and the
        console."""
        same_step = bool(self.history) and self.history[-1]["step"] == step
        if same_step:
            self.history[-1].update(scalars)
        else:
            self.history.append({"step": step, **scalars})
        if not self.active:
            return
        with open(self._jsonl, "r+b") as f:
            if not same_step:
                self._last_line_at = f.seek(0, os.SEEK_END)
            f.seek(self._last_line_at)
            f.truncate()
            f.write((json.dumps(self.history[-1]) + "\n").encode())
        if self._tensorboard is not None:
            for k, v in scalars.items():
                self._tensorboard.add_scalar(k, v, step)
            self._tensorboard.flush()
        if "dev_eer" in scalars:
            log.info("Step %d: dev EER %.2f%% (cosine)", step, 100 * scalars["dev_eer"])
        if "loss" in scalars:
            self._bar.set_postfix(
                loss=f"{scalars['loss']:.3f}",
                acc=f"{scalars['accuracy']:.2f}",
                lr=f"{scalars['lr']:.2g}",
                eg_s=f"{scalars['examples_per_sec']:.0f}",
            )
            if self._bar.disable:  # no terminal: Kaldi-style progress lines instead
                log.info(
                    "Step %d/%d: loss %.4f, accuracy %.3f, lr %.3g, %.1f examples/s",
                    step,
                    self.num_steps,
                    scalars["loss"],
                    scalars["accuracy"],
                    scalars["lr"],
                    scalars["examples_per_sec"],
                )

    def close_progress(self) -> None:
        """Ends the progress bar (the training steps are over)."""
        self._bar.close()

    def write_training_curve(self) -> None:
        """`workdir`/training_curve.png from the history (active process, when there is one)."""
        if self.active and self.history:
            plot_training_curve(self.history, os.path.join(self.workdir, "training_curve.png"))

    def close(self) -> None:
        self._bar.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def plot_training_curve(history: list[dict], path: str) -> None:
    """Loss, accuracy and dev EER against training steps, as a PNG."""
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "dev_eer" in h]
    fig = Figure(figsize=(12 if evals else 8, 3.2))
    axes = fig.subplots(1, 3 if evals else 2)
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
