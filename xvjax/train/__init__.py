"""Transfer-learning trainer: optax partitions, sharded jit step, Orbax checkpoints."""
