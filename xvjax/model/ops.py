"""The model's node types (a `NodeSpec`'s `op`), one `Op` entry each: nnet3 import, variables,
forward and nnet3 export of that type together.

An entry (`OPS[name]`) says, for one op:

- `kaldi_types`: the nnet3 component types imported as this op; the first is the type exported
  for a node that does not name its own (`node.kaldi["type"]`, kept from the import);
- `from_kaldi`: an nnet3 `Component` (and the `(source, offset)` inputs of its descriptor) ->
  the spec node, its params and its BatchNorm statistics;
- `param_shapes` / `init_params`: the node's trainable parameters (`params[layer][sub]`, Kaldi-like
  initial values); `init_stats`: its statistics (`batch_stats[layer][sub]`), if any;
- `apply`: the forward pass of the node (numerics in `layers.py`);
- `kaldi_config`: the options of the `component` config line xconfig would write for it, and
  `descriptor` / `read_as` where its input or its output reads differently from
  `Append(Offset(src, o), ...)` (TdnnComponent keeps the offsets itself; a node reading stats
  pooling reads `Round(pooling, period)`);
- `to_kaldi`: its variables written into an nnet3 `Component` (export into a template).

The on-disk layout, config defaults and dims of each Kaldi type are the kaldi side's
(`xvjax.kaldi.nnet3.components`); supporting one more nnet3 component type in the model is one
`ComponentType` entry there and one entry here (or one more name in an entry's `kaldi_types`,
when the type computes what an existing op computes). The graph-level code that reads the table
is in `nnet3_import.py` (walk of the nnet3 graph), `xvector.py` (forward pass, variables) and
`nnet3_export.py` (config lines, template matching).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3.components import Component
from xvjax.model import layers
from xvjax.model.frames import FrameInputs, Frames, frame_mask
from xvjax.model.spec import ModelSpec, NodeSpec

# A node's input in the forward pass: FrameInputs at frame level, (B, D) after pooling.
Activation = Any
# What an import gives: the spec node, its params and its BatchNorm statistics (or None).
Imported = tuple[NodeSpec, dict | None, dict | None]
# Kaldi tokens / config values kept in NodeSpec.kaldi for export without a template.
KEEP_KALDI = ("max-change", "learning-rate-factor", "l2-regularize", "self-repair-scale")


class Run(NamedTuple):
    """How the forward pass runs: the spec, training mode, BatchNorm layers not to update, and
    the real length of each (right-padded) row (None: every frame is real)."""

    spec: ModelSpec
    train: bool
    frozen_bn: tuple[str, ...]
    num_frames: jax.Array | None


@dataclasses.dataclass(frozen=True)
class Op:
    """Everything about one node type (see the module docstring)."""

    name: str
    kaldi_types: tuple[str, ...]
    from_kaldi: Callable[[str, Component, list[tuple[str, int]], int, dict], Imported]
    # (node, input, params, stats, run) -> (output, new stats or None)
    apply: Callable[[NodeSpec, Activation, dict | None, dict | None, Run], tuple[Any, Any]]
    # (spec, node, Kaldi type) -> the config-line options after `component name=... type=...`
    kaldi_config: Callable[[ModelSpec, NodeSpec, str], str]
    param_shapes: Callable[[NodeSpec, int], dict] | None = None  # (node, input dim)
    init_params: Callable[[NodeSpec, int, Any], dict] | None = None  # (node, input dim, key)
    init_stats: Callable[[NodeSpec], dict] | None = None
    # (component, node, params, stats): writes the variables into the nnet3 component.
    to_kaldi: Callable[[Component, NodeSpec, dict | None, dict | None], None] | None = None
    # (spec, node, Kaldi type) -> the descriptor of the node's input; None: Append(Offset(...)).
    descriptor: Callable[[ModelSpec, NodeSpec, str], str] | None = None
    # node -> how a descriptor reads this node's output; None: by its name.
    read_as: Callable[[NodeSpec], str] | None = None
    # Has no variables and keeps its input's dim (resize_output resizes it with its input).
    resizes_with_input: bool = False


OPS: dict[str, Op] = {}


def _register(op: Op) -> None:
    OPS[op.name] = op


def op_of(node: NodeSpec) -> Op:
    op = OPS.get(node.op)
    if op is None:
        raise XvjaxError(f"node {node.name}: unknown op '{node.op}' (known: {', '.join(OPS)})")
    return op


def kaldi_type(node: NodeSpec) -> str:
    """The nnet3 component type a node is exported as."""
    return node.kaldi.get("type", op_of(node).kaldi_types[0])


def input_dim(spec: ModelSpec, node: NodeSpec) -> int:
    dims = spec.dims()
    return sum(dims[s] for s, _ in node.inputs)


# ------------------------------------------------------------------------------------------------
# Import from nnet3: shared helpers


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


def _f32(v) -> float:
    """A float32 Kaldi value as the shortest double that rounds to it (0.001, not 0.0010000000475)."""
    return float(repr(np.float32(v)).removeprefix("np.float32(").removesuffix(")"))


def _np32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def kaldi_options(comp: Component) -> dict[str, Any]:
    """The component's type and the training options kept for export (`NodeSpec.kaldi`)."""
    meta: dict[str, Any] = {"type": comp.type}
    for k in KEEP_KALDI:
        v = _get(comp, k)
        if v is not None:
            meta[k] = _f32(v) if not isinstance(v, str) else v
    lr = _get(comp, "learning-rate")
    if lr is not None:
        meta["learning-rate"] = _f32(lr)
    return meta


