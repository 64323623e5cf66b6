"""`ModelSpec`: a JSON-serialisable description of an x-vector network as an nnet3-like graph.

The spec is what the nnet3 converter derives from a Kaldi graph (`convert.nnet3_to_flax`) and what
`xvector_1a_spec` builds from scratch. It lists the network's nodes in topological order; each node
is one nnet3 component-node:

- `name`: the nnet3 node name (`tdnn1.affine`); the variables live under `params[layer][sub]`
  where `name == f"{layer}.{sub}"` (a name without a dot uses `(name, op)`).
- `op`: `affine` (kernel + bias), `linear` (kernel only), `relu`, `batchnorm`, `log_softmax`,
  `softmax`, `noop` (NoOp/Dropout at test time), `scale_offset`, `sum_group`, `stats_extraction`,
  `stats_pooling`; what each op computes, imports from and exports to is its entry in `ops.py`.
- `inputs`: the node's input descriptor as a list of `(source, time_offset)` spliced in order
  (Kaldi's `Append(Offset(src, o), ...)`); `source == "input"` is the feature input.
- `dim`: output dimension; `attrs`: op settings (epsilon, target_rms, periods, contexts, ...);
  `kaldi`: the component's other Kaldi tokens (max-change, learning-rate, ...) kept for export.

Frame-level nodes produce one output per frame; every node after `stats_pooling` is
utterance-level (one output at t=0, as `nnet3-xvector-compute` requests it): `node_level`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from xvjax.errors import XvjaxError
from xvjax.model.layers import pooling_frame_weights


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    name: str
    op: str
    inputs: tuple[tuple[str, int], ...]
    dim: int
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    kaldi: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def var_path(self) -> tuple[str, str]:
        """(layer, sub) key of this node's params / batch_stats: `tdnn1.affine` -> (tdnn1, affine)."""
        layer, dot, sub = self.name.partition(".")
        return (layer, sub) if dot else (self.name, self.op)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "op": self.op,
            "inputs": [list(p) for p in self.inputs],
            "dim": self.dim,
            "attrs": self.attrs,
            "kaldi": self.kaldi,
        }

    @staticmethod
    def from_dict(d: dict) -> NodeSpec:
        return NodeSpec(
            name=d["name"],
            op=d["op"],
            inputs=tuple((str(s), int(o)) for s, o in d["inputs"]),
            dim=int(d["dim"]),
            attrs=dict(d.get("attrs", {})),
            kaldi=dict(d.get("kaldi", {})),
        )


def node_level(node: NodeSpec, input_levels) -> str:
    """'utt' for statistics pooling and every node reading an utterance-level node, else 'frame'."""
    if node.op == "stats_pooling":
        return "utt"
    return "utt" if "utt" in input_levels else "frame"


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    name: str  # nnet3 output-node name ("output")
    source: str  # node feeding it ("output.log-softmax")
    objective: str = "linear"


