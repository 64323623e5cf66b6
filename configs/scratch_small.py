"""A small x-vector network from scratch, for the built-in demo corpus and quick experiments.

Widths 128 (frame) / 128 (segment), chunks 100-200 frames, Adam with cosine decay.
"""

from xvjax.train.config import base_config


def get_config():
    c = base_config()
    c.init_from = ""
    c.model.frame_dims = (128, 128, 128, 128, 256)
    c.model.embedding_dims = (128, 128)
    c.optim.optimizer = "adam"
    c.optim.initial_lr = 0.003
    c.optim.final_lr = 0.0003
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 50
    c.optim.max_change = 0.0
    c.optim.max_param_change = 0.0
    c.train.num_steps = 1000
    c.train.batch_size = 32
    c.train.log_every = 10
    c.data.min_chunk = 100
    c.data.max_chunk = 200
    c.data.chunk_quantum = 20
    c.data.num_repeats = 20
    c.data.frames_per_archive = 200_000
    return c
