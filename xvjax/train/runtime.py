"""Run-time helpers of `train_and_evaluate`: distributed setup, host copies, signals, outputs."""

from __future__ import annotations

import logging
import os
import signal

import numpy as np

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


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


class StopFlag:
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


def export_model(path: str, spec, variables, template: str | os.PathLike | None = None) -> None:
    """The final model as an xvjax model dir (`xvjax.model.checkpoint.save_model` layout).

    `template` is the Kaldi model the run started from (`template_for(init_from)`); kept in the
    model dir so `flax-to-nnet3` writes back every Kaldi token of the original `final.raw`.

    Multi-process: only process 0 writes it (`save_model` with Orbax multiprocessing options whose
    barriers involve process 0 alone), then all processes meet at a barrier.
    """
    import jax

    from xvjax.model.checkpoint import save_model

    if jax.process_count() == 1:
        save_model(path, spec, variables, nnet_template_path=template)
        return
    if jax.process_index() == 0:
        import orbax.checkpoint as ocp

        opts = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
        save_model(path, spec, variables, nnet_template_path=template, multiprocessing_options=opts)
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("xvjax-train-final-export")
