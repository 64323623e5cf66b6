"""Optimizer for transfer learning, built from small optax transforms.

    tx = optax.chain(
        optax.partition({"frozen": optax.set_to_zero(),          # no state for frozen layers
                         "lr_x1": sgd(lr * 1), "lr_x0.1": sgd(lr * 0.1)}, labels),
        max_change_per_layer({"tdnn1": 0.75, ..., "output": 1.5}),  # Kaldi per-component cap
        max_param_change(2.0),                                    # Kaldi --max-param-change
    )

Labels come from regular-expression patterns on layer names (the top-level keys of the parameter
tree: `tdnn1`..`tdnn7`, `output`): `freeze="tdnn[1-5]"`, `train_only="output"`,
`lr_mults="tdnn6|tdnn7:0.5,output:2"`. Patterns are full matches (`re.fullmatch`); several patterns are
separated by commas.

Kaldi's update (`nnet3/nnet-training.cc`, `UpdateNnetWithMaxChange` in `nnet3/nnet-utils.cc`): with
momentum m the buffer is `delta = m * delta + lr * grad`, the applied update is `(1 - m) * delta`, each
updatable component's update is scaled down to its max-change if its l2 norm exceeds it, then the whole
update to `max-param-change`; a non-finite update is skipped. The buffer is not affected by the caps.
`sgd` below is that momentum form; `ngsgd` is Kaldi's own optimizer, the same with the gradient of
every trained NaturalGradientAffineComponent preconditioned first (`natural_gradient`, which needs the
layers' inputs and output derivatives from the step):

    tx = optax.chain(natural_gradient(trained affines), optax.partition(...), max_change_per_layer(...),
                     max_param_change(2.0))

`adam`/`adamw` are offered for users who prefer them. Kaldi's learning rates multiply the gradient of
the objective summed over the minibatch; `lr_on_summed_objective=True` makes xvjax's do the same (they
then scale by the global batch size), so a recipe's `--initial/final-effective-lrate` carry over.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from xvjax.errors import XvjaxError
from xvjax.train import natural_gradient as ng

log = logging.getLogger("xvjax")

FROZEN = "frozen"


# ----------------------------------------------------------------------------- patterns


def split_patterns(text: str | Sequence[str] | None) -> list[str]:
    """'tdnn[1-5],output' -> ['tdnn[1-5]', 'output'] (commas inside [] or {} are kept)."""
    if text is None:
        return []
    if not isinstance(text, str):
        return [p for t in text for p in split_patterns(t)]
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [p for p in out if p]


def _compile(pattern: str, what: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise XvjaxError(f"{what}: invalid pattern '{pattern}': {e}") from None


def match_layers(patterns: Sequence[str], layers: Sequence[str], what: str) -> list[str]:
    """Layers matched (fullmatch) by any pattern; a pattern matching nothing is an error."""
    matched: list[str] = []
    for pat in patterns:
        rx = _compile(pat, what)
        hits = [name for name in layers if rx.fullmatch(name)]
        if not hits:
            raise XvjaxError(
                f"{what}: pattern '{pat}' matches no layer; the model's layers are "
                f"{', '.join(layers)}"
            )
        matched += [h for h in hits if h not in matched]
    return matched


def parse_lr_mults(text: str | Mapping[str, float] | None) -> list[tuple[str, float]]:
    """'tdnn[6-7]:0.5,output:2' -> [('tdnn[6-7]', 0.5), ('output', 2.0)]."""
    if not text:
        return []
    if isinstance(text, Mapping):
        return [(str(k), float(v)) for k, v in text.items()]
    out = []
    for item in split_patterns(text):
        pat, sep, mult = item.rpartition(":")
        if not sep or not pat:
            raise XvjaxError(f"lr_mults: expected 'pattern:multiplier', got '{item}'")
        try:
            out.append((pat, float(mult)))
        except ValueError:
            raise XvjaxError(f"lr_mults: invalid multiplier in '{item}'") from None
    return out


def _mult_label(mult: float) -> str:
    return FROZEN if mult == 0 else f"lr_x{mult:g}"


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """Which layer gets which learning-rate multiplier (0 = frozen)."""

    mults: dict[str, float]  # layer -> multiplier, in parameter-tree order

    @property
    def frozen(self) -> tuple[str, ...]:
        return tuple(k for k, m in self.mults.items() if m == 0)

    @property
    def trained(self) -> tuple[str, ...]:
        return tuple(k for k, m in self.mults.items() if m != 0)

    def labels(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Label pytree for `optax.partition` (one label per leaf, by its layer)."""
        return {
            layer: jax.tree.map(lambda _, lab=_mult_label(self.mults[layer]): lab, sub)
            for layer, sub in params.items()
        }

    def describe(self) -> str:
        groups: dict[str, list[str]] = {}
        for layer, m in self.mults.items():
            groups.setdefault(_mult_label(m), []).append(layer)
        return "; ".join(f"{lab}: {' '.join(v)}" for lab, v in groups.items())