def import_component(
    name: str, comp: Component, inputs: list[tuple[str, int]], in_dim: int
) -> Imported:
    """(spec node, params or None, batch_stats or None) of the component of node `name`."""
    op = _BY_KALDI_TYPE.get(comp.type)
    if op is None:
        raise XvjaxError(
            f"node {name}: component type {comp.type} is unsupported by the x-vector model"
        )
    return op.from_kaldi(name, comp, inputs, in_dim, kaldi_options(comp))


# ------------------------------------------------------------------------------------------------
# Export to nnet3: shared helpers


def _fmt(x: float) -> str:
    return f"{x:g}"


def _bool(b: bool) -> str:
    return "true" if b else "false"


def node_descriptor(spec: ModelSpec, node: NodeSpec) -> str:
    """The Kaldi descriptor text of a spec node's input."""
    op = op_of(node)
    if op.descriptor is not None:
        return op.descriptor(spec, node, kaldi_type(node))
    return append_descriptor(spec, node)


def append_descriptor(spec: ModelSpec, node: NodeSpec) -> str:
    """`Append(Offset(src, o), ...)` of the node's inputs (a source's `read_as` if it has one)."""
    terms = []
    for s, o in node.inputs:
        term = s if o == 0 else f"Offset({s}, {o})"
        if s != "input":
            src = spec.node(s)
            read_as = op_of(src).read_as
            if read_as is not None:
                term = read_as(src)
        terms.append(term)
    return terms[0] if len(terms) == 1 else "Append(" + ", ".join(terms) + ")"


def component_config(spec: ModelSpec, node: NodeSpec) -> str:
    """The `component name=... type=...` line xconfig would write for a spec node."""
    ktype = kaldi_type(node)
    return f"component name={node.name} type={ktype}" + op_of(node).kaldi_config(spec, node, ktype)


def _set_param(comp: Component, key: str, value: np.ndarray) -> None:
    """Replaces a parameter array unless it is bit-identical (keeps the template object)."""
    old = comp.params.get(key)
    value = np.ascontiguousarray(value, dtype=np.float32)
    if old is not None and old.shape == value.shape and old.tobytes() == value.tobytes():
        return
    comp.params[key] = value


# ------------------------------------------------------------------------------------------------
# Initial values: `key` is a jax PRNG key (traced under `model.init`) or a `np.random.Generator`
# (the fast eager path of `init_variables`, which avoids one XLA compile per parameter shape).


def gaussian(key, shape: tuple[int, ...], stddev: float):
    """N(0, stddev^2) float32; exactly +0.0 when stddev is 0 (as Kaldi writes it)."""
    if isinstance(key, np.random.Generator):
        if stddev == 0.0:
            return np.zeros(shape, np.float32)
        return (key.standard_normal(shape, dtype=np.float32) * np.float32(stddev)).astype(
            np.float32
        )
    if stddev == 0.0:
        return jnp.zeros(shape, jnp.float32)
    return stddev * jax.random.normal(key, shape, jnp.float32)


