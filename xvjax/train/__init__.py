"""Transfer-learning trainer: optax partitions, sharded jit step, Orbax checkpoints.

    from xvjax.train.config import base_config, load_config
    from xvjax.train.train import train_and_evaluate
    config, _ = load_config("configs/finetune.py", ["--config.train.num_steps=500"])
    config.init_from, config.data.train_dir = "exp/xvector_nnet_1a/final.raw", "data/tgt_train"
    summary = train_and_evaluate(config, "checkpoints/finetune")   # -> summary["final_model"]

Modules: `config` (fields and defaults), `builders` (data stream, network), `optim` (freeze /
lr multipliers / Kaldi max-change / schedules as optax transforms), `state` + `step` (TrainState,
the jitted data-parallel step), `checkpointing` (Orbax manager), `evaluate` (dev EER), `train`
(the loop), `runtime` (distributed, signals, export), `commands` (`xvjax train`,
`xvjax make-tfds-dataset`).
"""
