"""Kaldi nnet3 raw models: read (binary/text), write byte-identically, edit like `nnet3-copy`.

Public API (stable; the Flax converter and extraction code use it):

    from xvjax.kaldi.nnet3 import Nnet, Node, Component, parse_descriptor
    nnet = Nnet.read("final.raw")            # path, "-" or "cmd |"; binary or text auto-detected
    nnet.nodes                               # list[Node] in config-section order
    nnet.components                          # dict[name, Component] in file order
    nnet.node("tdnn1.affine").input          # Descriptor AST, str() = Kaldi's normal form
    c = nnet.components["tdnn1.affine"]      # c.type, c.params["linear"] (out, in) float32,
                                             # c.params["bias"], c.attrs["max_change"], ...
    nnet.input_dim("input"); nnet.output_dim("output"); nnet.node_dim("tdnn6.affine")
    nnet.apply_config(open("resize.config").read(), rng=0)   # nnet3-copy --nnet-config
    nnet.write("out.raw", binary=True)       # atomic; Kaldi's exact bytes for unmodified models
    nnet.to_bytes(binary=False)              # the text form as bytes
    nnet2 = nnet.copy(); nnet == nnet2
    nnet.context()                           # (left, right) frame context, as nnet3-info
    nnet.num_parameters(); nnet.modulus(); nnet.orphan_nodes(); nnet.config_lines(include_dim=True)
    from xvjax.kaldi.nnet3.edits import apply_edits, set_learning_rate   # nnet3-copy --edits
    apply_edits(nnet, "set-learning-rate-factor name=tdnn[1-5]* learning-rate-factor=0")

Writing: `kaldi_roundtrip=True` (default) emulates what Kaldi's Read+Write do to BatchNorm and
nonlinearity statistics (double sums divided in float), so the output equals `nnet3-copy`'s
bytes (final.txt, resized_0.raw in the fixtures); `kaldi_roundtrip=False` writes the stored
values verbatim (reading a file and writing it back in the same mode is then byte-identical).
New components from config lines get Kaldi's InitFromConfig defaults; random parameters
(non-zero param-stddev/bias-stddev) come from numpy, not Kaldi's RNG.

Component params by meaning: affine/NG-affine/fixed-affine/tdnn `linear` (out, in) and `bias`
(out,); LinearComponent `linear`; BatchNorm `stats_mean`, `stats_var` (attrs dim, block_dim,
epsilon, target_rms, test_mode, count); nonlinearities `value_avg`, `deriv_avg`, `oderiv_rms`
(attrs dim, block_dim, count, oderiv_count, num_dims_self_repaired, num_dims_processed,
self_repair_*); ScaleAndOffset `scales`, `offsets`. Everything else is in `attrs` (snake_case of
the Kaldi token: learning_rate, learning_rate_factor, max_change, l2_regularize, is_gradient,
rank_in, rank_out, update_period, num_samples_history, alpha, orthonormal_constraint,
time_offsets, input_dim, input_period, output_period, include_variance, left_context,
right_context, num_log_count_features, output_stddevs, variance_floor, backprop_scale,
dropout_proportion, ...), always present with Kaldi's defaults, in Kaldi's write order.

Descriptor AST (frozen dataclasses, xvjax.kaldi.nnet3.descriptors): NodeRef(name),
Offset(src, t, x=0), Append(parts), Sum(a, b), Failover(a, b), IfDefined(src), Switch(parts),
Round(src, modulus), ReplaceIndex(src, var, value), Scale(scale, src), Const(value, dim).
"""

from xvjax.kaldi.nnet3.components import Component, supported_types
from xvjax.kaldi.nnet3.descriptors import (
    Append,
    Const,
    Descriptor,
    Failover,
    IfDefined,
    NodeRef,
    Offset,
    ReplaceIndex,
    Round,
    Scale,
    Sum,
    Switch,
    node_names,
    parse_descriptor,
)
from xvjax.kaldi.nnet3.nnet import Nnet, Node, read_nnet

__all__ = [
    "Append", "Component", "Const", "Descriptor", "Failover", "IfDefined", "Nnet", "Node",
    "NodeRef", "Offset", "ReplaceIndex", "Round", "Scale", "Sum", "Switch", "node_names",
    "parse_descriptor", "read_nnet", "supported_types",
]  # fmt: skip