def split_key(key, n: int):
    """`n` independent keys (or generators) from one."""
    if isinstance(key, np.random.Generator):
        return key.spawn(n)
    return list(jax.random.split(key, n))


# ------------------------------------------------------------------------------------------------
# Forward: ops whose output frame t depends on input frame t only


def _frame_map(fn):
    """The apply of an op that maps each input frame (or utterance vector) to one output:
    `fn(node, x, params, stats, frames, run) -> (y, new stats)` on the spliced input (`frames`:
    its Frames at frame level, None after pooling)."""

    def apply(node, x, p, st, run):
        if isinstance(x, FrameInputs):
            v = x.spliced()
            y, new = fn(node, v.x, p, st, v, run)
            return Frames(y, v.start, v.rc), new
        return fn(node, x, p, st, None, run)

    return apply


def _pointwise(f):
    """`_frame_map` of an op without statistics: `f(node, x, params) -> y`."""
    return _frame_map(lambda node, x, p, st, frames, run: (f(node, x, p), None))


def _dim_config(spec: ModelSpec, node: NodeSpec, ktype: str) -> str:
    return f" dim={node.dim}"


# ------------------------------------------------------------------------------------------------
# affine / linear: NaturalGradientAffine, Affine, FixedAffine, Linear, Tdnn


def _affine_from_kaldi(name, comp, inputs, in_dim, meta) -> Imported:
    """`kernel = LinearParams.T` (rows offset-major); a TdnnComponent's time offsets become the
    node's input offsets; no bias (LinearComponent, Tdnn use-bias=false) -> op `linear`."""
    t = comp.type
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


def _affine_apply(node, x, p, st, run):
    if isinstance(x, FrameInputs) and all(v is x.parts[0][0] for v, _ in x.parts):
        # One source at several offsets: a (dilated) convolution over time, no splicing copy.
        v = x.parts[0][0]
        offs = tuple(o for _, o in x.parts)
        y = layers.tdnn_affine(v.x, p["kernel"], p.get("bias"), offs)
        return Frames(y, v.start - min(offs), v.rc + max(offs)), None
    return _affine_map(node, x, p, st, run)


def _affine(node, x, p):
    y = x @ p["kernel"]
    if "bias" in p:
        y = y + p["bias"]
    return y


_affine_map = _pointwise(_affine)


def _affine_shapes(node: NodeSpec, in_dim: int) -> dict:
    shapes = {"kernel": (in_dim, node.dim)}
    if node.op == "affine":
        shapes["bias"] = (node.dim,)
    return shapes


def _affine_init(node: NodeSpec, in_dim: int, key) -> dict:
    """Kaldi's defaults: param-stddev 1/sqrt(input dim), bias-stddev 1 (or the node's config)."""
    pstd = float(node.kaldi.get("param-stddev", 1.0 / np.sqrt(in_dim)))
    bstd = float(node.kaldi.get("bias-stddev", 1.0))
    k1, k2 = split_key(key, 2)
    out = {"kernel": gaussian(k1, (in_dim, node.dim), pstd)}
    if node.op == "affine":
        out["bias"] = gaussian(k2, (node.dim,), bstd)
    return out


def _affine_config(spec: ModelSpec, node: NodeSpec, ktype: str) -> str:
    k = node.kaldi
    if ktype == "TdnnComponent":
        offs = ",".join(str(o) for _, o in node.inputs)
        dims = spec.dims()
        line = f" input-dim={dims[node.inputs[0][0]]} output-dim={node.dim} time-offsets={offs}"
    else:
        line = f" input-dim={input_dim(spec, node)} output-dim={node.dim}"
    if ktype != "FixedAffineComponent":
        if "learning-rate" in k:
            line += f" learning-rate={_fmt(float(k['learning-rate']))}"
        if float(k.get("max-change", 0.0)) > 0:
            line += f" max-change={_fmt(float(k['max-change']))}"
        if float(k.get("learning-rate-factor", 1.0)) != 1.0:
            line += f" learning-rate-factor={_fmt(float(k['learning-rate-factor']))}"
        if float(k.get("l2-regularize", 0.0)) != 0.0:
            line += f" l2-regularize={_fmt(float(k['l2-regularize']))}"
    return line


