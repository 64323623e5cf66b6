"""The transfer recipe with a Kaldi-trained full-size x-vector network as --pretrained (slow: a few
minutes; its own module so that `make test`'s parallel workers run it beside the tiny recipe run)."""

from __future__ import annotations

import math
import os

import pytest

from xvjax.recipe import config, transfer
from xvjax.recipe.report import read_result_rows

pytestmark = pytest.mark.slow


def test_pretrained_full_size_kaldi_model_route(tmp_path_factory, kaldi_fixtures):
    """A Kaldi-trained full-size x-vector network (fixture `nnet3/full/final.raw`: 512-wide TDNN,
    1500-dim statistics, 30 MFCCs at 16 kHz) as --pretrained with Kaldi's own MFCC/VAD configs:
    imported, resized to the in-domain speakers, fine-tuned frozen and unfrozen, and scored. The
    tiny corpus gets 600 short source utterances, so that a 512-dim LDA/PLDA can be trained."""
    import numpy as np

    from xvjax.model.checkpoint import load_model

    nnet3 = kaldi_fixtures / "nnet3" / "full"
    cfg = config.RecipeConfig(
        workdir=str(tmp_path_factory.mktemp("recipe_kaldi_full")),
        preset="tiny",
        corpus_options="source_train_spk=60,source_train_utts=10,min_dur=2.0,max_dur=2.5",
        pretrained=str(nnet3 / "final.raw"),
        mfcc_config=str(kaldi_fixtures / "features" / "mfcc16k.conf"),
        vad_config=str(kaldi_fixtures / "features" / "vad.conf"),
        ft_steps=4,
        ft_eval_every=2,
        ft_batch_size=8,
        augment=False,
        pseudo_ft=False,
        progress=False,
    )
    summary = transfer.run_recipe(cfg)
    src_spec, src_vars = load_model(summary["source_model"])
    assert src_spec.input_dim == 30 and src_spec.output_dim("tdnn6.affine") == 512
    data = os.path.join(summary["corpus"]["path"], "data")
    with open(os.path.join(data, "target_train", "spk2utt"), encoding="utf-8") as f:
        num_tgt_spk = len(f.read().splitlines())
    for row, frozen in (("6a", True), ("6b", False)):
        spec, variables = load_model(os.path.join(cfg.workdir, "exp", f"finetune_{row}", "final"))
        assert spec.output_dim("output") == num_tgt_spk  # resized, as nnet3-copy --nnet-config
        kernel = variables["params"]["tdnn3"]["affine"]["kernel"]
        same = np.array_equal(kernel, src_vars["params"]["tdnn3"]["affine"]["kernel"])
        assert same == frozen, row  # --freeze='tdnn[1-5]' keeps the Kaldi weights in 6a only
    rows = read_result_rows(summary["results_json"])
    for row in ("1", "2", "3", "6a", "6b", "7"):
        assert math.isfinite(rows[row]["target"]["eer"]), row
