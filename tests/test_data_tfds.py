"""TFDS source: a Kaldi data dir written as TFDS ArrayRecord reads back as the same utterances."""

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets not installed (xvjax[tfds])")
pytest.importorskip("array_record", reason="array_record not installed (xvjax[tfds])")

from xvjax.data import chunks, loaders, stores  # noqa: E402
from xvjax.data.tfds_source import TfdsStore, build_tfds_dataset  # noqa: E402
from xvjax.errors import XvjaxError  # noqa: E402
from xvjax.synthetic.fake_feats import write_fake_data_dir  # noqa: E402


def test_tfds_roundtrip_and_chunks(tmp_path):
    data = str(tmp_path / "train")
    write_fake_data_dir(data, num_speakers=3, utts_per_speaker=3, feat_dim=5, with_vad=True)
    path = build_tfds_dataset(data, str(tmp_path / "tfds"), name="tiny")
    assert path.endswith("xvjax_speech/tiny/1.0.0")
    store = TfdsStore(path)
    ref = stores.FeatsStore(data)  # raw -> CMN + VAD, as written
    assert store.feat_dim == 5 and store.utt2len == ref.utt2len and store.utt2spk == ref.utt2spk
    for utt in ref.utt2len:
        np.testing.assert_array_equal(store.load(utt), ref.load(utt))
    table, _ = chunks.build_utt_table(store.utt2len, store.utt2spk, min_len=30)
    cfg = chunks.ChunkConfig(
        min_chunk=30, max_chunk=40, frames_per_archive=500, num_repeats=2, batch_size=3
    )
    a = loaders.ChunkLoader(store, chunks.ChunkSampler(table, cfg), prefetch=1, num_workers=2)
    b = loaders.ChunkLoader(ref, chunks.ChunkSampler(table, cfg), num_workers=0)
    for _ in range(3):
        np.testing.assert_array_equal(next(a).feats, next(b).feats)
    a.close()
    with pytest.raises(XvjaxError, match="already exists"):
        build_tfds_dataset(data, str(tmp_path / "tfds"), name="tiny")
    with pytest.raises(XvjaxError, match="does not exist"):
        TfdsStore(str(tmp_path / "nope"))


def test_train_data_from_tfds_config(tmp_path):
    from xvjax.train.config import base_config
    from xvjax.train.input_pipeline import build_data

    data = str(tmp_path / "train")
    write_fake_data_dir(data, num_speakers=3, utts_per_speaker=3, feat_dim=5)
    path = build_tfds_dataset(data, str(tmp_path / "tfds"))
    c = base_config()
    c.data.source, c.data.tfds_dir = "tfds", path
    c.data.min_chunk = c.data.max_chunk = 30
    c.train.batch_size = 4
    td = build_data(c)
    assert td.num_speakers == 3 and td.feat_dim == 5 and td.description == path
    batch = next(td.loader)
    assert batch.feats.shape == (4, 30, 5)
    td.loader.close()


def test_make_tfds_dataset_command(tmp_path, capsys):
    import logging

    from xvjax import cli

    data = str(tmp_path / "train")
    write_fake_data_dir(data, num_speakers=2, utts_per_speaker=2, feat_dim=4)
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        assert cli.run(["make-tfds-dataset", "--name=cmd", data, str(tmp_path / "out")]) == 0
    finally:
        root.handlers[:] = handlers
    path = capsys.readouterr().out.strip().splitlines()[-1]
    assert TfdsStore(path).utt2len.keys() == stores.FeatsStore(data).utt2len.keys()
