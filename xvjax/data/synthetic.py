"""The built-in two-domain demo corpus (public entry points).

    from xvjax.data import synthetic
    paths = synthetic.make_corpus("exp/demo/corpus", synthetic.preset("tiny"), num_jobs=2)
    paths["source_train"], paths["target_trials"], paths["musan"], paths["rirs"], ...

See `synthetic_corpus` for the layout, `synthetic_voice` for the voices and
`synthetic_channel` for rooms, noises and telephone lines.
"""

from xvjax.data.synthetic_corpus import (
    PRESETS,
    SETS,
    CorpusConfig,
    corpus_paths,
    make_corpus,
    preset,
    render_utterance,
)

__all__ = [
    "PRESETS",
    "SETS",
    "CorpusConfig",
    "corpus_paths",
    "make_corpus",
    "preset",
    "render_utterance",
]
