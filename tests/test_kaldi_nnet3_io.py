"""nnet3 model reader/writer against Kaldi's own files (`../shared/fixtures/kaldi/nnet3/*`)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import Nnet, NodeRef, Round

MODELS = ["small", "variant8k"]


@pytest.fixture(scope="module")
def nnet3_dir(kaldi_fixtures):
    return kaldi_fixtures / "nnet3"


@pytest.mark.parametrize("model", MODELS)
def test_binary_read_write_is_byte_identical(nnet3_dir, model):
    raw = (nnet3_dir / model / "final.raw").read_bytes()
    nnet = Nnet.from_bytes(raw, model)
    assert nnet.to_bytes(binary=True, kaldi_roundtrip=False) == raw


@pytest.mark.parametrize("model", MODELS)
def test_text_equals_kaldi_nnet3_copy(nnet3_dir, model):
    """final.txt is `nnet3-copy --binary=false final.raw`: every byte, every float format."""
    nnet = Nnet.read(str(nnet3_dir / model / "final.raw"))
    text = (nnet3_dir / model / "final.txt").read_bytes()
    assert nnet.to_bytes(binary=False) == text


@pytest.mark.parametrize("model", MODELS)
def test_text_model_reads_to_same_network(nnet3_dir, model):
    text = (nnet3_dir / model / "final.txt").read_bytes()
    from_text = Nnet.from_bytes(text, "final.txt")
    assert from_text.to_bytes(binary=False, kaldi_roundtrip=False) == text
    # what Kaldi's nnet3-copy holds after reading final.raw (stats pass through double sums)
    from_binary = Nnet.from_bytes(Nnet.read(str(nnet3_dir / model / "final.raw")).to_bytes(), "rt")
    # parameters are float32 in both; text has 7 significant digits
    for name, comp in from_binary.components.items():
        other = from_text.components[name]
        assert comp.type == other.type and list(comp.attrs) == list(other.attrs)
        for key, value in comp.params.items():
            np.testing.assert_allclose(other.params[key], value, rtol=1e-6, atol=1e-30)
    assert [n.config_line() for n in from_text.nodes] == [
        n.config_line() for n in from_binary.nodes
    ]


def test_structure_of_small_model(nnet3_dir):
    nnet = Nnet.read(str(nnet3_dir / "small" / "final.raw"))
    assert nnet.input_dim("input") == 30
    assert nnet.output_dim("output") == 12
    assert nnet.node_dim("tdnn6.affine") == 48
    assert nnet.node("tdnn6.affine").input == Round(NodeRef("stats-pooling-0-10000"), 1)
    affine = nnet.components["tdnn1.affine"]
    assert affine.type == "NaturalGradientAffineComponent"
    assert affine.params["linear"].shape == (64, 150) and affine.params["bias"].shape == (64,)
    assert affine.attrs["max_change"] == 0.75 and affine.attrs["rank_out"] == 32
    bn = nnet.components["tdnn1.batchnorm"]
    assert bn.attrs["epsilon"] == pytest.approx(1e-3) and bn.params["stats_var"].shape == (64,)
    pool = nnet.components["stats-pooling-0-10000"]
    assert pool.attrs["right_context"] == 10000 and pool.attrs["output_stddevs"] is True
    assert pool.input_dim == 385 and pool.output_dim == 384
    # `nnet3-info`: num-parameters 72428, modulus 1
    assert nnet.num_parameters() == 72428 and nnet.modulus() == 1


def test_info_config_lines_match_nnet3_info(nnet3_dir):
    for model in MODELS:
        nnet = Nnet.read(str(nnet3_dir / model / "final.raw"))
        info = (nnet3_dir / model / "final.info").read_text().splitlines()
        expected = [
            ln
            for ln in info
            if ln.split(" ", 1)[0]
            in ("input-node", "component-node", "output-node", "dim-range-node")
        ]
        assert nnet.config_lines(include_dim=True) == expected
        assert f"modulus: {nnet.modulus()}" in info
        left, right = nnet.context()
        assert info[:2] == [f"left-context: {left}", f"right-context: {right}"]
        assert f"num-parameters: {nnet.num_parameters()}" in info


def test_full_model_binary_is_fast_and_identical(nnet3_dir):
    raw = (nnet3_dir / "full" / "final.raw").read_bytes()
    start = time.perf_counter()
    nnet = Nnet.from_bytes(raw, "full")
    out = nnet.to_bytes(binary=True, kaldi_roundtrip=False)
    elapsed = time.perf_counter() - start
    assert out == raw
    assert elapsed < 5.0, f"reading+writing the 18 MB model took {elapsed:.1f} s"
    assert nnet.components["tdnn5.affine"].params["linear"].shape == (1500, 512)


@pytest.mark.parametrize("model", MODELS)
def test_resize_equals_kaldi(nnet3_dir, model):
    """`nnet3-copy --nnet-config=resize.config final.raw resized_0.raw` (zero-stddev output)."""
    nnet = Nnet.read(str(nnet3_dir / model / "final.raw"))
    nnet.apply_config((nnet3_dir / model / "resize.config").read_text())
    out = nnet.to_bytes(binary=True)
    assert out == (nnet3_dir / model / "resized_0.raw").read_bytes()
    # resized_0.txt = nnet3-copy --binary=false resized_0.raw (a second Kaldi read/write)
    again = Nnet.from_bytes(out, "resized").to_bytes(binary=False)
    assert again == (nnet3_dir / model / "resized_0.txt").read_bytes()
    assert nnet.output_dim("output") == 7


def test_extract_config_keeps_orphans(nnet3_dir):
    nnet = Nnet.read(str(nnet3_dir / "small" / "final.raw"))
    nnet.apply_config((nnet3_dir / "small" / "extract.config").read_text())
    assert nnet.node("output").input == NodeRef("tdnn6.affine")
    assert nnet.output_dim("output") == 48
    assert "output.affine" in nnet.components and nnet.has_node("output.log-softmax")
    assert "tdnn7.affine" in nnet.orphan_nodes()
    assert nnet.nodes[-1].name == "output"
    # the edited model reads back identically
    assert Nnet.from_bytes(nnet.to_bytes(), "edited") == Nnet.from_bytes(nnet.to_bytes(), "again")


def test_truncated_model_is_a_clean_error(nnet3_dir):
    raw = (nnet3_dir / "small" / "final.raw").read_bytes()
    for cut in (10, 5000, len(raw) // 2, len(raw) - 3):
        with pytest.raises(XvjaxError, match="end of file|expected"):
            Nnet.from_bytes(raw[:cut], "cut.raw")
    text = (nnet3_dir / "small" / "final.txt").read_bytes()
    with pytest.raises(XvjaxError):
        Nnet.from_bytes(text[: len(text) // 3], "cut.txt")


def test_unknown_component_type_names_it(nnet3_dir):
    text = (nnet3_dir / "small" / "final.txt").read_bytes()
    bad = text.replace(b"<LogSoftmaxComponent>", b"<FancyComponent>", 1)
    with pytest.raises(XvjaxError, match="FancyComponent.*output.log-softmax"):
        Nnet.from_bytes(bad, "bad.txt")


def test_unknown_descriptor_names_it_and_node(nnet3_dir):
    text = (nnet3_dir / "small" / "final.txt").read_bytes()
    bad = text.replace(
        b"input=Round(stats-pooling-0-10000, 1)", b"input=Fancy(stats-pooling-0-10000, 1)"
    )
    with pytest.raises(XvjaxError, match="Fancy.*tdnn6.affine|tdnn6.affine.*Fancy"):
        Nnet.from_bytes(bad, "bad.txt")
    bad = text.replace(b"input=tdnn7.relu", b"input=tdnn9.relu")
    with pytest.raises(XvjaxError, match="tdnn9.relu"):
        Nnet.from_bytes(bad, "bad.txt")


@pytest.mark.parametrize("model", ["small", "variant8k", "full"])
def test_init_from_xconfig_final_config(nnet3_dir, model):
    """nnet3-init of the xconfig's final.config gives the trained model's graph and settings."""
    ref = Nnet.read(str(nnet3_dir / model / "final.raw"))
    nnet = Nnet()
    nnet.apply_config((nnet3_dir / model / "final.config").read_text(), rng=0)
    assert nnet.config_lines() == ref.config_lines()
    assert list(nnet.components) == list(ref.components)
    trained = {"count", "oderiv_count", "num_dims_self_repaired", "num_dims_processed"}
    if model == "variant8k":  # trained with nnet3-copy --learning-rate=...
        trained.add("learning_rate")
    for name, comp in nnet.components.items():
        other = ref.components[name]
        assert comp.type == other.type
        assert {k: v for k, v in comp.attrs.items() if k not in trained} == {
            k: v for k, v in other.attrs.items() if k not in trained
        }
        for key in ("linear", "bias", "stats_mean", "stats_var"):
            if key in comp.params:
                assert comp.params[key].shape == other.params[key].shape


def test_read_from_pipe_and_legacy_tokens(nnet3_dir, tmp_path):
    small = nnet3_dir / "small"
    text = (small / "final.txt").read_bytes()
    piped = Nnet.read(f"cat {small / 'final.raw'} |")
    assert piped.to_bytes(binary=False) == text
    # back-compatibility tokens Kaldi's Read accepts (older models): written canonically
    old = text.replace(
        b"<Alpha> 4 </NaturalGradientAffineComponent>",
        b"<Alpha> 4 <MaxChangePerSample> 0.1 <IsGradient> F <UpdateCount> 1 "
        b"<ActiveScalingCount> 2 <MaxChangeScaleStats> 3 </NaturalGradientAffineComponent>",
        1,
    )
    assert old != text
    path = tmp_path / "old.txt"
    path.write_bytes(old)
    assert Nnet.read(str(path)).to_bytes(binary=False, kaldi_roundtrip=False) == text
    # a nonlinearity written before <OderivRms> existed reads with Kaldi's defaults
    start = text.index(b"<OderivRms>", text.index(b"<ComponentName> output.log-softmax"))
    end = text.index(b"<NumDimsSelfRepaired>", start)
    nnet = Nnet.from_bytes(text[:start] + text[end:], "older.txt")
    comp = nnet.components["output.log-softmax"]
    assert comp.params["oderiv_rms"].shape == (0,) and comp.attrs["oderiv_count"] == 0.0
