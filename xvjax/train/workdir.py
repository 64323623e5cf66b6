"""A training run's directory: who may write it, where a run resumes from, the files that describe
it, its final model.

    run = Workdir("checkpoints/finetune", config)
    resume = run.resume_point()                 # None: a fresh run
    changes = run.check_resume(resume, speakers) if resume else {}   # refuses incompatible configs
    with run.lock(resume):                      # process 0; refuses a second run on the workdir
        run.write_run_files(spec, speakers, resume, changes)
        state, position, meta = run.checkpointer().restore(resume.step, state)
        run.export_final_model(spec, host_variables)                     # every process

Files (the layout is in `xvjax.train.train`): `train.lock` (held by the running process: `fcntl`
lock, dropped by the OS when it exits, however it exits), `model_spec.json` (the network being
trained), `config.json` (the run's config; `"resumes"` lists the steps it was resumed at and the
fields changed then), `speakers.txt` (output index -> speaker id), `checkpoints/`, `final/`, and
with `eval.keep_best` `best/` + `best.json` (the dev-best evaluated step).

A run resumes when `checkpoints/` has a step and `model_spec.json` exists. Resuming may change the
fields of `RESUMABLE` (length of the run, logging, checkpoint cadence, evaluation) and, with a warning
that the run then differs from an uninterrupted one, those of `RESUMABLE_WITH_WARNING` (learning
rates, change caps); any other change (model, data, layer patterns, optimizer: anything that changes
the optimizer state's structure or the data stream) is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open, write_json
from xvjax.model.checkpoint import save_model, template_for
from xvjax.model.spec import ModelSpec
from xvjax.train.checkpointing import Checkpointer
from xvjax.train.config import base_config

log = logging.getLogger("xvjax")

LOCK_FILE = "train.lock"
# Fields a resumed run may change (dotted names; a name ending in "." covers a section).
RESUMABLE = ("train.num_steps", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
             "train.async_checkpoints", "train.tensorboard", "train.progress",
             "train.recompute_bn_batches", "eval.", "data.num_workers", "data.prefetch",
             "data.cache", "dist.cpu_collectives")  # fmt: skip
RESUMABLE_WITH_WARNING = ("optim.initial_lr", "optim.final_lr", "optim.schedule",
                          "optim.warmup_steps", "optim.max_change", "optim.max_change_per_layer",
                          "optim.max_param_change", "optim.b1", "optim.b2",
                          "optim.lr_on_summed_objective", "train.compute_dtype")  # fmt: skip
PER_PROCESS = ("dist.coordinator", "dist.process_id")  # differ between the processes of one run


def umask_mode(mode: int) -> int:
    """`mode` less the bits of the process umask: the permissions `open`/`mkdir` would give."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mode & ~mask


