"""`xvjax train` refuses to give a silent wrong answer or a half-written workdir: nan data stops the
run naming the step (no model, no non-finite checkpoint), a second run on a busy workdir is refused,
a resume with an incompatible config is refused before anything is written, a compatible one is
recorded, metrics.jsonl keeps one line per step across a resume."""

import json
import os

import numpy as np
import pytest

from xvjax import cli
from xvjax.kaldi import tables
from xvjax.model.checkpoint import load_model
from xvjax.synthetic.fake_feats import write_fake_data_dir
from xvjax.train.checkpointing import Checkpointer, all_finite
from xvjax.train.config import base_config
from xvjax.train.workdir import Workdir

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("guards") / "train")
    write_fake_data_dir(
        path, num_speakers=5, utts_per_speaker=3, feat_dim=8, min_frames=40, max_frames=80
    )
    return path


def _argv(data, workdir, *extra):
    return [
        "train",
        "--config=configs/scratch_small.py",
        f"--data={data}",
        f"--workdir={workdir}",
        "--num-steps=12",
        "--batch-size=4",
        "--config.model.frame_dims=(8,8,8,8,16)",
        "--config.model.embedding_dims=(8,8)",
        "--config.data.min_chunk=30",
        "--config.data.max_chunk=30",
        "--config.data.frames_per_archive=600",
        "--config.optim.warmup_steps=0",
        "--config.train.log_every=2",
        "--config.train.checkpoint_every=4",
        "--config.train.async_checkpoints=False",
        "--config.train.progress=False",
        "--config.train.tensorboard=False",
        *extra,
    ]


def test_nan_features_stop_the_run_naming_the_step(data_dir, tmp_path, capsys):
    nan_data = str(tmp_path / "nan_data")
    write_fake_data_dir(
        nan_data, num_speakers=5, utts_per_speaker=3, feat_dim=8, min_frames=40, max_frames=80
    )
    scp = os.path.join(nan_data, "feats.scp")
    feats = tables.read_dict(f"scp:{scp}")
    feats["spk003-u02"][0:3] = np.nan  # sampled first at step 9 of this seed
    ark = os.path.join(nan_data, "feats2.ark")
    tables.write_dict(f"ark,scp:{ark},{scp}", feats)

    workdir = tmp_path / "run"
    assert cli.run(_argv(nan_data, str(workdir))) == 1
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("ERROR (xvjax train): ")]
    assert len(line) == 1, err
    assert (
        "non-finite loss (nan), gradient or optimizer state; the minibatch has nan/inf" in line[0]
    )
    failed_at = int(line[0].split("step ")[1].split(":")[0])
    assert 4 < failed_at <= 12
    assert not os.path.exists(workdir / "final")
    ckpt = Checkpointer(workdir / "checkpoints")
    assert ckpt.all_steps() == [4, 8][: (failed_at - 1) // 4]  # none at or after the bad step
    ckpt.close()
    rows = [json.loads(x) for x in open(workdir / "metrics.jsonl")]
    assert all(np.isfinite(r["loss"]) for r in rows) and all(r["step"] < failed_at for r in rows)


def test_checkpointer_refuses_a_non_finite_state(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", async_save=False)
    good = {"w": np.ones(3, np.float32), "key": np.zeros(2, np.uint32)}
    assert all_finite(good)
    bad = {"w": np.array([1.0, np.inf, 0.0], np.float32), "key": np.zeros(2, np.uint32)}
    assert not all_finite(bad)
    with pytest.raises(Exception, match="refusing to save checkpoint step 3: the state has nan"):
        ckpt.save(3, bad, {})
    assert ckpt.all_steps() == []
    ckpt.close()


def test_second_run_on_a_busy_workdir_is_refused(data_dir, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    config = base_config()
    with Workdir(workdir, config).lock(None):  # a run holds the workdir
        assert cli.run(_argv(data_dir, workdir)) == 1
    err = capsys.readouterr().err
    assert f"ERROR (xvjax train): workdir {workdir} is in use by another training run" in err
    assert sorted(os.listdir(workdir)) == ["train.lock"]  # the second run wrote nothing


@pytest.mark.slow
def test_resume_refuses_a_changed_freeze_and_records_a_longer_run(data_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert cli.run(_argv(data_dir, str(workdir))) == 0
    files = {n: (workdir / n).read_bytes() for n in ("config.json", "speakers.txt")}
    # the case: a changed --freeze used to crash in optax and overwrite the run files
    assert cli.run(_argv(data_dir, str(workdir), "--freeze=tdnn1")) == 1
    err = capsys.readouterr().err
    assert (
        "ERROR (xvjax train): cannot resume: the config differs from the checkpointed run's in "
        "optim.freeze ('' -> 'tdnn1');" in err
    )
    assert {n: (workdir / n).read_bytes() for n in files} == files

    # a longer run resumes from step 12, records the change, keeps one metrics line per step
    assert cli.run(_argv(data_dir, str(workdir), "--num-steps=16")) == 0
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["train"]["num_steps"] == 16
    assert saved["resumes"] == [{"step": 12, "changes": {"train.num_steps": [12, 16]}}]
    steps = [json.loads(x)["step"] for x in open(workdir / "metrics.jsonl")]
    assert steps == [2, 4, 6, 8, 10, 12, 14, 16]
    spec, variables = load_model(workdir / "final")
    assert all_finite(variables) and spec.output_dim("output") == 5
