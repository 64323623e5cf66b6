"""Kaldi's natural-gradient SGD (NG-SGD) as an optax transform: the online preconditioning of
`NaturalGradientAffineComponent` (Povey, Zhang & Khudanpur 2015; Kaldi `nnet3/natural-gradient-online.cc`
and `NaturalGradientAffineComponent::Update` in `nnet3/nnet-simple-component.cc`).

Kaldi does not precondition the summed gradient of an affine layer. For a minibatch with input rows X
(one row per frame the layer computes, with a 1 appended for the bias) and output derivatives O, it
multiplies X and O separately by the inverse of a Fisher-matrix estimate of their own space
(`OnlineNaturalGradient::PreconditionDirections`: a rank-R plus scaled-identity estimate
`F = R^T D R + rho I`, smoothed to `F + alpha/dim tr(F) I`, updated online from every minibatch for the
first 10 and then every `update_period` minibatches, with forgetting factor
`eta = min(1 - exp(-rows / num_samples_history), 0.9)`), rescales each to its old Frobenius norm, and
updates the weights with `lr * scale_in * scale_out * O_hat^T X_hat`.

So this transform needs, besides the gradients, each affine's input rows and output derivatives. The
design: the model's pure forward takes `xvjax.model.xvector.AffineTaps` (flax's `sow` + `perturb` for
a pure function): the tapped affines record their input rows and add a zero perturbation to their
output; the train step differentiates the loss with respect to the parameters and the perturbations
(the latter gradient is the output derivative), then calls

    updates, state = tx.update(grads, state, params,
                               affine_inputs={node: (rows, in_dim)},
                               affine_out_derivs={node: (..., out_dim)})

`natural_gradient` is a `GradientTransformationExtraArgs` that replaces the kernel and bias gradients of
the tapped affines with the preconditioned ones and passes every other gradient through, so it
composes like any optax transform: first in the chain, before the per-layer partition (learning-rate
multipliers, `set_to_zero` for frozen layers, which are never tapped and get no preconditioner
state), Kaldi's max-change and max-param-change:

    tx = optax.chain(natural_gradient(affines, config, derivative_scale=batch_size),
                     optax.partition({...}, labels), max_change_per_layer(...), max_param_change(2.0))

`derivative_scale` turns the derivatives of the mean loss into those of the minibatch sum that Kaldi
preconditions (its floors are absolute, so the scale matters a little) and scales the result back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# Kaldi's constants (OnlineNaturalGradient): epsilon floors rho and D absolutely, delta relative to
# the largest eigenvalue; the first NUM_INITIAL_UPDATES minibatches always update the estimate.
EPSILON = 1.0e-10
DELTA = 5.0e-4
NUM_INITIAL_UPDATES = 10
CONDITION_THRESHOLD = 1.0e6
ORTHOGONALITY_THRESHOLD = 1.0e-3


@dataclasses.dataclass(frozen=True)
class NaturalGradientConfig:
    """Kaldi's NaturalGradientAffineComponent options (`rank-in`, `rank-out`, `update-period`,
    `num-samples-history`, `alpha`), defaults as Kaldi's."""

    rank_in: int = 20
    rank_out: int = 80
    update_period: int = 4
    num_samples_history: float = 2000.0
    alpha: float = 4.0


class PreconditionerState(NamedTuple):
    """One `OnlineNaturalGradient`: `W = E^0.5 R` (rank, dim), `rho` (), `d` (rank,) and `t`, the
    number of minibatches seen (0 = not initialised yet)."""

    W: jax.Array
    rho: jax.Array
    d: jax.Array
    t: jax.Array


class AffineState(NamedTuple):
    """The two preconditioners of one affine: input space (in_dim + 1) and output space."""

    inputs: PreconditionerState
    out_derivs: PreconditionerState


def preconditioner_rank(rank: int, dim: int) -> int:
    """Kaldi's rank for a space of `dim`: as configured, but below dim (`InitDefault`); 0 for a
    1-dim space, which is never preconditioned."""
    return max(min(rank, dim - 1), 0)


