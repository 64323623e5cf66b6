"""optax transforms of the trainer: freezing by pattern, lr multipliers, Kaldi max-change, schedules."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from xvjax.errors import XvjaxError
from xvjax.model.spec import xvector_1a_spec
from xvjax.train import natural_gradient, optim

LAYERS = ["tdnn1", "tdnn2", "tdnn3", "tdnn4", "tdnn5", "tdnn6", "tdnn7", "output"]


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        name: {
            "affine": {
                "kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
            }
        }
        for name in LAYERS
    }


def _cfg(**kw):
    cfg = ml_collections.ConfigDict(
        dict(
            optimizer="sgd",
            momentum=0.0,
            initial_lr=0.1,
            final_lr=0.1,
            schedule="constant",
            warmup_steps=0,
            weight_decay=0.0,
            freeze="",
            train_only="",
            lr_mults="",
            max_change=0.0,
            max_change_per_layer="",
            max_param_change=0.0,
        )
    )
    cfg.update(kw)
    return cfg


def test_layer_plan_patterns():
    plan = optim.layer_plan(LAYERS, freeze="tdnn[1-5]")
    assert plan.frozen == ("tdnn1", "tdnn2", "tdnn3", "tdnn4", "tdnn5")
    plan = optim.layer_plan(LAYERS, train_only="output")
    assert plan.trained == ("output",)
    plan = optim.layer_plan(LAYERS, freeze="tdnn1,tdnn2", lr_mults="tdnn[6-7]:0.5,output:2")
    assert plan.mults["tdnn6"] == 0.5 and plan.mults["output"] == 2.0 and plan.mults["tdnn3"] == 1
    assert plan.frozen == ("tdnn1", "tdnn2")


@pytest.mark.parametrize(
    "kw",
    [dict(freeze="tdnn9"), dict(train_only="nothing"), dict(lr_mults="xx:1"), dict(freeze=".*")],
)
def test_layer_plan_bad_patterns(kw):
    with pytest.raises(XvjaxError):
        optim.layer_plan(LAYERS, **kw)


def test_frozen_layers_get_zero_update_and_no_state():
    params = _params()
    opt = optim.make_optimizer(_cfg(freeze="tdnn[1-5]", momentum=0.5), params, 10)
    state = opt.tx.init(params)
    # optimizer state (the momentum trace) exists only for the trained layers
    n_state = sum(x.size for x in jax.tree.leaves(state))
    n_trained = sum(
        x.size for k, v in params.items() if k not in opt.plan.frozen for x in jax.tree.leaves(v)
    )
    assert n_state == n_trained + 1  # + the step count of the one trained group's schedule
    grads = jax.tree.map(jnp.ones_like, params)
    upd, _ = opt.tx.update(grads, state, params)
    for layer in LAYERS:
        norm = float(optax.tree.norm(upd[layer]))
        assert (norm == 0.0) == (layer in opt.plan.frozen)


def test_lr_multipliers_scale_updates():
    params = _params()
    opt = optim.make_optimizer(_cfg(lr_mults="output:3"), params, 10)
    grads = jax.tree.map(jnp.ones_like, params)
    upd, _ = opt.tx.update(grads, opt.tx.init(params), params)
    np.testing.assert_allclose(upd["tdnn1"]["affine"]["bias"], -0.1)
    np.testing.assert_allclose(upd["output"]["affine"]["bias"], -0.3, rtol=1e-6)


def test_kaldi_momentum_and_max_change_match_reference():
    """Numpy re-statement of Kaldi's NnetTrainer update over 3 steps."""
    params = _params()
    cfg = _cfg(
        momentum=0.5, max_change=0.75, max_change_per_layer="output:1.5", max_param_change=2.0
    )
    opt = optim.make_optimizer(cfg, params, 10)
    state = opt.tx.init(params)
    rng = np.random.default_rng(3)
    delta = {k: {"affine": {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}} for k in LAYERS}
    for _ in range(3):
        grads = jax.tree.map(
            lambda x: jnp.asarray(rng.normal(scale=5.0, size=x.shape), jnp.float32), params
        )
        upd, state = opt.tx.update(grads, state, params)
        # Kaldi: delta = m*delta + lr*(-grad); factors per component; global cap; apply (1-m)*...
        delta = jax.tree.map(lambda d, g: 0.5 * d - 0.1 * np.asarray(g, np.float64), delta, grads)
        sq = {k: sum(np.sum(x**2) for x in jax.tree.leaves(v)) for k, v in delta.items()}
        factors = {}
        for k in LAYERS:
            cap = 1.5 if k == "output" else 0.75
            n = np.sqrt(sq[k]) * 0.5
            factors[k] = cap / n if n > cap else 1.0
        total = np.sqrt(sum(factors[k] ** 2 * sq[k] for k in LAYERS)) * 0.5
        scale = 0.5 * (2.0 / total if total > 2.0 else 1.0)
        ref = {k: jax.tree.map(lambda d, f=factors[k] * scale: d * f, delta[k]) for k in LAYERS}
        for a, b in zip(jax.tree.leaves(upd), jax.tree.leaves(ref), strict=True):
            np.testing.assert_allclose(np.asarray(a), b, rtol=2e-5, atol=1e-7)
    assert float(optax.tree.norm(upd)) <= 2.0 + 1e-5


