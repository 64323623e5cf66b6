"""Flax -> nnet3: write a ModelSpec + variables as a Kaldi nnet3 model (see `convert.py`)."""

from __future__ import annotations

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import descriptors as D
from xvjax.model.spec import ModelSpec, NodeSpec

# ------------------------------------------------------------------------------------------------
# Flax -> nnet3

DEFAULT_TYPES = {
    "affine": "NaturalGradientAffineComponent",
    "linear": "LinearComponent",
    "relu": "RectifiedLinearComponent",
    "batchnorm": "BatchNormComponent",
    "log_softmax": "LogSoftmaxComponent",
    "softmax": "SoftmaxComponent",
    "noop": "NoOpComponent",
    "scale_offset": "ScaleAndOffsetComponent",
    "sum_group": "SumGroupComponent",
    "stats_extraction": "StatisticsExtractionComponent",
    "stats_pooling": "StatisticsPoolingComponent",
}


def _fmt(x: float) -> str:
    return f"{x:g}"


def _bool(b: bool) -> str:
    return "true" if b else "false"


def node_descriptor(spec: ModelSpec, node: NodeSpec) -> str:
    """The Kaldi descriptor text of a spec node's input (Round for reads of stats pooling)."""
    kaldi_type = node.kaldi.get("type", DEFAULT_TYPES[node.op])
    if kaldi_type == "TdnnComponent":
        return node.inputs[0][0]
    terms = []
    for s, o in node.inputs:
        term = s if o == 0 else f"Offset({s}, {o})"
        if s != "input" and spec.node(s).op == "stats_pooling":
            term = f"Round({s}, {int(spec.node(s).attrs['input_period'])})"
        terms.append(term)
    return terms[0] if len(terms) == 1 else "Append(" + ", ".join(terms) + ")"


def component_config(spec: ModelSpec, node: NodeSpec) -> str:
    """The `component name=... type=...` line xconfig would write for a spec node."""
    op, a, k = node.op, node.attrs, node.kaldi
    kaldi_type = k.get("type", DEFAULT_TYPES[op])
    dims = spec.dims()
    in_dim = sum(dims[s] for s, _ in node.inputs)
    line = f"component name={node.name} type={kaldi_type}"
    if op in ("affine", "linear"):
        if kaldi_type == "TdnnComponent":
            offs = ",".join(str(o) for _, o in node.inputs)
            line += (
                f" input-dim={dims[node.inputs[0][0]]} output-dim={node.dim} time-offsets={offs}"
            )
        else:
            line += f" input-dim={in_dim} output-dim={node.dim}"
        if kaldi_type != "FixedAffineComponent":
            if "learning-rate" in k:
                line += f" learning-rate={_fmt(float(k['learning-rate']))}"
            if float(k.get("max-change", 0.0)) > 0:
                line += f" max-change={_fmt(float(k['max-change']))}"
            if float(k.get("learning-rate-factor", 1.0)) != 1.0:
                line += f" learning-rate-factor={_fmt(float(k['learning-rate-factor']))}"
            if float(k.get("l2-regularize", 0.0)) != 0.0:
                line += f" l2-regularize={_fmt(float(k['l2-regularize']))}"
        return line
    if op == "relu":
        return (
            line
            + f" dim={node.dim} self-repair-scale={_fmt(float(k.get('self-repair-scale', 1e-5)))}"
        )
    if op == "batchnorm":
        line += f" dim={node.dim}"
        if int(a.get("block_dim", node.dim)) != node.dim:
            line += f" block-dim={int(a['block_dim'])}"
        if float(a["epsilon"]) != 1e-3:
            line += f" epsilon={_fmt(float(a['epsilon']))}"
        return line + f" target-rms={_fmt(float(a['target_rms']))}"
    if op in ("log_softmax", "softmax", "noop"):
        if kaldi_type in ("DropoutComponent", "GeneralDropoutComponent"):
            return (
                line
                + f" dim={node.dim} dropout-proportion={_fmt(float(k.get('dropout-proportion', 0.0)))}"
            )
        return line + f" dim={node.dim}"
    if op == "scale_offset":
        line += f" dim={node.dim}"
        if int(a.get("block_dim", node.dim)) != node.dim:
            line += f" block-dim={int(a['block_dim'])}"
        return line
    if op == "sum_group":
        return line + " sizes=" + ",".join(str(int(s)) for s in a["sizes"])
    if op == "stats_extraction":
        return line + (
            f" input-dim={in_dim} input-period={int(a['input_period'])}"
            f" output-period={int(a['output_period'])}"
            f" include-variance={_bool(bool(a['include_variance']))}"
        )
    if op == "stats_pooling":
        line += (
            f" input-dim={in_dim} input-period={int(a['input_period'])}"
            f" left-context={int(a['left_context'])} right-context={int(a['right_context'])}"
            f" num-log-count-features={int(a['num_log_count_features'])}"
            f" output-stddevs={_bool(bool(a['output_stddevs']))}"
        )
        if float(a.get("variance_floor", 1e-10)) != 1e-10:
            line += f" variance-floor={_fmt(float(a['variance_floor']))}"
        return line
    raise XvjaxError(f"node {node.name}: cannot export op {op}")