def init_preconditioner(rank: int, dim: int) -> PreconditionerState:
    """An uninitialised preconditioner (the first minibatch initialises it, as Kaldi's `Init`)."""
    return PreconditionerState(
        W=jnp.zeros((rank, dim), jnp.float32),
        rho=jnp.zeros((), jnp.float32),
        d=jnp.zeros((rank,), jnp.float32),
        t=jnp.zeros((), jnp.int32),
    )


def orthonormal_special(rank: int, dim: int) -> np.ndarray:
    """Kaldi's `InitOrthonormalSpecial`: row r has entries at columns r, r+rank, r+2 rank, ...,
    1.1 for the first and 1 for the others, normalised (orthonormal rows, no zero column)."""
    out = np.zeros((rank, dim), np.float32)
    for r in range(rank):
        cols = np.arange(r, dim, rank)
        out[r, cols] = 1.0
        out[r, cols[0]] = 1.1
        out[r] /= np.sqrt(1.1**2 + len(cols) - 1)
    return out


def sum_over_rows(a: jax.Array, b: jax.Array) -> jax.Array:
    """`a^T b` for row-aligned a (N, k), b (N, m): the rows may be split over the devices of the
    step's data-parallel mesh (explicit sharding asks where the sum goes: replicated)."""
    sharding = jax.typeof(a).sharding
    out = sharding.update(spec=P()) if isinstance(sharding, NamedSharding) else None
    return jnp.einsum("nk,nm->km", a, b, out_sharding=out)


def _e_t(d: jax.Array, rho: jax.Array, alpha: float, dim: int):
    """(beta, sqrt(E), 1/sqrt(E)): `beta = rho (1 + alpha) + alpha tr(D)/dim`, `e_i = 1/(beta/d_i + 1)`."""
    beta = rho * (1.0 + alpha) + alpha * jnp.sum(d) / dim
    e = 1.0 / (beta / d + 1.0)
    sqrt_e = jnp.sqrt(e)
    return beta, sqrt_e, 1.0 / sqrt_e


def fisher_estimate(state: PreconditionerState, alpha: float) -> jax.Array:
    """The estimate `F = R^T diag(d) R + rho I` (dim, dim) a preconditioner holds (R = E^-1/2 W),
    before the smoothing `F + alpha/dim tr(F) I` it inverts; for inspection and tests."""
    dim = state.W.shape[1]
    _, _, inv_sqrt_e = _e_t(state.d, state.rho, alpha, dim)
    R = inv_sqrt_e[:, None] * state.W
    return R.T @ (state.d[:, None] * R) + state.rho * jnp.eye(dim)


