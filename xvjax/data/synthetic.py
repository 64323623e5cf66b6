"""The built-in two-domain demo corpus (public entry points).

    from xvjax.data import synthetic
    paths = synthetic.make_corpus("exp/demo/corpus", synthetic.preset("tiny"), num_jobs=2)
    paths["source_train"], paths["target_trials"], paths["musan"], paths["rirs"], ...

`synthetic_corpus` documents the layout and writes it; `synthetic_domains` says what each domain
sounds like; `synthetic_voice` is the source-filter synthesiser; `synthetic_channel` has rooms,
noises and telephone lines; `synthetic_check` is a numpy baseline that measures the corpus.
"""

from xvjax.data.synthetic_corpus import (
    GENERATOR_VERSION,
    PRESETS,
    SETS,
    CorpusConfig,
    corpus_paths,
    make_corpus,
    preset,
)
from xvjax.data.synthetic_domains import ROOM_SIZES, render_utterance, speaker_traits

__all__ = [
    "GENERATOR_VERSION",
    "PRESETS",
    "ROOM_SIZES",
    "SETS",
    "CorpusConfig",
    "corpus_paths",
    "make_corpus",
    "preset",
    "render_utterance",
    "speaker_traits",
]
