"""`xvjax train` killed with SIGKILL mid-run and resumed (with other data worker counts) ends
bit-identical to an uninterrupted run; SIGINT saves a checkpoint before exiting."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from xvjax.synthetic.fake_feats import write_fake_data_dir

NUM_STEPS = 60
CKPT_EVERY = 10


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "train"
    write_fake_data_dir(
        str(path), num_speakers=6, utts_per_speaker=3, feat_dim=8, min_frames=40, max_frames=80
    )
    return str(path)


def _cmd(data_dir, workdir, *extra):
    return [
        sys.executable,
        "-c",
        "from xvjax.cli import main; main()",
        "train",
        "--config=configs/scratch_small.py",
        f"--data={data_dir}",
        f"--workdir={workdir}",
        f"--num-steps={NUM_STEPS}",
        "--batch-size=8",
        "--config.model.frame_dims=(16,16,16,16,32)",
        "--config.model.embedding_dims=(16,16)",
        "--config.data.min_chunk=30",
        "--config.data.max_chunk=30",
        "--config.data.frames_per_archive=1000",
        "--config.optim.optimizer=sgd",
        "--config.optim.momentum=0.5",
        "--config.optim.initial_lr=0.05",
        "--config.optim.final_lr=0.005",
        "--config.optim.schedule=exponential",
        "--config.optim.warmup_steps=0",
        f"--config.train.checkpoint_every={CKPT_EVERY}",
        "--config.train.log_every=10",
        "--config.train.progress=False",
        "--config.train.tensorboard=False",
        *extra,
    ]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
    """The runs compile the same step: JAX's persistent cache saves all but the first compile."""
    ENV["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))


def _committed_steps(workdir):
    d = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def _load_final(workdir):
    from xvjax.model.checkpoint import load_model

    return load_model(os.path.join(workdir, "final"))[1]


def _wait(proc, ready, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.005)


@pytest.mark.slow
def test_interrupted_runs_resume_bit_identical(data_dir, tmp_path):
    """Uninterrupted run vs. the same run stopped by SIGINT, resumed, killed by SIGKILL, resumed."""
    full, broken = str(tmp_path / "full"), str(tmp_path / "broken")
    r = subprocess.run(
        _cmd(data_dir, full), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]

    # 1) Ctrl-C after the first log point: checkpoint saved at the current step, exit status 130
    p = subprocess.Popen(
        _cmd(data_dir, broken),
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = os.path.join(broken, "metrics.jsonl")
    _wait(p, lambda: os.path.exists(metrics) and os.path.getsize(metrics) > 0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-3000:]
    assert "saving a checkpoint" in err
    stopped_at = _committed_steps(broken)[-1]
    assert 0 < stopped_at < NUM_STEPS

    # 2) resume (more data workers: the batches do not depend on them), then SIGKILL once a later
    # periodic checkpoint is on disk
    p = subprocess.Popen(
        _cmd(data_dir, broken, "--num-workers=3"),
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait(p, lambda: _committed_steps(broken)[-1] >= stopped_at + CKPT_EVERY)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = _committed_steps(broken)[-1]
    assert stopped_at < killed_at < NUM_STEPS and not os.path.exists(os.path.join(broken, "final"))

    # 3) resume to the end (batches made in the training thread)
    r = subprocess.run(
        _cmd(data_dir, broken, "--num-workers=0"),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Resuming from" in r.stderr
    a, b = _load_final(full), _load_final(broken)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert np.abs(np.asarray(a["params"]["output"]["affine"]["kernel"])).sum() > 0  # it trained
    # metrics.jsonl: one line per step, the same as the uninterrupted run's (the killed run's lines
    # after its last checkpoint were dropped on resume)
    rows = {
        w: [json.loads(x) for x in open(os.path.join(w, "metrics.jsonl"))] for w in (full, broken)
    }
    assert [r["step"] for r in rows[broken]] == list(range(10, NUM_STEPS + 1, 10))
    assert [r["step"] for r in rows[full]] == list(range(10, NUM_STEPS + 1, 10))
