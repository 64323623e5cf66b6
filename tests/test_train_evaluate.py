"""Dev-set scoring of `xvjax.train.dev_set` (cosine scores of centred x-vectors) and the trial lists
of `xvjax.backend.trials` it reads."""

import numpy as np
import pytest

from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.train.dev_set import cosine_scores


def test_cosine_scores_utterance_and_speaker_sides(tmp_path):
    rng = np.random.default_rng(0)
    emb = {f"u{i}": rng.normal(size=6).astype(np.float32) for i in range(8)}
    utt2spk = {f"u{i}": f"s{i % 3}" for i in range(8)}
    path = tmp_path / "trials"
    path.write_text("s0 u1 nontarget\nu3 u0 target\ns2 u5 target\nmissing u2 target\n")
    trials = Trials.read(str(path), labelled=True)
    scores, labels = cosine_scores(emb, trials, utt2spk)

    # Reference written out per trial: centre on the mean x-vector, average a speaker's utterances.
    mean = np.mean([emb[k].astype(np.float64) for k in emb], axis=0)
    vec = {k: v.astype(np.float64) - mean for k, v in emb.items()}
    for s in ("s0", "s2"):
        vec[s] = np.mean([vec[u] for u, t in utt2spk.items() if t == s], axis=0)
    ref = [vec[a] @ vec[b] / np.linalg.norm(vec[a]) / np.linalg.norm(vec[b])
           for a, b in (("s0", "u1"), ("u3", "u0"), ("s2", "u5"))]  # fmt: skip
    np.testing.assert_allclose(scores, ref, rtol=1e-12)
    np.testing.assert_array_equal(labels, [False, True, True])


def test_read_trials_rejects_missing_label(tmp_path):
    path = tmp_path / "trials"
    path.write_text("a b target\nc d\n")
    with pytest.raises(XvjaxError, match="c d"):
        Trials.read(str(path), labelled=True)
