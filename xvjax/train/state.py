"""Training state: everything a step changes and a checkpoint must hold (besides the data position)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


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
