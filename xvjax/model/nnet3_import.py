"""nnet3 -> Flax: a ModelSpec and its variables from a Kaldi nnet3 graph (`nnet3_to_flax`).

The walk visits the nnet3 config graph (input / component / output nodes) in dependency order,
turns each descriptor into the node's `(source, time offset)` inputs (`Append`, `Offset`, and
`Round` of an utterance-level node at t=0) and each component into a spec node through its
type's entry in `ops.py` (`kernel = LinearParams.T`, rows offset-major, see `xvector.py`).
Anything the x-vector forward cannot express (ReplaceIndex, Sum, IfDefined, dim-range nodes,
offsets after pooling, unknown components) is an XvjaxError naming the node and the construct.
The way back is `nnet3_export.flax_to_nnet3`.
"""

from __future__ import annotations

from collections import Counter

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import Nnet
from xvjax.kaldi.nnet3 import descriptors as D
from xvjax.model import ops
from xvjax.model.spec import ModelSpec, NodeSpec, OutputSpec, node_level


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


def nnet3_to_flax(nnet: Nnet) -> tuple[ModelSpec, dict]:
    """(spec, variables) from an `xvjax.kaldi.nnet3.Nnet`."""
    nodes: list[NodeSpec] = []
    outputs: list[OutputSpec] = []
    params: dict[str, dict] = {}
    stats: dict[str, dict] = {}
    levels: dict[str, str] = {}
    dims: dict[str, int] = {}
    input_dim = None
    # A component may be named differently from its node (nnet3-copy --prepare-for-test makes
    # `tdnn1.batchnorm.tdnn2.affine`); the variables follow the node.
    users = Counter(n.component for n in nnet.nodes if n.kind == "component")
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
        if users[node.component] > 1:
            raise XvjaxError(
                f"node {node.name}: component '{node.component}' is used by "
                f"{users[node.component]} nodes (shared components are unsupported)"
            )
        inputs = _parts(node.input, node.name, levels)
        for s, _ in inputs:
            if s not in dims:
                raise XvjaxError(f"node {node.name}: input node '{s}' is not defined before it")
        in_dim = sum(dims[s] for s, _ in inputs)
        spec_node, p, st = ops.import_component(node.name, comp, inputs, in_dim)
        nodes.append(spec_node)
        levels[node.name] = node_level(spec_node, [levels[s] for s, _ in inputs])
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


def _topological(nnet: Nnet) -> list:
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