def config_changes(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """{dotted field: (old value, new value)} of the fields whose values differ (the per-process
    fields ignored)."""
    out = {}
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if name in PER_PROCESS:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(config_changes(a, b, f"{name}."))
        elif a != b:
            out[name] = (a, b)
    return out


def with_defaults(config: dict, defaults: dict) -> dict:
    """`config` with the fields of `defaults` it lacks added (recursively)."""
    out = dict(config)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = with_defaults(out[key], value)
    return out


def _covered(field: str, names: tuple[str, ...]) -> bool:
    return any(field == n or (n.endswith(".") and field.startswith(n)) for n in names)


def check_resumable(old: dict, new: dict) -> dict[str, tuple]:
    """The changes from the checkpointed run's config `old` to `new` ({field: (old, new)}); raises
    XvjaxError listing every changed field a resumed run may not change."""
    changes = config_changes(old, new)
    refused = [f for f in changes if not _covered(f, RESUMABLE + RESUMABLE_WITH_WARNING)]
    if refused:
        raise XvjaxError(
            "cannot resume: the config differs from the checkpointed run's in "
            + ", ".join(f"{f} ({changes[f][0]!r} -> {changes[f][1]!r})" for f in refused)
            + "; use a new --workdir, or the checkpointed run's values"
        )
    return changes


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

    def saved_config(self) -> dict | None:
        """The config of the run in this workdir (config.json, without its "resumes"), if any;
        fields it lacks (added to xvjax since) have their defaults, as the run had them."""
        if not os.path.isfile(self.file("config.json")):
            return None
        with open(self.file("config.json"), encoding="utf-8") as f:
            saved = json.load(f)
        saved.pop("resumes", None)
        return with_defaults(saved, json.loads(base_config().to_json_best_effort()))

    def check_resume(self, resume: ResumePoint, speakers) -> dict[str, tuple]:
        """Before anything is written: raises XvjaxError if this run's config or training speakers
        differ from the checkpointed run's in a way a resumed run cannot take; returns the changes
        it can take ({field: (old, new)})."""
        saved = self.saved_config()
        if saved is None:
            raise XvjaxError(f"{self.path} has checkpoints but no config.json: cannot resume")
        changes = check_resumable(saved, json.loads(self.config.to_json_best_effort()))
        if speakers is not None and os.path.isfile(self.file("speakers.txt")):
            with open(self.file("speakers.txt"), encoding="utf-8") as f:
                saved_speakers = tuple(line.split()[1] for line in f if line.strip())
            if saved_speakers != tuple(speakers):
                raise XvjaxError(
                    f"cannot resume: the training data has {len(speakers)} speakers, not the "
                    f"{len(saved_speakers)} of the checkpointed run ({self.file('speakers.txt')}); "
                    "use a new --workdir"
                )
        return changes

    @contextlib.contextmanager
    def lock(self, resume: ResumePoint | None):
        """Holds `train.lock` (creating the workdir) for the block: a second run on the workdir gets
        a one-line error, as does a workdir that cannot be written or that another run changed
        since `resume` was read."""
        try:
            os.makedirs(self.path, exist_ok=True)
            fd = os.open(self.file(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise XvjaxError(f"cannot write to workdir {self.path}: {e.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 100, 0).decode(errors="replace").strip() or "?"
                raise XvjaxError(
                    f"workdir {self.path} is in use by another training run (process {owner}; "
                    f"lock {self.file(LOCK_FILE)})"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            if self.resume_point() != resume:
                raise XvjaxError(
                    f"workdir {self.path} changed while this run was starting (another run "
                    "saved a checkpoint); start it again"
                )
            yield
        finally:
            os.close(fd)  # releases the lock

    def write_run_files(
        self, spec: ModelSpec, speakers, resume: ResumePoint | None, changes: dict[str, tuple]
    ) -> None:
        """A fresh run writes model_spec.json, config.json and speakers.txt; a resumed one
        rewrites config.json with this run's config and, when `changes` (from `check_resume`)
        are not empty, logs them and adds them to its "resumes"."""
        new_cfg = json.loads(self.config.to_json_best_effort())
        if resume is None:
            with atomic_open(self.file("model_spec.json"), "w", encoding="utf-8") as f:
                f.write(spec.to_json() + "\n")
            if os.path.exists(self.file("best.json")):  # a previous run's, in an old workdir
                os.remove(self.file("best.json"))
            if speakers is not None:
                with atomic_open(self.file("speakers.txt"), "w", encoding="utf-8") as f:
                    f.writelines(f"{i} {s}\n" for i, s in enumerate(speakers))
            write_json(self.file("config.json"), new_cfg)
            return
        with open(self.file("config.json"), encoding="utf-8") as f:
            resumes = json.load(f).get("resumes", [])
        if changes:
            text = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in changes.items())
            if any(_covered(k, RESUMABLE_WITH_WARNING) for k in changes):
                log.warning(
                    "Resuming at step %d with a config that differs from the checkpointed run's "
                    "in: %s (the resumed run will not equal an uninterrupted one)",
                    resume.step,
                    text,
                )
            else:
                log.info("Resuming at step %d with: %s", resume.step, text)
            resumes.append(
                {"step": resume.step, "changes": {k: list(v) for k, v in changes.items()}}
            )
        write_json(self.file("config.json"), {**new_cfg, "resumes": resumes})

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
        bad = [
            "/".join(str(getattr(k, "key", k)) for k in keys)
            for keys, x in jax.tree_util.tree_flatten_with_path(variables)[0]
            if not np.isfinite(x).all()
        ]
        if bad:
            raise XvjaxError(
                f"refusing to write the {name} model with non-finite values in {bad[0]}"
            )
        init_from = self.config.get("init_from")
        template = template_for(init_from) if init_from else None
        opts = None
        if jax.process_count() > 1:
            opts = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
        if jax.process_index() == 0:
            kwargs = {"multiprocessing_options": opts} if opts else {}
            save_model(path, spec, variables, nnet_template_path=template, **kwargs)
            os.chmod(path, umask_mode(0o777))  # save_model's temp dir is owner-only
        if opts is not None:
            multihost_utils.sync_global_devices("xvjax-train-final-export")
        return path
