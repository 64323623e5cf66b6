"""`xvjax nnet3-copy`, `nnet3-info`, `nnet3-copy-egs` as Kaldi's binaries behave."""

from __future__ import annotations

import re

import numpy as np
import pytest

from xvjax import cli


def test_nnet3_copy_resize_equals_kaldi(kaldi_fixtures, tmp_path):
    small = kaldi_fixtures / "nnet3" / "small"
    out = tmp_path / "0.raw"
    rc = cli.run(
        [
            "nnet3-copy",
            f"--nnet-config={small / 'resize.config'}",
            str(small / "final.raw"),
            str(out),
        ]
    )
    assert rc == 0 and out.read_bytes() == (small / "resized_0.raw").read_bytes()
    text = tmp_path / "0.txt"
    assert cli.run(["nnet3-copy", "--binary=false", str(out), str(text)]) == 0
    assert text.read_bytes() == (small / "resized_0.txt").read_bytes()


def test_nnet3_copy_edits_and_learning_rate(kaldi_fixtures, tmp_path):
    from xvjax.kaldi.nnet3 import Nnet

    small = kaldi_fixtures / "nnet3" / "small"
    out = tmp_path / "x.raw"
    rc = cli.run([
        "nnet3-copy", f"--nnet-config={small / 'extract.config'}", "--learning-rate=0.01",
        "--edits=set-learning-rate-factor name=tdnn1.* learning-rate-factor=0;remove-orphans",
        str(small / "final.raw"), str(out),
    ])  # fmt: skip
    assert rc == 0
    nnet = Nnet.read(str(out))
    assert nnet.output_dim("output") == 48 and "output.affine" not in nnet.components
    assert not nnet.has_node("tdnn7.affine") and nnet.orphan_nodes() == []
    assert nnet.components["tdnn1.affine"].attrs["learning_rate_factor"] == 0.0
    assert nnet.components["tdnn2.affine"].attrs["learning_rate"] == np.float32(0.01)
    # --learning-rate is applied before --edits (as Kaldi), so the factor-0 layer keeps 0.01
    assert nnet.components["tdnn1.affine"].attrs["learning_rate"] == np.float32(0.01)
    text = nnet.to_bytes(binary=False).decode()
    assert (
        "<ComponentName> tdnn1.affine <NaturalGradientAffineComponent> <LearningRateFactor> 0 "
        in text
    )


def test_nnet3_info_and_errors(kaldi_fixtures, tmp_path, capsys):
    small = kaldi_fixtures / "nnet3" / "small"
    assert cli.run(["nnet3-info", str(small / "final.raw")]) == 0
    out = capsys.readouterr().out
    info = (small / "final.info").read_text().splitlines()
    assert out.splitlines()[:4] == info[:4]  # left-context, right-context, num-parameters, modulus
    assert "num-parameters: 72428" in out
    assert "output-node name=output input=output.log-softmax dim=12 objective=linear" in out
    bad = tmp_path / "bad.raw"
    bad.write_bytes((small / "final.raw").read_bytes()[:1000])
    assert cli.run(["nnet3-copy", str(bad), str(tmp_path / "o.raw")]) == 1
    err = capsys.readouterr().err
    assert "ERROR (xvjax nnet3-copy)" in err and "bad.raw" in err and "Traceback" not in err
    assert not (tmp_path / "o.raw").exists()


def test_nnet3_copy_egs_to_text(kaldi_fixtures, tmp_path):
    out = tmp_path / "egs.txt"
    ark = kaldi_fixtures / "egs" / "egs_sample.ark"
    assert cli.run(["nnet3-copy-egs", f"ark:{ark}", f"ark,t:{out}"]) == 0
    assert out.read_bytes() == (kaldi_fixtures / "egs" / "egs_sample.txt").read_bytes()
    back = tmp_path / "egs.ark"
    assert cli.run(["nnet3-copy-egs", f"ark:{out}", f"ark:{back}"]) == 0
    # text has 7 digits, so compressed inputs come back as FM; the text form is unchanged
    again = tmp_path / "again.txt"
    assert cli.run(["nnet3-copy-egs", f"ark:{back}", f"ark,t:{again}"]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_nnet3_init(kaldi_fixtures, tmp_path):
    from xvjax.kaldi.nnet3 import Nnet

    small = kaldi_fixtures / "nnet3" / "small"
    out = tmp_path / "0.raw"
    assert cli.run(["nnet3-init", "--srand=3", str(small / "final.config"), str(out)]) == 0
    nnet = Nnet.read(str(out))
    assert nnet.config_lines() == Nnet.read(str(small / "final.raw")).config_lines()
    assert not nnet.components["output.affine"].params["linear"].any()  # param-stddev=0.0
    assert nnet.components["tdnn1.affine"].params["linear"].std() > 0.01


_BIAS_MEAN = re.compile(r"bias-\{mean,stddev\}=([^,]+),")


@pytest.mark.parametrize("model", ["small", "full", "variant8k"])
def test_nnet3_info_equals_kaldi(kaldi_fixtures, capsys, model):
    """Every line of Kaldi's nnet3-info, component summaries included, byte for byte. One value
    is summation-order noise: the mean of a bias whose sum cancels (the output layer's, ~1e-9 for
    values ~1e-3), which Kaldi sums with its BLAS's sdot kernel. It is compared to within the
    float32 rounding of that sum instead."""
    from xvjax.kaldi.nnet3 import Nnet

    folder = kaldi_fixtures / "nnet3" / model
    assert cli.run(["nnet3-info", "--print-args=false", str(folder / "final.raw")]) == 0
    ours = capsys.readouterr().out.splitlines()
    ref = (folder / "final.info").read_text().splitlines()
    assert len(ours) == len(ref)
    nnet = Nnet.read(str(folder / "final.raw"))
    for a, b in zip(ours, ref, strict=True):
        if a == b:
            continue
        name = b.split()[1].removeprefix("name=")
        assert _BIAS_MEAN.sub("", a) == _BIAS_MEAN.sub("", b), b
        bias = nnet.components[name].params["bias"]
        slack = len(bias) * np.finfo(np.float32).eps * np.abs(bias).max()
        mean_a, mean_b = (float(_BIAS_MEAN.search(x).group(1)) for x in (a, b))
        assert abs(mean_a - mean_b) <= slack, (name, mean_a, mean_b)
