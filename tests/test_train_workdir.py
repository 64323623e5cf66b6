"""The run directory of `xvjax.train.workdir`: fresh run vs resume point, the run files, the config
comparison on resume (allowed, warned, refused changes), the lock, the final model export."""

import json
import logging
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xvjax.errors import XvjaxError
from xvjax.model.checkpoint import load_model
from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import init_variables
from xvjax.train.config import base_config
from xvjax.train.workdir import Workdir, check_resumable, config_changes

SPEC = xvector_1a_spec(
    input_dim=8, num_speakers=3, frame_dims=(16, 16, 16, 16, 32), embedding_dims=(16, 16)
)


def test_fresh_run_writes_its_files_and_no_checkpoint_dir(tmp_path):
    path = tmp_path / "run"
    os.makedirs(path)
    run = Workdir(path, base_config())
    assert run.resume_point() is None
    run.write_run_files(SPEC, ("spk_a", "spk_b", "spk_c"), None, {})
    assert sorted(os.listdir(path)) == ["config.json", "model_spec.json", "speakers.txt"]
    assert (path / "speakers.txt").read_text() == "0 spk_a\n1 spk_b\n2 spk_c\n"
    assert json.loads((path / "config.json").read_text())["optim"]["initial_lr"] == 0.01
    assert run.resume_point() is None  # a spec but no checkpoints: still a fresh run


def _checkpointed_run(path, speakers=None):
    config = base_config()
    config.train.async_checkpoints = False
    run = Workdir(path, config)
    run.write_run_files(SPEC, speakers, None, {})
    ckpt = run.checkpointer()
    ckpt.save(4, {"w": jnp.ones(3)}, {"archive": 0}, {"history": []})
    ckpt.close()


def test_resume_point_and_changed_config_warning(tmp_path, caplog):
    path = tmp_path / "run"
    _checkpointed_run(path)
    changed = base_config()
    changed.train.async_checkpoints = False
    changed.optim.initial_lr = 0.5
    changed.train.progress = False  # allowed without a warning
    again = Workdir(path, changed)
    resume = again.resume_point()
    assert resume.step == 4 and resume.spec == SPEC
    changes = again.check_resume(resume, None)
    assert changes == {"optim.initial_lr": (0.01, 0.5), "train.progress": (True, False)}
    with caplog.at_level(logging.WARNING, logger="xvjax"):
        again.write_run_files(resume.spec, None, resume, changes)
    assert (
        "Resuming at step 4 with a config that differs from the checkpointed run's in: "
        "optim.initial_lr (0.01 -> 0.5), train.progress (True -> False) (" in caplog.text
    )
    saved = json.loads((path / "config.json").read_text())
    assert saved["optim"]["initial_lr"] == 0.5
    assert saved["resumes"] == [
        {"step": 4, "changes": {"optim.initial_lr": [0.01, 0.5], "train.progress": [True, False]}}
    ]
    assert again.saved_config() == json.loads(changed.to_json_best_effort())  # "resumes" left out
    again.checkpointer().close()


@pytest.mark.parametrize(
    "field, value",
    [("optim.freeze", "tdnn[1-5]"), ("data.train_dir", "data/other"), ("seed", 3),
     ("model.frame_dims", (8, 8, 8, 8, 8)), ("optim.optimizer", "adam"), ("train.batch_size", 8)],
)  # fmt: skip
def test_resume_refuses_changes_to_what_the_state_or_data_stream_is(tmp_path, field, value):
    path = tmp_path / "run"
    _checkpointed_run(path, speakers=("a", "b", "c"))
    before = {n: (path / n).read_bytes() for n in ("config.json", "speakers.txt")}
    changed = base_config()
    section, _, leaf = field.rpartition(".")
    (changed[section] if section else changed)[leaf] = value
    run = Workdir(path, changed)
    with pytest.raises(XvjaxError, match=f"cannot resume: the config differs .* in {field} \\("):
        run.check_resume(run.resume_point(), ("a", "b", "c"))
    assert {n: (path / n).read_bytes() for n in before} == before  # nothing rewritten
    run.checkpointer().close()


def test_resume_refuses_other_speakers(tmp_path):
    path = tmp_path / "run"
    _checkpointed_run(path, speakers=("a", "b", "c"))
    run = Workdir(path, base_config())
    with pytest.raises(XvjaxError, match="training data has 4 speakers, not the 3"):
        run.check_resume(run.resume_point(), ("a", "b", "c", "d"))
    run.checkpointer().close()


