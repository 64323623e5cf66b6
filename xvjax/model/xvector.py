"""The x-vector network as a Flax module built from a `ModelSpec` (any nnet3 x-vector graph).

Model contract (used by the trainer, the extractor and the converter):

- `XVector(spec)` is a `flax.linen.Module`;
  `model.apply(variables, feats, train=False, output_node="output", frozen_bn=(), num_frames=None)`
  with feats `(B, T, F)` float32 returns `(B, dim)` for the requested node: an nnet3 output-node
  name (`"output"` = log-softmax posteriors) or any component-node name (`"tdnn6.affine"` = the
  x-vector embedding). Utterance-level nodes are evaluated at t=0 exactly as
  `nnet3-xvector-compute` requests them: the statistics pool over every computable frame inside
  the pooling window. Requesting a frame-level node returns `(B, T', dim)` for its valid frames.
- `num_frames` (B,) int: the real length of each (right-padded) row of `feats`; frames beyond it
  are excluded exactly from statistics pooling and from training-mode BatchNorm statistics.
- `train=True`: BatchNorm normalises with the minibatch statistics over all (real) frames, i.e.
  Kaldi's training-mode formula `(x - mean) * target_rms / sqrt(var + eps)` with biased `var`,
  and updates `batch_stats` (call with `mutable=["batch_stats"]`) by the EMA
  `stat <- m * stat + (1 - m) * minibatch_stat` with `m = spec.bn_momentum` (default 0.99);
  `count` accumulates the number of frames seen. (Kaldi accumulates raw sums over a training job
  and `nnet3-combine` re-estimates them with `RecomputeStats`; `recompute_batch_stats` does that.)
  Layers in `frozen_bn` (layer prefixes like `"tdnn1"` or node names like `"tdnn1.batchnorm"`)
  use their stored statistics and are not updated, even with `train=True`.
- Variables: `{"params": {layer: {sub: {...}}}, "batch_stats": {layer: {sub: {...}}}}` where
  `layer` is the nnet3 layer prefix (`tdnn1`, ..., `output`) and `sub` the component suffix:
  `affine` -> `{"kernel": (in_dim * num_offsets, out), "bias": (out,)}` (the kernel is Kaldi's
  `LinearParams` transposed; rows offset-major, i.e. reshape `(k, in_dim, out)` is the WIO conv
  kernel), `linear` -> `{"kernel"}`, `scale_offset` -> `{"scales", "offsets"}`;
  `batchnorm` stats -> `{"mean": (block_dim,), "var": (block_dim,), "count": ()}` = Kaldi's
  `StatsMean`, `StatsVar` (biased) and `Count`.
- `affine_taps=AffineTaps(nodes, perturbations)`: for natural-gradient training, the listed affine
  nodes record their input rows and add `perturbations[node]` (zeros shaped like the node's output)
  to their output, so the gradient with respect to the perturbations is the output derivative
  (flax's `sow` and `perturb`, for this pure forward).
- `init_variables(spec, key)`: Kaldi-like init (`param-stddev = 1/sqrt(input_dim)`,
  `bias-stddev = 1`, or the values in the node's Kaldi config; zero output layer), BN mean 0, var 1.
- `resize_output(spec, variables, num_outputs, key, param_stddev=0.0, bias_stddev=0.0)`:
  `nnet3-copy --nnet-config=resize.config` (new output affine with `num_outputs` rows).

`forward` walks the graph: it keeps frame-level values with their time origin (`frames.py`),
hands each node its input (unspliced at frame level) and lets the node's op entry (`ops.py`)
compute it; the variables' layout and initial values come from the same entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xvjax.errors import XvjaxError
from xvjax.model import ops
from xvjax.model.frames import FrameInputs, Frames
from xvjax.model.spec import ModelSpec, NodeSpec

Variables = dict[str, Any]


class AffineTaps:
    """Taps on affine nodes for natural-gradient training (see the module docstring).

    After a forward pass, `inputs[node]` holds the node's input rows `(rows, in_dim)` (a frame-level
    node: every (chunk, frame) it computes, spliced in kernel row order; an utterance-level node:
    one row per chunk) and `output_shapes[node]` the shape of its output. With `perturbations`
    (node -> array of that output shape) the outputs are `y + perturbations[node]`.
    """

    def __init__(self, nodes: Sequence[str], perturbations: dict[str, jax.Array] | None = None):
        self.nodes = frozenset(nodes)
        self.perturbations = perturbations
        self.inputs: dict[str, jax.Array] = {}
        self.output_shapes: dict[str, tuple[int, ...]] = {}

    def __call__(self, node: str, x, y):
        """The output `y` of `node` (Frames or (B, D)) computed from its input `x` (FrameInputs or
        (B, D)), perturbed when the node is tapped."""
        if node not in self.nodes:
            return y
        rows = x.spliced().x if isinstance(x, FrameInputs) else x
        self.inputs[node] = rows.reshape(-1, rows.shape[-1])
        out = y.x if isinstance(y, Frames) else y
        self.output_shapes[node] = tuple(out.shape)
        if self.perturbations is None:
            return y
        out = out + self.perturbations[node]
        return y._replace(x=out) if isinstance(y, Frames) else out


def forward(
    spec: ModelSpec,
    params: dict,
    batch_stats: dict,
    feats: jax.Array,
    *,
    train: bool = False,
    output_node: str = "output",
    frozen_bn: Sequence[str] = (),
    num_frames: jax.Array | None = None,
    affine_taps: AffineTaps | None = None,
) -> tuple[jax.Array, dict]:
    """Pure forward pass. Returns (output, new_batch_stats) (stats unchanged unless train)."""
    target = spec.resolve(output_node)
    if feats.ndim != 3 or feats.shape[-1] != spec.input_dim:
        raise XvjaxError(
            f"features have shape {tuple(feats.shape)}; the model wants (batch, frames, {spec.input_dim})"
        )
    run = ops.Run(spec, train, tuple(frozen_bn), num_frames)
    vals: dict[str, Any] = {"input": Frames(feats, 0, 0)}
    new_stats = jax.tree.map(lambda a: a, batch_stats)
    for node in spec.required_nodes(target):
        layer, sub = node.var_path
        srcs = [vals[s] for s, _ in node.inputs]
        if isinstance(srcs[0], Frames):
            x = FrameInputs(tuple((v, o) for v, (_, o) in zip(srcs, node.inputs, strict=True)))
        else:
            x = jnp.concatenate(srcs, -1)
        p = params.get(layer, {}).get(sub)
        st = batch_stats.get(layer, {}).get(sub)
        y, stats = ops.op_of(node).apply(node, x, p, st, run)
        if affine_taps is not None and node.op == "affine":
            y = affine_taps(node.name, x, y)
        vals[node.name] = y
        if stats is not None:
            new_stats[layer][sub] = stats
    out = vals[target]
    return (out.x if isinstance(out, Frames) else out), new_stats


# ------------------------------------------------------------------------------------------------
# Initialisation


def _layer_groups(spec: ModelSpec) -> tuple[dict[str, list[NodeSpec]], dict[str, list[NodeSpec]]]:
    """Nodes with params and nodes with statistics, by layer (the variables' first key)."""
    pgroups: dict[str, list[NodeSpec]] = {}
    sgroups: dict[str, list[NodeSpec]] = {}
    for n in spec.nodes:
        op = ops.op_of(n)
        if op.param_shapes is not None:
            pgroups.setdefault(n.var_path[0], []).append(n)
        if op.init_stats is not None:
            sgroups.setdefault(n.var_path[0], []).append(n)
    return pgroups, sgroups


def _init_node_params(spec: ModelSpec, node: NodeSpec, key) -> dict:
    """Kaldi-like initial parameters of one node (`key`: jax key or numpy Generator)."""
    return ops.op_of(node).init_params(node, ops.input_dim(spec, node), key)


def _init_layer_params(spec: ModelSpec, nodes: list[NodeSpec], key) -> dict:
    keys = ops.split_key(key, len(nodes))
    return {n.var_path[1]: _init_node_params(spec, n, k) for n, k in zip(nodes, keys, strict=True)}


def _init_node_stats(node: NodeSpec) -> dict:
    return ops.op_of(node).init_stats(node)


def _numpy_rng(key: jax.Array) -> np.random.Generator:
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng(np.asarray(data, np.uint32).ravel().tolist())


def variable_shapes(spec: ModelSpec) -> Variables:
    """The shapes of `init_variables(spec, key)` (a tree of tuples), without sampling."""
    dims = spec.dims()
    pgroups, sgroups = _layer_groups(spec)
    params = {
        layer: {
            n.var_path[1]: ops.op_of(n).param_shapes(n, sum(dims[s] for s, _ in n.inputs))
            for n in nodes
        }
        for layer, nodes in pgroups.items()
    }
    stats = {
        layer: {
            n.var_path[1]: {k: tuple(np.shape(v)) for k, v in _init_node_stats(n).items()}
            for n in nodes
        }
        for layer, nodes in sgroups.items()
    }
    return {"params": params, "batch_stats": stats}


def init_variables(spec: ModelSpec, key: jax.Array) -> Variables:
    """Kaldi-like initial variables for `spec` (see the module docstring), numpy float32.

    Deterministic given `key` (the Gaussians come from a numpy generator seeded by it).
    """
    pgroups, sgroups = _layer_groups(spec)
    params = {}
    for i, (layer, nodes) in enumerate(sorted(pgroups.items())):
        rng = _numpy_rng(jax.random.fold_in(key, i))
        params[layer] = _init_layer_params(spec, nodes, rng)
    stats = {
        layer: {n.var_path[1]: jax.tree.map(np.asarray, _init_node_stats(n)) for n in nodes}
        for layer, nodes in sorted(sgroups.items())
    }
    return {"params": params, "batch_stats": stats}


# ------------------------------------------------------------------------------------------------
# Flax module


class XVector(nn.Module):
    """The x-vector network of `spec` (see the module docstring for the full contract)."""

    spec: ModelSpec

    @nn.compact
    def __call__(
        self,
        feats: jax.Array,
        train: bool = False,
        output_node: str = "output",
        frozen_bn: Sequence[str] = (),
        num_frames: jax.Array | None = None,
        affine_taps: AffineTaps | None = None,
    ) -> jax.Array:
        spec = self.spec
        pgroups, sgroups = _layer_groups(spec)
        params = {
            layer: self.param(layer, lambda k, nodes=nodes: _init_layer_params(spec, nodes, k))
            for layer, nodes in sorted(pgroups.items())
        }
        stat_vars = {
            layer: self.variable(
                "batch_stats",
                layer,
                lambda nodes=nodes: {n.var_path[1]: _init_node_stats(n) for n in nodes},
            )
            for layer, nodes in sorted(sgroups.items())
        }
        stats = {layer: v.value for layer, v in stat_vars.items()}
        out, new_stats = forward(
            spec,
            params,
            stats,
            feats,
            train=train,
            output_node=output_node,
            frozen_bn=tuple(frozen_bn),
            num_frames=num_frames,
            affine_taps=affine_taps,
        )
        if train and not self.is_initializing():
            for layer, v in stat_vars.items():
                v.value = new_stats[layer]
        return out


# ------------------------------------------------------------------------------------------------
# Output resize (transfer learning)


def resize_output(
    spec: ModelSpec,
    variables: Variables,
    num_outputs: int,
    key: jax.Array,
    param_stddev: float = 0.0,
    bias_stddev: float = 0.0,
    output_affine: str = "output.affine",
) -> tuple[ModelSpec, Variables]:
    """`nnet3-copy --nnet-config=resize.config`: a new `output.affine` with `num_outputs` rows.

    The new affine is `N(0, param_stddev^2)` / `N(0, bias_stddev^2)` (zero by default, as the seed's
    config `param-stddev=0.0 bias-stddev=0.0 max-change=1.5`); every node reading it element-wise
    (the log-softmax) is resized too. Returns the new (spec, variables); inputs are not modified.
    """
    node = spec.node(output_affine)
    if node.op != "affine":
        raise XvjaxError(f"node {output_affine} is not an affine component (it is {node.op})")
    if num_outputs < 1:
        raise XvjaxError(f"cannot resize the output to {num_outputs} outputs")
    kaldi = dict(node.kaldi)
    kaldi.update({"param-stddev": param_stddev, "bias-stddev": bias_stddev, "max-change": 1.5})
    kaldi.pop("learning-rate", None)
    resized = {output_affine}
    nodes = []
    for n in spec.nodes:
        if n.name == output_affine:
            n = dataclasses.replace(n, dim=num_outputs, kaldi=kaldi)
        elif ops.op_of(n).resizes_with_input and any(s in resized for s, _ in n.inputs):
            n = dataclasses.replace(n, dim=num_outputs)
            resized.add(n.name)
        nodes.append(n)
    new_spec = dataclasses.replace(spec, nodes=tuple(nodes))
    new_spec.validate()
    layer, sub = node.var_path
    params = jax.tree.map(lambda a: a, dict(variables["params"]))
    params[layer] = dict(params[layer])
    params[layer][sub] = _init_node_params(new_spec, new_spec.node(output_affine), _numpy_rng(key))
    out = dict(variables)
    out["params"] = params
    return new_spec, out


# ------------------------------------------------------------------------------------------------
# Kaldi's RecomputeStats


def batch_moments(
    spec: ModelSpec, variables: Variables, feats: jax.Array, frozen_bn: Sequence[str] = ()
) -> dict:
    """The training-mode minibatch moments of every BatchNorm not in `frozen_bn` on feats
    (B, T, F): `{layer: {sub: {"mean", "var" (biased), "count" (frames)}}}`. Pure (jit it); each
    BN normalises with its own minibatch moments, frozen ones with their stored statistics."""
    spec0 = dataclasses.replace(spec, bn_momentum=0.0)  # new stats = exactly the minibatch moments
    stats = variables["batch_stats"]
    _, new = forward(spec0, variables["params"], stats, feats, train=True, frozen_bn=frozen_bn)
    out: dict = {}
    for node in spec.nodes:
        layer, sub = node.var_path
        if node.op == "batchnorm" and not (node.name in frozen_bn or layer in frozen_bn):
            st = new[layer][sub]
            count = st["count"] - stats[layer][sub]["count"]
            out.setdefault(layer, {})[sub] = {"mean": st["mean"], "var": st["var"], "count": count}
    return out


def recompute_batch_stats(
    spec: ModelSpec, variables: Variables, batches, frozen_bn: Sequence[str] = (), moments_fn=None
) -> Variables:
    """Re-estimates the BatchNorm statistics like Kaldi's `RecomputeStats` (nnet3-combine).

    Runs the network in training mode on each batch of `batches` (arrays (B, T, F)) and
    accumulates, per BN layer, the frame count and the sums of x and x^2 of its inputs (each
    minibatch normalised by its own statistics, as in Kaldi's training mode); the result is
    mean = sum / count, var = sumsq / count - mean^2 (biased), count = total frames. BN layers in
    `frozen_bn` keep their statistics (and normalise with them). `moments_fn(variables, batch)`
    computes `batch_moments` (default: jitted on one device; a trainer passes its sharded one).
    """
    if moments_fn is None:
        moments = jax.jit(lambda v, x: batch_moments(spec, v, x, tuple(frozen_bn)))
        dev_vars = jax.device_put(variables)  # the weights go to the device once, not per batch
        moments_fn = lambda _, x: moments(dev_vars, jnp.asarray(x, jnp.float32))
    acc: dict = {}
    num_batches = 0
    for x in batches:
        num_batches += 1
        # One device->host copy of all new statistics per batch.
        for layer, subs in jax.device_get(moments_fn(variables, x)).items():
            for sub, st in subs.items():
                n = float(st["count"])
                mean = np.asarray(st["mean"], np.float64)
                var = np.asarray(st["var"], np.float64)
                a = acc.setdefault((layer, sub), [0.0, 0.0, 0.0])
                a[0] += n
                a[1] = a[1] + n * mean
                a[2] = a[2] + n * (var + mean**2)
    if not num_batches:
        raise XvjaxError("recompute_batch_stats: no batches")
    stats = jax.tree.map(np.asarray, jax.device_get(variables["batch_stats"]))
    for (layer, sub), (n, s1, s2) in acc.items():
        mean = s1 / n
        stats[layer][sub] = {
            "mean": mean.astype(np.float32),
            "var": (s2 / n - mean**2).astype(np.float32),
            "count": np.float32(n),
        }
    return {**variables, "batch_stats": stats}