def layer_plan(
    layers: Sequence[str],
    freeze: str | Sequence[str] | None = None,
    train_only: str | Sequence[str] | None = None,
    lr_mults: str | Mapping[str, float] | None = None,
    base_mults: Mapping[str, float] | None = None,
) -> LayerPlan:
    """Resolves --freeze / --train-only / lr multipliers into a per-layer multiplier.

    `base_mults` are the model's own factors (Kaldi `learning-rate-factor`, 0 = frozen);
    `train_only` freezes every layer it does not match; `freeze` then freezes what it matches;
    `lr_mults` multiply the rest, and a multiplier of 0 also freezes. A pattern that matches no layer
    is an error (before any compute).
    """
    layers = list(layers)
    mults = {name: float((base_mults or {}).get(name, 1.0)) for name in layers}
    if split_patterns(train_only):
        keep = set(match_layers(split_patterns(train_only), layers, "train_only"))
        for name in layers:
            if name not in keep:
                mults[name] = 0.0
    for name in match_layers(split_patterns(freeze), layers, "freeze"):
        mults[name] = 0.0
    for pat, mult in parse_lr_mults(lr_mults):
        if mult < 0:
            raise XvjaxError(f"lr_mults: negative multiplier {mult} for '{pat}'")
        for name in match_layers([pat], layers, "lr_mults"):
            mults[name] *= mult
    if all(m == 0 for m in mults.values()):
        raise XvjaxError("every layer is frozen: nothing to train (check --freeze/--train-only)")
    return LayerPlan(mults)


# ----------------------------------------------------------------------------- max-change


def _layer_sq_norms(updates: Mapping[str, Any]) -> dict[str, jax.Array]:
    return {
        layer: sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(sub))
        for layer, sub in updates.items()
    }


def max_change_per_layer(max_changes: Mapping[str, float]) -> optax.GradientTransformation:
    """Kaldi's per-component max-change: scales each layer's update to l2 norm <= its cap.

    `updates` must be a dict keyed by layer; a layer missing from `max_changes` or with cap 0 is not
    capped (Kaldi's `max-change=0`).
    """
    caps = {k: float(v) for k, v in max_changes.items()}

    def update_fn(updates, state, params=None):
        del params
        norms = _layer_sq_norms(updates)
        out = {}
        for layer, sub in updates.items():
            cap = caps.get(layer, 0.0)
            if cap > 0:
                norm = jnp.sqrt(norms[layer])
                factor = jnp.where(norm > cap, cap / norm, 1.0)
                sub = jax.tree.map(lambda x, f=factor: (x * f).astype(x.dtype), sub)
            out[layer] = sub
        return out, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def max_param_change(max_change: float) -> optax.GradientTransformation:
    """Kaldi's global `--max-param-change`: caps the l2 norm of the whole update.

    A non-finite update is replaced by zeros (Kaldi: "Infinite parameter change, will not apply").
    `max_change <= 0` only applies the non-finite guard.
    """

    def update_fn(updates, state, params=None):
        del params
        sq = sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(updates))
        norm = jnp.sqrt(sq)
        finite = jnp.isfinite(norm)
        factor = jnp.float32(1.0)
        if max_change > 0:
            factor = jnp.where(norm > max_change, max_change / norm, 1.0)
        factor = jnp.where(finite, factor, 0.0)
        updates = jax.tree.map(
            lambda x: jnp.where(finite, x * factor, jnp.zeros_like(x)).astype(x.dtype), updates
        )
        return updates, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


