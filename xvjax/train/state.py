"""What a training run starts from and carries: the network (`create_model`) and the TrainState,
everything a step changes and a checkpoint must hold (besides the data position).

    spec, variables = create_model(config, data.num_speakers, data.feat_dim)
    state = create_train_state(variables, optimizer.tx, seed=config.seed)
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from xvjax.errors import XvjaxError
from xvjax.features.options import frontend_differences, read_frontend_conf
from xvjax.model.checkpoint import load_any
from xvjax.model.spec import ModelSpec, xvector_1a_spec
from xvjax.model.xvector import init_variables, resize_output

log = logging.getLogger("xvjax")


def create_model(config, num_speakers: int, feat_dim: int) -> tuple[ModelSpec, dict[str, Any]]:
    """(spec, variables) from config.init_from (output resized to `num_speakers`) or from scratch."""
    key = jax.random.key(int(config.seed))
    if config.init_from:
        spec, variables = load_any(config.init_from)
        if spec.input_dim != feat_dim:
            raise XvjaxError(
                f"model {config.init_from} takes {spec.input_dim}-dim input but the training "
                f"features are {feat_dim}-dim (check the MFCC config: num-ceps)"
            )
        out_affine = config.model.get("output_affine", "output.affine")
        old = spec.node(out_affine).dim
        if config.resize_output:
            spec, variables = resize_output(
                spec,
                variables,
                num_speakers,
                jax.random.fold_in(key, 1),
                param_stddev=float(config.output_init.param_stddev),
                bias_stddev=float(config.output_init.bias_stddev),
                output_affine=out_affine,
            )
            log.info(
                "Resized %s from %d to %d outputs (in-domain speakers)",
                out_affine,
                old,
                num_speakers,
            )
        elif old != num_speakers:
            raise XvjaxError(
                f"model {config.init_from} has {old} outputs but the data has {num_speakers} "
                "speakers; set resize_output=True"
            )
    else:
        m = config.model
        spec = xvector_1a_spec(
            input_dim=feat_dim,
            num_speakers=num_speakers,
            frame_dims=tuple(m.frame_dims),
            embedding_dims=tuple(m.embedding_dims),
            bn_momentum=float(m.bn_momentum),
        )
        variables = init_variables(spec, key)
    return with_frontend(spec, config), variables


def with_frontend(spec: ModelSpec, config) -> ModelSpec:
    """The network with the front end of its training features recorded (`ModelSpec.frontend`,
    from the training data dir's conf/), warning when it was first trained on other features."""
    recorded = read_frontend_conf(config.data.train_dir) if config.data.train_dir else None
    if recorded is None:
        return spec
    if spec.frontend and (changed := frontend_differences(spec.frontend, recorded)):
        log.warning(
            "%s was trained on features made with other options than %s's: %s",
            config.init_from, config.data.train_dir, "; ".join(changed),
        )  # fmt: skip
    return dataclasses.replace(spec, frontend=recorded)


@flax.struct.dataclass
class TrainState:
    """step: () int32; params/batch_stats: the model's variable collections (f32);
    opt_state: the optax state (no entries for frozen layers); rng: (2,) uint32 raw PRNG key."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array

    @property
    def variables(self) -> dict[str, Any]:
        return {"params": self.params, "batch_stats": self.batch_stats}


def create_train_state(
    variables: dict[str, Any], tx: optax.GradientTransformation, seed: int
) -> TrainState:
    """State at step 0 from model variables `{"params": ..., "batch_stats": ...}`."""
    params = jax.tree.map(jnp.asarray, variables["params"])
    batch_stats = jax.tree.map(jnp.asarray, variables.get("batch_stats", {}))
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        rng=jax.random.key_data(jax.random.key(seed)).astype(jnp.uint32),
    )
