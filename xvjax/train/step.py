"""The training step: pure function, jitted once over a data-parallel device mesh.

    mesh = make_mesh()                                   # all devices of all processes, axis "data"
    step = make_train_step(model.apply, tx, mesh, frozen_bn=("tdnn1", ...),
                           tapped_affines=("tdnn6.affine", ...),      # NG-SGD: see optim
                           frozen_params=optimizer.plan.frozen)       # no backward below them
    state = replicate(state, mesh)
    state, metrics = step(state, shard_batch({"feats": x, "labels": y}, mesh))
    moments = make_batch_moments(spec, mesh, frozen_bn)              # BN stats of a minibatch
    moments(state.variables, shard_batch({"feats": x}, mesh)["feats"])

The batch is split over the "data" axis (`NamedSharding(mesh, P("data"))`), the state is replicated
(`P()`). Under `jax.jit` with these shardings the model code is written for the global batch: the
BatchNorm minibatch mean/variance and the gradient are reductions over the global batch, so XLA inserts
the cross-device (and cross-host) all-reduces; a sharded step computes the same numbers as one device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from xvjax.errors import XvjaxError
from xvjax.model.xvector import AffineTaps, batch_moments
from xvjax.train.state import TrainState

DATA_AXIS = "data"
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """1-D data-parallel mesh over all (global) devices."""
    devices = list(devices) if devices is not None else jax.devices()
    return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh) -> Any:
    """Copies every leaf onto all devices of the mesh (works across processes).

    Always a fresh buffer (`may_alias=False`), so donating the result never deletes `tree`.
    """
    sharding = replicated(mesh)

    def put(x):
        if jax.process_count() == 1:
            return jax.device_put(x, sharding, may_alias=False)
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(put, tree)


def shard_batch(batch: Mapping[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """This process's rows of the global batch -> global arrays split over the "data" axis."""
    sharding = data_sharded(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }


