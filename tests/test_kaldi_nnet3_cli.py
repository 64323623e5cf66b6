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


def test_nnet3_copy_scale(kaldi_fixtures, tmp_path):
    """--scale multiplies parameters; BatchNorm and nonlinearities keep their averages (their
    sums and counts scale together), as Kaldi's ScaleNnet."""
    from xvjax.kaldi.nnet3 import Nnet

    small = kaldi_fixtures / "nnet3" / "small"
    out = tmp_path / "s.raw"
    assert cli.run(["nnet3-copy", "--scale=0.5", str(small / "final.raw"), str(out)]) == 0
    ref, got = Nnet.read(str(small / "final.raw")), Nnet.read(str(out))
    for name, c in ref.components.items():
        g = got.components[name]
        if c.type == "NaturalGradientAffineComponent":
            assert np.array_equal(g.params["linear"], c.params["linear"] * np.float32(0.5))
            assert np.array_equal(g.params["bias"], c.params["bias"] * np.float32(0.5))
        elif c.type == "BatchNormComponent":
            assert g.attrs["count"] == c.attrs["count"] * 0.5
            assert np.allclose(g.params["stats_mean"], c.params["stats_mean"], rtol=1e-6)
            # var = E[x^2] - mean^2 in float32: compared to the rounding of E[x^2]
            second = c.params["stats_var"] + c.params["stats_mean"] ** 2
            assert np.all(np.abs(g.params["stats_var"] - c.params["stats_var"]) <= 1e-6 * second)
        elif c.type == "RectifiedLinearComponent":
            assert g.attrs["count"] == c.attrs["count"] * 0.5
            assert np.allclose(g.params["value_avg"], c.params["value_avg"], rtol=1e-6)
    # --scale=1 is the identity: Kaldi's `nnet3-copy --binary=false` bytes (final.txt)
    same = tmp_path / "same.txt"
    argv = ["nnet3-copy", "--scale=1", "--binary=false", str(small / "final.raw"), str(same)]
    assert cli.run(argv) == 0
    assert same.read_bytes() == (small / "final.txt").read_bytes()


def test_nnet3_copy_prepare_for_test_computes_the_same(kaldi_fixtures, tmp_path):
    """--prepare-for-test folds the BatchNorms that feed affine layers into them (Kaldi's
    CollapseModel): fewer components, test mode set, and the same x-vectors and posteriors as
    Kaldi's on the original model."""
    from xvjax.kaldi import tables
    from xvjax.kaldi.nnet3 import Nnet

    small = kaldi_fixtures / "nnet3" / "small"
    out = tmp_path / "test.raw"
    rc = cli.run(["nnet3-copy", "--prepare-for-test", str(small / "final.raw"), str(out)])
    assert rc == 0
    nnet = Nnet.read(str(out))
    assert nnet.node("tdnn2.affine").component == "tdnn1.batchnorm.tdnn2.affine"
    assert str(nnet.node("tdnn2.affine").input) == (
        "Append(Offset(tdnn1.relu, -2), tdnn1.relu, Offset(tdnn1.relu, 2))"
    )
    assert "tdnn1.batchnorm" not in nnet.components and not nnet.has_node("tdnn6.batchnorm")
    assert nnet.components["tdnn5.batchnorm"].attrs["test_mode"] is True  # feeds the stats
    assert nnet.num_parameters() == Nnet.read(str(small / "final.raw")).num_parameters()
    feats = f"ark:{kaldi_fixtures / 'features/prepared16k.ark'}"
    for node, ref_file in (("tdnn6.affine", "xvectors_whole.txt"), ("", "logsoftmax_whole.txt")):
        vec = tmp_path / f"{ref_file}"
        opt = [f"--output-node={node}"] if node else []
        assert cli.run(["nnet3-xvector-compute", *opt, str(out), feats, f"ark,t:{vec}"]) == 0
        ours = tables.read_dict(f"ark,t:{vec}")
        for utt, r in tables.read_dict(f"ark,t:{small / ref_file}").items():
            assert np.abs(ours[utt] - r).max() <= 1e-4 * np.abs(r).max(), (ref_file, utt)