def _affine_descriptor(spec: ModelSpec, node: NodeSpec, ktype: str) -> str:
    if ktype == "TdnnComponent":
        return node.inputs[0][0]  # the time offsets are the component's
    return append_descriptor(spec, node)


def _affine_to_kaldi(comp: Component, node: NodeSpec, p, st) -> None:
    _set_param(comp, "linear", np.asarray(p["kernel"], np.float32).T)
    if node.op == "affine":
        _set_param(comp, "bias", np.asarray(p["bias"], np.float32))


_AFFINE = dict(
    from_kaldi=_affine_from_kaldi,
    apply=_affine_apply,
    kaldi_config=_affine_config,
    param_shapes=_affine_shapes,
    init_params=_affine_init,
    to_kaldi=_affine_to_kaldi,
    descriptor=_affine_descriptor,
)
_register(Op(
    "affine",
    ("NaturalGradientAffineComponent", "AffineComponent", "FixedAffineComponent",
     "TdnnComponent"),
    **_AFFINE,
))  # fmt: skip
_register(Op("linear", ("LinearComponent",), **_AFFINE))


# ------------------------------------------------------------------------------------------------
# relu, log_softmax, softmax, noop (NoOp; Dropout and GeneralDropout at test time)


def _same_dim_from_kaldi(name, comp, inputs, in_dim, meta) -> Imported:
    """A type whose output has its input's dim (a nonlinearity, NoOp, Dropout)."""
    t = comp.type
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
    op = _BY_KALDI_TYPE[t].name
    return NodeSpec(name, op, tuple(inputs), dim, attrs, meta), None, None


def _relu_config(spec: ModelSpec, node: NodeSpec, ktype: str) -> str:
    return f" dim={node.dim} self-repair-scale={_fmt(float(node.kaldi.get('self-repair-scale', 1e-5)))}"


def _noop_config(spec: ModelSpec, node: NodeSpec, ktype: str) -> str:
    if ktype in ("DropoutComponent", "GeneralDropoutComponent"):
        proportion = float(node.kaldi.get("dropout-proportion", 0.0))
        return f" dim={node.dim} dropout-proportion={_fmt(proportion)}"
    return f" dim={node.dim}"


_register(Op(
    "relu", ("RectifiedLinearComponent",), _same_dim_from_kaldi,
    _pointwise(lambda node, x, p: jax.nn.relu(x)), _relu_config, resizes_with_input=True,
))  # fmt: skip
_register(Op(
    "log_softmax", ("LogSoftmaxComponent",), _same_dim_from_kaldi,
    _pointwise(lambda node, x, p: jax.nn.log_softmax(x, axis=-1)), _dim_config,
    resizes_with_input=True,
))  # fmt: skip
_register(Op(
    "softmax", ("SoftmaxComponent",), _same_dim_from_kaldi,
    _pointwise(lambda node, x, p: jax.nn.softmax(x, axis=-1)), _dim_config,
    resizes_with_input=True,
))  # fmt: skip
_register(Op(
    "noop", ("NoOpComponent", "DropoutComponent", "GeneralDropoutComponent"),
    _same_dim_from_kaldi,
    # Dropout at test time: the identity, or DropoutComponent's keep-probability scale.
    _pointwise(lambda node, x, p: x * node.attrs["scale"] if "scale" in node.attrs else x),
    _noop_config, resizes_with_input=True,
))  # fmt: skip


# ------------------------------------------------------------------------------------------------
# batchnorm: BatchNormComponent (no learnable scale/offset; statistics in batch_stats)


def _batchnorm_from_kaldi(name, comp, inputs, in_dim, meta) -> Imported:
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


def _is_frozen(node: NodeSpec, frozen_bn: Sequence[str]) -> bool:
    layer = node.var_path[0]
    return node.name in frozen_bn or layer in frozen_bn


def _batchnorm(node, x, st, frames, run):
    """Test mode with the stored statistics; training mode normalises by the minibatch's real
    frames and updates the statistics by the EMA `m * stat + (1 - m) * minibatch_stat`."""
    eps, rms = float(node.attrs["epsilon"]), float(node.attrs["target_rms"])
    if not run.train or _is_frozen(node, run.frozen_bn):
        return layers.batchnorm_test(x, st["mean"], st["var"], eps, rms), None
    mask = frame_mask(frames, run.num_frames) if frames is not None else None
    y, mean, var, count = layers.batchnorm_train(
        x, mask, int(node.attrs.get("block_dim", node.dim)), eps, rms
    )
    mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
    momentum = run.spec.bn_momentum
    new = {
        "mean": momentum * st["mean"] + (1.0 - momentum) * mean,
        "var": momentum * st["var"] + (1.0 - momentum) * var,
        "count": st["count"] + jax.lax.stop_gradient(count),
    }
    return y, new