def cross_entropy(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """log_probs: (batch, num_speakers) log-softmax; labels: (batch,) int -> mean NLL."""
    one_hot = jax.nn.one_hot(labels, log_probs.shape[-1], dtype=log_probs.dtype)
    return -jnp.mean(jnp.sum(one_hot * log_probs, axis=-1))


def compute_dtype(name: str) -> Any:
    """The dtype `config.train.compute_dtype` names (float32 or bfloat16)."""
    if name not in COMPUTE_DTYPES:
        raise XvjaxError(f"train.compute_dtype must be float32 or bfloat16, got {name}")
    return COMPUTE_DTYPES[name]


def _cast(tree, dtype):
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    *,
    apply_fn: Callable[..., Any],
    tx: optax.GradientTransformation,
    frozen_bn: tuple[str, ...] = (),
    compute_dtype: Any = jnp.float32,
    tapped_affines: tuple[str, ...] = (),
    frozen_params: tuple[str, ...] = (),
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on batch {"feats": (B, T, F), "labels": (B,)}; returns (state, metrics).

    Params stay float32; with `compute_dtype=bfloat16` the forward/backward pass runs on bf16 copies
    (the loss, the update and the BatchNorm statistics are float32). BatchNorm layers in `frozen_bn`
    run in test mode and keep their statistics. A step whose loss, gradient or new optimizer state
    is not finite changes nothing but the step counter and reports `metrics["finite"] = False` (the
    loop stops on it). For natural-gradient SGD, the affine nodes `tapped_affines` give `tx.update`
    their input rows and output derivatives (`affine_inputs=`, `affine_out_derivs=`). Layers in
    `frozen_params` (the optimizer's frozen layers) get no gradient: their parameters enter the
    loss as constants, so the backward pass stops above them (zero gradients, as the optimizer
    would zero their updates anyway).
    """
    feats, labels = batch["feats"], batch["labels"]
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    # Frozen BatchNorm layers normalise with their stored statistics: in bf16 mode those are cast
    # too (else they would promote the activations back to f32); trained layers keep f32 stats, so
    # their running averages are accumulated in f32.
    stats = dict(state.batch_stats)
    if compute_dtype != jnp.float32:
        for layer in frozen_bn:
            if layer in stats:
                stats[layer] = _cast(stats[layer], compute_dtype)

    def forward(params, taps):
        variables = {"params": _cast(params, compute_dtype), "batch_stats": stats}
        return apply_fn(
            variables,
            feats.astype(compute_dtype),
            train=True,
            frozen_bn=frozen_bn,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_key},
            affine_taps=taps,
        )

    def loss_fn(params, perturbations):
        # Frozen lower layers as constants: without this the backward pass would still run down
        # through them (their zeroed gradients are computed, and checked for finiteness below).
        params = {
            k: jax.lax.stop_gradient(v) if k in frozen_params else v for k, v in params.items()
        }
        taps = AffineTaps(tapped_affines, perturbations) if tapped_affines else None
        log_probs, new_vars = forward(params, taps)
        log_probs = log_probs.astype(jnp.float32)
        inputs = taps.inputs if taps else {}
        return cross_entropy(log_probs, labels), (
            log_probs,
            new_vars.get("batch_stats", {}),
            inputs,
        )

    perturbations: dict[str, jax.Array] = {}
    if tapped_affines:  # zeros shaped like the tapped outputs (a shape-only pass)
        probe = AffineTaps(tapped_affines)
        jax.eval_shape(lambda params: forward(params, probe), state.params)
        perturbations = {n: jnp.zeros(s, compute_dtype) for n, s in probe.output_shapes.items()}
    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    (loss, (log_probs, new_stats, inputs)), (grads, out_derivs) = grad_fn(
        state.params, perturbations
    )
    taps = {"affine_inputs": inputs, "affine_out_derivs": out_derivs} if tapped_affines else {}
    updates, opt_state = tx.update(grads, state.opt_state, state.params, **taps)
    params = optax.apply_updates(state.params, updates)
    new_stats = jax.tree.map(
        lambda new, old: new.astype(old.dtype), dict(new_stats), dict(state.batch_stats)
    )
    for layer in frozen_bn:  # frozen statistics stay bit-identical whatever the model returns
        if layer in state.batch_stats:
            new_stats[layer] = state.batch_stats[layer]
    accuracy = jnp.mean((jnp.argmax(log_probs, axis=-1) == labels).astype(jnp.float32))
    state_floats = [x for x in jax.tree.leaves(opt_state) if jnp.issubdtype(x.dtype, jnp.floating)]
    finite = (
        jnp.isfinite(loss)
        & jnp.isfinite(optax.tree.norm(grads))
        & jnp.isfinite(optax.tree.norm(state_floats))
    )
    metrics = {
        "loss": loss,
        "accuracy": accuracy,
        "update_norm": optax.tree.norm(updates),
        "finite": finite,
    }
    # A nan/inf batch must not reach the weights, the BatchNorm statistics or the optimizer state.
    keep = lambda new, old: jnp.where(finite, new, old)
    new_state = state.replace(
        step=state.step + 1,
        params=jax.tree.map(keep, params, state.params),
        batch_stats=jax.tree.map(keep, new_stats, dict(state.batch_stats)),
        opt_state=jax.tree.map(keep, opt_state, state.opt_state),
    )
    return new_state, metrics


def make_train_step(
    apply_fn: Callable[..., Any],
    tx: optax.GradientTransformation,
    mesh,
    frozen_bn: Sequence[str] = (),
    compute_dtype: Any = jnp.float32,
    donate: bool = True,
    tapped_affines: Sequence[str] = (),
    frozen_params: Sequence[str] = (),
):
    """`train_step` jitted over `mesh`: state replicated, batch split on its leading axis."""
    step = lambda state, batch: train_step(
        state,
        batch,
        apply_fn=apply_fn,
        tx=tx,
        frozen_bn=tuple(frozen_bn),
        compute_dtype=compute_dtype,
        tapped_affines=tuple(tapped_affines),
        frozen_params=tuple(frozen_params),
    )
    return jax.jit(
        step,
        in_shardings=(replicated(mesh), data_sharded(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
        donate_argnums=(0,) if donate else (),
    )


def make_batch_moments(spec, mesh, frozen_bn: Sequence[str] = ()):
    """`xvjax.model.xvector.batch_moments(spec, variables, feats, frozen_bn)` jitted over `mesh`
    (variables replicated, feats split on the batch axis): the global minibatch's moments."""
    return jax.jit(
        lambda variables, feats: batch_moments(spec, variables, feats, tuple(frozen_bn)),
        in_shardings=(replicated(mesh), data_sharded(mesh)),
        out_shardings=replicated(mesh),
    )
