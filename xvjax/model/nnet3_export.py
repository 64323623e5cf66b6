"""Flax -> nnet3: a ModelSpec and its variables as a Kaldi nnet3 model (`flax_to_nnet3`).

With a template (the model the spec was imported from) the weights and BatchNorm statistics are
written into a copy of it, so an unmodified import exports byte-identical; nodes whose structure
differs from the template (e.g. a resized output layer) are re-created from config lines as
`nnet3-copy --nnet-config` does. Without a template the model is built from the config lines
Kaldi's xconfig would produce (`spec_to_config`, `nnet3-init` semantics) and the weights are
then set. What is written for a node (its config line, descriptor and variables) is its op's
entry in `ops.py`; the way in is `nnet3_import.nnet3_to_flax`.
"""

from __future__ import annotations

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import Nnet
from xvjax.kaldi.nnet3 import descriptors as D
from xvjax.model import ops
from xvjax.model.spec import ModelSpec, NodeSpec


def spec_to_config(spec: ModelSpec, names: set[str] | None = None, with_input: bool = True) -> str:
    """nnet3 config lines (as xconfig's final.config) for the spec, or only for nodes in `names`."""
    lines = [f"input-node name=input dim={spec.input_dim}"] if with_input else []
    for n in spec.nodes:
        if names is not None and n.name not in names:
            continue
        lines.append(ops.component_config(spec, n))
        lines.append(
            f"component-node name={n.name} component={n.name} input={ops.node_descriptor(spec, n)}"
        )
    for o in spec.outputs:
        if names is None or o.name in names:
            lines.append(f"output-node name={o.name} input={o.source} objective={o.objective}")
    return "\n".join(lines) + "\n"


def _matches_template(spec: ModelSpec, node: NodeSpec, nnet: Nnet) -> bool:
    """Whether the template's node/component has the same structure as the spec node."""
    if not nnet.has_node(node.name) or node.name not in nnet.components:
        return False
    tnode = nnet.node(node.name)
    comp = nnet.components[node.name]
    if tnode.kind != "component" or tnode.component != node.name:
        return False
    if comp.type != ops.kaldi_type(node):
        return False
    try:
        if comp.output_dim != node.dim:
            return False
    except (KeyError, XvjaxError):
        return False
    return D.parse_descriptor(ops.node_descriptor(spec, node)) == tnode.input


def flax_to_nnet3(spec: ModelSpec, variables: dict, template: Nnet | None = None) -> Nnet:
    """A Kaldi `Nnet` holding `variables`: the template with new weights and BN stats, or built
    from the spec's xconfig-style config lines (nnet3-init semantics) when `template` is None.

    Nodes whose structure differs from the template (e.g. a resized output layer) are re-created
    from config lines like `nnet3-copy --nnet-config` does; every other token of the template is
    kept, so an unmodified import is written back byte-identical.
    """
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
        op = ops.op_of(node)
        if op.to_kaldi is not None:
            p = params[layer][sub] if op.param_shapes is not None else None
            st = stats[layer][sub] if op.init_stats is not None else None
            op.to_kaldi(comp, node, p, st)
    return nnet
