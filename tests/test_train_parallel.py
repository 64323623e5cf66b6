"""Data parallelism: the sharded step on 2 (forced host) devices equals one device; two processes
joined by jax.distributed (CPU collectives, loopback) train like one process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHARDED_SCRIPT = r"""
import json, sys, jax, numpy as np
from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import XVector, init_variables
from xvjax.train import natural_gradient, optim, step as step_lib
from xvjax.train.config import base_config
from xvjax.train.state import create_train_state

assert jax.device_count() == 2, jax.devices()
spec = xvector_1a_spec(input_dim=8, num_speakers=5, frame_dims=(16, 16, 16, 16, 32), embedding_dims=(16, 16))
variables = init_variables(spec, jax.random.key(0))
variables["params"]["output"]["affine"]["kernel"] = 0.1 * jax.random.normal(jax.random.key(1), (16, 5))
cfg = base_config().optim
cfg.initial_lr, cfg.final_lr, cfg.optimizer = 0.05, 0.01, sys.argv[1]
B = int(sys.argv[2])
opt = optim.make_optimizer(
    cfg, variables["params"], 10, natural_gradient_affines=natural_gradient.tapped_affines(spec),
    batch_size=B)
rng = np.random.default_rng(0)
batches = [{"feats": rng.normal(size=(B, 30, 8)).astype(np.float32),
            "labels": rng.integers(0, 5, B).astype(np.int32)} for _ in range(3)]
out = {}
for n in (1, 2):
    mesh = step_lib.make_mesh(jax.devices()[:n])
    state = step_lib.replicate(create_train_state(variables, opt.tx, 0), mesh)
    fn = step_lib.make_train_step(XVector(spec).apply, opt.tx, mesh,
                                  tapped_affines=[a.node for a in opt.tapped])
    losses = []
    for b in batches:
        sb = step_lib.shard_batch(b, mesh)
        shards = sorted({tuple(s.index[0].indices(B)) for s in sb["feats"].addressable_shards})
        state, m = fn(state, sb)
        losses.append(float(m["loss"]))
    out[n] = {"losses": losses, "shards": shards,
              "params": [np.asarray(x).tolist() for x in jax.tree.leaves(state.params)],
              "stats": [np.asarray(x).tolist() for x in jax.tree.leaves(state.batch_stats)]}
print(json.dumps(out))
"""


# NG-SGD with more chunks than the preconditioner ranks: fewer rows leave directions of Kaldi's
# Fisher estimate that only float roundoff decides (as in Kaldi), which the summation order changes.
@pytest.mark.parametrize("optimizer, batch", [("sgd", 8), ("ngsgd", 24)])
def test_two_devices_same_loss_and_bn_stats_as_one(optimizer, batch):
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=REPO,
    )
    r = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT, optimizer, str(batch)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    one, two = out["1"], out["2"]
    half = batch // 2
    assert one["shards"] == [[0, batch, 1]] and two["shards"] == [[0, half, 1], [half, batch, 1]]
    # NG-SGD's preconditioner (sums over the rows of both devices, an SVD) amplifies the different
    # summation order a little more than plain SGD
    scale = 1 if optimizer == "sgd" else 10
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=0, atol=1e-6 * scale)
    # BatchNorm minibatch statistics are over the global batch (XLA all-reduces them), so the
    # running stats and the params agree too (not just the loss)
    for a, b in zip(one["stats"], two["stats"], strict=True):
        np.testing.assert_allclose(
            np.asarray(b), np.asarray(a), rtol=1e-5 * scale, atol=1e-6 * scale
        )
    for a, b in zip(one["params"], two["params"], strict=True):
        np.testing.assert_allclose(
            np.asarray(b), np.asarray(a), rtol=1e-5 * scale, atol=1e-6 * scale
        )


DIST_SCRIPT = r"""
import logging, sys
logging.basicConfig(level=logging.WARNING)
from xvjax.train.config import base_config
from xvjax.train.train import train_and_evaluate
data, workdir, nproc, pid, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
c = base_config()
c.model.frame_dims, c.model.embedding_dims = (16, 16, 16, 16, 32), (16, 16)
c.data.train_dir, c.data.min_chunk, c.data.max_chunk, c.data.frames_per_archive = data, 30, 30, 1000
c.optim.initial_lr, c.optim.final_lr = 0.05, 0.01
c.train.num_steps, c.train.batch_size, c.train.log_every, c.train.checkpoint_every = 6, 8, 1, 3
c.train.progress = c.train.tensorboard = False
if nproc > 1:
    c.dist.coordinator, c.dist.num_processes, c.dist.process_id = f"127.0.0.1:{port}", nproc, pid
train_and_evaluate(c, workdir)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    from xvjax.model.checkpoint import load_model
    from xvjax.synthetic.fake_feats import write_fake_data_dir

    data = str(tmp_path / "train")
    write_fake_data_dir(
        data, num_speakers=6, utts_per_speaker=3, feat_dim=8, min_frames=40, max_frames=80
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    env.pop("XLA_FLAGS", None)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DIST_SCRIPT, data, two, "2", str(p), port],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in (0, 1)
    ]
    r = subprocess.run(
        [sys.executable, "-c", DIST_SCRIPT, data, one, "1", "0", port],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    assert sorted(os.listdir(os.path.join(two, "checkpoints"))) == ["3", "6"]

    def losses(workdir):
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            return [json.loads(line)["loss"] for line in f if '"loss"' in line]

    np.testing.assert_allclose(losses(two), losses(one), rtol=0, atol=1e-5)
    assert len(losses(one)) == 6
    _, v1 = load_model(os.path.join(one, "final"))
    _, v2 = load_model(os.path.join(two, "final"))
    import jax

    for a, b in zip(jax.tree.leaves(v1), jax.tree.leaves(v2), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_single_process_joins_no_cluster():
    from xvjax.distributed import join_cluster
    from xvjax.errors import XvjaxError

    join_cluster("", 1, 0)  # a plain run: nothing to join, JAX untouched
    with pytest.raises(XvjaxError, match="need a coordinator"):
        join_cluster("", 2, 1)
