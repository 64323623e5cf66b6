"""Kaldi in, Kaldi out: fine-tune Kaldi's own trained `final.raw` (fixture 'small') on Kaldi egs,
with tdnn1-5 frozen; the exported model goes back to nnet3 (`flax-to-nnet3`) and extracts x-vectors
(`nnet3-xvector-compute`)."""

import os
import shutil

import jax
import numpy as np
import pytest

from xvjax import cli
from xvjax.kaldi import tables
from xvjax.model.checkpoint import load_any, load_model

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.mark.parametrize(
    "optimizer", [[], ["--optimizer=ngsgd", "--config.optim.lr_on_summed_objective=True"]]
)
def test_finetune_kaldi_model_on_kaldi_egs_and_export(kaldi_fixtures, tmp_path, optimizer):
    small = kaldi_fixtures / "nnet3" / "small"
    egs_dir = tmp_path / "egs"
    os.makedirs(egs_dir)
    shutil.copy(small / "egs_sample.ark", egs_dir / "egs.1.ark")
    workdir = tmp_path / "run"
    argv = [
        "train",
        "--config=configs/finetune.py",
        f"--init-from={small / 'final.raw'}",
        f"--egs-dir={egs_dir}",
        f"--workdir={workdir}",
        "--freeze=tdnn[1-5]",
        "--num-steps=4",
        "--batch-size=2",
        "--config.data.num_speakers=12",
        "--config.train.progress=False",
        "--config.train.tensorboard=False",
        *optimizer,  # Kaldi's momentum SGD, or its NG-SGD with its learning-rate convention
    ]
    assert cli.run(argv) == 0
    spec0, v0 = load_any(str(small / "final.raw"))
    spec, v = load_model(workdir / "final")
    assert spec.output_dim("output") == 12 and spec.input_dim == 30
    for layer in v0["params"]:
        same = all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(v0["params"][layer]), jax.tree.leaves(v["params"][layer]), strict=True)
        ) if layer != "output" else False  # fmt: skip
        assert same == (layer in {"tdnn1", "tdnn2", "tdnn3", "tdnn4", "tdnn5"}), layer
        if layer in v0["batch_stats"]:
            stats_same = all(
                np.array_equal(a, b)
                for a, b in zip(jax.tree.leaves(v0["batch_stats"][layer]), jax.tree.leaves(v["batch_stats"][layer]), strict=True)
            )  # fmt: skip
            assert stats_same == (layer in {"tdnn1", "tdnn2", "tdnn3", "tdnn4", "tdnn5"}), layer
    # back to Kaldi: a raw nnet3 model that reads back with the trained weights
    raw = tmp_path / "finetuned.raw"
    assert cli.run(["flax-to-nnet3", str(workdir / "final"), str(raw)]) == 0
    spec2, v2 = load_any(str(raw))
    for a, b in zip(jax.tree.leaves(v["params"]), jax.tree.leaves(v2["params"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # ... exported over the imported final.raw, so Kaldi-only state (ReLU stats, learning rates)
    # of the original model survives the round trip
    from xvjax.kaldi.nnet3 import Nnet

    orig, back = Nnet.read(str(small / "final.raw")), Nnet.read(str(raw))
    relu0, relu1 = orig.component("tdnn1.relu"), back.component("tdnn1.relu")
    # (within 1 ulp: writing re-rounds Kaldi's stored averages exactly as nnet3-copy does)
    np.testing.assert_allclose(relu0.params["value_avg"], relu1.params["value_avg"], rtol=3e-7)
    assert np.abs(relu0.params["value_avg"]).max() > 0
    assert back.component("tdnn1.affine").attrs["learning_rate"] == pytest.approx(
        orig.component("tdnn1.affine").attrs["learning_rate"]
    )
    # and extracts x-vectors from the xvjax model dir
    feats = kaldi_fixtures / "features" / "prepared16k.ark"
    out = tmp_path / "xvectors.txt"
    assert (
        cli.run(["nnet3-xvector-compute", str(workdir / "final"), f"ark:{feats}", f"ark,t:{out}"])
        == 0
    )
    xv = tables.read_dict(f"ark,t:{out}")
    assert xv and all(x.shape == (48,) and np.isfinite(x).all() for x in xv.values())
