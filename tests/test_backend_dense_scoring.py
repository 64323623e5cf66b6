"""ivector-plda-scoring-dense: all pairs of a recording's segments, with the per-recording PCA.
Kaldi ground truth: without PCA (--target-energy=1) every entry is Kaldi's PLDA LLR of one vector
against another, which the fixture's test-vs-cohort scores are (test vectors as 1-utterance
enrolments, ivector-plda-scoring with plda_adapt)."""

from __future__ import annotations

import numpy as np
import pytest

from xvjax import cli
from xvjax.backend.dense_scoring import dense_plda_scores, recording_pca
from xvjax.kaldi import plda_io, tables


@pytest.fixture(scope="module")
def bk(kaldi_fixtures):
    return kaldi_fixtures / "backend"


def test_dense_scores_equal_kaldi_llr(bk, tmp_path):
    test = tables.read_dict(f"ark,t:{bk / 'test_prepared_mean_adapt.ark.txt'}")
    cohort = tables.read_dict(f"ark,t:{bk / 'cohort_prepared.ark.txt'}")
    t_keys, c_keys = sorted(test)[:12], sorted(cohort)[:20]
    vecs = tmp_path / "vecs.ark"
    tables.write_dict(
        f"ark:{vecs}", {**{k: test[k] for k in t_keys}, **{k: cohort[k] for k in c_keys}}
    )
    reco2utt = tmp_path / "reco2utt"
    reco2utt.write_text("rec1 " + " ".join(t_keys + c_keys) + "\nrec2 " + c_keys[0] + "\n")
    plda = tmp_path / "plda"
    assert cli.run(["ivector-copy-plda", "--smoothing=0.0", str(bk / "plda_adapt"), str(plda)]) == 0
    out = tmp_path / "scores.ark"
    argv = ["ivector-plda-scoring-dense", "--target-energy=1.0", str(plda), f"ark:{reco2utt}"]
    assert cli.run(argv + [f"ark:{vecs}", f"ark:{out}"]) == 0
    scores = tables.read_dict(f"ark:{out}")
    assert scores["rec2"].shape == (1, 1)
    mat = scores["rec1"]
    assert mat.shape == (32, 32) and np.allclose(mat, mat.T, rtol=1e-5, atol=1e-4)
    kaldi = {}
    for line in (bk / "scores_test_cohort").read_text().splitlines():
        e, t, s = line.split()
        kaldi[e, t] = float(s)
    for i, e in enumerate(t_keys):
        for j, t in enumerate(c_keys):
            assert abs(mat[i, 12 + j] - kaldi[e, t]) <= 1e-4 * max(1.0, abs(kaldi[e, t]))


def test_recording_pca_and_energy(bk):
    plda = plda_io.read_plda(str(bk / "plda"))
    x = np.stack(list(tables.read_dict(f"ark,t:{bk / 'train_lda_norm.ark.txt'}").values()))[:60]
    assert recording_pca(x, 1.0) is None
    pca = recording_pca(x, 0.5)
    centred = x - x.mean(0)
    kept = np.sum((centred @ pca.T) ** 2) / np.sum(centred**2)
    one_less = np.sum((centred @ pca[:-2].T) ** 2) / np.sum(centred**2)
    assert kept > 0.5 and one_less <= 0.5  # Kaldi keeps one more than the share needs
    assert np.allclose(pca @ pca.T, np.eye(len(pca)), atol=1e-10)
    s = dense_plda_scores(plda, x, 0.5)
    assert s.shape == (60, 60)
    # scores do not depend on the signs of the PCA's eigenvectors
    from xvjax.backend.dense_scoring import all_pairs_llr
    from xvjax.backend.plda import apply_transform, plda_transform

    signs = np.where(np.arange(len(pca)) % 2, -1.0, 1.0)[:, None]
    p2 = apply_transform(plda, pca * signs)
    y2, _ = plda_transform(p2, x @ (pca * signs).T)
    assert np.allclose(all_pairs_llr(p2, y2), s, rtol=1e-4, atol=1e-3)
