"""The run directory of `xvjax.train.workdir`: fresh run vs resume point, the run files, the config
comparison on resume, the final model export."""

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.model.checkpoint import load_model
from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import init_variables
from xvjax.train.config import base_config
from xvjax.train.workdir import Workdir

SPEC = xvector_1a_spec(
    input_dim=8, num_speakers=3, frame_dims=(16, 16, 16, 16, 32), embedding_dims=(16, 16)
)


def test_fresh_run_writes_its_files_and_no_checkpoint_dir(tmp_path):
    path = tmp_path / "run"
    os.makedirs(path)
    (path / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')  # from an older run
    run = Workdir(path, base_config())
    assert run.resume_point() is None
    run.write_run_files(SPEC, ("spk_a", "spk_b", "spk_c"), fresh=True)
    assert sorted(os.listdir(path)) == ["config.json", "model_spec.json", "speakers.txt"]
    assert (path / "speakers.txt").read_text() == "0 spk_a\n1 spk_b\n2 spk_c\n"
    assert json.loads((path / "config.json").read_text())["optim"]["initial_lr"] == 0.01
    assert run.resume_point() is None  # a spec but no checkpoints: still a fresh run


def test_resume_point_and_changed_config_warning(tmp_path, caplog):
    path = tmp_path / "run"
    config = base_config()
    config.train.async_checkpoints = False
    run = Workdir(path, config)
    run.write_run_files(SPEC, None, fresh=True)
    (path / "metrics.jsonl").write_text('{"step": 4, "loss": 1.0}\n')
    ckpt = run.checkpointer()
    ckpt.save(4, {"w": jnp.ones(3)}, {"archive": 0}, {"history": []})
    ckpt.close()

    changed = base_config()
    changed.optim.initial_lr = 0.5
    changed.train.progress = False  # cosmetic: not named
    again = Workdir(path, changed)
    resume = again.resume_point()
    assert resume.step == 4 and resume.spec == SPEC
    with caplog.at_level(logging.WARNING, logger="xvjax"):
        again.write_run_files(resume.spec, None, fresh=False)
    assert "differs from the checkpointed run's in: optim.initial_lr (" in caplog.text
    assert (path / "metrics.jsonl").exists()  # a resumed run appends to its metrics
    assert json.loads((path / "config.json").read_text())["optim"]["initial_lr"] == 0.5
    again.checkpointer().close()


def test_export_final_model(tmp_path):
    variables = jax.tree.map(np.asarray, init_variables(SPEC, jax.random.key(0)))
    final = Workdir(tmp_path, base_config()).export_final_model(SPEC, variables)
    assert final == str(tmp_path / "final")
    spec, loaded = load_model(final)
    assert spec == SPEC
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