def _update(W, rho, d, X, tr_X, cfg: NaturalGradientConfig):
    """`PreconditionDirectionsInternal` with updating: returns (X_hat, W1, rho1, d1).

    Kaldi forms `Z = Y Y^T` (`Y = R T`, T the smoothed scatter) from the 4th-power products K and L
    and takes Z's eigendecomposition `U C U^T` in float; here `U, C^1/2` come from the SVD
    `Y = U S V^T`, which is the same in exact arithmetic but keeps float32's precision on the small
    eigenvalues (an eig of an ill-conditioned Z loses them). Then
    `R1 = C^-1/2 U^T Y = diag(S / C^1/2) V^T`: orthonormal rows unless C was floored, and Kaldi's
    re-orthogonalisation (`ReorthogonalizeRt1`, when C is floored or ill-conditioned and R1 R1^T is
    off the identity by more than 1e-3) then multiplies R1 by the inverse Cholesky factor of the
    diagonal R1 R1^T, i.e. gives `V^T`. `W1 = E1^1/2 R1`.
    """
    N, dim = X.shape
    rank = W.shape[0]
    alpha = cfg.alpha
    eta = min(1.0 - math.exp(-N / cfg.num_samples_history), 0.9)
    eta_n, eta1 = eta / N, 1.0 - eta
    H = X @ W.T  # (N, rank)
    J = sum_over_rows(H, X)  # (rank, dim) = W X^T X
    _, _, inv_sqrt_e = _e_t(d, rho, alpha, dim)
    d_rho = d + rho
    # Y = eta/N R X^T X + (1 - eta) (D + rho I) R, with R = E^-1/2 W
    Y = inv_sqrt_e[:, None] * (eta_n * J + eta1 * d_rho[:, None] * W)
    _, s, Vt = jnp.linalg.svd(Y, full_matrices=False)  # s in decreasing order
    c = s * s
    must_reorthogonalize = c[0] > CONDITION_THRESHOLD * c[-1]
    c_floor = (rho * eta1) ** 2
    must_reorthogonalize |= jnp.any(c < c_floor)
    c = jnp.maximum(c, c_floor)
    X_hat = X - H @ W
    sqrt_c = jnp.sqrt(c)
    rho1 = (eta_n * tr_X + eta1 * (dim * rho + jnp.sum(d)) - jnp.sum(sqrt_c)) / (dim - rank)
    d1 = sqrt_c - rho1
    floor = jnp.maximum(EPSILON, DELTA * jnp.max(sqrt_c))
    rho1 = jnp.maximum(rho1, floor)
    d1 = jnp.maximum(d1, floor)
    _, sqrt_e1, _ = _e_t(d1, rho1, alpha, dim)
    row_norms = s / sqrt_c  # of R1; 1 where C was not floored
    off_identity = jnp.max(jnp.abs(row_norms**2 - 1.0)) > ORTHOGONALITY_THRESHOLD
    row_norms = jnp.where(must_reorthogonalize & off_identity, 1.0, row_norms)
    W1 = (sqrt_e1 * row_norms)[:, None] * Vt
    return X_hat, W1, rho1, d1


def precondition_directions(
    state: PreconditionerState, X: jax.Array, cfg: NaturalGradientConfig
) -> tuple[jax.Array, jax.Array, PreconditionerState]:
    """Kaldi's `OnlineNaturalGradient::PreconditionDirections` on the rows of X (N, dim).

    Returns (X_hat, scale, new state): X_hat = X G^-1 beta (G the smoothed Fisher estimate) and
    `scale = sqrt(tr(X X^T) / tr(X_hat X_hat^T))` (1 when X is zero), by which Kaldi multiplies the
    learning rate. The estimate is updated for the first 10 minibatches and then every
    `update_period`; the first minibatch initialises it (Kaldi's `Init`: the default start updated 3
    times on that minibatch, once if it has no more rows than the rank) before its own update.
    """
    rank = state.W.shape[0]
    if rank == 0:  # a 1-dim space: the preconditioner would be the identity
        return X, jnp.float32(1.0), state._replace(t=state.t + 1)
    N, dim = X.shape
    start = (
        jnp.asarray(orthonormal_special(rank, dim))
        * np.float32(np.sqrt(1.0 / (2.0 + (dim + rank) * cfg.alpha / dim))),
        jnp.float32(EPSILON),
        jnp.full((rank,), EPSILON, jnp.float32),
    )
    fresh = state.t == 0
    W, rho, d = (jnp.where(fresh, a, b) for a, b in zip(start, state[:3], strict=True))
    updating = (state.t <= NUM_INITIAL_UPDATES) | (
        (state.t - NUM_INITIAL_UPDATES) % cfg.update_period == 0
    )
    # Updates of the estimate on this minibatch; X_hat is from the estimate before the last one.
    num_updates = jnp.where(fresh, (1 if N <= rank else 3) + 1, updating.astype(jnp.int32))
    tr_X = jnp.sum(X * X)
    X_hat, W, rho, d = lax.fori_loop(
        0,
        num_updates,
        lambda _, carry: _update(*carry[1:], X, tr_X, cfg),
        (X - (X @ W.T) @ W, W, rho, d),
    )
    scale = jnp.where(tr_X > 0, jnp.sqrt(tr_X / jnp.sum(X_hat * X_hat)), 1.0)
    return X_hat, scale, PreconditionerState(W, rho, d, state.t + 1)


@dataclasses.dataclass(frozen=True)
class TappedAffine:
    """An affine node preconditioned by `natural_gradient`: its parameters are
    `params[layer][sub]` = {"kernel": (in_dim, out_dim), "bias": (out_dim,)}."""

    node: str
    layer: str
    sub: str
    in_dim: int
    out_dim: int


