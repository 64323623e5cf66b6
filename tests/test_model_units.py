"""Unit tests of the Flax x-vector model: layers, masking, BatchNorm modes, chunking, round trips."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import Nnet, supported_types
from xvjax.model import layers, ops
from xvjax.model.checkpoint import load_any, load_model, save_model
from xvjax.model.nnet3_export import flax_to_nnet3
from xvjax.model.nnet3_import import nnet3_to_flax
from xvjax.model.spec import ModelSpec, xvector_1a_spec
from xvjax.model.xvector import (
    XVector,
    init_variables,
    recompute_batch_stats,
    resize_output,
    variable_shapes,
)
from xvjax.model.xvector_compute import (
    Chunk,
    Extractor,
    bucket_length,
    extract_xvectors,
    plan_chunks,
)


def random_stats(spec: ModelSpec, variables: dict, seed: int) -> dict:
    """Variables with random (trained-looking) BatchNorm statistics."""
    rng = np.random.default_rng(seed)
    v = jax.tree.map(np.asarray, variables)
    for layer in v["batch_stats"].values():
        for s in layer.values():
            s["mean"] = rng.uniform(0, 2, s["mean"].shape).astype(np.float32)
            s["var"] = rng.uniform(0.2, 3, s["var"].shape).astype(np.float32)
            s["count"] = np.float32(rng.integers(10, 5000))
    return v


@pytest.fixture(scope="module")
def tiny():
    spec = xvector_1a_spec(
        input_dim=23, num_speakers=5, frame_dims=(16, 16, 16, 16, 24), embedding_dims=(12, 12)
    )
    v = random_stats(spec, init_variables(spec, jax.random.key(0)), 0)
    v["params"]["output"]["affine"]["kernel"] = (
        np.random.default_rng(1).normal(size=(12, 5)).astype(np.float32)
    )
    return spec, v


# ---------------------------------------------------------------------------- spec


def test_xvector_1a_spec_is_kaldis_topology():
    spec = xvector_1a_spec(input_dim=30, num_speakers=7000)
    v = init_variables(spec, jax.random.key(0))
    assert jax.tree.map(np.shape, v) == jax.tree.map(
        lambda t: t, variable_shapes(spec), is_leaf=lambda t: isinstance(t, tuple)
    )
    p = v["params"]
    assert p["tdnn1"]["affine"]["kernel"].shape == (150, 512)
    assert p["tdnn2"]["affine"]["kernel"].shape == (1536, 512)
    assert p["tdnn5"]["affine"]["kernel"].shape == (512, 1500)
    assert p["tdnn6"]["affine"]["kernel"].shape == (3000, 512)
    assert p["output"]["affine"]["kernel"].shape == (512, 7000)
    assert spec.contexts()["tdnn5.batchnorm"] == (7, 7)
    assert spec.min_input_frames() == 15
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_init_is_kaldi_like():
    spec = xvector_1a_spec(input_dim=30, num_speakers=10)
    v = init_variables(spec, jax.random.key(3))
    k = np.asarray(v["params"]["tdnn2"]["affine"]["kernel"])
    assert abs(k.std() * math.sqrt(1536) - 1) < 0.02
    assert abs(np.asarray(v["params"]["tdnn2"]["affine"]["bias"]).std() - 1) < 0.15
    assert not np.any(np.asarray(v["params"]["output"]["affine"]["kernel"]))
    assert np.all(np.asarray(v["batch_stats"]["tdnn1"]["batchnorm"]["var"]) == 1)


def test_op_table_covers_each_kaldi_type_once_and_every_op_exports():
    """Every nnet3 type the model imports is a Kaldi ComponentType, claimed by one op; every op
    exports to a type that imports back to it, and has variables iff it writes them back."""
    claimed = [t for op in ops.OPS.values() for t in op.kaldi_types]
    assert len(claimed) == len(set(claimed))
    assert set(claimed) <= set(supported_types())
    for op in ops.OPS.values():
        assert op.kaldi_types and op.from_kaldi and op.apply and op.kaldi_config, op.name
        assert (op.param_shapes is None) == (op.init_params is None), op.name
        has_variables = op.param_shapes is not None or op.init_stats is not None
        assert has_variables == (op.to_kaldi is not None), op.name
    with pytest.raises(XvjaxError, match="unknown op 'gelu'"):
        ops.op_of(dataclasses.replace(xvector_1a_spec(num_speakers=3).nodes[0], op="gelu"))


# ---------------------------------------------------------------------------- layers


def test_tdnn_conv_equals_explicit_splice():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 20, 3)), jnp.float32)
    for offs in [(-2, 0, 2), (-1, 0, 1, 2), (0,), (-3, 1), (1, -1)]:
        kernel = jnp.asarray(rng.normal(size=(3 * len(offs), 4)), jnp.float32)
        y = layers.tdnn_affine(x, kernel, None, offs)
        lo = min(offs)
        T = 20 - (max(offs) - lo)
        want = np.stack(
            [np.concatenate([x[:, t - lo + o] for o in offs], -1) @ kernel for t in range(T)], 1
        )
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def _batchnorm_train_autodiff(x, mask, block_dim, epsilon, target_rms):
    """Training batch norm written plainly, for autodiff (the reference of the hand-written vjp)."""
    xb = x.reshape(*x.shape[:-1], -1, block_dim)
    m = jnp.ones(x.shape[:-1], x.dtype) if mask is None else mask.astype(x.dtype)
    m = jnp.broadcast_to(m[..., None, None], xb.shape[:-1] + (1,))
    axes = tuple(range(xb.ndim - 1))
    count = jnp.sum(m)
    mean = jnp.sum(xb * m, axis=axes) / count
    var = jnp.maximum(jnp.sum(jnp.square(xb) * m, axis=axes) / count - jnp.square(mean), 0.0)
    y = (xb - mean) * target_rms * jax.lax.rsqrt(var + epsilon)
    return y.reshape(x.shape), mean, var, count


@pytest.mark.parametrize(
    "shape,block_dim,masked", [((4, 7, 12), 12, False), ((4, 7, 12), 4, True), ((5, 6), 3, True)]
)
def test_batchnorm_train_gradient_is_autodiffs(shape, block_dim, masked):
    """The hand-written backward of training batch norm equals autodiff of its formula (float64),
    for all three differentiable outputs, padded frames and blocks smaller than the dim."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=shape) + 2.0)
        mask = jnp.asarray(rng.random(shape[:-1]) > 0.3) if masked else None
        g_y, g_mean, g_var = (
            jnp.asarray(rng.normal(size=s)) for s in (shape, block_dim, block_dim)
        )

        def loss(fn):
            def f(x):
                y, mean, var, _ = fn(x, mask, block_dim, 1e-3, 0.7)
                return jnp.sum(y * g_y) + jnp.sum(mean * g_mean) + jnp.sum(var * g_var)

            return f

        want = _batchnorm_train_autodiff(x, mask, block_dim, 1e-3, 0.7)
        got = layers.batchnorm_train(x, mask, block_dim, 1e-3, 0.7)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            jax.grad(loss(layers.batchnorm_train))(x),
            jax.grad(loss(_batchnorm_train_autodiff))(x),
            rtol=1e-10,
            atol=1e-12,
        )


