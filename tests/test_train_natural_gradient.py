"""Kaldi's online natural gradient (`xvjax.train.natural_gradient`) against an independent float64
numpy re-derivation of the formulas in Kaldi's `nnet3/natural-gradient-online.h` (dense Fisher
matrices and explicit inverses, not the Woodbury / W_t bookkeeping the implementation uses), and the
optax transform: identity preconditioning gives the plain gradient, an NG-SGD step lowers the loss."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import AffineTaps, XVector, init_variables
from xvjax.train import natural_gradient as ng

# ------------------------------------------------------------------------------------------------
# Reference: the header's definitions, written out in float64.


class ReferenceFisher:
    """F_t = R_t^T diag(d_t) R_t + rho_t I with orthonormal rows R_t (natural-gradient-online.h)."""

    def __init__(self, rank, alpha, num_samples_history, update_period):
        self.rank, self.alpha = rank, alpha
        self.nsh, self.period = num_samples_history, update_period
        self.t = 0

    def fisher(self):
        D = self.R.shape[1]
        return self.R.T @ np.diag(self.d) @ self.R + self.rho * np.eye(D)

    def apply(self, X):
        """X_hat = beta X G^-1 with G = F + alpha/D tr(F) I, beta = rho + alpha/D tr(F)."""
        D = X.shape[1]
        F = self.fisher()
        smooth = self.alpha / D * np.trace(F)
        G = F + smooth * np.eye(D)
        return (self.rho + smooth) * X @ np.linalg.inv(G)

    def update(self, X):
        """T = eta S + (1-eta) F; Y = R T; Y Y^T = U C U^T; R' = C^-1/2 U^T Y; rho' from
        tr(F') = tr(T); d' = C^1/2 - rho'; floors as in the header (epsilon, delta max C^1/2, and
        C >= ((1-eta) rho)^2); R' re-orthonormalised by the inverse Cholesky factor of R' R'^T when
        C was floored or ill-conditioned."""
        N, D = X.shape
        R = self.rank
        eta = min(1 - math.exp(-N / self.nsh), 0.9)
        S = X.T @ X / N
        F = self.fisher()
        T = eta * S + (1 - eta) * F
        Y = self.R @ T
        C, U = np.linalg.eigh(Y @ Y.T)
        C, U = C[::-1], U[:, ::-1]
        ill = C[0] > 1e6 * C[-1]
        floor_c = ((1 - eta) * self.rho) ** 2
        ill |= bool(np.any(C < floor_c))
        C = np.maximum(C, floor_c)
        R_new = np.diag(C**-0.5) @ U.T @ Y
        if ill:
            O = R_new @ R_new.T
            if np.max(np.abs(O - np.eye(R))) > 1e-3:
                R_new = np.linalg.inv(np.linalg.cholesky(O)) @ R_new
        rho = (eta * np.trace(S) + (1 - eta) * np.trace(F) - np.sum(np.sqrt(C))) / (D - R)
        d = np.sqrt(C) - rho
        floor = max(1e-10, 5e-4 * np.sqrt(C).max())
        self.R, self.rho, self.d = R_new, max(rho, floor), np.maximum(d, floor)

    def start(self, X0):
        """Rows like [1.1 0 1 0 1 0; 0 1.1 0 1 0 1] normalised, d = rho = 1e-10, then updated on
        the first minibatch three times (once if it has no more rows than the rank)."""
        N, D = X0.shape
        R = np.zeros((self.rank, D))
        for r in range(self.rank):
            R[r, r :: self.rank] = 1.0
            R[r, r] = 1.1
        self.R = R / np.linalg.norm(R, axis=1, keepdims=True)
        self.rho, self.d = 1e-10, np.full(self.rank, 1e-10)
        for _ in range(1 if N <= self.rank else 3):
            self.update(X0)

    def precondition(self, X):
        """(X_hat, scale) of minibatch t; updates the estimate for t <= 10 and every period after."""
        if self.t == 0:
            self.start(X)
        X_hat = self.apply(X)
        if self.t <= 10 or (self.t - 10) % self.period == 0:
            self.update(X)
        self.t += 1
        return X_hat, math.sqrt(np.sum(X * X) / np.sum(X_hat * X_hat))


def _minibatches(num, rows, dim, seed):
    """Rows with a few strong, slowly turning directions (like activations), plus noise."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(4, dim)) * np.array([6.0, 3.0, 2.0, 1.0])[:, None]
    out = []
    for i in range(num):
        turn = basis + 0.05 * i * rng.normal(size=basis.shape)
        out.append(rng.normal(size=(rows, 4)) @ turn + 0.3 * rng.normal(size=(rows, dim)))
    return out


@pytest.mark.parametrize("rows, dim, rank", [(40, 12, 4), (4, 9, 4)])
def test_preconditioner_matches_the_numpy_rederivation(rows, dim, rank):
    """16 minibatches: initialisation (3 updates on the first minibatch, or 1 when it has no more
    rows than the rank), 10 updating steps, then updates every 3rd (update_period)."""
    cfg = ng.NaturalGradientConfig(update_period=3, num_samples_history=50.0, alpha=4.0)
    ref = ReferenceFisher(rank, cfg.alpha, cfg.num_samples_history, cfg.update_period)
    state = ng.init_preconditioner(rank, dim)
    step = jax.jit(lambda s, x: ng.precondition_directions(s, x, cfg))
    for i, X in enumerate(_minibatches(16, rows, dim, seed=rows)):
        want, want_scale = ref.precondition(X)
        got, scale, state = step(state, jnp.asarray(X, jnp.float32))
        np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
        np.testing.assert_allclose(float(scale), want_scale, rtol=2e-5, err_msg=f"minibatch {i}")
        F = np.asarray(ng.fisher_estimate(state, cfg.alpha))  # the estimate itself
        np.testing.assert_allclose(F, ref.fisher(), rtol=1e-4, atol=1e-4 * np.abs(F).max())
    assert int(state.t) == 16


