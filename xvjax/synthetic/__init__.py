"""The built-in two-domain demo corpus (`xvjax make-demo-corpus`, stage 0 of `xvjax demo`).

    from xvjax.synthetic import corpus
    paths = corpus.make_corpus("exp/demo/corpus", corpus.preset("tiny"), num_jobs=2)
    paths["source_train"], paths["target_trials"], paths["musan"], paths["rirs"], ...

`corpus` documents the layout and writes it; `domains` says what each domain sounds like; `voice`
is the source-filter synthesiser; `channel` has rooms, noises and telephone lines; `check` is a
numpy baseline that measures the corpus; `fake_feats` writes feature-level fake speakers (no audio)
for tests and benchmarks.
"""