def spec_to_config(spec: ModelSpec, names: set[str] | None = None, with_input: bool = True) -> str:
    """nnet3 config lines (as xconfig's final.config) for the spec, or only for nodes in `names`."""
    lines = [f"input-node name=input dim={spec.input_dim}"] if with_input else []
    for n in spec.nodes:
        if names is not None and n.name not in names:
            continue
        lines.append(component_config(spec, n))
        lines.append(
            f"component-node name={n.name} component={n.name} input={node_descriptor(spec, n)}"
        )
    for o in spec.outputs:
        if names is None or o.name in names:
            lines.append(f"output-node name={o.name} input={o.source} objective={o.objective}")
    return "\n".join(lines) + "\n"


def _matches_template(spec: ModelSpec, node: NodeSpec, nnet) -> bool:
    """Whether the template's node/component has the same structure as the spec node."""
    if not nnet.has_node(node.name) or node.name not in nnet.components:
        return False
    tnode = nnet.node(node.name)
    comp = nnet.components[node.name]
    if tnode.kind != "component" or tnode.component != node.name:
        return False
    if comp.type != node.kaldi.get("type", DEFAULT_TYPES[node.op]):
        return False
    try:
        if comp.output_dim != node.dim:
            return False
    except (KeyError, XvjaxError):
        return False
    return D.parse_descriptor(node_descriptor(spec, node)) == tnode.input


def flax_to_nnet3(spec: ModelSpec, variables: dict, template=None):
    """A Kaldi `Nnet` holding `variables`: the template with new weights and BN stats, or built
    from the spec's xconfig-style config lines (nnet3-init semantics) when `template` is None.

    Nodes whose structure differs from the template (e.g. a resized output layer) are re-created
    from config lines like `nnet3-copy --nnet-config` does; every other token of the template is
    kept, so an unmodified import is written back byte-identical.
    """
    from xvjax.kaldi.nnet3 import Nnet

    spec.validate()
    if template is None:
        nnet = Nnet()
        nnet.apply_config(spec_to_config(spec), rng=0)
    else:
        nnet = template.copy()
        if not nnet.has_node("input") or nnet.input_dim("input") != spec.input_dim:
            raise XvjaxError("template model's input node differs from the model spec")
        changed = {n.name for n in spec.nodes if not _matches_template(spec, n, nnet)}
        for o in spec.outputs:
            # nnet3-copy --nnet-config re-lists the output node reading a re-created node.
            if (
                not nnet.has_node(o.name)
                or str(nnet.node(o.name).input) != o.source
                or o.source in changed
            ):
                changed.add(o.name)
        if changed:
            nnet.apply_config(spec_to_config(spec, changed, with_input=False), rng=0)
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    for node in spec.nodes:
        layer, sub = node.var_path
        comp = nnet.components[node.name]
        if node.op in ("affine", "linear"):
            p = params[layer][sub]
            _set_param(comp, "linear", np.asarray(p["kernel"], np.float32).T)
            if node.op == "affine":
                _set_param(comp, "bias", np.asarray(p["bias"], np.float32))
        elif node.op == "scale_offset":
            p = params[layer][sub]
            _set_param(comp, "scales", np.asarray(p["scales"], np.float32))
            if "offsets" in p:
                _set_param(comp, "offsets", np.asarray(p["offsets"], np.float32))
        elif node.op == "batchnorm":
            st = stats[layer][sub]
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
    return nnet


def _set_param(comp, key: str, value: np.ndarray) -> None:
    """Replaces a parameter array unless it is bit-identical (keeps the template object)."""
    old = comp.params.get(key)
    value = np.ascontiguousarray(value, dtype=np.float32)
    if old is not None and old.shape == value.shape and old.tobytes() == value.tobytes():
        return
    comp.params[key] = value