@pytest.mark.parametrize("d_in,d_out", [(3, 5), (5, 3)])
def test_frames_matmul_gradient_is_autodiffs(d_in, d_out):
    """The hand-written backward of the frame-level matmul (either operand transposed for the
    kernel gradient, whichever is narrower) equals autodiff of `x @ kernel`."""
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(2, 7, d_in)))
        kernel = jnp.asarray(rng.normal(size=(d_in, d_out)))
        g = jnp.asarray(rng.normal(size=(2, 7, d_out)))
        got = jax.vjp(layers.frames_matmul, x, kernel)[1](g)
        want = jax.vjp(lambda a, b: a @ b, x, kernel)[1](g)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def kaldi_pool_reference(x, n_valid_start, ext, pool):
    """Brute-force Kaldi StatisticsExtraction + StatisticsPooling at output t=0 (float64).

    x: (T, D) frames at times n_valid_start .. n_valid_start+T-1 (all computable).
    """
    avail = {n_valid_start + j: x[j] for j in range(len(x))}
    cnt, s1, s2 = 0.0, 0.0, 0.0
    for tau in range(-pool["left_context"], pool["right_context"] + 1, pool["input_period"]):
        t0 = (tau // ext["output_period"]) * ext["output_period"]
        for t in range(t0, t0 + ext["output_period"], ext["input_period"]):
            if t in avail:
                cnt += 1
                s1 = s1 + avail[t]
                s2 = s2 + avail[t] ** 2
    mean = s1 / cnt
    std = np.sqrt(np.maximum(s2 / cnt - mean**2, pool["variance_floor"]))
    return np.concatenate([np.full(pool["num_log_count_features"], np.log(cnt)), mean, std])


@pytest.mark.parametrize(
    "periods,lc,rc,nlc,start",
    [((1, 1, 1), 0, 10000, 0, 7), ((2, 2, 2), 0, 10000, 0, 8), ((1, 3, 3), 6, 12, 2, -3)],
)
def test_stats_pooling_matches_kaldi_index_logic(periods, lc, rc, nlc, start):
    in_p, out_p, pool_p = periods
    ext = {"input_period": in_p, "output_period": out_p, "include_variance": True}
    pool = {
        "input_period": pool_p,
        "left_context": lc,
        "right_context": rc,
        "num_log_count_features": nlc,
        "output_stddevs": True,
        "variance_floor": 1e-10,
    }
    x = np.random.default_rng(1).normal(size=(30, 4)).astype(np.float64)
    w = layers.pooling_frame_weights(ext, pool, start, 30)
    want_w = np.zeros(30)  # brute force: which input times each pooled tau's extraction reads
    for tau in range(-lc, rc + 1, pool_p):
        t0 = (tau // out_p) * out_p
        for t in range(t0, t0 + out_p, in_p):
            if start <= t < start + 30:
                want_w[t - start] += 1
    np.testing.assert_array_equal(w, want_w)
    got = layers.stats_pool(jnp.asarray(x[None], jnp.float32), jnp.asarray(w[None]), ext, pool)
    np.testing.assert_allclose(got[0], kaldi_pool_reference(x, start, ext, pool), rtol=2e-5)


# ---------------------------------------------------------------------------- masking / BN


def test_num_frames_masks_padding_exactly(tiny):
    spec, v = tiny
    model = XVector(spec)
    apply = jax.jit(model.apply, static_argnames=("output_node",))
    rng = np.random.default_rng(2)
    lens = [17, 40, 64]
    x = np.zeros((3, 64, 23), np.float32)
    for i, n in enumerate(lens):
        x[i, :n] = rng.normal(size=(n, 23))
        x[i, n:] = 100.0  # garbage padding must not leak
    for node in ("tdnn6.affine", "output"):
        y = apply(v, x, output_node=node, num_frames=np.array(lens))
        for i, n in enumerate(lens):
            alone = apply(v, x[i : i + 1, :n], output_node=node)
            np.testing.assert_allclose(y[i], alone[0], rtol=1e-5, atol=1e-5)


def test_batched_extraction_equals_one_by_one(tiny):
    spec, v = tiny
    rng = np.random.default_rng(3)
    feats = [
        (f"u{i}", rng.normal(size=(n, 23)).astype(np.float32))
        for i, n in enumerate([15, 31, 100, 260, 18, 97])
    ]
    ex = Extractor(spec, v, batch_size=4)
    batched = dict(extract_xvectors(spec, v, feats, chunk_size=50, min_chunk_size=20, extractor=ex))
    apply = jax.jit(XVector(spec).apply, static_argnames=("output_node",))
    for utt, mat in feats:
        chunks = plan_chunks(len(mat), 50, 20, True)
        ys = []
        for c in chunks:
            sub = mat[c.start : c.start + c.length]
            sub = np.concatenate(
                [sub[:1].repeat(c.pad_left, 0), sub, sub[-1:].repeat(c.pad_right, 0)]
            )
            ys.append(np.asarray(apply(v, sub[None], output_node="tdnn6.affine"))[0])
        w = np.array([c.length for c in chunks], np.float64)
        want = (w @ np.array(ys, np.float64)) / w.sum()
        np.testing.assert_allclose(batched[utt], want, rtol=1e-5, atol=1e-5)
    assert len(ex.shapes) <= 4  # bucketed: few compilations


def test_train_mode_batchnorm_and_frozen_layers(tiny):
    spec, v = tiny
    model = XVector(spec)
    x = np.random.default_rng(4).normal(size=(4, 40, 23)).astype(np.float32)
    out, upd = model.apply(
        v, x, train=True, frozen_bn=("tdnn1", "tdnn6.batchnorm"), mutable=["batch_stats"]
    )
    assert out.shape == (4, 5)
    new = upd["batch_stats"]
    for frozen in ("tdnn1", "tdnn6"):
        for key in ("mean", "var", "count"):
            np.testing.assert_array_equal(
                new[frozen]["batchnorm"][key], v["batch_stats"][frozen]["batchnorm"][key]
            )
    # tdnn2's update is the EMA towards the minibatch moments of its (ReLU) input.
    h = model.apply(
        v, x, train=True, output_node="tdnn2.relu", frozen_bn=("tdnn1",), mutable=["batch_stats"]
    )[0]
    h = np.asarray(h, np.float64).reshape(-1, 16)
    m = spec.bn_momentum
    old = v["batch_stats"]["tdnn2"]["batchnorm"]
    np.testing.assert_allclose(
        new["tdnn2"]["batchnorm"]["mean"], m * old["mean"] + (1 - m) * h.mean(0), rtol=1e-5
    )
    np.testing.assert_allclose(
        new["tdnn2"]["batchnorm"]["var"], m * old["var"] + (1 - m) * h.var(0), rtol=1e-4
    )
    assert new["tdnn2"]["batchnorm"]["count"] == old["count"] + h.shape[0]
    # Training-mode output of a BN layer is normalised by the minibatch statistics.
    y = model.apply(
        v,
        x,
        train=True,
        output_node="tdnn2.batchnorm",
        frozen_bn=("tdnn1",),
        mutable=["batch_stats"],
    )[0]
    want = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-3)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 16), want, rtol=1e-4, atol=1e-4)


