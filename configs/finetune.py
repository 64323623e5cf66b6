"""Fine-tune a pretrained x-vector network on in-domain data (Snyder's transfer recipe).

    xvjax train --config=configs/finetune.py --init-from=exp/xvector_nnet_1a/final.raw \
        --data=data/tgt_train --workdir=checkpoints/finetune [--freeze='tdnn[1-5]'] \
        [--musan=musan --rirs=RIRS_NOISES] [--config.train.num_steps=2000]

The output layer is replaced by a zero-initialised one sized to the in-domain speakers (the seed's
`resize.config`: param-stddev=0 bias-stddev=0 max-change=1.5); the frame-level layers are frozen
(their BatchNorm statistics too), the segment-level layers and the new output train with Kaldi's
momentum SGD, per-layer max-change and max-param-change, lr decaying exponentially.
"""

from xvjax.train.config import base_config


def get_config():
    c = base_config()
    c.resize_output = True
    c.optim.freeze = "tdnn[1-5]"
    c.optim.optimizer = "sgd"
    c.optim.momentum = 0.5
    # Plain momentum SGD (no natural gradient) needs larger rates than Kaldi's effective 0.001:
    # on the tests' two-domain corpus 0.1 -> 0.01 fine-tunes well, 0.01 barely moves the new head.
    c.optim.initial_lr = 0.05
    c.optim.final_lr = 0.005
    c.optim.schedule = "exponential"
    c.train.num_steps = 2000
    c.train.batch_size = 64
    c.data.min_chunk = 200
    c.data.max_chunk = 400
    return c
