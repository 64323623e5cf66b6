"""The trainer's dev set re-scores new weights: one jitted extractor is reused across evaluations
(only the weights change), and every evaluation equals a fresh dev set's on the same weights."""

import jax
import numpy as np
import pytest

from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import init_variables
from xvjax.synthetic.fake_feats import write_fake_data_dir, write_trials
from xvjax.train.dev_set import DevSet


def test_dev_set_scores_the_weights_it_is_given(tmp_path):
    utt2spk = write_fake_data_dir(
        str(tmp_path / "dev"), num_speakers=6, utts_per_speaker=3, feat_dim=8, seed=5
    )
    write_trials(str(tmp_path / "trials"), utt2spk)
    spec = xvector_1a_spec(
        input_dim=8, num_speakers=4, frame_dims=(16, 16, 16, 16, 24), embedding_dims=(12, 12)
    )
    weights = [jax.tree.map(np.asarray, init_variables(spec, jax.random.key(k))) for k in (0, 1)]
    dev = DevSet(str(tmp_path / "dev"), str(tmp_path / "trials"))
    first = dev.embeddings(spec, weights[0])
    extractor = dev._extractor
    second = dev.embeddings(spec, weights[1])
    assert dev._extractor is extractor  # the same compiled function, new weights
    fresh = DevSet(str(tmp_path / "dev"), str(tmp_path / "trials")).embeddings(spec, weights[1])
    for utt, vec in second.items():
        np.testing.assert_allclose(vec, fresh[utt], rtol=1e-5, atol=1e-6, err_msg=utt)
        assert not np.allclose(vec, first[utt]), utt  # the second weights were used
    assert dev.eer(spec, weights[1]) == pytest.approx(
        DevSet(str(tmp_path / "dev"), str(tmp_path / "trials")).eer(spec, weights[1])
    )