def test_resize_output(tiny):
    spec, v = tiny
    s2, v2 = resize_output(spec, v, 9, jax.random.key(1))
    assert s2.output_dim("output") == 9 and spec.output_dim("output") == 5
    assert not np.any(v2["params"]["output"]["affine"]["kernel"])
    assert v2["params"]["tdnn1"] is v["params"]["tdnn1"] or np.array_equal(
        v2["params"]["tdnn1"]["affine"]["kernel"], v["params"]["tdnn1"]["affine"]["kernel"]
    )
    s3, v3 = resize_output(spec, v, 300, jax.random.key(1), param_stddev=0.5, bias_stddev=0.1)
    k = np.asarray(v3["params"]["output"]["affine"]["kernel"])
    assert k.shape == (12, 300) and abs(k.std() - 0.5) < 0.03
    y = XVector(s3).apply(v3, np.zeros((1, 30, 23), np.float32))
    assert y.shape == (1, 300)


# ---------------------------------------------------------------------------- chunking


def test_plan_chunks_is_kaldis():
    assert plan_chunks(324, 100, 25) == [
        Chunk(0, 100, 0, 0),
        Chunk(100, 100, 0, 0),
        Chunk(200, 100, 0, 0),
        Chunk(300, 24, 0, 1),
    ]
    assert plan_chunks(10, -1, 100) == [Chunk(0, 10, 45, 45)]
    assert plan_chunks(10, -1, 25) == [Chunk(0, 10, 7, 8)]
    assert plan_chunks(250, 10000, 25) == [Chunk(0, 250, 0, 0)]
    assert plan_chunks(230, 100, 50, pad_input=False) == [
        Chunk(0, 100, 0, 0),
        Chunk(100, 100, 0, 0),
    ]
    with pytest.raises(ValueError, match="zero-length"):
        plan_chunks(0)
    with pytest.raises(ValueError, match="minimum chunk size"):
        plan_chunks(20, -1, 25, pad_input=False)
    assert [bucket_length(n) for n in (1, 16, 17, 25, 33, 64, 65, 100, 300, 3000, 10000)] == [
        16, 16, 24, 32, 48, 64, 80, 112, 320, 3072, 10240,
    ]  # fmt: skip


