"""A training run's directory: where a run resumes from, the files that describe it, its final model.

    run = Workdir("checkpoints/finetune", config)
    resume = run.resume_point()                 # None: a fresh run
    run.write_run_files(spec, speakers, fresh=resume is None)            # process 0 only
    state, position, meta = run.checkpointer().restore(resume.step, state)
    run.export_final_model(spec, host_variables)                         # every process

Files (the layout is in `xvjax.train.train`): `model_spec.json` (the network being trained),
`config.json` (the run's config), `speakers.txt` (output index -> speaker id), `checkpoints/`,
`final/`, and with `eval.keep_best` `best/` + `best.json` (the dev-best evaluated step). A run
resumes when `checkpoints/` has a step and `model_spec.json` exists; a config that
differs from the checkpointed run's in fields that change what is computed gets a warning.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from xvjax.fileutil import atomic_open, write_json
from xvjax.model.checkpoint import save_model, template_for
from xvjax.model.spec import ModelSpec
from xvjax.train.checkpointing import Checkpointer

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


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    step: int  # the latest checkpointed step
    spec: ModelSpec  # the network of the checkpointed run (model_spec.json)


class Workdir:
    """The directory of one training run with `config` (an ml_collections ConfigDict)."""

    def __init__(self, path: str | os.PathLike, config):
        self.path = os.path.abspath(os.fspath(path))
        self.config = config
        self._checkpointer: Checkpointer | None = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def checkpointer(self) -> Checkpointer:
        """The run's Orbax checkpoints; the first call creates `checkpoints/` (so call it only
        once the run's inputs are checked)."""
        if self._checkpointer is None:
            train = self.config.train
            self._checkpointer = Checkpointer(
                self.file("checkpoints"),
                max_to_keep=int(train.keep_checkpoints),
                async_save=bool(train.async_checkpoints),
            )
        return self._checkpointer

    def resume_point(self) -> ResumePoint | None:
        """The latest checkpoint and the network it holds, or None when the run starts afresh."""
        if not (
            os.path.isdir(self.file("checkpoints")) and os.path.isfile(self.file("model_spec.json"))
        ):
            return None
        step = self.checkpointer().latest_step()
        if step is None:
            return None
        with open(self.file("model_spec.json"), encoding="utf-8") as f:
            spec = ModelSpec.from_json(f.read())
        return ResumePoint(step, spec)

    def write_run_files(self, spec: ModelSpec, speakers, fresh: bool) -> None:
        """model_spec.json (fresh runs), config.json, speakers.txt; a fresh run in an old workdir
        also drops the old metrics.jsonl. Resuming with a changed config logs what changed."""
        os.makedirs(self.path, exist_ok=True)
        if fresh:
            with atomic_open(self.file("model_spec.json"), "w", encoding="utf-8") as f:
                f.write(spec.to_json() + "\n")
            for stale in ("metrics.jsonl", "best.json"):  # a previous run's, in an old workdir
                if os.path.exists(self.file(stale)):
                    os.remove(self.file(stale))
        new_cfg = json.loads(self.config.to_json_best_effort())
        if not fresh and os.path.isfile(self.file("config.json")):
            with open(self.file("config.json"), encoding="utf-8") as f:
                changed = config_changes(json.load(f), new_cfg)
            if changed:
                log.warning(
                    "Resuming with a config that differs from the checkpointed run's in: %s "
                    "(the resumed run will not equal an uninterrupted one)",
                    ", ".join(changed),
                )
        write_json(self.file("config.json"), new_cfg)
        if speakers is not None:
            with atomic_open(self.file("speakers.txt"), "w", encoding="utf-8") as f:
                f.writelines(f"{i} {s}\n" for i, s in enumerate(speakers))

    def best_dev(self) -> tuple[int, float] | None:
        """(step, dev EER) of the dev-best model exported so far (`best.json`), or None."""
        try:
            with open(self.file("best.json"), encoding="utf-8") as f:
                best = json.load(f)
            return int(best["step"]), float(best["dev_eer"])
        except (OSError, ValueError, KeyError):
            return None

    def export_best_model(self, spec: ModelSpec, variables, step: int, dev_eer: float) -> str:
        """`best/`: the model of the dev-best step so far, and `best.json` saying which step."""
        path = self.export_final_model(spec, variables, "best")
        write_json(self.file("best.json"), {"step": step, "dev_eer": dev_eer})
        return path

    def export_final_model(self, spec: ModelSpec, variables, name: str = "final") -> str:
        """Writes `final/` (or `name/`), an xvjax model dir (`xvjax.model.checkpoint.save_model` layout), from
        host (numpy) `variables`; returns its path. Call it on every process.

        A run started from a Kaldi model keeps that model as export template, so `flax-to-nnet3`
        writes back every Kaldi token of the original `final.raw`. Multi-process: only process 0
        writes (Orbax multiprocessing options whose barriers involve process 0 alone), then all
        processes meet at a barrier.
        """
        path = self.file(name)
        init_from = self.config.get("init_from")
        template = template_for(init_from) if init_from else None
        if jax.process_count() == 1:
            save_model(path, spec, variables, nnet_template_path=template)
            return path
        if jax.process_index() == 0:
            opts = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
            save_model(
                path, spec, variables, nnet_template_path=template, multiprocessing_options=opts
            )
        multihost_utils.sync_global_devices("xvjax-train-final-export")
        return path