def _batchnorm_stats(node: NodeSpec) -> dict:
    d = int(node.attrs.get("block_dim", node.dim))
    return {
        "mean": np.zeros((d,), np.float32),
        "var": np.ones((d,), np.float32),
        "count": np.zeros((), np.float32),
    }


def _batchnorm_config(spec: ModelSpec, node: NodeSpec, ktype: str) -> str:
    a = node.attrs
    line = f" dim={node.dim}"
    if int(a.get("block_dim", node.dim)) != node.dim:
        line += f" block-dim={int(a['block_dim'])}"
    if float(a["epsilon"]) != 1e-3:
        line += f" epsilon={_fmt(float(a['epsilon']))}"
    return line + f" target-rms={_fmt(float(a['target_rms']))}"


def _batchnorm_to_kaldi(comp: Component, node: NodeSpec, p, st) -> None:
    count = float(np.asarray(st["count"]))
    if np.float32(comp.attrs.get("count", 0.0)) != np.float32(count):
        comp.attrs["count"] = count  # keep the template's double when unchanged
    if count == 0.0:
        # Kaldi derives mean/var from sums; with no count it writes zeros.
        mean = np.zeros_like(np.asarray(st["mean"], np.float32))
        var = np.zeros_like(mean)
    else:
        mean = np.asarray(st["mean"], np.float32)
        var = np.asarray(st["var"], np.float32)
    _set_param(comp, "stats_mean", mean)
    _set_param(comp, "stats_var", var)


_register(Op(
    "batchnorm", ("BatchNormComponent",), _batchnorm_from_kaldi,
    _frame_map(lambda node, x, p, st, frames, run: _batchnorm(node, x, st, frames, run)),
    _batchnorm_config, init_stats=_batchnorm_stats, to_kaldi=_batchnorm_to_kaldi,
))  # fmt: skip


# ------------------------------------------------------------------------------------------------
# scale_offset: ScaleAndOffsetComponent; sum_group: SumGroupComponent


def _scale_offset_from_kaldi(name, comp, inputs, in_dim, meta) -> Imported:
    dim = int(_get(comp, "dim"))
    scales = _np32(comp.params["scales"])
    p = {"scales": scales}
    use_off = _flag(_get(comp, "use-offsets", default=True))
    if use_off:
        p["offsets"] = _np32(comp.params["offsets"])
    attrs = {"block_dim": int(scales.shape[0]), "use_offsets": use_off}
    return NodeSpec(name, "scale_offset", tuple(inputs), dim, attrs, meta), p, None


def _scale_offset_shapes(node: NodeSpec, in_dim: int) -> dict:
    d = int(node.attrs.get("block_dim", node.dim))
    shapes = {"scales": (d,)}
    if node.attrs.get("use_offsets", True):
        shapes["offsets"] = (d,)
    return shapes


def _scale_offset_init(node: NodeSpec, in_dim: int, key) -> dict:
    d = int(node.attrs.get("block_dim", node.dim))
    out = {"scales": np.ones((d,), np.float32)}
    if node.attrs.get("use_offsets", True):
        out["offsets"] = np.zeros((d,), np.float32)
    return out


def _scale_offset_config(spec: ModelSpec, node: NodeSpec, ktype: str) -> str:
    line = f" dim={node.dim}"
    if int(node.attrs.get("block_dim", node.dim)) != node.dim:
        line += f" block-dim={int(node.attrs['block_dim'])}"
    return line


def _scale_offset_to_kaldi(comp: Component, node: NodeSpec, p, st) -> None:
    _set_param(comp, "scales", np.asarray(p["scales"], np.float32))
    if "offsets" in p:
        _set_param(comp, "offsets", np.asarray(p["offsets"], np.float32))