# ---------------------------------------------------------------------------- round trips


def test_checkpoint_round_trip_and_load_any(tiny, tmp_path, kaldi_fixtures):
    spec, v = tiny
    save_model(tmp_path / "m", spec, v)
    s2, v2 = load_model(tmp_path / "m")
    assert s2 == spec
    jax.tree.map(np.testing.assert_array_equal, v, v2)
    s3, _ = load_any(tmp_path / "m")
    assert s3 == spec
    s4, v4 = load_any(str(kaldi_fixtures / "nnet3/small/final.txt"))
    assert s4.input_dim == 30 and "tdnn7.affine" in s4.node_names()
    with pytest.raises(FileNotFoundError):  # fails after the variables were written
        save_model(tmp_path / "n", spec, v, nnet_template_path=tmp_path / "missing.raw")
    assert not (tmp_path / "n").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp dirs left behind
    with pytest.raises(XvjaxError, match="no such file"):
        load_any(tmp_path / "missing.raw")


CONTEXTS = [(-2, -1, 0, 1, 2), (-2, 0, 2), (-3, 0, 3), (0,), (-1, 0, 1), (-4, 0, 4)]


@st.composite
def topologies(draw):
    n_frame = draw(st.integers(1, 4))
    frame_dims = tuple(draw(st.lists(st.integers(3, 9), min_size=n_frame, max_size=n_frame)))
    ctx = tuple(draw(st.sampled_from(CONTEXTS)) for _ in range(n_frame))
    emb = tuple(draw(st.lists(st.integers(2, 7), min_size=1, max_size=2)))
    period = draw(st.sampled_from([1, 2]))
    spec = xvector_1a_spec(
        input_dim=draw(st.sampled_from([23, 30])),
        num_speakers=draw(st.integers(2, 6)),
        frame_dims=frame_dims,
        frame_contexts=ctx,
        embedding_dims=emb,
        stats_config=(0, period, period, 10000),
    )
    return spec, draw(st.integers(0, 10**6)), draw(st.booleans())


