"""Transfer-learning trainer: optax partitions, sharded jit step, Orbax checkpoints.

    from xvjax.train.config import base_config, load_config
    from xvjax.train.train import train_and_evaluate
    config, _ = load_config("configs/finetune.py", ["--config.train.num_steps=500"])
    config.init_from, config.data.train_dir = "exp/xvector_nnet_1a/final.raw", "data/tgt_train"
    summary = train_and_evaluate(config, "checkpoints/finetune")   # -> summary["final_model"]

Modules: `config` (fields, defaults, checks), `input_pipeline` (the training data stream), `state`
(the network a run starts from, TrainState), `optim` (freeze / lr multipliers / Kaldi max-change /
schedules as optax transforms), `natural_gradient` (Kaldi's NG-SGD preconditioner as an optax
transform), `step` (the jitted data-parallel step, BatchNorm moments), `checkpointing` (Orbax
manager), `workdir` (the run directory: lock, resume, run files, final model), `metric_writers`
(metrics.jsonl + TensorBoard + console, training curve), `preemption` (SIGINT/SIGTERM -> checkpoint
and stop), `dev_set` (dev EER), `train` (the loop), `commands` (`xvjax train`,
`xvjax make-tfds-dataset`). Joining a multi-process cluster is `xvjax.distributed`.
"""
