"""`xvjax demo`: the transfer recipe end to end (the README's main command; `make demo`)."""

from __future__ import annotations

import dataclasses
import logging

from xvjax.cli import Opt, command
from xvjax.recipe.config import RecipeConfig

log = logging.getLogger("xvjax")


def _recipe_opts() -> list[Opt]:
    """`RecipeConfig`'s fields as options (`--src-data`, ...), with their help texts."""
    return [
        Opt(f.name.replace("_", "-"), f.default, f.metadata["help"], type=f.metadata["type"])
        for f in dataclasses.fields(RecipeConfig)
    ]


@command(
    "demo",
    "The transfer recipe end to end: source model -> new domain by every route, results table",
    usage="""
    xvjax demo [options]
    Stages (Kaldi sre16/v2 run.sh style; --stage=N re-runs from N, a rerun resumes):
      0 data (built-in corpus, or your data dirs)   1 features (MFCC, VAD, CMN)
      2 source model (trained, or --pretrained)     3 x-vectors
      4 backends (rows 1-5d)                         5 fine-tuning (rows 6a-6c, 7)
      6 results: WORKDIR/results/{results.md,results.json,det.png,training_curves.png}
    Every choice (backend, LDA dimension, adaptation scales, clusters, AS-norm top-k, the
    fine-tuning step, the network) is made on the dev trials; the evaluation trials are scored
    once per row, with 95% speaker-bootstrap intervals. Options take --name=value or --name value.
     e.g.: xvjax demo --workdir=exp/demo
           xvjax demo --preset=tiny --workdir=exp/tiny
           xvjax demo --workdir=exp/sre --src-data=data/swbd_sre --tgt-train=data/sre16_train \\
             --tgt-adapt=data/sre16_major --tgt-enroll=data/sre16_eval_enroll \\
             --tgt-test=data/sre16_eval_test --trials=data/sre16_eval_test/trials \\
             --tgt-dev-enroll=data/sre16_dev_enroll --tgt-dev-test=data/sre16_dev_test \\
             --dev-trials=data/sre16_dev_test/trials \\
             --pretrained=exp/xvector_nnet_1a/final.raw --plda=exp/xvectors_swbd_sre/plda \\
             --mean=exp/xvectors_swbd_sre/mean.vec --lda=exp/xvectors_swbd_sre/transform.mat \\
             --mfcc-config=conf/mfcc.conf --sample-rate=8000 --musan=musan --rirs=RIRS_NOISES
    """,
    opts=_recipe_opts(),
    nargs=(0, 0),
    resumable=True,
    spaced_values=True,
)
def demo(opts):
    from xvjax.recipe import transfer

    cfg = RecipeConfig(**{f.name: getattr(opts, f.name) for f in dataclasses.fields(RecipeConfig)})
    summary = transfer.run_recipe(cfg)
    with open(summary["results_md"], encoding="utf-8") as f:
        print(f.read(), flush=True)
    log.info(
        "Done in %.1f s: %s, %s, %s",
        summary["seconds"],
        summary["results_md"],
        summary.get("det_png", ""),
        summary.get("training_curves_png", ""),
    )
    return 0
