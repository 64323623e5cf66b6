"""Fine-tune a pretrained x-vector network on in-domain data (Snyder's transfer recipe).

    xvjax train --config=configs/finetune.py --init-from=exp/xvector_nnet_1a/final.raw \
        --data=data/tgt_train --workdir=checkpoints/finetune [--freeze='tdnn[1-5]'] \
        [--musan=musan --rirs=RIRS_NOISES] [--config.train.num_steps=2000]

The output layer is replaced by a zero-initialised one sized to the in-domain speakers (the seed's
`resize.config`: param-stddev=0 bias-stddev=0 max-change=1.5); the frame-level layers are frozen
(their BatchNorm statistics too); the segment-level layers and the new output train with Kaldi's
natural-gradient SGD at Kaldi's own values (run_xvector_1a.sh: effective lrate 0.001 -> 0.0001 on
the objective summed over the minibatch, momentum 0.5, per-layer max-change, max-param-change 2),
so a Kaldi recipe's rates carry over. On the Kaldi fixture model fine-tuned on the built-in corpus
this was the best or joint-best of NG-SGD / momentum SGD / Adam at 1x and 3x these rates
(benchmarks/bench_finetune_optimizers.py); plain SGD at Kaldi's rates barely moves the new head.
"""

from xvjax.train.config import base_config


def get_config():
    c = base_config()
    c.resize_output = True
    c.optim.freeze = "tdnn[1-5]"
    c.optim.optimizer = "ngsgd"
    c.optim.momentum = 0.5
    c.optim.lr_on_summed_objective = True
    c.optim.initial_lr = 0.001
    c.optim.final_lr = 0.0001
    c.optim.schedule = "exponential"
    c.train.num_steps = 2000
    c.train.batch_size = 64
    c.data.min_chunk = 200
    c.data.max_chunk = 400
    return c