def test_preconditioning_is_not_the_identity():
    """The reference's X_hat differs from X a lot on such data, so the comparison above means
    something (it is not two identities agreeing)."""
    X = _minibatches(1, 40, 12, seed=0)[0]
    ref = ReferenceFisher(4, 4.0, 50.0, 3)
    X_hat, scale = ref.precondition(X)
    cos = np.sum(X * X_hat) / np.linalg.norm(X) / np.linalg.norm(X_hat)
    assert cos < 0.95 and scale > 1.2


# ------------------------------------------------------------------------------------------------
# The optax transform on a small x-vector net.

FEAT_DIM, NUM_SPK, BATCH, FRAMES = 6, 4, 8, 24


@pytest.fixture(scope="module")
def tiny():
    spec = xvector_1a_spec(
        input_dim=FEAT_DIM, num_speakers=NUM_SPK, frame_dims=(8, 8, 8, 8, 16), embedding_dims=(8, 8)
    )
    variables = init_variables(spec, jax.random.key(0))
    variables["params"]["output"]["affine"]["kernel"] = 0.3 * np.asarray(
        jax.random.normal(jax.random.key(1), (8, NUM_SPK))
    )
    rng = np.random.default_rng(0)
    means = rng.normal(size=(NUM_SPK, FEAT_DIM)) * 2
    labels = np.arange(BATCH) % NUM_SPK
    feats = means[labels][:, None, :] + rng.normal(size=(BATCH, FRAMES, FEAT_DIM))
    return spec, variables, jnp.asarray(feats, jnp.float32), jnp.asarray(labels)


def _loss_and_taps(spec, variables, feats, labels, nodes):
    """(loss, grads, affine_inputs, affine_out_derivs) of the mean cross-entropy (BN in test mode)."""
    return jax.jit(_loss_and_taps_fn, static_argnums=(0, 4))(spec, variables, feats, labels, nodes)


def _loss_and_taps_fn(spec, variables, feats, labels, nodes):
    model = XVector(spec)
    probe = AffineTaps(nodes)
    jax.eval_shape(lambda v: model.apply(v, feats, affine_taps=probe), variables)
    zeros = {n: jnp.zeros(s) for n, s in probe.output_shapes.items()}

    def loss_fn(params, perturbations):
        taps = AffineTaps(nodes, perturbations)
        out = model.apply({**variables, "params": params}, feats, affine_taps=taps)
        return -jnp.mean(out[jnp.arange(len(labels)), labels]), taps.inputs

    (loss, inputs), (grads, derivs) = jax.value_and_grad(loss_fn, (0, 1), has_aux=True)(
        variables["params"], zeros
    )
    return loss, grads, inputs, derivs


def test_identity_preconditioning_gives_the_plain_gradient(tiny):
    spec, variables, feats, labels = tiny
    affines = ng.tapped_affines(spec, ["tdnn1", "tdnn6", "output"])
    assert [a.node for a in affines] == ["tdnn1.affine", "tdnn6.affine", "output.affine"]
    assert affines[0].in_dim == 5 * FEAT_DIM  # the spliced input, Append(-2..2)
    nodes = tuple(a.node for a in affines)
    _, grads, inputs, derivs = _loss_and_taps(spec, variables, feats, labels, nodes)
    assert inputs["tdnn1.affine"].shape == (BATCH * (FRAMES - 4), 5 * FEAT_DIM)

    def precondition(cfg):
        tx = ng.natural_gradient(affines, cfg, derivative_scale=BATCH)
        update = jax.jit(lambda g, s, i, d: tx.update(g, s, affine_inputs=i, affine_out_derivs=d))
        return update(grads, tx.init(variables["params"]), inputs, derivs)[0]

    # alpha -> infinity smooths the Fisher estimate into a multiple of the identity
    out = precondition(ng.NaturalGradientConfig(alpha=1e9))
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())
    # with Kaldi's alpha = 4 the tapped affines get another direction, the others the plain gradient
    out = precondition(ng.NaturalGradientConfig())
    k_ng, k = out["tdnn1"]["affine"]["kernel"], grads["tdnn1"]["affine"]["kernel"]
    assert np.sum(k_ng * k) / np.linalg.norm(k_ng) / np.linalg.norm(k) < 0.99
    for a, b in zip(jax.tree.leaves(out["tdnn3"]), jax.tree.leaves(grads["tdnn3"]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ngsgd_steps_lower_the_loss(tiny):
    spec, variables, feats, labels = tiny
    layers = ["tdnn1", "tdnn2", "tdnn3", "tdnn4", "tdnn5", "tdnn6", "tdnn7", "output"]
    affines = ng.tapped_affines(spec, layers)
    nodes = tuple(a.node for a in affines)
    tx = optax.chain(
        ng.natural_gradient(affines, ng.NaturalGradientConfig(), derivative_scale=BATCH),
        optax.sgd(0.1),
    )

    @jax.jit
    def step(params, state):
        loss, grads, inputs, derivs = _loss_and_taps_fn(
            spec, {**variables, "params": params}, feats, labels, nodes
        )
        updates, state = tx.update(
            grads, state, params, affine_inputs=inputs, affine_out_derivs=derivs
        )
        return optax.apply_updates(params, updates), state, loss

    params, state = variables["params"], tx.init(variables["params"])
    losses = []
    for _ in range(12):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.75 * losses[0], losses
    assert int(state[0]["tdnn1"]["affine"].inputs.t) == 12
