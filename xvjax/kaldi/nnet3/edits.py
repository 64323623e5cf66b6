"""`nnet3-copy` edits: --learning-rate, --scale, test modes, --edits / --edits-config (a subset of
ReadEditConfig).

Supported edit directives (Kaldi's names, `src/nnet3/nnet-utils.h` ReadEditConfig):

    set-learning-rate name=<pattern> learning-rate=<f>          (actual rate)
    set-learning-rate-factor name=<pattern> learning-rate-factor=<f>
    rename-node old-name=<name> new-name=<name>
    remove-orphan-nodes | remove-orphan-components | remove-orphans
    set-dropout-proportion name=<pattern> proportion=<f>

Name patterns use `*` wildcards, as Kaldi's NameMatchesPattern. `learning-rate-factor=0` is how
Kaldi freezes a component.
"""

from __future__ import annotations

import fnmatch
import logging

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import descriptors as D
from xvjax.kaldi.nnet3.config_line import ConfigLine
from xvjax.kaldi.nnet3.nnet import Nnet

log = logging.getLogger("xvjax")


def _f32(x: float) -> float:
    return float(np.float32(x))


def set_learning_rate(nnet: Nnet, learning_rate: float) -> None:
    """SetLearningRate: every updatable component's rate = learning_rate * its factor."""
    for comp in nnet.components.values():
        if comp.updatable:
            comp.attrs["learning_rate"] = _f32(
                np.float32(learning_rate) * np.float32(comp.attrs["learning_rate_factor"])
            )


def scale_nnet(nnet: Nnet, scale: float) -> None:
    """ScaleNnet (`nnet3-copy --scale`): every component's Scale(). Parameters of affine, linear,
    TDNN and scale-and-offset components are multiplied (set to zero for 0); BatchNorm and
    nonlinearities scale their stored sums and counts, so their averages stay (zeroed for 0);
    other components are unchanged."""
    if scale == 1.0:
        return
    s = np.float32(scale)
    for comp in nnet.components.values():
        p, a = comp.params, comp.attrs
        if comp.type in _SCALED_PARAMS:
            for key in _SCALED_PARAMS[comp.type]:
                p[key] = (np.asarray(p[key], np.float32) * s).astype(np.float32)
                if scale == 0.0:  # Kaldi's SetZero(): also clears NaN and inf
                    p[key] = np.zeros_like(p[key])
        elif comp.type == "BatchNormComponent":
            if scale == 0.0:
                a["count"] = 0.0
                p["stats_mean"] = np.zeros_like(p["stats_mean"])
                p["stats_var"] = np.zeros_like(p["stats_var"])
            else:
                a["count"] = float(a["count"]) * float(s)
        elif "value_avg" in p:  # NonlinearComponent: sums and counts scale together
            for key in ("count", "oderiv_count", "num_dims_self_repaired", "num_dims_processed"):
                a[key] = float(a[key]) * float(s)
            if scale == 0.0:
                for key in ("value_avg", "deriv_avg", "oderiv_rms"):
                    p[key] = np.zeros_like(p[key])


_SCALED_PARAMS = {
    "NaturalGradientAffineComponent": ("linear", "bias"),
    "AffineComponent": ("linear", "bias"),
    "TdnnComponent": ("linear", "bias"),
    "LinearComponent": ("linear",),
    "ScaleAndOffsetComponent": ("scales", "offsets"),
}


def set_batchnorm_test_mode(nnet: Nnet, test_mode: bool) -> None:
    """SetBatchnormTestMode: Kaldi's nnet3-copy always sets it (--batchnorm-test-mode)."""
    for comp in nnet.components.values():
        if comp.type == "BatchNormComponent":
            comp.attrs["test_mode"] = bool(test_mode)


def set_dropout_test_mode(nnet: Nnet, test_mode: bool) -> None:
    """SetDropoutTestMode: the test mode of every random (dropout) component."""
    for comp in nnet.components.values():
        if comp.type in ("DropoutComponent", "GeneralDropoutComponent"):
            comp.attrs["test_mode"] = bool(test_mode)


def remove_orphan_nodes(nnet: Nnet) -> int:
    orphans = set(nnet.orphan_nodes())
    before = len(nnet.nodes)
    nnet.nodes = [n for n in nnet.nodes if n.name not in orphans or n.kind == "input"]
    removed = before - len(nnet.nodes)
    log.info("Removed %d orphan nodes.", removed)
    return removed


def remove_orphan_components(nnet: Nnet) -> int:
    used = {n.component for n in nnet.nodes if n.kind == "component"}
    orphans = [c for c in nnet.components if c not in used]
    for c in orphans:
        del nnet.components[c]
    log.info("Removing %d orphan components.", len(orphans))
    return len(orphans)


def _matching(names, pattern: str) -> list[str]:
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def apply_edits(nnet: Nnet, text: str, source: str = "edits") -> None:
    """Applies edit directives, one per line (`;` may separate them, as in --edits)."""
    for raw in text.replace(";", "\n").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cfg = ConfigLine(line, source)
        directive = cfg.first_token
        if directive == "remove-orphan-nodes":
            remove_orphan_nodes(nnet)
        elif directive == "remove-orphan-components":
            remove_orphan_components(nnet)
        elif directive == "remove-orphans":
            remove_orphan_nodes(nnet)
            remove_orphan_components(nnet)
        elif directive in (
            "set-learning-rate",
            "set-learning-rate-factor",
            "set-dropout-proportion",
        ):
            pattern = cfg.str("name", "*")
            key, attr = {
                "set-learning-rate": ("learning-rate", "learning_rate"),
                "set-learning-rate-factor": ("learning-rate-factor", "learning_rate_factor"),
                "set-dropout-proportion": ("proportion", "dropout_proportion"),
            }[directive]
            value = cfg.require(cfg.float(key), key)
            names = [
                n for n in _matching(nnet.components, pattern) if attr in nnet.components[n].attrs
            ]
            for n in names:
                nnet.components[n].attrs[attr] = _f32(value)
            log.info("%s: set %s=%g on %d components", directive, key, value, len(names))
        elif directive == "rename-node":
            old = cfg.require(cfg.str("old-name"), "old-name")
            new = cfg.require(cfg.str("new-name"), "new-name")
            if not D.is_valid_name(new) or nnet.has_node(new):
                raise XvjaxError(f"{source}: cannot rename node {old} to {new}")
            nnet.node(old).name = new
            for n in nnet.nodes:
                if n.input is not None:
                    n.input = D.map_node_names(n.input, lambda x, o=old, w=new: w if x == o else x)
        else:
            raise XvjaxError(f"{source}: unsupported edit directive '{directive}' in '{line}'")
        cfg.check_unused()
    nnet.check()