def test_max_param_change_skips_non_finite():
    tx = optim.max_param_change(2.0)
    upd, _ = tx.update({"a": {"w": jnp.array([1.0, jnp.inf])}}, tx.init(None))
    np.testing.assert_array_equal(upd["a"]["w"], 0.0)


def test_schedules():
    s = optim.kaldi_exponential_schedule(1e-3, 1e-4, 100)
    np.testing.assert_allclose(float(s(0)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(s(50)), 1e-3 * 0.1**0.5, rtol=1e-5)
    np.testing.assert_allclose(float(s(100)), 1e-4, rtol=1e-5)
    c = optim.make_schedule(
        _cfg(schedule="cosine", initial_lr=1.0, final_lr=0.1, warmup_steps=10), 110
    )
    assert float(c(0)) == 0.0
    np.testing.assert_allclose(float(c(10)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(c(110)), 0.1, rtol=1e-5)
    with pytest.raises(XvjaxError):
        optim.make_schedule(_cfg(schedule="bogus"), 10)


def test_optimizer_jits():
    params = _params()
    opt = optim.make_optimizer(_cfg(optimizer="adam", train_only="tdnn7|output"), params, 10)
    state = opt.tx.init(params)
    upd, _ = jax.jit(opt.tx.update)(jax.tree.map(jnp.ones_like, params), state, params)
    assert float(optax.tree.norm(upd["tdnn1"])) == 0.0
    assert float(optax.tree.norm(upd["output"])) > 0.0


def test_model_learning_rate_factors_seed_the_plan():
    """Kaldi's learning-rate-factor (0 freezes a component) is the starting multiplier."""
    plan = optim.layer_plan(LAYERS, base_mults={"tdnn1": 0.0, "tdnn2": 0.5}, lr_mults="tdnn2:2")
    assert plan.frozen == ("tdnn1",) and plan.mults["tdnn2"] == 1.0
    params = _params()
    opt = optim.make_optimizer(_cfg(), params, 10, model_lr_factors={"tdnn1": 0.0})
    assert opt.plan.frozen == ("tdnn1",)
    cfg = _cfg()
    cfg.use_model_lr_factors = False
    assert optim.make_optimizer(cfg, params, 10, model_lr_factors={"tdnn1": 0.0}).plan.frozen == ()


def test_model_layer_factors_read_from_the_spec():
    """The spec's Kaldi max-change / learning-rate-factor become per-layer caps and multipliers."""
    spec = xvector_1a_spec(
        input_dim=8, num_speakers=5, frame_dims=(16, 16, 16, 16, 32), embedding_dims=(16, 16)
    )
    spec.node("tdnn1.affine").kaldi["learning-rate-factor"] = 0.0
    caps, factors = optim.model_layer_factors(spec)
    assert caps == {**{name: 0.75 for name in LAYERS[:-1]}, "output": 1.5}
    assert factors == {"tdnn1": 0.0}
    assert optim.make_optimizer(_cfg(), _params(), 10, caps, factors).plan.frozen == ("tdnn1",)


def test_lr_on_summed_objective_scales_the_rates_by_the_batch():
    """Kaldi's rates multiply the gradient of the summed objective: batch_size x the mean's."""
    params, grads = _params(), _params(seed=1)
    upd = {}
    for summed in (False, True):
        cfg = _cfg(momentum=0.5, lr_on_summed_objective=summed)
        opt = optim.make_optimizer(cfg, params, 10, batch_size=64)
        upd[summed], _ = opt.tx.update(grads, opt.tx.init(params), params)
        np.testing.assert_allclose(float(opt.schedule(0)), 0.1)  # the configured rate is logged
    for a, b in zip(jax.tree.leaves(upd[True]), jax.tree.leaves(upd[False]), strict=True):
        np.testing.assert_allclose(a, 64 * b, rtol=1e-6)


def test_ngsgd_preconditions_the_trained_natural_gradient_affines_only():
    spec = xvector_1a_spec(
        input_dim=8, num_speakers=5, frame_dims=(16, 16, 16, 16, 32), embedding_dims=(16, 16)
    )
    spec.node("tdnn7.affine").kaldi["type"] = "AffineComponent"  # Kaldi: plain gradient
    params = _params()
    cfg = _cfg(optimizer="ngsgd", freeze="tdnn[1-5]")
    cfg.natural_gradient = ml_collections.ConfigDict(
        dict(rank_in=20, rank_out=80, update_period=4, num_samples_history=2000.0, alpha=4.0)
    )
    affines = natural_gradient.tapped_affines(spec)
    assert len(affines) == 7  # tdnn7.affine is a plain AffineComponent
    opt = optim.make_optimizer(cfg, params, 10, natural_gradient_affines=affines, batch_size=8)
    assert [a.node for a in opt.tapped] == ["tdnn6.affine", "output.affine"]
    assert opt.tx.init(params)[0].keys() == {"tdnn6", "output"}  # no preconditioner when frozen
    with pytest.raises(XvjaxError, match="ngsgd: no trained layer has a NaturalGradient"):
        optim.make_optimizer(_cfg(optimizer="ngsgd", train_only="tdnn7"), params, 10,
                             natural_gradient_affines=affines)  # fmt: skip