def structure(spec: ModelSpec):
    return [(n.name, n.op, n.inputs, n.dim, n.attrs) for n in spec.nodes], spec.outputs


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(topologies())
def test_random_topologies_round_trip(example):
    spec, seed, binary = example
    v = random_stats(spec, init_variables(spec, jax.random.key(seed)), seed)
    raw1 = flax_to_nnet3(spec, v, None).to_bytes(binary=binary)  # built as xconfig would
    nnet1 = Nnet.from_bytes(raw1)
    s1, v1 = nnet3_to_flax(nnet1)
    assert structure(s1) == structure(spec)
    jax.tree.map(np.testing.assert_array_equal, v["params"], v1["params"]) if binary else None
    raw2 = flax_to_nnet3(s1, v1, nnet1).to_bytes(binary=binary)
    assert raw2 == nnet1.to_bytes(binary=binary)  # nothing but the weights was touched
    s2, v2 = nnet3_to_flax(Nnet.from_bytes(raw2))
    assert s2 == s1
    jax.tree.map(np.testing.assert_array_equal, v1["params"], v2["params"])
    # Kaldi stores BN stats as sums: each read/write cycle may move them by float32 rounding.
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=3e-6)
    jax.tree.map(close, v1["batch_stats"], v2["batch_stats"])
    # The imported network computes what the original one does.
    x = np.random.default_rng(seed).normal(
        size=(1, spec.min_input_frames("output") + 4, spec.input_dim)
    )
    x = x.astype(np.float32)
    y0 = jax.jit(lambda v, x: XVector(spec).apply(v, x, output_node="output"))(v, x)
    y1 = jax.jit(lambda v, x: XVector(s1).apply(v, x, output_node="output"))(v1, x)
    np.testing.assert_allclose(y0, y1, rtol=1e-4, atol=1e-4)