def test_config_changes_classified():
    old = json.loads(base_config().to_json_best_effort())
    new = base_config()
    new.train.num_steps, new.eval.every, new.dist.process_id = 5000, 100, 3
    assert config_changes(old, json.loads(new.to_json_best_effort())) == {
        "eval.every": (0, 100),
        "train.num_steps": (1000, 5000),
    }  # dist.process_id differs between the processes of one run: never compared
    assert check_resumable(old, json.loads(new.to_json_best_effort())) == {
        "eval.every": (0, 100),
        "train.num_steps": (1000, 5000),
    }
    new.optim.lr_mults, new.optim.momentum = "output:2", 0.9
    with pytest.raises(XvjaxError) as err:
        check_resumable(old, json.loads(new.to_json_best_effort()))
    assert "optim.lr_mults ('' -> 'output:2'), optim.momentum (0.5 -> 0.9);" in str(err.value)
    assert "num_steps" not in str(err.value)


def test_lock_refuses_a_second_run_and_is_released(tmp_path):
    run = Workdir(tmp_path / "run", base_config())
    with run.lock(None):
        assert (tmp_path / "run" / "train.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(
            XvjaxError, match=f"in use by another training run \\(process {os.getpid()};"
        ):
            with Workdir(tmp_path / "run", base_config()).lock(None):
                pass
    with run.lock(None):  # released at the end of the block
        pass


def test_lock_of_a_killed_run_is_released(tmp_path):
    path = str(tmp_path / "run")
    holder = (
        "import sys, time\n"
        "from xvjax.train.config import base_config\n"
        "from xvjax.train.workdir import Workdir\n"
        f"with Workdir({path!r}, base_config()).lock(None):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(600)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo, JAX_PLATFORMS="cpu")
    p = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert p.stdout.readline() == "locked\n"
        with pytest.raises(XvjaxError, match=f"process {p.pid};"):
            with Workdir(path, base_config()).lock(None):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    with Workdir(path, base_config()).lock(None):
        pass


def test_lock_refuses_a_workdir_changed_since_its_resume_point_was_read(tmp_path):
    path = tmp_path / "run"
    run = Workdir(path, base_config())
    _checkpointed_run(path)  # another run checkpointed after this one looked (resume_point None)
    with pytest.raises(XvjaxError, match="changed while this run was starting"):
        with run.lock(None):
            pass
    run.checkpointer().close()


def test_unwritable_workdir_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(XvjaxError, match="cannot write to workdir .*file/run: Not a directory"):
        with Workdir(tmp_path / "file" / "run", base_config()).lock(None):
            pass


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_read_only_workdir_is_a_one_line_error(tmp_path):
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(XvjaxError, match="cannot write to workdir .*: Permission denied"):
            with Workdir(tmp_path / "run", base_config()).lock(None):
                pass
    finally:
        os.chmod(tmp_path, 0o755)


def test_export_final_model(tmp_path):
    variables = jax.tree.map(np.asarray, init_variables(SPEC, jax.random.key(0)))
    mask = os.umask(0o027)
    try:
        final = Workdir(tmp_path, base_config()).export_final_model(SPEC, variables)
    finally:
        os.umask(mask)
    assert final == str(tmp_path / "final")
    assert os.stat(final).st_mode & 0o777 == 0o750  # the umask's permissions, not owner-only
    spec, loaded = load_model(final)
    assert spec == SPEC
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(a, b)


def test_export_refuses_non_finite_variables(tmp_path):
    variables = jax.tree.map(np.asarray, init_variables(SPEC, jax.random.key(0)))
    variables["batch_stats"]["tdnn6"]["batchnorm"]["mean"][3] = np.nan
    with pytest.raises(XvjaxError, match="non-finite values in batch_stats/tdnn6/batchnorm/mean"):
        Workdir(tmp_path, base_config()).export_final_model(SPEC, variables)
    assert not os.path.exists(tmp_path / "final")


def test_a_workdir_from_before_a_new_config_field_resumes(tmp_path):
    """config.json of an older xvjax lacks fields added since: they count as their defaults."""
    path = tmp_path / "run"
    _checkpointed_run(path)
    saved = json.loads((path / "config.json").read_text())
    del saved["optim"]["natural_gradient"], saved["train"]["recompute_bn_batches"]
    (path / "config.json").write_text(json.dumps(saved))
    config = base_config()
    config.train.async_checkpoints = False
    run = Workdir(path, config)
    assert run.check_resume(run.resume_point(), None) == {}
    run.checkpointer().close()
