"""Flax x-vector models imported from Kaldi nnet3 vs Kaldi's own outputs (fixtures/kaldi/nnet3)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from xvjax.errors import XvjaxError
from xvjax.kaldi import tables
from xvjax.kaldi.nnet3 import Nnet
from xvjax.model.nnet3_export import flax_to_nnet3
from xvjax.model.nnet3_import import nnet3_to_flax
from xvjax.model.xvector import resize_output
from xvjax.model.xvector_compute import Extractor, extract_with_stats

FEATS = {"small": "prepared16k", "full": "prepared16k", "variant8k": "prepared8k"}
SETTINGS = {
    "xvectors_whole": {},
    "xvectors_chunk100": {"chunk_size": 100, "min_chunk_size": 25},
    "xvectors_recipe": {"chunk_size": 10000, "min_chunk_size": 25},
    "logsoftmax_whole": {"output_node": "output"},
}


@pytest.fixture(scope="session")
def models(kaldi_fixtures):
    out = {}
    for name in FEATS:
        nnet = Nnet.read(str(kaldi_fixtures / "nnet3" / name / "final.raw"))
        out[name] = (nnet, *nnet3_to_flax(nnet))
    return out


@pytest.fixture(scope="session")
def extractors(models):
    """Shared jitted extractors (one per model and output node) so jit shapes are reused."""
    cache = {}

    def get(name, output_node="tdnn6.affine"):
        if (name, output_node) not in cache:
            _, spec, variables = models[name]
            cache[name, output_node] = Extractor(spec, variables, output_node)
        return cache[name, output_node]

    return get


@pytest.fixture(scope="session")
def feats(kaldi_fixtures):
    return {
        k: list(tables.read(f"ark:{kaldi_fixtures / 'features' / f'{k}.ark'}"))
        for k in ("prepared16k", "prepared8k")
    }


def assert_close_to_kaldi(ours, ref, what):
    assert len(ours) == len(ref), what
    for utt, x in ours:
        r = ref[utt]
        assert x.shape == r.shape, (what, utt)
        cos = float(x @ r / (np.linalg.norm(x) * np.linalg.norm(r)))
        assert cos >= 0.99999, (what, utt, cos)
        assert np.abs(x - r).max() <= 1e-4 * np.linalg.norm(r), (what, utt)


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("name", ["small", "variant8k", "full"])
def test_extraction_matches_kaldi(models, extractors, feats, kaldi_fixtures, name, setting):
    _, spec, variables = models[name]
    fe = feats[FEATS[name]]
    ref = tables.read_dict(f"ark,t:{kaldi_fixtures / 'nnet3' / name / setting}.txt")
    ref = {u: ref[u] for u, _ in fe}
    kwargs = SETTINGS[setting]
    ex = extractors(name, kwargs.get("output_node", "tdnn6.affine"))
    out, info = extract_with_stats(spec, variables, fe, extractor=ex, **kwargs)
    assert info["errors"] == []
    assert [u for u, _ in out] == [u for u, _ in fe]  # Kaldi's order
    assert_close_to_kaldi(out, ref, f"{name}/{setting}")
    if setting == "logsoftmax_whole":
        for utt, x in out:
            assert np.abs(x - ref[utt]).max() <= 1e-4


@pytest.mark.parametrize(
    "name,ref_file,kwargs",
    [
        ("small", "tiny_xvector", {}),
        ("full", "tiny_xvector", {}),
        ("variant8k", "tiny_xvector", {}),
        ("variant8k", "tiny_xvector_min25", {"min_chunk_size": 25}),
    ],
)
def test_tiny_utterance_padded_like_kaldi(
    models, extractors, kaldi_fixtures, name, ref_file, kwargs
):
    _, spec, variables = models[name]
    d = kaldi_fixtures / "nnet3" / name
    fe = list(tables.read(f"ark,t:{d / 'tiny_feats.txt'}"))
    assert fe[0][1].shape[0] == 10
    out, info = extract_with_stats(spec, variables, fe, extractor=extractors(name), **kwargs)
    assert info["errors"] == []
    assert_close_to_kaldi(out, tables.read_dict(f"ark,t:{d / ref_file}.txt"), ref_file)


def test_too_short_without_enough_padding_is_a_clear_error(models, kaldi_fixtures):
    _, spec, variables = models["small"]
    fe = list(tables.read(f"ark,t:{kaldi_fixtures / 'nnet3' / 'small' / 'tiny_feats.txt'}"))
    fe += [("empty", np.zeros((0, 30), np.float32)), ("ok", np.repeat(fe[0][1], 3, 0))]
    out, info = extract_with_stats(spec, variables, fe, min_chunk_size=5)
    assert [u for u, _ in out] == ["ok"]
    reasons = dict(info["errors"])
    assert "not enough context" in reasons["u1_16k_tiny"] and "15" in reasons["u1_16k_tiny"]
    assert "zero-length" in reasons["empty"]
    out, info = extract_with_stats(spec, variables, fe[:1], pad_input=False)
    assert out == [] and "minimum chunk size" in info["errors"][0][1]


def test_spec_derived_from_graph(models):
    _, spec, _ = models["variant8k"]
    assert spec.input_dim == 23
    names = spec.node_names()
    assert "tdnn3b.affine" in names
    assert spec.node("tdnn3b.affine").inputs == (
        ("tdnn3.batchnorm", -1),
        ("tdnn3.batchnorm", 0),
        ("tdnn3.batchnorm", 1),
    )
    pool = spec.node("stats-pooling-0-10000")
    assert (pool.attrs["input_period"], pool.attrs["right_context"]) == (2, 10000)
    assert spec.contexts()["tdnn5.batchnorm"] == (8, 8)
    assert spec.output_dim("tdnn6.affine") == 32 and spec.output_dim("output") == 12
    _, spec16, v16 = models["small"]
    k = v16["params"]["tdnn1"]["affine"]["kernel"]
    assert k.shape == (150, 64)


def test_export_unmodified_is_byte_identical(models, kaldi_fixtures):
    nnet, spec, variables = models["small"]
    out = flax_to_nnet3(spec, variables, nnet)
    assert out.to_bytes(binary=False) == (kaldi_fixtures / "nnet3/small/final.txt").read_bytes()
    # Binary: the same bytes as the nnet3 writer gives for the template (nnet3-copy semantics);
    # test_resize_output_equals_kaldi_nnet3_copy checks binary bytes against Kaldi's nnet3-copy.
    assert out.to_bytes(binary=True) == nnet.to_bytes(binary=True)


@pytest.mark.parametrize("name", ["small", "variant8k"])
def test_resize_output_equals_kaldi_nnet3_copy(models, kaldi_fixtures, name):
    nnet, spec, variables = models[name]
    s7, v7 = resize_output(spec, variables, 7, jax.random.key(0))
    assert s7.output_dim("output") == 7
    assert not np.any(v7["params"]["output"]["affine"]["kernel"])
    out = flax_to_nnet3(s7, v7, nnet)
    want = (kaldi_fixtures / "nnet3" / name / "resized_0.raw").read_bytes()
    assert out.to_bytes(binary=True) == want


def test_export_after_weight_change_reads_back(models, tmp_path):
    nnet, spec, variables = models["small"]
    v = jax.tree.map(np.array, variables)
    v["params"]["tdnn3"]["affine"]["kernel"][4, 5] = 0.123
    v["params"]["output"]["affine"]["bias"][:] = 1.5
    v["batch_stats"]["tdnn6"]["batchnorm"]["mean"][0] = 0.25
    v["batch_stats"]["tdnn6"]["batchnorm"]["count"] = np.float32(77.0)
    for binary in (True, False):
        path = tmp_path / f"out{int(binary)}.raw"
        flax_to_nnet3(spec, v, nnet).write(str(path), binary=binary)
        back = Nnet.read(str(path))
        assert back.components["tdnn3.affine"].params["linear"][5, 4] == np.float32(0.123)
        assert np.all(back.components["output.affine"].params["bias"] == 1.5)
        assert back.components["tdnn6.batchnorm"].attrs["count"] == 77.0
        s2, v2 = nnet3_to_flax(back)
        assert s2 == spec
        for path_, a in jax.tree_util.tree_flatten_with_path(v["params"])[0]:
            b = v2["params"]
            for key in path_:
                b = b[key.key]
            if binary:
                np.testing.assert_array_equal(a, b)
            else:  # Kaldi's text format prints 7 significant digits
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(
            v2["batch_stats"]["tdnn6"]["batchnorm"]["mean"],
            v["batch_stats"]["tdnn6"]["batchnorm"]["mean"],
            rtol=1e-6,
        )


def test_unsupported_graph_construct_names_node(models):
    nnet, _, _ = models["small"]
    bad = nnet.copy()
    bad.apply_config(
        "component-node name=tdnn4.affine component=tdnn4.affine "
        "input=Sum(tdnn3.batchnorm, Offset(tdnn3.batchnorm, 1))\n"
    )
    with pytest.raises(XvjaxError, match=r"tdnn4.affine.*Sum"):
        nnet3_to_flax(bad)
