"""Kaldi's sre16/voxceleb x-vector network (`run_xvector_1a.sh`) trained from scratch.

xconfig: tdnn1 Append(-2..2) 512, tdnn2 Append(-2,0,2) 512, tdnn3 Append(-3,0,3) 512, tdnn4 512,
tdnn5 1500, stats mean+stddev(0:1:1:10000), tdnn6 512, tdnn7 512, output log-softmax (zero init);
egs of 200-400 frames, minibatch 64, momentum 0.5, max-param-change 2, effective lr 0.001 -> 0.0001
(times Kaldi's 3-8 jobs; plain SGD without natural gradient wants the larger default here).

    xvjax train --config=configs/xvector_1a.py --data=data/train_combined_no_sil \
        --workdir=checkpoints/xvector_1a --config.train.num_steps=100000
"""

from xvjax.train.config import base_config


def get_config():
    c = base_config()
    c.init_from = ""
    c.model.frame_dims = (512, 512, 512, 512, 1500)
    c.model.embedding_dims = (512, 512)
    c.optim.freeze = ""
    c.optim.momentum = 0.5
    c.optim.initial_lr = 0.01
    c.optim.final_lr = 0.001
    c.optim.max_change = 0.75
    c.optim.max_change_per_layer = "output:1.5"
    c.optim.max_param_change = 2.0
    c.train.num_steps = 100000
    c.train.checkpoint_every = 1000
    c.train.log_every = 50
    c.data.min_chunk = 200
    c.data.max_chunk = 400
    c.data.num_repeats = 50
    return c