def test_spec_replace_keeps_json_round_trip(tiny):
    spec, _ = tiny
    s = dataclasses.replace(spec, bn_momentum=0.9)
    assert ModelSpec.from_json(s.to_json()) == s and s != spec


RICH_CONFIG = """
input-node name=input dim=6
component name=tdnn1.affine type=TdnnComponent input-dim=6 output-dim=5 time-offsets=-1,0,1
component-node name=tdnn1.affine component=tdnn1.affine input=input
component name=tdnn1.relu type=RectifiedLinearComponent dim=5
component-node name=tdnn1.relu component=tdnn1.relu input=tdnn1.affine
component name=tdnn1.dropout type=GeneralDropoutComponent dim=5 dropout-proportion=0.0
component-node name=tdnn1.dropout component=tdnn1.dropout input=tdnn1.relu
component name=tdnn2.affine type=NaturalGradientAffineComponent input-dim=11 output-dim=4
component-node name=tdnn2.affine component=tdnn2.affine input=Append(Offset(tdnn1.dropout, -2), Offset(input, 1))
component name=tdnn2.scale type=ScaleAndOffsetComponent dim=4
component-node name=tdnn2.scale component=tdnn2.scale input=tdnn2.affine
component name=tdnn2.noop type=NoOpComponent dim=4
component-node name=tdnn2.noop component=tdnn2.noop input=tdnn2.scale
component name=stats-extraction-0-10000 type=StatisticsExtractionComponent input-dim=4 input-period=1 output-period=1 include-variance=true
component-node name=stats-extraction-0-10000 component=stats-extraction-0-10000 input=tdnn2.noop
component name=stats-pooling-0-10000 type=StatisticsPoolingComponent input-dim=9 input-period=1 left-context=0 right-context=10000 num-log-count-features=1 output-stddevs=true
component-node name=stats-pooling-0-10000 component=stats-pooling-0-10000 input=stats-extraction-0-10000
component name=tdnn3.affine type=LinearComponent input-dim=9 output-dim=3
component-node name=tdnn3.affine component=tdnn3.affine input=Round(stats-pooling-0-10000, 1)
output-node name=output input=tdnn3.affine
"""


