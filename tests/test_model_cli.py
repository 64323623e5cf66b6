"""`xvjax nnet3-to-flax`, `flax-to-nnet3`, `nnet3-xvector-compute` end to end on the small model."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from xvjax import cli
from xvjax.kaldi import tables


@pytest.fixture(scope="module")
def imported(kaldi_fixtures, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "small"
    rc = cli.run(["nnet3-to-flax", str(kaldi_fixtures / "nnet3/small/final.raw"), str(out)])
    assert rc == 0
    return out


def test_import_export_cli_byte_identical(imported, kaldi_fixtures, tmp_path):
    assert (imported / "model.json").is_file() and (imported / "variables").is_dir()
    out = tmp_path / "final.txt"
    assert cli.run(["flax-to-nnet3", "--binary=false", str(imported), str(out)]) == 0
    assert out.read_bytes() == (kaldi_fixtures / "nnet3/small/final.txt").read_bytes()


def _extract_pipe(small, config: str) -> str:
    """Kaldi's idiom: the model through `nnet3-copy --nnet-config=extract.config ... - |`."""
    return (
        f"{sys.executable} -m xvjax.cli nnet3-copy --nnet-config={small / config} "
        f"{small / 'final.raw'} - |"
    )


@pytest.mark.parametrize("from_dir", [True, False])
def test_xvector_compute_cli_matches_kaldi(imported, kaldi_fixtures, tmp_path, from_dir, caplog):
    small = kaldi_fixtures / "nnet3/small"
    model = str(imported) if from_dir else _extract_pipe(small, "extract.config")
    feats = f"ark:{kaldi_fixtures / 'features/prepared16k.ark'}"
    out = tmp_path / "xv.txt"
    argv = ["nnet3-xvector-compute", "--chunk-size=100", "--min-chunk-size=25", model, feats]
    assert cli.run(argv + [f"ark,t:{out}"]) == 0
    ours = tables.read_dict(f"ark,t:{out}")
    ref = tables.read_dict(f"ark,t:{kaldi_fixtures / 'nnet3/small/xvectors_chunk100.txt'}")
    assert sorted(ours) == sorted(ref)
    for utt, r in ref.items():
        assert np.abs(ours[utt] - r).max() <= 1e-4 * np.linalg.norm(r)


def test_xvector_compute_cli_counts_errors(imported, kaldi_fixtures, tmp_path, capsys):
    tiny = f"ark,t:{kaldi_fixtures / 'nnet3/small/tiny_feats.txt'}"
    out = tmp_path / "xv.ark"
    rc = cli.run(["nnet3-xvector-compute", "--min-chunk-size=5", str(imported), tiny, f"ark:{out}"])
    assert rc == 1  # like Kaldi: no utterance succeeded
    err = capsys.readouterr().err
    assert "u1_16k_tiny" in err and "not enough context" in err
    assert "Done 0 utterances, failed for 1" in err
    rc = cli.run(["nnet3-xvector-compute", "--output-node=nope", str(imported), tiny, f"ark:{out}"])
    assert rc == 1 and "no node 'nope'" in capsys.readouterr().err
    rc = cli.run(["nnet3-to-flax", str(tmp_path / "missing.raw"), str(tmp_path / "m")])
    assert rc == 1 and not (tmp_path / "m").exists()


@pytest.mark.parametrize("model", ["pipe", "raw", "raw-option"])
def test_xvector_compute_cli_computes_the_output_node(imported, kaldi_fixtures, tmp_path, model):
    """Kaldi computes the node named `output`: extract_output.config (output = log-softmax) and
    the bare final.raw (whose output is the log-softmax) give Kaldi's log-softmax; --output-node
    overrides it."""
    small = kaldi_fixtures / "nnet3/small"
    argv = {
        "pipe": [_extract_pipe(small, "extract_output.config")],
        "raw": [str(small / "final.raw")],
        "raw-option": ["--output-node=output.log-softmax", str(imported)],
    }[model]
    out = tmp_path / "post.txt"
    feats = f"ark:{kaldi_fixtures / 'features/prepared16k.ark'}"
    assert cli.run(["nnet3-xvector-compute", *argv, feats, f"ark,t:{out}"]) == 0
    ours = tables.read_dict(f"ark,t:{out}")
    ref = tables.read_dict(f"ark,t:{small / 'logsoftmax_whole.txt'}")
    assert sorted(ours) == sorted(ref)
    for utt, r in ref.items():
        assert ours[utt].shape == (12,)
        assert np.abs(ours[utt] - r).max() <= 1e-4 * np.abs(r).max()


def test_xvector_compute_model_dir_rule(imported, kaldi_fixtures, tmp_path, capsys):
    """A model dir's `output` is the classifier, so the x-vector node is computed, and the log
    names the node."""
    out = tmp_path / "xv.txt"
    feats = f"ark:{kaldi_fixtures / 'features/prepared16k.ark'}"
    assert cli.run(["nnet3-xvector-compute", str(imported), feats, f"ark,t:{out}"]) == 0
    assert "Computing node 'tdnn6.affine'" in capsys.readouterr().err
    ours = tables.read_dict(f"ark,t:{out}")
    ref = tables.read_dict(f"ark,t:{kaldi_fixtures / 'nnet3/small/xvectors_whole.txt'}")
    for utt, r in ref.items():
        assert np.abs(ours[utt] - r).max() <= 1e-4 * np.linalg.norm(r)
