"""Kaldi's BatchNorm statistics recomputation at the end of training (`RecomputeStats`): the frozen
BN layers keep theirs, the others get the pooled moments of their inputs under the final weights, the
sharded trainer computes the same as one device, and the trainer's final model carries them."""

import jax
import numpy as np
import pytest

from xvjax.model.checkpoint import load_model
from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import XVector, init_variables, recompute_batch_stats
from xvjax.synthetic.fake_feats import write_fake_data_dir
from xvjax.train import step as step_lib
from xvjax.train.config import base_config
from xvjax.train.train import train_and_evaluate

FROZEN = ("tdnn1", "tdnn2", "tdnn3", "tdnn4", "tdnn5")


@pytest.fixture(scope="module")
def tiny():
    spec = xvector_1a_spec(
        input_dim=6, num_speakers=4, frame_dims=(8, 8, 8, 8, 12), embedding_dims=(8, 8)
    )
    v = init_variables(spec, jax.random.key(0))
    rng = np.random.default_rng(3)
    for subs in v["batch_stats"].values():  # imported-looking statistics
        for st in subs.values():
            st["mean"] = rng.normal(size=st["mean"].shape).astype(np.float32)
            st["var"] = rng.uniform(0.5, 2, size=st["var"].shape).astype(np.float32)
            st["count"] = np.float32(1000)
    batches = [rng.normal(size=(4, 25, 6)).astype(np.float32) for _ in range(3)]
    return spec, v, batches


def test_frozen_layers_keep_their_statistics_the_others_get_pooled_moments(tiny):
    spec, v, batches = tiny
    new = recompute_batch_stats(spec, v, batches, frozen_bn=FROZEN)
    for layer in FROZEN:
        for a, b in zip(jax.tree.leaves(v["batch_stats"][layer]), jax.tree.leaves(new["batch_stats"][layer]), strict=True):  # fmt: skip
            np.testing.assert_array_equal(a, b)
    # tdnn6's BN input only depends on frozen (test-mode) BN layers: pooled moments of tdnn6.relu
    h = np.concatenate(
        [
            np.asarray(XVector(spec).apply(v, b, output_node="tdnn6.relu"), np.float64)
            for b in batches
        ]
    )
    st = new["batch_stats"]["tdnn6"]["batchnorm"]
    assert st["count"] == len(h) == 12
    np.testing.assert_allclose(st["mean"], h.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st["var"], h.var(0), rtol=1e-4, atol=1e-6)
    assert not np.allclose(st["mean"], v["batch_stats"]["tdnn6"]["batchnorm"]["mean"])
    assert new["batch_stats"]["tdnn7"]["batchnorm"]["count"] == 12


def test_sharded_moments_equal_one_device(tiny):
    spec, v, batches = tiny
    mesh = step_lib.make_mesh()
    moments = step_lib.make_batch_moments(spec, mesh, FROZEN)
    state_vars = step_lib.replicate(v, mesh)
    sharded = recompute_batch_stats(
        spec,
        v,
        batches,
        FROZEN,
        moments_fn=lambda _, x: moments(state_vars, step_lib.shard_batch({"f": x}, mesh)["f"]),
    )
    single = recompute_batch_stats(spec, v, batches, FROZEN)
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_trainer_recomputes_the_final_models_statistics(tmp_path):
    data = str(tmp_path / "train")
    write_fake_data_dir(
        data, num_speakers=4, utts_per_speaker=3, feat_dim=6, min_frames=40, max_frames=70
    )
    finals = {}
    for n in (0, 5):
        c = base_config()
        c.model.frame_dims, c.model.embedding_dims = (8, 8, 8, 8, 12), (8, 8)
        c.data.train_dir, c.data.min_chunk, c.data.max_chunk = data, 30, 30
        c.data.frames_per_archive = 600
        c.optim.freeze = "tdnn[1-3]"
        c.train.num_steps, c.train.batch_size, c.train.recompute_bn_batches = 6, 4, n
        c.train.progress = c.train.tensorboard = False
        train_and_evaluate(c, str(tmp_path / f"run{n}"))
        finals[n] = load_model(tmp_path / f"run{n}" / "final")[1]
    for a, b in zip(jax.tree.leaves(finals[0]["params"]), jax.tree.leaves(finals[5]["params"]), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)  # the same training
    stats0, stats5 = finals[0]["batch_stats"], finals[5]["batch_stats"]
    for layer in ("tdnn1", "tdnn2", "tdnn3"):  # frozen: as initialised, both times
        np.testing.assert_array_equal(
            stats0[layer]["batchnorm"]["mean"], stats5[layer]["batchnorm"]["mean"]
        )
    for layer in ("tdnn4", "tdnn5", "tdnn6", "tdnn7"):  # re-estimated: not the running averages
        assert not np.allclose(
            stats0[layer]["batchnorm"]["mean"], stats5[layer]["batchnorm"]["mean"]
        )
    # frames counted: 5 minibatches of 4 chunks, 30 - 14 frames each (frame level), 1 (segment level)
    assert stats5["tdnn4"]["batchnorm"]["count"] == 5 * 4 * 16
    assert stats5["tdnn6"]["batchnorm"]["count"] == 5 * 4