_register(Op(
    "scale_offset", ("ScaleAndOffsetComponent",), _scale_offset_from_kaldi,
    _pointwise(lambda node, x, p: layers.scale_offset(x, p["scales"], p.get("offsets"))),
    _scale_offset_config, param_shapes=_scale_offset_shapes, init_params=_scale_offset_init,
    to_kaldi=_scale_offset_to_kaldi,
))  # fmt: skip


def _sum_group_from_kaldi(name, comp, inputs, in_dim, meta) -> Imported:
    sizes = [int(s) for s in _get(comp, "sizes")]
    return (
        NodeSpec(name, "sum_group", tuple(inputs), len(sizes), {"sizes": sizes}, meta),
        None,
        None,
    )


_register(Op(
    "sum_group", ("SumGroupComponent",), _sum_group_from_kaldi,
    _pointwise(lambda node, x, p: layers.sum_group(x, tuple(node.attrs["sizes"]))),
    lambda spec, node, ktype: " sizes=" + ",".join(str(int(s)) for s in node.attrs["sizes"]),
))  # fmt: skip


# ------------------------------------------------------------------------------------------------
# stats_extraction + stats_pooling: StatisticsExtraction/PoolingComponent (frame -> utterance)


def _stats_extraction_from_kaldi(name, comp, inputs, in_dim, meta) -> Imported:
    d = int(_get(comp, "input-dim"))
    inc = _flag(_get(comp, "include-variance", "include-varinance", default=True))
    attrs = {
        "input_period": int(_get(comp, "input-period", default=1)),
        "output_period": int(_get(comp, "output-period", default=1)),
        "include_variance": inc,
    }
    out = 1 + d * (2 if inc else 1)
    return NodeSpec(name, "stats_extraction", tuple(inputs), out, attrs, meta), None, None


def _stats_extraction_apply(node, x, p, st, run):
    # The frames are only gathered here; the pooling that reads this node computes the moments.
    return x.spliced(), None


def _stats_extraction_config(spec: ModelSpec, node: NodeSpec, ktype: str) -> str:
    a = node.attrs
    return (
        f" input-dim={input_dim(spec, node)} input-period={int(a['input_period'])}"
        f" output-period={int(a['output_period'])}"
        f" include-variance={_bool(bool(a['include_variance']))}"
    )


_register(Op(
    "stats_extraction", ("StatisticsExtractionComponent",), _stats_extraction_from_kaldi,
    _stats_extraction_apply, _stats_extraction_config,
))  # fmt: skip


def _stats_pooling_from_kaldi(name, comp, inputs, in_dim, meta) -> Imported:
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


def _stats_pooling_apply(node, x, p, st, run):
    """Statistics at t=0 over every computable frame of the pooling window (nnet3-xvector-compute
    requests t=0); padding frames beyond `run.num_frames` are excluded exactly."""
    ext_node = run.spec.node(node.inputs[0][0])
    v = x.parts[0][0]  # the extraction's gathered frames
    w = jnp.asarray(layers.pooling_frame_weights(ext_node.attrs, node.attrs, v.start, v.x.shape[1]))
    mask = frame_mask(v, run.num_frames)
    w = jnp.broadcast_to(w, v.x.shape[:2]) if mask is None else w * mask
    return layers.stats_pool(v.x, w, ext_node.attrs, node.attrs), None


def _stats_pooling_config(spec: ModelSpec, node: NodeSpec, ktype: str) -> str:
    a = node.attrs
    line = (
        f" input-dim={input_dim(spec, node)} input-period={int(a['input_period'])}"
        f" left-context={int(a['left_context'])} right-context={int(a['right_context'])}"
        f" num-log-count-features={int(a['num_log_count_features'])}"
        f" output-stddevs={_bool(bool(a['output_stddevs']))}"
    )
    if float(a.get("variance_floor", 1e-10)) != 1e-10:
        line += f" variance-floor={_fmt(float(a['variance_floor']))}"
    return line


_register(Op(
    "stats_pooling", ("StatisticsPoolingComponent",), _stats_pooling_from_kaldi,
    _stats_pooling_apply, _stats_pooling_config,
    # Read at t=0 only: Round(pooling, period), as xconfig's stats layer writes it.
    read_as=lambda node: f"Round({node.name}, {int(node.attrs['input_period'])})",
))  # fmt: skip


_BY_KALDI_TYPE: dict[str, Op] = {t: op for op in OPS.values() for t in op.kaldi_types}
