"""xvjax model directories: an Orbax checkpoint of the variables + `model.json` (the ModelSpec).

Layout of `checkpoints/NAME/`:
- `model.json`: the ModelSpec (architecture), JSON;
- `variables/`: Orbax checkpoint of `{"params": ..., "batch_stats": ...}`;
- `template.raw` (optional): the Kaldi nnet3 model it was imported from, so `flax-to-nnet3` can
  write the weights back into it and keep every other Kaldi token unchanged.

The directory is written under a temporary name and renamed into place, so a failed save never
leaves a half-written model; it gets the permissions of the user's umask, like every other output
(not the owner-only 0700 of a temp directory), so a shared model is readable by colleagues.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from xvjax import fileutil
from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import Nnet
from xvjax.model.nnet3_import import nnet3_to_flax
from xvjax.model.spec import ModelSpec
from xvjax.model.xvector import variable_shapes

SPEC_FILE = "model.json"
VARS_DIR = "variables"
TEMPLATE_FILE = "template.raw"


def _to_numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a), tree)


def save_model(
    path: str | os.PathLike,
    spec: ModelSpec,
    variables: dict,
    nnet_template_path: str | os.PathLike | None = None,
    multiprocessing_options=None,
) -> None:
    """Writes the model directory `path` atomically (replacing an existing one).

    `multiprocessing_options`: Orbax `ocp.options.MultiprocessingOptions` for a multi-process run
    where only some processes write (e.g. `primary_host=0, active_processes={0}`); None = Orbax's
    default (all processes take part in its barriers).
    """
    path = Path(path).absolute()
    tmp = Path(fileutil.mkdtemp_beside(path))  # the umask's permissions, not mkdtemp's 0700
    try:
        (tmp / SPEC_FILE).write_text(spec.to_json() + "\n", encoding="utf-8")
        tree = {
            "params": _to_numpy(variables["params"]),
            "batch_stats": _to_numpy(variables.get("batch_stats", {})),
        }
        ckpt_opts = {}
        if multiprocessing_options is not None:
            ckpt_opts["multiprocessing_options"] = multiprocessing_options
        with ocp.StandardCheckpointer(**ckpt_opts) as ckptr:
            ckptr.save(tmp / VARS_DIR, tree)
            ckptr.wait_until_finished()
        if nnet_template_path is not None:
            src = Path(nnet_template_path)
            if src.resolve() != (tmp / TEMPLATE_FILE).resolve():
                shutil.copyfile(src, tmp / TEMPLATE_FILE)
        fileutil.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_model_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / SPEC_FILE).is_file()


def load_model(path: str | os.PathLike) -> tuple[ModelSpec, dict]:
    """(spec, variables) from an xvjax model directory; arrays are numpy float32."""
    path = Path(path).absolute()
    if not is_model_dir(path):
        raise XvjaxError(f"{path}: not an xvjax model directory (no {SPEC_FILE})")
    try:
        spec = ModelSpec.from_json((path / SPEC_FILE).read_text(encoding="utf-8"))
    except OSError as e:
        raise XvjaxError(f"cannot read {path / SPEC_FILE}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise XvjaxError(f"{path / SPEC_FILE}: invalid model spec ({e})") from None
    try:
        with ocp.StandardCheckpointer() as ckptr:
            tree = ckptr.restore(path / VARS_DIR)
    except Exception as e:  # Orbax/TensorStore raise their own types for unreadable checkpoints
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise XvjaxError(f"cannot read the variables in {path / VARS_DIR}: {first}") from None
    variables = {
        "params": _to_numpy(tree.get("params", {})),
        "batch_stats": _to_numpy(tree.get("batch_stats", {})),
    }
    check_variables(spec, variables, str(path))
    return spec, variables


def template_path(path: str | os.PathLike) -> Path | None:
    p = Path(path) / TEMPLATE_FILE
    return p if p.is_file() else None


def template_for(path: str | os.PathLike) -> Path | None:
    """The Kaldi model to use as export template for a model loaded with `load_any(path)`:
    the file itself for a Kaldi `.raw`, the stored `template.raw` for a model directory."""
    p = Path(path)
    if p.is_dir():
        return template_path(p)
    return p if p.is_file() else None


def check_variables(spec: ModelSpec, variables: dict, where: str) -> None:
    """Raises XvjaxError if the variables do not have the shapes `spec` implies."""
    is_shape = lambda t: isinstance(t, tuple)
    want_shapes = jax.tree.map(lambda t: t, variable_shapes(spec), is_leaf=is_shape)
    got_shapes = jax.tree.map(lambda a: tuple(np.shape(a)), variables)
    if got_shapes != want_shapes:
        raise XvjaxError(f"{where}: variables do not match the model spec")


def load_any(path: str | os.PathLike) -> tuple[ModelSpec, dict]:
    """A Kaldi nnet3 `.raw` (binary or text) or an xvjax model directory -> (spec, variables)."""
    p = Path(path)
    if p.is_dir():
        return load_model(p)
    if not p.exists() and not str(path).endswith("|"):
        raise XvjaxError(f"{path}: no such file or model directory")
    return nnet3_to_flax(Nnet.read(str(path)))
