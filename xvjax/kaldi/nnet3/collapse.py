"""CollapseModel (`nnet3-copy --prepare-for-test`, `src/nnet3/nnet-utils.cc` ModelCollapser).

A component node whose input descriptor reads a single component node `foo` (directly or as
`Append(Offset(foo, -3), foo, Offset(foo, 3))`) is merged with it when the pair is one of:

- dropout (`DropoutComponent`/`GeneralDropoutComponent`) then affine/linear/TDNN: the dropout is
  bypassed; after a `DropoutComponent` the next component's linear parameters are multiplied by
  1 / (1 - dropout-proportion), as Kaldi does (`<name>.scale<s>`);
- BatchNorm (test mode) then affine/NG-affine/linear/TDNN: the BatchNorm's `y = x * scale +
  offset` is folded into the next component (`bias += W offset`, `W *= scale` per input column):
  a new component `<batchnorm>.<next>` (a LinearComponent becomes an AffineComponent);
- affine (or fixed affine) then affine, when the first does not reduce the dimension: one new
  `AffineComponent` `<first>.<second>` with `W = W2 W1` (block-diagonal for spliced inputs) and
  `b = b2 + W2 b1`.

The node then reads the bypassed node's input (descriptors substituted and normalised), nodes are
visited in config order until nothing changes, and orphan nodes and components are removed. In
the x-vector network every BatchNorm that feeds an affine layer disappears (tdnn1..4, 6, 7); the
one before statistics extraction stays (in test mode). New parameters are computed in float64
and rounded to float32 once (Kaldi accumulates in float32 BLAS, so they can differ by rounding).
"""

from __future__ import annotations

import logging

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import descriptors as D
from xvjax.kaldi.nnet3.components import Component, init_component
from xvjax.kaldi.nnet3.config_line import ConfigLine
from xvjax.kaldi.nnet3.edits import remove_orphan_components, remove_orphan_nodes
from xvjax.kaldi.nnet3.nnet import Nnet

log = logging.getLogger("xvjax")

_AFFINE = ("AffineComponent", "NaturalGradientAffineComponent")
_LINEAR_LIKE = (*_AFFINE, "LinearComponent", "TdnnComponent")
_F32, _F64 = np.float32, np.float64


def batchnorm_scale_offset(comp: Component) -> tuple[np.ndarray, np.ndarray]:
    """A test-mode BatchNorm as `y = x * scale + offset` (BatchNormComponent::ComputeDerived, in
    float32 from Kaldi's in-memory sums). Returns (scale, offset), each (block_dim,)."""
    a = comp.attrs
    count = float(a["count"])
    if count == 0.0:
        raise XvjaxError(
            f"BatchNorm component {comp.name} has no statistics (count 0); cannot set test mode"
        )
    mean = np.asarray(comp.params["stats_mean"], _F64)
    var = np.asarray(comp.params["stats_var"], _F64)
    total, total_sq = (mean * count).astype(_F32), ((var + mean * mean) * count).astype(_F32)
    offset = (total * _F32(-1.0 / count)).astype(_F32)
    variance = ((total_sq * _F32(1.0 / count)).astype(_F32) - offset * offset).astype(_F32)
    variance = np.maximum(variance, _F32(0)) + _F32(a["epsilon"])
    scale = (np.power(variance, _F32(-0.5)) * _F32(a["target_rms"])).astype(_F32)
    return scale, (offset * scale).astype(_F32)


def _collapsible_source(desc: D.Descriptor) -> str | None:
    """The node a descriptor reads when it is that node at one or more time offsets, else None
    (DescriptorIsCollapsible)."""
    parts = desc.parts if isinstance(desc, D.Append) else (desc,)
    names = set()
    for p in parts:
        if isinstance(p, D.Offset):
            p = p.src
        if not isinstance(p, D.NodeRef):
            return None
        names.add(p.name)
    return names.pop() if len(names) == 1 else None


def _add(nnet: Nnet, comp: Component) -> str:
    nnet.components[comp.name] = comp
    return comp.name


def _new_affine(name: str, linear: np.ndarray, bias: np.ndarray, learning_rate=None) -> Component:
    """A Kaldi `AffineComponent` with default options holding these parameters."""
    out_dim, in_dim = linear.shape
    line = (
        f"component name={name} type=AffineComponent input-dim={in_dim} output-dim={out_dim} "
        "param-stddev=0 bias-stddev=0"
    )
    cfg = ConfigLine(line, "CollapseModel")
    comp = init_component(name, "AffineComponent", cfg, np.random.default_rng(0))
    comp.params["linear"] = linear.astype(_F32)
    comp.params["bias"] = bias.astype(_F32)
    if learning_rate is not None:
        comp.attrs["learning_rate"] = float(learning_rate)
    return comp