# ----------------------------------------------------------------------------- schedules


def kaldi_exponential_schedule(initial: float, final: float, num_steps: int) -> optax.Schedule:
    """Kaldi's `initial-effective-lrate` -> `final-effective-lrate` geometric decay over the run."""
    if initial <= 0 or final <= 0:
        raise XvjaxError(f"exponential schedule needs positive rates, got {initial} -> {final}")
    num_steps = max(int(num_steps), 1)
    log_ratio = math.log(final / initial)

    def schedule(step):
        frac = jnp.clip(jnp.asarray(step, jnp.float32) / num_steps, 0.0, 1.0)
        return initial * jnp.exp(frac * log_ratio)

    return schedule


def make_schedule(cfg, num_steps: int) -> optax.Schedule:
    """`cfg.schedule` in {'exponential', 'cosine', 'constant'} with `cfg.warmup_steps` linear warmup.

    Uses `cfg.initial_lr`, `cfg.final_lr`.
    """
    kind = cfg.schedule
    warmup = int(cfg.get("warmup_steps", 0))
    decay_steps = max(num_steps - warmup, 1)
    if kind == "exponential":
        main = kaldi_exponential_schedule(cfg.initial_lr, cfg.final_lr, decay_steps)
    elif kind == "cosine":
        alpha = cfg.final_lr / cfg.initial_lr if cfg.initial_lr > 0 else 0.0
        main = optax.cosine_decay_schedule(cfg.initial_lr, decay_steps, alpha=alpha)
    elif kind == "constant":
        main = optax.constant_schedule(cfg.initial_lr)
    else:
        raise XvjaxError(f"unknown learning-rate schedule '{kind}' (exponential, cosine, constant)")
    if warmup <= 0:
        return main
    ramp = optax.linear_schedule(0.0, cfg.initial_lr, warmup)
    return optax.join_schedules([ramp, main], [warmup])


# ----------------------------------------------------------------------------- optimizer


def _base(cfg, lr: optax.Schedule) -> optax.GradientTransformation:
    wd = float(cfg.get("weight_decay", 0.0))
    kind = cfg.optimizer
    if kind in ("sgd", "ngsgd"):
        m = float(cfg.momentum)
        parts = []
        if wd > 0:
            parts.append(optax.add_decayed_weights(wd))
        parts.append(optax.scale_by_learning_rate(lr))
        if m > 0:
            parts += [optax.trace(decay=m), optax.scale(1.0 - m)]
        return optax.chain(*parts)
    if kind == "adam":
        return optax.adam(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999))
    if kind == "adamw":
        return optax.adamw(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), weight_decay=wd)
    raise XvjaxError(f"unknown optimizer '{kind}' (sgd, ngsgd, adam, adamw)")


def _scaled(schedule: optax.Schedule, mult: float) -> optax.Schedule:
    return lambda step: schedule(step) * mult


