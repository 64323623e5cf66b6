"""`xvjax nnet3-compute`: Kaldi's per-frame outputs (DecodableNnetSimple chunking), checked against
Kaldi's nnet3-compute of the small model (whole network: log-softmax after pooling) and, for a
frame-level output, against the network run on the whole utterance."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from xvjax import cli
from xvjax.kaldi import tables

FEATS = "scp:echo u2_16k {}:151709 |"


@pytest.mark.parametrize(
    ("fpc", "ref"),
    [(50, "nnet3_compute_u2_16k.txt"), (1000, "nnet3_compute_u2_16k_fpc1000.txt")],
)
def test_nnet3_compute_equals_kaldi(kaldi_fixtures, tmp_path, fpc, ref):
    small = kaldi_fixtures / "nnet3/small"
    feats = FEATS.format(kaldi_fixtures / "features/prepared16k.ark")
    out = tmp_path / "out.txt"
    argv = ["nnet3-compute", f"--frames-per-chunk={fpc}", str(small / "final.raw"), feats]
    assert cli.run(argv + [f"ark,t:{out}"]) == 0
    ours = tables.read_dict(f"ark,t:{out}")["u2_16k"]
    kaldi = tables.read_dict(f"ark,t:{small / ref}")["u2_16k"]
    assert ours.shape == kaldi.shape == (324, 12)
    assert np.abs(ours - kaldi).max() <= 1e-4 * np.abs(kaldi).max()


def test_nnet3_compute_frame_level_output(kaldi_fixtures, tmp_path):
    """A frame-level output (the net cut at tdnn5.batchnorm): rows do not depend on the chunk
    size and are the network on the whole edge-padded utterance; --apply-exp exponentiates."""
    import jax

    from xvjax.kaldi import nnet3
    from xvjax.model.nnet3_import import nnet3_to_flax
    from xvjax.model.xvector import XVector

    small = kaldi_fixtures / "nnet3/small"
    config = tmp_path / "frames.config"
    config.write_text("output-node name=output input=tdnn5.batchnorm\n")
    model = tmp_path / "frames.raw"
    argv = ["nnet3-copy", f"--nnet-config={config}", str(small / "final.raw"), str(model)]
    assert cli.run(argv) == 0
    feats = FEATS.format(kaldi_fixtures / "features/prepared16k.ark")
    outs = {}
    for fpc in (7, 50):
        out = tmp_path / f"o{fpc}.ark"
        assert cli.run(["nnet3-compute", f"--frames-per-chunk={fpc}", str(model), feats,
                        f"ark:{out}"]) == 0  # fmt: skip
        outs[fpc] = tables.read_dict(f"ark:{out}")["u2_16k"]
    assert outs[7].shape == (324, 192)
    # float32 rounding of differently shaped computations only
    assert np.abs(outs[7] - outs[50]).max() <= 1e-4 * np.abs(outs[50]).max()
    x = tables.read_dict(feats)["u2_16k"]
    padded = np.concatenate([np.repeat(x[:1], 7, 0), x, np.repeat(x[-1:], 7, 0)])
    spec, variables = nnet3_to_flax(nnet3.Nnet.read(str(model)))
    whole = XVector(spec).apply(variables, padded[None], output_node="output")
    np.testing.assert_allclose(outs[50], np.asarray(jax.device_get(whole))[0], rtol=1e-4, atol=1e-4)
    out = tmp_path / "exp.ark"
    argv = ["nnet3-compute", "--apply-exp=true", str(small / "final.raw"), feats, f"ark:{out}"]
    assert cli.run(argv) == 0
    post = tables.read_dict(f"ark:{out}")["u2_16k"]
    np.testing.assert_allclose(post.sum(1), 1.0, rtol=1e-5)  # exp(log-softmax) rows sum to 1


def test_nnet3_compute_model_dir_and_errors(kaldi_fixtures, tmp_path, capsys):
    small = kaldi_fixtures / "nnet3/small"
    model = tmp_path / "dir"
    assert cli.run(["nnet3-to-flax", str(small / "final.raw"), str(model)]) == 0
    feats = FEATS.format(kaldi_fixtures / "features/prepared16k.ark")
    out = tmp_path / "o.txt"
    assert cli.run(["nnet3-compute", str(model), feats, f"ark,t:{out}"]) == 0
    ours = tables.read_dict(f"ark,t:{out}")["u2_16k"]
    kaldi = tables.read_dict(f"ark,t:{small / 'nnet3_compute_u2_16k.txt'}")["u2_16k"]
    assert np.abs(ours - kaldi).max() <= 1e-4 * np.abs(kaldi).max()
    pipe = f"{sys.executable} -m xvjax.cli nnet3-copy {small / 'final.raw'} - |"
    assert cli.run(["nnet3-compute", "--frame-subsampling-factor=3", pipe, feats, "ark:-"]) == 1
    assert "frame-subsampling-factor=1" in capsys.readouterr().err