@dataclasses.dataclass(frozen=True, eq=False)
class ModelSpec:
    """The network: `input_dim`, nodes in topological order, nnet3 output nodes.

    `bn_momentum`: training-mode update of the stored BatchNorm statistics,
    `stat = momentum * stat + (1 - momentum) * minibatch_stat` (Kaldi instead accumulates sums over
    a training job and re-estimates at the end; an EMA is the standard Flax equivalent).
    """

    input_dim: int
    nodes: tuple[NodeSpec, ...]
    outputs: tuple[OutputSpec, ...]
    bn_momentum: float = 0.99
    # The front end the network was trained on (`xvjax.features.options.frontend_record`: Kaldi
    # MFCC / VAD / CMN option values), or None when unknown (e.g. an imported Kaldi model).
    frontend: dict | None = None

    # ---- identity / serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {
            "format": "xvjax-model-spec-1",
            "input_dim": self.input_dim,
            "bn_momentum": self.bn_momentum,
            "nodes": [n.to_dict() for n in self.nodes],
            "outputs": [dataclasses.asdict(o) for o in self.outputs],
        }
        if self.frontend is not None:
            d["frontend"] = self.frontend
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @staticmethod
    def from_dict(d: dict) -> ModelSpec:
        if d.get("format") != "xvjax-model-spec-1":
            raise XvjaxError(f"not an xvjax model spec (format={d.get('format')!r})")
        spec = ModelSpec(
            input_dim=int(d["input_dim"]),
            nodes=tuple(NodeSpec.from_dict(n) for n in d["nodes"]),
            outputs=tuple(OutputSpec(**o) for o in d["outputs"]),
            bn_momentum=float(d.get("bn_momentum", 0.99)),
            frontend=d.get("frontend"),
        )
        spec.validate()
        return spec

    @staticmethod
    def from_json(text: str) -> ModelSpec:
        return ModelSpec.from_dict(json.loads(text))

    def __eq__(self, other) -> bool:
        return isinstance(other, ModelSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    # ---- graph queries --------------------------------------------------------------------------
    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise XvjaxError(f"model has no node '{name}' (nodes: {', '.join(self.node_names())})")

    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def resolve(self, name: str) -> str:
        """An nnet3 output-node name or a component-node name -> the component-node name."""
        for o in self.outputs:
            if o.name == name:
                return o.source
        return self.node(name).name

    def output_dim(self, name: str) -> int:
        return self.node(self.resolve(name)).dim

    def dims(self) -> dict[str, int]:
        d = {"input": self.input_dim}
        d.update({n.name: n.dim for n in self.nodes})
        return d

    def levels(self) -> dict[str, str]:
        """'frame' or 'utt' for every node (utterance-level after statistics pooling)."""
        level = {"input": "frame"}
        for n in self.nodes:
            level[n.name] = node_level(n, [level[s] for s, _ in n.inputs])
        return level

    def contexts(self) -> dict[str, tuple[int, int]]:
        """(left, right) frame context of every frame-level node relative to the input."""
        ctx = {"input": (0, 0)}
        lev = self.levels()
        for n in self.nodes:
            if lev[n.name] == "frame":
                ctx[n.name] = (
                    max(ctx[s][0] - o for s, o in n.inputs),
                    max(ctx[s][1] + o for s, o in n.inputs),
                )
        return ctx

    def required_nodes(self, target: str) -> list[NodeSpec]:
        """The nodes `target` depends on (itself included), in topological order."""
        need = {target}
        for n in reversed(self.nodes):
            if n.name in need:
                need.update(s for s, _ in n.inputs)
        return [n for n in self.nodes if n.name in need]

    def min_input_frames(self, output_node: str = "output", limit: int = 100000) -> int:
        """The fewest input frames for which `output_node` (at t=0) is computable."""
        target = self.resolve(output_node)
        lev = self.levels()
        if lev[target] == "frame":
            lc, rc = self.contexts()[target]
            return lc + rc + 1
        pools = [n for n in self.required_nodes(target) if n.op == "stats_pooling"]
        ctx = self.contexts()
        need = 1
        for pool in pools:
            ext = self.node(pool.inputs[0][0])
            src = ext.inputs[0][0]
            lc, rc = ctx[src]
            for n in range(lc + rc + 1, limit):
                w = pooling_frame_weights(ext.attrs, pool.attrs, start=lc, length=n - lc - rc)
                if w.sum() > 0:
                    need = max(need, n)
                    break
            else:
                raise XvjaxError(f"stats pooling node {pool.name} never has computable frames")
        return need

    def validate(self) -> None:
        seen = {"input"}
        names = set()
        for n in self.nodes:
            if n.name in names or n.name == "input":
                raise XvjaxError(f"node {n.name}: duplicate node name")
            names.add(n.name)
            for s, _ in n.inputs:
                if s not in seen:
                    raise XvjaxError(f"node {n.name}: input '{s}' is not defined before it")
            seen.add(n.name)
        lev = self.levels()
        for n in self.nodes:
            srcs = {lev[s] for s, _ in n.inputs}
            if len(srcs) > 1:
                raise XvjaxError(
                    f"node {n.name}: mixes frame-level and utterance-level inputs (unsupported)"
                )
            if "utt" in srcs and any(o != 0 for _, o in n.inputs):
                raise XvjaxError(
                    f"node {n.name}: time offsets after statistics pooling are unsupported"
                )
            if n.op == "stats_pooling" and (
                len(n.inputs) != 1 or self.node(n.inputs[0][0]).op != "stats_extraction"
            ):
                raise XvjaxError(f"node {n.name}: stats pooling must read a stats extraction node")
        for o in self.outputs:
            if o.source not in names:
                raise XvjaxError(f"output {o.name}: unknown source node '{o.source}'")


# ------------------------------------------------------------------------------------------------
# Kaldi's sre16 / voxceleb x-vector xconfig (run_xvector_1a.sh) from scratch.

_RELU_BN_AFFINE = {"max-change": 0.75}
_OUTPUT_AFFINE = {"max-change": 1.5, "param-stddev": 0.0, "bias-stddev": 0.0}


def relu_batchnorm_layer(
    name: str, inputs: list[tuple[str, int]], input_dim: int, dim: int
) -> list[NodeSpec]:
    """xconfig `relu-batchnorm-layer`: `<name>.affine` -> `.relu` -> `.batchnorm`."""
    return [
        NodeSpec(
            f"{name}.affine",
            "affine",
            tuple(inputs),
            dim,
            {"input_dim": input_dim},
            dict(_RELU_BN_AFFINE, type="NaturalGradientAffineComponent"),
        ),
        NodeSpec(
            f"{name}.relu",
            "relu",
            ((f"{name}.affine", 0),),
            dim,
            {},
            {"type": "RectifiedLinearComponent", "self-repair-scale": 1e-05},
        ),
        NodeSpec(
            f"{name}.batchnorm",
            "batchnorm",
            ((f"{name}.relu", 0),),
            dim,
            {"epsilon": 1e-3, "target_rms": 1.0, "block_dim": dim},
            {"type": "BatchNormComponent", "target-rms": 1.0},
        ),
    ]


def stats_layer(
    name: str,
    source: str,
    input_dim: int,
    left_context: int = 0,
    input_period: int = 1,
    stats_period: int = 1,
    right_context: int = 10000,
    stddev: bool = True,
) -> tuple[list[NodeSpec], str, int]:
    """xconfig `stats-layer config=mean+stddev(left:input_period:stats_period:right)`."""
    tag = f"{left_context}-{right_context}"
    ext_dim = 1 + input_dim * (2 if stddev else 1)
    out_dim = input_dim * (2 if stddev else 1)
    ext = NodeSpec(
        f"{name}-extraction-{tag}",
        "stats_extraction",
        ((source, 0),),
        ext_dim,
        {
            "input_period": input_period,
            "output_period": stats_period,
            "include_variance": stddev,
        },
        {"type": "StatisticsExtractionComponent"},
    )
    pool = NodeSpec(
        f"{name}-pooling-{tag}",
        "stats_pooling",
        ((ext.name, 0),),
        out_dim,
        {
            "input_period": stats_period,
            "left_context": left_context,
            "right_context": right_context,
            "num_log_count_features": 0,
            "output_stddevs": stddev,
            "variance_floor": 1e-10,
        },
        {"type": "StatisticsPoolingComponent"},
    )
    return [ext, pool], pool.name, out_dim


def xvector_1a_spec(
    input_dim: int = 30,
    num_speakers: int = 7000,
    frame_dims: tuple[int, ...] = (512, 512, 512, 512, 1500),
    frame_contexts: tuple[tuple[int, ...], ...] = (
        (-2, -1, 0, 1, 2),
        (-2, 0, 2),
        (-3, 0, 3),
        (0,),
        (0,),
    ),
    embedding_dims: tuple[int, ...] = (512, 512),
    stats_config: tuple[int, int, int, int] = (0, 1, 1, 10000),
    bn_momentum: float = 0.99,
) -> ModelSpec:
    """Kaldi's x-vector xconfig (sre16/v2 and voxceleb/v2 `run_xvector_1a.sh`) as a ModelSpec.

    Frame layers `tdnn1..tdnnK` (relu-batchnorm, spliced by `frame_contexts`), a
    `stats-layer mean+stddev(stats_config)`, utterance layers `tdnnK+1..`, and
    `output-layer include-log-softmax=true dim=num_speakers` (zero-initialised affine).
    """
    if len(frame_dims) != len(frame_contexts):
        raise XvjaxError("frame_dims and frame_contexts must have the same length")
    nodes: list[NodeSpec] = []
    src, dim = "input", input_dim
    k = 0
    for k, (width, offs) in enumerate(zip(frame_dims, frame_contexts, strict=True), 1):
        offs = tuple(offs)
        nodes += relu_batchnorm_layer(f"tdnn{k}", [(src, o) for o in offs], dim * len(offs), width)
        src, dim = f"tdnn{k}.batchnorm", width
    left, in_period, stats_period, right = stats_config
    stats, src, dim = stats_layer("stats", src, dim, -left, in_period, stats_period, right)
    nodes += stats
    for width in embedding_dims:
        k += 1
        nodes += relu_batchnorm_layer(f"tdnn{k}", [(src, 0)], dim, width)
        src, dim = f"tdnn{k}.batchnorm", width
    nodes += output_layer(src, dim, num_speakers)
    spec = ModelSpec(
        input_dim=input_dim,
        nodes=tuple(nodes),
        outputs=(OutputSpec("output", "output.log-softmax"),),
        bn_momentum=bn_momentum,
    )
    spec.validate()
    return spec


def output_layer(source: str, input_dim: int, num_outputs: int) -> list[NodeSpec]:
    """xconfig `output-layer include-log-softmax=true`: zero-initialised affine + log-softmax."""
    return [
        NodeSpec(
            "output.affine",
            "affine",
            ((source, 0),),
            num_outputs,
            {"input_dim": input_dim},
            dict(_OUTPUT_AFFINE, type="NaturalGradientAffineComponent"),
        ),
        NodeSpec(
            "output.log-softmax",
            "log_softmax",
            (("output.affine", 0),),
            num_outputs,
            {},
            {"type": "LogSoftmaxComponent"},
        ),
    ]
