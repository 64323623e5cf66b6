"""The jitted train step on a tiny x-vector net: freezing (params + BN stats), bf16, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import XVector, init_variables
from xvjax.train import optim
from xvjax.train import step as step_lib
from xvjax.train.state import create_train_state

FEAT_DIM, NUM_SPK, BATCH, FRAMES = 8, 5, 8, 30


@pytest.fixture(scope="module")
def tiny():
    spec = xvector_1a_spec(
        input_dim=FEAT_DIM,
        num_speakers=NUM_SPK,
        frame_dims=(16, 16, 16, 16, 32),
        embedding_dims=(16, 16),
    )
    variables = init_variables(spec, jax.random.key(0))
    # a non-zero output layer so every layer gets gradient from the first step
    variables["params"]["output"]["affine"]["kernel"] = 0.1 * jax.random.normal(
        jax.random.key(1), variables["params"]["output"]["affine"]["kernel"].shape
    )
    rng = np.random.default_rng(0)
    means = rng.normal(size=(NUM_SPK, FEAT_DIM)).astype(np.float32)
    batches = []
    for _ in range(4):
        labels = rng.integers(0, NUM_SPK, BATCH).astype(np.int32)
        feats = means[labels][:, None, :] + rng.normal(size=(BATCH, FRAMES, FEAT_DIM)).astype(
            np.float32
        )
        batches.append({"feats": feats.astype(np.float32), "labels": labels})
    return spec, variables, batches


def _cfg(**kw):
    from xvjax.train.config import base_config

    c = base_config().optim
    c.update({"initial_lr": 0.05, "final_lr": 0.01, **kw})
    return c


def _run(spec, variables, batches, cfg, compute_dtype=jnp.float32, steps=3, no_frozen_grad=True):
    mesh = step_lib.make_mesh()
    opt = optim.make_optimizer(cfg, variables["params"], 10)
    frozen_bn = opt.plan.frozen if cfg.freeze_bn else ()
    state = step_lib.replicate(create_train_state(variables, opt.tx, 0), mesh)
    frozen = opt.plan.frozen if no_frozen_grad else ()
    fn = step_lib.make_train_step(
        XVector(spec).apply, opt.tx, mesh, frozen_bn, compute_dtype, frozen_params=frozen
    )
    losses = []
    for b in batches[:steps]:
        state, m = fn(state, step_lib.shard_batch(b, mesh))
        losses.append(float(m["loss"]))
    return opt, jax.device_get(state), losses


def _same(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.parametrize("kw", [dict(freeze="tdnn[1-5]"), dict(train_only="tdnn7,output")])
def test_frozen_params_and_bn_stats_bit_identical(tiny, kw):
    spec, variables, batches = tiny
    opt, state, _ = _run(spec, variables, batches, _cfg(**kw))
    frozen = set(opt.plan.frozen)
    assert frozen and len(frozen) < 8
    for layer in variables["params"]:
        same = _same(variables["params"][layer], state.params[layer])
        assert same == (layer in frozen), layer
    for layer in variables["batch_stats"]:
        same = _same(variables["batch_stats"][layer], state.batch_stats[layer])
        assert same == (layer in frozen), layer
    # no optimizer state for frozen layers: state size equals trained params (+ counters)
    n_state = sum(np.size(x) for x in jax.tree.leaves(state.opt_state))
    n_trained = sum(np.size(x) for k in opt.plan.trained for x in jax.tree.leaves(state.params[k]))
    assert n_trained <= n_state <= n_trained + 4


def test_frozen_layers_get_no_backward_pass_and_the_same_step(tiny):
    """With the optimizer's frozen layers as `frozen_params` the step skips the backward pass
    below them (fewer FLOPs in XLA's count) and trains the other layers exactly as before."""
    spec, variables, batches = tiny
    cfg = _cfg(freeze="tdnn[1-5]")
    _, state, losses = _run(spec, variables, batches, cfg)
    _, state_all, losses_all = _run(spec, variables, batches, cfg, no_frozen_grad=False)
    np.testing.assert_allclose(losses, losses_all, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_all.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)

    mesh = step_lib.make_mesh()
    opt = optim.make_optimizer(cfg, variables["params"], 10)
    state0 = step_lib.replicate(create_train_state(variables, opt.tx, 0), mesh)
    batch = step_lib.shard_batch(batches[0], mesh)

    def flops(frozen):
        fn = step_lib.make_train_step(XVector(spec).apply, opt.tx, mesh, opt.plan.frozen,
                                      donate=False, frozen_params=frozen)  # fmt: skip
        cost = fn.lower(state0, batch).compile().cost_analysis()
        return float((cost[0] if isinstance(cost, list) else cost)["flops"])

    assert flops(opt.plan.frozen) < 0.7 * flops(())


def test_bn_stats_update_when_not_frozen(tiny):
    spec, variables, batches = tiny
    cfg = _cfg(freeze="tdnn[1-5]", freeze_bn=False)
    opt, state, _ = _run(spec, variables, batches, cfg)
    assert _same(variables["params"]["tdnn1"], state.params["tdnn1"])
    assert not _same(variables["batch_stats"]["tdnn1"], state.batch_stats["tdnn1"])


def test_loss_decreases_and_bf16_compute(tiny):
    spec, variables, batches = tiny
    cfg = _cfg(
        optimizer="adam",
        initial_lr=0.01,
        final_lr=0.01,
        schedule="constant",
        max_change=0.0,
        max_param_change=0.0,
    )
    cfg.freeze = "tdnn[1-2]"  # frozen BN layers (test mode, stored stats) must work in bf16 too
    batches8 = batches * 2
    _, state32, losses = _run(spec, variables, batches8, cfg, steps=8)
    assert losses[-1] < losses[0]
    _, state16, losses16 = _run(spec, variables, batches8, cfg, jnp.bfloat16, steps=8)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state16.params))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state16.batch_stats))
    np.testing.assert_allclose(losses16[0], losses[0], rtol=0.02)  # same first forward pass
    assert losses16[-1] < losses16[0]


def test_a_non_finite_batch_changes_nothing_but_the_step(tiny):
    spec, variables, batches = tiny
    cfg = _cfg(freeze_bn=False)
    mesh = step_lib.make_mesh()
    opt = optim.make_optimizer(cfg, variables["params"], 10)
    fn = step_lib.make_train_step(XVector(spec).apply, opt.tx, mesh, donate=False)
    state = step_lib.replicate(create_train_state(variables, opt.tx, 0), mesh)
    state, m = fn(state, step_lib.shard_batch(batches[0], mesh))  # momentum buffers non-zero
    assert bool(m["finite"])
    bad = dict(batches[1], feats=batches[1]["feats"].copy())
    bad["feats"][3, 7, 2] = np.nan
    after, m = fn(state, step_lib.shard_batch(bad, mesh))
    assert not bool(m["finite"]) and np.isnan(float(m["loss"]))
    assert int(after.step) == int(state.step) + 1
    for name in ("params", "batch_stats", "opt_state"):
        assert _same(getattr(state, name), getattr(after, name)), name