def _premultiplied(nnet: Nnet, scale, offset, source: str, name: str) -> str:
    """GetDiagonallyPreModifiedComponentIndex: `name` run on `x * scale + offset`."""
    if not np.any(offset) and np.all(scale == 1.0):
        return name
    new_name = f"{source}.{name}"
    if new_name in nnet.components:
        return new_name
    comp = nnet.components[name]
    linear = np.asarray(comp.params["linear"], _F32)
    reps = linear.shape[1] // len(scale)
    if reps * len(scale) != linear.shape[1]:
        raise XvjaxError(f"cannot fold {source} (dim {len(scale)}) into {name}")
    full_scale, full_offset = np.tile(scale, reps), np.tile(offset, reps)
    bias = comp.params.get("bias")
    if bias is None or np.size(bias) == 0:
        bias = np.zeros(linear.shape[0], _F32)
    new_bias = (np.asarray(bias, _F64) + linear.astype(_F64) @ full_offset.astype(_F64)).astype(
        _F32
    )
    new_linear = (linear * full_scale[None, :]).astype(_F32)
    if comp.type == "LinearComponent":
        return _add(nnet, _new_affine(new_name, new_linear, new_bias, comp.attrs["learning_rate"]))
    new = comp.copy()
    new.name = new_name
    new.params["linear"], new.params["bias"] = new_linear, new_bias
    return _add(nnet, new)


def _scaled(nnet: Nnet, name: str, scale: float) -> str:
    """GetScaledComponentIndex: `name` with its linear parameters times `scale`."""
    if scale == 1.0:
        return name
    new_name = f"{name}.scale{scale:.3g}"
    if new_name in nnet.components:
        return new_name
    new = nnet.components[name].copy()
    new.name = new_name
    new.params["linear"] = (np.asarray(new.params["linear"], _F32) * _F32(scale)).astype(_F32)
    return _add(nnet, new)


def _combined_affine(nnet: Nnet, first: str, second: str) -> str | None:
    """CollapseComponentsAffine: one AffineComponent for affine `first` then affine `second`."""
    new_name = f"{first}.{second}"
    if new_name in nnet.components:
        return new_name
    c1, c2 = nnet.components[first], nnet.components[second]
    w1, b1 = np.asarray(c1.params["linear"], _F64), np.asarray(c1.params["bias"], _F64)
    if w1.shape[1] > w1.shape[0]:  # dimension-reducing first layer: keep both
        return None
    w2, b2 = np.asarray(c2.params["linear"], _F64), np.asarray(c2.params["bias"], _F64)
    reps = w2.shape[1] // w1.shape[0]
    w1_full = np.kron(np.eye(reps), w1)
    linear = w2 @ w1_full
    bias = b2 + w2 @ np.tile(b1, reps)
    return _add(nnet, _new_affine(new_name, linear, bias))


def _collapse_pair(nnet: Nnet, first: str, second: str) -> str | None:
    """CollapseComponents: the component equivalent to `second` run on `first`'s output."""
    c1, c2 = nnet.components[first], nnet.components[second]
    if c1.type in ("DropoutComponent", "GeneralDropoutComponent"):
        if c2.type not in _LINEAR_LIKE:
            return None
        p = float(c1.attrs["dropout_proportion"])
        scale = 1.0 / (1.0 - p) if c1.type == "DropoutComponent" else 1.0
        return _scaled(nnet, second, scale)
    if c1.type == "BatchNormComponent":
        if c2.type not in _LINEAR_LIKE:
            return None
        if not c1.attrs["test_mode"]:
            raise XvjaxError(f"BatchNorm component {first} must be in test mode to collapse")
        scale, offset = batchnorm_scale_offset(c1)
        return _premultiplied(nnet, scale, offset, first, second)
    if c1.type in (*_AFFINE, "FixedAffineComponent") and c2.type in _AFFINE:
        return _combined_affine(nnet, first, second)
    return None


def collapse_model(nnet: Nnet) -> None:
    """CollapseModel with Kaldi's default config (see the module docstring); in place."""
    num_before = len(nnet.components)
    for _ in range(11):
        changed = False
        for node in nnet.nodes:
            if node.kind != "component":
                continue
            source = _collapsible_source(node.input)
            if source is None or not nnet.has_node(source):
                continue
            src_node = nnet.node(source)
            if src_node.kind != "component":
                continue
            combined = _collapse_pair(nnet, src_node.component, node.component)
            if combined is None:
                continue
            node.component = combined
            node.input = D.substitute_node(node.input, source, src_node.input)
            changed = True
        if not changed:
            break
    else:
        raise XvjaxError("something went wrong collapsing the model (no fixed point)")
    num_added = len(nnet.components) - num_before
    remove_orphan_nodes(nnet)
    remove_orphan_components(nnet)
    num_removed = num_before + num_added - len(nnet.components)
    if num_added or num_removed:
        log.info("Added %d components, removed %d", num_added, num_removed)
    nnet.check()