def natural_gradient(
    affines: Sequence[TappedAffine],
    cfg: NaturalGradientConfig = NaturalGradientConfig(),
    derivative_scale: float = 1.0,
) -> optax.GradientTransformationExtraArgs:
    """Replaces the kernel/bias gradients of `affines` by Kaldi's natural gradient (see the module
    docstring); other gradients pass unchanged. `update` needs the extra arguments
    `affine_inputs={node: (rows, in_dim)}` and `affine_out_derivs={node: (..., out_dim)}` of the
    loss whose gradient `updates` is; `derivative_scale` (the minibatch size for a mean loss) scales
    the output derivatives to those of the minibatch sum Kaldi preconditions, and back.
    """
    affines = tuple(affines)

    def init_fn(params):
        del params
        state: dict[str, dict[str, AffineState]] = {}
        for a in affines:
            r_in = preconditioner_rank(min(cfg.rank_in, (a.in_dim + 1) // 2), a.in_dim + 1)
            r_out = preconditioner_rank(min(cfg.rank_out, (a.out_dim + 1) // 2), a.out_dim)
            state.setdefault(a.layer, {})[a.sub] = AffineState(
                init_preconditioner(r_in, a.in_dim + 1), init_preconditioner(r_out, a.out_dim)
            )
        return state

    def update_fn(updates, state, params=None, *, affine_inputs=None, affine_out_derivs=None, **_):
        del params
        if affines and (affine_inputs is None or affine_out_derivs is None):
            raise ValueError("natural_gradient needs affine_inputs= and affine_out_derivs=")
        updates = {layer: dict(sub) for layer, sub in updates.items()}
        new_state: dict[str, dict[str, AffineState]] = {}
        for a in affines:
            x = affine_inputs[a.node].astype(jnp.float32)
            x = jnp.concatenate([x, jnp.ones_like(x[:, :1])], axis=1)
            o = affine_out_derivs[a.node].astype(jnp.float32).reshape(-1, a.out_dim)
            st = state[a.layer][a.sub]
            x_hat, scale_in, st_in = precondition_directions(st.inputs, x, cfg)
            o_hat, scale_out, st_out = precondition_directions(
                st.out_derivs, o * derivative_scale, cfg
            )
            scale = scale_in * scale_out / derivative_scale
            grads = updates[a.layer][a.sub]
            grad = scale * sum_over_rows(x_hat, o_hat)  # (in_dim + 1, out_dim): kernel; bias
            updates[a.layer][a.sub] = {
                "kernel": grad[:-1].astype(grads["kernel"].dtype),
                "bias": grad[-1].astype(grads["bias"].dtype),
            }
            new_state.setdefault(a.layer, {})[a.sub] = AffineState(st_in, st_out)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def tapped_affines(spec, layers: Sequence[str] | None = None) -> tuple[TappedAffine, ...]:
    """The affines (of `layers`, default all) that Kaldi trains with natural gradient: the
    NaturalGradientAffineComponent nodes (a plain AffineComponent gets the plain gradient, as in
    Kaldi)."""
    dims = spec.dims()
    out = []
    for node in spec.nodes:
        layer, sub = node.var_path
        if (
            node.op == "affine"
            and (layers is None or layer in layers)
            and node.kaldi.get("type") == "NaturalGradientAffineComponent"
        ):
            in_dim = sum(dims[s] for s, _ in node.inputs)
            out.append(TappedAffine(node.name, layer, sub, in_dim, node.dim))
    return tuple(out)


def config_from(cfg: Mapping[str, Any]) -> NaturalGradientConfig:
    """`config.optim.natural_gradient` -> NaturalGradientConfig."""
    return NaturalGradientConfig(
        rank_in=int(cfg["rank_in"]),
        rank_out=int(cfg["rank_out"]),
        update_period=int(cfg["update_period"]),
        num_samples_history=float(cfg["num_samples_history"]),
        alpha=float(cfg["alpha"]),
    )