def test_rich_graph_tdnn_component_skip_connection_and_reference():
    nnet = Nnet()
    nnet.apply_config(RICH_CONFIG, rng=5)
    spec, v = nnet3_to_flax(nnet)
    assert spec.node("tdnn1.affine").inputs == (("input", -1), ("input", 0), ("input", 1))
    assert spec.node("tdnn3.affine").op == "linear"
    assert spec.contexts()["tdnn2.noop"] == (3, 1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 12, 6)).astype(np.float32)
    scales = rng.uniform(0.5, 2, 4).astype(np.float32)
    v["params"]["tdnn2"]["scale"] = {"scales": scales, "offsets": np.full(4, 0.3, np.float32)}
    y = np.asarray(XVector(spec).apply(v, x, output_node="output"))[0]
    # Brute force in Kaldi's time indexing: tdnn1 at t needs input t-1..t+1 (t in 1..10);
    # tdnn2 at t needs tdnn1(t-2) and input(t+1): t in 3..10.
    c = nnet.components
    w1, b1 = c["tdnn1.affine"].params["linear"], c["tdnn1.affine"].params["bias"]
    h1 = {
        t: np.maximum(0, w1 @ np.concatenate([x[0, t - 1], x[0, t], x[0, t + 1]]) + b1)
        for t in range(1, 11)
    }
    w2, b2 = c["tdnn2.affine"].params["linear"], c["tdnn2.affine"].params["bias"]
    h2 = np.array(
        [(w2 @ np.concatenate([h1[t - 2], x[0, t + 1]]) + b2) * scales + 0.3 for t in range(3, 11)],
        np.float64,
    )
    mean, std = h2.mean(0), h2.std(0)
    pooled = np.concatenate([[np.log(len(h2))], mean, std])
    want = c["tdnn3.affine"].params["linear"] @ pooled
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    # Round trip through the exporter keeps structure and weights.
    back = flax_to_nnet3(spec, v, nnet)
    s2, v2 = nnet3_to_flax(Nnet.from_bytes(back.to_bytes(binary=True)))
    assert s2 == spec
    jax.tree.map(np.testing.assert_array_equal, v["params"], v2["params"])
    scratch = flax_to_nnet3(spec, v, None)
    s3, _ = nnet3_to_flax(Nnet.from_bytes(scratch.to_bytes(binary=False)))
    assert structure(s3) == structure(spec)


def test_recompute_batch_stats_accumulates_like_kaldi(tiny):
    spec, v = tiny
    rng = np.random.default_rng(7)
    batches = [rng.normal(size=(3, 30, 23)).astype(np.float32) for _ in range(2)]
    new = recompute_batch_stats(spec, v, batches)
    # tdnn1's BN input does not depend on other BN layers: exact pooled moments of its input.
    h = np.concatenate(
        [
            np.asarray(XVector(spec).apply(v, b, output_node="tdnn1.relu"), np.float64).reshape(
                -1, 16
            )
            for b in batches
        ]
    )
    st = new["batch_stats"]["tdnn1"]["batchnorm"]
    assert st["count"] == h.shape[0]
    np.testing.assert_allclose(st["mean"], h.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st["var"], h.var(0), rtol=1e-4, atol=1e-6)
    assert new["params"] is v["params"]


def test_pooling_window_stops_at_right_context_10000(tiny):
    """Kaldi pools t' in [0, 10000] only: frames past 10000 + 7 never change the x-vector."""
    spec, v = tiny
    x = np.random.default_rng(8).normal(size=(1, 10040, 23)).astype(np.float32)
    apply = jax.jit(lambda v, x: XVector(spec).apply(v, x, output_node="tdnn6.affine"))
    long = apply(v, x)
    cut = apply(v, x[:, : 10001 + 7])  # last computable frame 10000
    shorter = apply(v, x[:, : 10000 + 7])  # last computable frame 9999
    np.testing.assert_allclose(long, cut, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(long) - np.asarray(shorter)).max() > 1e-6


def test_training_gradients_flow_to_every_layer(tiny):
    spec, v = tiny
    model = XVector(spec)
    x = np.random.default_rng(9).normal(size=(4, 40, 23)).astype(np.float32)
    labels = np.array([0, 1, 2, 3])

    def loss(params):
        logp, _ = model.apply(
            {"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
            mutable=["batch_stats"],
        )  # fmt: skip
        return -jnp.mean(logp[jnp.arange(4), labels])

    grads = jax.jit(jax.grad(loss))(v["params"])
    for layer, subs in grads.items():
        for sub, g in subs.items():
            assert np.all(np.isfinite(g["kernel"])) and np.abs(g["kernel"]).max() > 0, (layer, sub)
