"""nnet3 <-> Flax: derive a ModelSpec + variables from a Kaldi graph, and write them back.

`nnet3_to_flax(nnet)` walks the nnet3 config graph (input / component / output nodes, descriptors
`Append`, `Offset`, `Round`) and maps each component to a spec node; the weight layout is
`kernel = LinearParams.T` (rows offset-major, see `xvector.py`). Anything the x-vector forward
cannot express (ReplaceIndex, Sum, IfDefined, dim-range nodes, offsets after pooling, unknown
components) is an XvjaxError naming the node and the construct.

`flax_to_nnet3(spec, variables, template)` writes the weights and BatchNorm statistics into a copy
of the template (an unmodified import exports byte-identical), or, without a template, builds the
nnet3 model from the config lines Kaldi's xconfig would produce (`nnet3-init` semantics) and then
sets the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import descriptors as D
from xvjax.model.spec import ModelSpec, NodeSpec, OutputSpec

AFFINE_TYPES = ("NaturalGradientAffineComponent", "AffineComponent", "FixedAffineComponent")
SIMPLE_TYPES = {
    "RectifiedLinearComponent": "relu",
    "LogSoftmaxComponent": "log_softmax",
    "SoftmaxComponent": "softmax",
    "NoOpComponent": "noop",
    "DropoutComponent": "noop",  # identity at test time (SetDropoutTestMode)
    "GeneralDropoutComponent": "noop",
}
# Kaldi tokens / config values kept in NodeSpec.kaldi for export without a template.
KEEP_KALDI = ("max-change", "learning-rate-factor", "l2-regularize", "self-repair-scale")


def _get(comp, *names, default=None):
    """An attribute of a reader Component under any of its spellings (snake_case / Kaldi)."""
    attrs = comp.attrs
    for n in names:
        for key in (n, n.replace("-", "_"), n.replace("_", "-")):
            if key in attrs:
                return attrs[key]
    return default


def _flag(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("t", "true", "1")
    return bool(v)


def _parts(desc, node: str, levels: dict[str, str]) -> list[tuple[str, int]]:
    """Descriptor -> [(source node, time offset)] in Append order, or XvjaxError."""
    if isinstance(desc, D.Append):
        out = []
        for p in desc.parts:
            out += _parts(p, node, levels)
        return out
    if isinstance(desc, D.NodeRef):
        return [(desc.name, 0)]
    if isinstance(desc, D.Offset):
        if desc.x != 0:
            raise XvjaxError(f"node {node}: Offset with an x offset ({desc}) is unsupported")
        inner = _parts(desc.src, node, levels)
        return [(s, o + desc.t) for s, o in inner]
    if isinstance(desc, D.Round):
        inner = _parts(desc.src, node, levels)
        out = []
        for s, o in inner:
            if levels.get(s) == "utt" and o == 0:
                out.append((s, 0))  # Round(stats, p) at t=0 is t=0
            elif desc.modulus == 1:
                out.append((s, o))
            else:
                raise XvjaxError(
                    f"node {node}: Round({s}, {desc.modulus}) of a frame-level node is unsupported"
                )
        return out
    name = type(desc).__name__
    raise XvjaxError(
        f"node {node}: descriptor {name} ({desc}) is unsupported by the x-vector model"
    )


def _f32(v) -> float:
    """A float32 Kaldi value as the shortest double that rounds to it (0.001, not 0.0010000000475)."""
    return float(repr(np.float32(v)).removeprefix("np.float32(").removesuffix(")"))


def _np32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def nnet3_to_flax(nnet) -> tuple[ModelSpec, dict]:
    """(spec, variables) from an `xvjax.kaldi.nnet3.Nnet`."""
    nodes: list[NodeSpec] = []
    outputs: list[OutputSpec] = []
    params: dict[str, dict] = {}
    stats: dict[str, dict] = {}
    levels: dict[str, str] = {}
    dims: dict[str, int] = {}
    input_dim = None
    for node in _topological(nnet):
        kind = node.kind
        if kind == "input":
            if input_dim is not None or node.name != "input":
                raise XvjaxError(
                    f"node {node.name}: only one input node named 'input' is supported "
                    "(no i-vector or extra inputs)"
                )
            input_dim = int(node.dim)
            levels["input"] = "frame"
            dims["input"] = input_dim
            continue
        if kind == "output":
            src = _parts(node.input, node.name, levels)
            if len(src) != 1 or src[0][1] != 0:
                raise XvjaxError(
                    f"output node {node.name}: input {node.input} must be a single node"
                )
            objective = (node.attrs or {}).get("objective", "linear")
            outputs.append(OutputSpec(node.name, src[0][0], str(objective)))
            continue
        if kind != "component":
            raise XvjaxError(
                f"node {node.name}: {kind} nodes are unsupported by the x-vector model"
            )
        comp = nnet.components.get(node.component)
        if comp is None:
            raise XvjaxError(f"node {node.name}: component '{node.component}' is missing")
        if node.component != node.name:
            raise XvjaxError(
                f"node {node.name}: component '{node.component}' has a different name "
                "(shared components are unsupported)"
            )
        inputs = _parts(node.input, node.name, levels)
        for s, _ in inputs:
            if s not in dims:
                raise XvjaxError(f"node {node.name}: input node '{s}' is not defined before it")
        in_dim = sum(dims[s] for s, _ in inputs)
        level = "utt" if any(levels[s] == "utt" for s, _ in inputs) else "frame"
        spec_node, p, st = _convert_component(node.name, comp, inputs, in_dim)
        if spec_node.op == "stats_pooling":
            level = "utt"
        nodes.append(spec_node)
        levels[node.name] = level
        dims[node.name] = spec_node.dim
        layer, sub = spec_node.var_path
        if p is not None:
            params.setdefault(layer, {})[sub] = p
        if st is not None:
            stats.setdefault(layer, {})[sub] = st
    if input_dim is None:
        raise XvjaxError("the nnet3 model has no input node")
    spec = ModelSpec(input_dim=input_dim, nodes=tuple(nodes), outputs=tuple(outputs))
    spec.validate()
    return spec, {"params": params, "batch_stats": stats}


def _topological(nnet) -> list:
    """Nodes with every component node after the nodes it reads (stable; Kaldi allows any order)."""
    by_name = {n.name: n for n in nnet.nodes}
    done: set[str] = set()
    order = []

    def visit(node, stack=()):
        if node.name in done:
            return
        if node.name in stack:
            raise XvjaxError(f"node {node.name}: the graph has a cycle (recurrence is unsupported)")
        if node.input is not None:
            for ref in D.node_names(node.input):
                if ref in by_name:
                    visit(by_name[ref], stack + (node.name,))
        done.add(node.name)
        order.append(node)

    for n in nnet.nodes:
        visit(n)
    return order


def _kaldi_meta(comp) -> dict[str, Any]:
    meta: dict[str, Any] = {"type": comp.type}
    for k in KEEP_KALDI:
        v = _get(comp, k)
        if v is not None:
            meta[k] = _f32(v) if not isinstance(v, str) else v
    lr = _get(comp, "learning-rate")
    if lr is not None:
        meta["learning-rate"] = _f32(lr)
    return meta


def _convert_component(name: str, comp, inputs, in_dim: int):
    """-> (NodeSpec, params or None, batch_stats or None)."""
    t = comp.type
    meta = _kaldi_meta(comp)
    if t in AFFINE_TYPES or t == "LinearComponent" or t == "TdnnComponent":
        lin = _np32(comp.params["linear"])
        bias = comp.params.get("bias")
        if t == "TdnnComponent":
            offsets = [int(o) for o in _get(comp, "time-offsets", "time_offsets")]
            if len(inputs) != 1 or inputs[0][1] != 0:
                raise XvjaxError(f"node {name}: TdnnComponent must read a single node")
            inputs = [(inputs[0][0], o) for o in offsets]
            in_dim = in_dim * len(offsets)
            if bias is not None and np.size(bias) == 0:
                bias = None
        if lin.shape[1] != in_dim:
            raise XvjaxError(
                f"node {name}: {t} has input dim {lin.shape[1]} but its input descriptor gives {in_dim}"
            )
        p = {"kernel": np.ascontiguousarray(lin.T)}
        op = "linear" if t == "LinearComponent" or bias is None else "affine"
        if op == "affine":
            p["bias"] = _np32(bias)
        attrs = {"input_dim": in_dim}
        if t == "FixedAffineComponent":
            attrs["fixed"] = True
        return NodeSpec(name, op, tuple(inputs), lin.shape[0], attrs, meta), p, None
    if t in SIMPLE_TYPES:
        op = SIMPLE_TYPES[t]
        attrs = {}
        if t in ("DropoutComponent", "GeneralDropoutComponent"):
            p = _f32(_get(comp, "dropout-proportion", default=0.0))
            meta["dropout-proportion"] = p
            if t == "DropoutComponent" and p != 0.0:
                # Test mode of DropoutComponent scales by the keep probability (its training
                # masks are unscaled 0/1); GeneralDropoutComponent's test mode is the identity.
                attrs["scale"] = _f32(1.0 - p)
        dim = int(_get(comp, "dim", default=in_dim))
        if dim != in_dim:
            raise XvjaxError(f"node {name}: {t} dim {dim} != input dim {in_dim}")
        return NodeSpec(name, op, tuple(inputs), dim, attrs, meta), None, None
    if t == "BatchNormComponent":
        dim = int(_get(comp, "dim"))
        block = int(_get(comp, "block-dim", default=dim))
        attrs = {
            "epsilon": _f32(_get(comp, "epsilon", default=1e-3)),
            "target_rms": _f32(_get(comp, "target-rms", default=1.0)),
            "block_dim": block,
        }
        st = {
            "mean": _np32(comp.params["stats_mean"]),
            "var": _np32(comp.params["stats_var"]),
            "count": np.float32(_get(comp, "count", default=0.0)),
        }
        if st["count"] == 0 or st["mean"].size == 0:
            # No stats: Kaldi's test mode is then the identity (scale 1, offset 0).
            st["mean"] = np.zeros(block, np.float32)
            st["var"] = np.full(block, 1.0 - attrs["epsilon"], np.float32)
        return NodeSpec(name, "batchnorm", tuple(inputs), dim, attrs, meta), None, st
    if t == "StatisticsExtractionComponent":
        d = int(_get(comp, "input-dim"))
        inc = _flag(_get(comp, "include-variance", "include-varinance", default=True))
        attrs = {
            "input_period": int(_get(comp, "input-period", default=1)),
            "output_period": int(_get(comp, "output-period", default=1)),
            "include_variance": inc,
        }
        out = 1 + d * (2 if inc else 1)
        return NodeSpec(name, "stats_extraction", tuple(inputs), out, attrs, meta), None, None
    if t == "StatisticsPoolingComponent":
        d = int(_get(comp, "input-dim"))
        nlc = int(_get(comp, "num-log-count-features", default=0))
        attrs = {
            "input_period": int(_get(comp, "input-period", default=1)),
            "left_context": int(_get(comp, "left-context")),
            "right_context": int(_get(comp, "right-context")),
            "num_log_count_features": nlc,
            "output_stddevs": _flag(_get(comp, "output-stddevs", default=False)),
            "variance_floor": _f32(_get(comp, "variance-floor", default=1e-10)),
        }
        return NodeSpec(name, "stats_pooling", tuple(inputs), d - 1 + nlc, attrs, meta), None, None
    if t == "ScaleAndOffsetComponent":
        dim = int(_get(comp, "dim"))
        scales = _np32(comp.params["scales"])
        p = {"scales": scales}
        use_off = _flag(_get(comp, "use-offsets", default=True))
        if use_off:
            p["offsets"] = _np32(comp.params["offsets"])
        attrs = {"block_dim": int(scales.shape[0]), "use_offsets": use_off}
        return NodeSpec(name, "scale_offset", tuple(inputs), dim, attrs, meta), p, None
    if t == "SumGroupComponent":
        sizes = [int(s) for s in _get(comp, "sizes")]
        return (
            NodeSpec(name, "sum_group", tuple(inputs), len(sizes), {"sizes": sizes}, meta),
            None,
            None,
        )
    raise XvjaxError(f"node {name}: component type {t} is unsupported by the x-vector model")


# The exporter lives in nnet3_export.py; these names are part of this module's API.
from xvjax.model.nnet3_export import (  # noqa: E402
    component_config,
    flax_to_nnet3,
    node_descriptor,
    spec_to_config,
)

__all__ = [
    "component_config",
    "flax_to_nnet3",
    "nnet3_to_flax",
    "node_descriptor",
    "spec_to_config",
]
