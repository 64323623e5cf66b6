"""`xvjax demo`: the transfer recipe end to end (the README's main command; `make demo`)."""

from __future__ import annotations

import logging

from xvjax.cli import Opt, command

log = logging.getLogger("xvjax")

# (option, default, help); None means "the preset's value" (see config.RECIPE_PRESETS).
_OPTS = (
    ("workdir", "exp/demo", "Where everything goes (data, features, models, x-vectors, results)"),
    ("stage", -1, "Re-run from this stage (0 data, 1 features, 2 source model, 3 embeddings, "
     "4 backends, 5 fine-tuning, 6 results); -1 resumes, skipping stages already done"),
    ("preset", "default", "Corpus and training sizes: tiny (tests), default (the demo), large"),
    ("corpus-seed", None, "Seed of the built-in corpus (default: the preset's)", int),
    ("corpus-options", None, "Corpus size/seed overrides, e.g. source_train_spk=40,test_utts=4 "
     "(make-demo-corpus option names with _)", str),
    ("num-jobs", 2, "Worker processes for the corpus generator"),
    ("src-data", "", "Source-domain labelled data dir (trains the source model and backend)"),
    ("src-enroll", "", "Source-domain enrollment data dir (source reference trials)"),
    ("src-test", "", "Source-domain test data dir (source reference trials)"),
    ("src-trials", "", "Source-domain trials file"),
    ("tgt-train", "", "In-domain labelled data dir (LDA/PLDA retraining, fine-tuning)"),
    ("tgt-adapt", "", "In-domain unlabelled data dir (mean, PLDA adaptation, S-norm cohort)"),
    ("tgt-enroll", "", "In-domain enrollment data dir (speakers are the trials' models)"),
    ("tgt-test", "", "In-domain test data dir"),
    ("trials", "", "In-domain trials file (<model> <test-utt> target|nontarget)"),
    ("pretrained", "", "Kaldi final.raw (or xvjax model dir) used as the source model"),
    ("plda", "", "Kaldi PLDA of the source system (out-of-domain baseline backend)"),
    ("mean", "", "Kaldi mean.vec of the source system"),
    ("lda", "", "Kaldi transform.mat (LDA) of the source system"),
    ("musan", "", "MUSAN dir (noise/ music/ speech/) for fine-tuning augmentation"),
    ("rirs", "", "RIRS_NOISES dir for fine-tuning augmentation"),
    ("mfcc-config", "", "Kaldi MFCC config (default: voxceleb 16 kHz, or sre16 8 kHz)"),
    ("vad-config", "", "Kaldi VAD config (default: the x-vector recipes' conf/vad.conf)"),
    ("sample-rate", 16000, "The model's sample rate; audio at other rates is resampled to it"),
    ("seed", 0, "Seed of training, augmentation and chunk sampling"),
    ("frame-dims", None, "Widths of the frame layers tdnn1-5, e.g. 128,128,128,128,256", str),
    ("embedding-dims", None, "Widths of the segment layers tdnn6-7, e.g. 128,128", str),
    ("src-steps", None, "Training steps of the source model", int),
    ("src-batch-size", None, "Minibatch of the source model", int),
    ("src-lr", None, "Peak learning rate (Adam, cosine) of the source model", float),
    ("min-chunk", None, "Shortest training chunk (frames)", int),
    ("max-chunk", None, "Longest training chunk (frames)", int),
    ("ft-steps", None, "Training steps of each fine-tuning run", int),
    ("ft-batch-size", None, "Minibatch of the fine-tuning runs", int),
    ("ft-lr", None, "Peak learning rate (Adam, cosine) of the fine-tuning runs", float),
    ("freeze", "tdnn[1-5]", "Layers frozen in fine-tuning run 6a (regex on layer names)"),
    ("augment", True, "Augment the fine-tuning data with MUSAN/RIRS_NOISES copies"),
    ("lda-dim", None, "LDA dimension (capped at speakers - 1 of its training set)", int),
    ("plda-em-iters", 10, "PLDA EM iterations (ivector-compute-plda --num-em-iters)"),
    ("within-covar-scale", 0.75, "ivector-adapt-plda --within-covar-scale"),
    ("between-covar-scale", 0.25, "ivector-adapt-plda --between-covar-scale"),
    ("asnorm-top-k", None, "Cohort top-K of adaptive S-norm", int),
    ("progress", True, "Show progress bars"),
)  # fmt: skip


@command(
    "demo",
    "The transfer recipe end to end: source model -> new domain by every route, results table",
    usage="""
    xvjax demo [options]
    Stages (Kaldi sre16/v2 run.sh style; --stage=N re-runs from N, a rerun resumes):
      0 data (built-in corpus, or your data dirs)   1 features (MFCC, VAD, CMN)
      2 source model (trained, or --pretrained)     3 x-vectors
      4 backends (rows 1-5)                          5 fine-tuning (rows 6a, 6b)
      6 results: WORKDIR/results/{results.md,results.json,det.png,training_curves.png}
     e.g.: xvjax demo --workdir=exp/demo
           xvjax demo --preset=tiny --workdir=exp/tiny
           xvjax demo --workdir=exp/sre --src-data=data/swbd_sre --tgt-train=data/sre16_train \\
             --tgt-adapt=data/sre16_major --tgt-enroll=data/sre16_eval_enroll \\
             --tgt-test=data/sre16_eval_test --trials=data/sre16_eval_test/trials \\
             --pretrained=exp/xvector_nnet_1a/final.raw --plda=exp/xvectors_swbd_sre/plda \\
             --mean=exp/xvectors_swbd_sre/mean.vec --lda=exp/xvectors_swbd_sre/transform.mat \\
             --mfcc-config=conf/mfcc.conf --sample-rate=8000 --musan=musan --rirs=RIRS_NOISES
    """,
    opts=[
        Opt(o[0], o[1], o[2], type=o[3] if len(o) > 3 else None)  # type: ignore[misc]
        for o in _OPTS
    ],
    nargs=(0, 0),
    resumable=True,
)
def demo(opts):
    from xvjax.recipe import transfer
    from xvjax.recipe.config import RecipeConfig

    values = {}
    for o in _OPTS:
        key = o[0].replace("-", "_")
        values[key] = getattr(opts, key)
    cfg = RecipeConfig(**values)
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