def layer_max_changes(
    layers: Sequence[str],
    default: float,
    overrides: str | Mapping[str, float] | None = None,
    from_model: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Per-layer caps: the model's own (Kaldi `<MaxChange>`), else `default`, then overrides."""
    caps = {name: float((from_model or {}).get(name, default)) for name in layers}
    for pat, value in parse_lr_mults(overrides):
        for name in match_layers([pat], layers, "max_change_per_layer"):
            caps[name] = value
    return caps


def model_layer_factors(spec) -> tuple[dict[str, float], dict[str, float]]:
    """(max_changes, lr_factors): per-layer Kaldi `max-change` and `learning-rate-factor` that the
    model spec records (for `make_optimizer`'s `model_max_changes` / `model_lr_factors`)."""
    caps, factors = {}, {}
    for node in spec.nodes:
        layer = node.var_path[0]
        if "max-change" in node.kaldi:
            caps[layer] = float(node.kaldi["max-change"])
        if "learning-rate-factor" in node.kaldi:
            factors[layer] = float(node.kaldi["learning-rate-factor"])
    return caps, factors


class Optimizer(NamedTuple):
    tx: optax.GradientTransformationExtraArgs
    plan: LayerPlan
    schedule: optax.Schedule  # the configured rate (before the lr_on_summed_objective scaling)
    max_changes: dict[str, float]
    tapped: tuple[ng.TappedAffine, ...]  # ngsgd: the affines whose inputs/derivatives tx needs


def make_optimizer(
    cfg,
    params: Mapping[str, Any],
    num_steps: int,
    model_max_changes=None,
    model_lr_factors=None,
    *,
    natural_gradient_affines: Sequence[ng.TappedAffine] = (),
    batch_size: int = 1,
) -> Optimizer:
    """Builds the optax chain from `config.optim` for a parameter tree `{layer: {...}}`.

    `model_max_changes` / `model_lr_factors`: per-layer Kaldi `max-change` / `learning-rate-factor`
    of the model (used when `cfg.use_model_lr_factors`, the default). `natural_gradient_affines`
    (`natural_gradient.tapped_affines(spec, ...)`): the model's natural-gradient affines, of which
    `ngsgd` preconditions those of trained layers. `batch_size`: the global minibatch (the scale of
    the summed objective).

    Fields used: optimizer ('sgd'|'ngsgd'|'adam'|'adamw'), momentum, initial_lr, final_lr, schedule,
    warmup_steps, weight_decay, freeze, train_only, lr_mults, max_change (default per-layer cap, 0 = off),
    max_change_per_layer ('pattern:cap,...'), max_param_change (0 = off), lr_on_summed_objective,
    natural_gradient (rank_in, rank_out, update_period, num_samples_history, alpha).
    """
    layers = list(params.keys())
    base = model_lr_factors if cfg.get("use_model_lr_factors", True) else None
    plan = layer_plan(
        layers, cfg.get("freeze", ""), cfg.get("train_only", ""), cfg.get("lr_mults"), base
    )
    schedule = make_schedule(cfg, num_steps)
    lr_scale = batch_size if cfg.get("lr_on_summed_objective", False) else 1
    transforms: dict[str, optax.GradientTransformation] = {}
    for mult in sorted(set(plan.mults.values())):
        label = _mult_label(mult)
        transforms[label] = (
            optax.set_to_zero() if mult == 0 else _base(cfg, _scaled(schedule, mult * lr_scale))
        )
    caps = layer_max_changes(
        layers, cfg.get("max_change", 0.0), cfg.get("max_change_per_layer"), model_max_changes
    )
    chain = [
        optax.partition(transforms, plan.labels(params)),
        max_change_per_layer(caps),
        max_param_change(float(cfg.get("max_param_change", 0.0))),
    ]
    tapped: tuple[ng.TappedAffine, ...] = ()
    if cfg.optimizer == "ngsgd":
        tapped = tuple(a for a in natural_gradient_affines if a.layer in plan.trained)
        if not tapped:
            raise XvjaxError(
                "optimizer ngsgd: no trained layer has a NaturalGradientAffineComponent"
            )
        ng_config = ng.config_from(cfg.natural_gradient)
        chain.insert(0, ng.natural_gradient(tapped, ng_config, derivative_scale=batch_size))
    return Optimizer(optax.chain(*chain), plan, schedule, caps, tapped)
