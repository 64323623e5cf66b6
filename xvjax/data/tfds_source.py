"""A TFDS dataset of prepared x-vector features, for data that lives in TFDS / GCS.

    path = build_tfds_dataset("data/train", "tfds_dir", name="vox")   # -> tfds_dir/xvjax_speech/vox/1.0.0
    store = TfdsStore(path)                                            # an utterance store
    (or `xvjax make-tfds-dataset data/train tfds_dir`, then `xvjax train ... --tfds-dir=PATH`)

The dataset `xvjax_speech` has one record per utterance: `feats` (frames, dim) float32 prepared as
Kaldi's `prepare_feats_for_egs.sh` (sliding CMN + voiced frames), `speaker`, `utt`. It is written as
ArrayRecord (`file_format="array_record"`), which TFDS reads with random access and without
TensorFlow (`as_data_source`). Records keep the data dir's sorted utterance order; the dataset's
metadata holds `utts`, `utt2len` and `utt2spk` so chunk allocation needs no pass over the features.
Requires the `tfds` extra (`pip install 'xvjax[tfds]'`).
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

from xvjax.data.stores import FeatsStore
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

DATASET = "xvjax_speech"


def _tfds():
    # An optional extra: imported when a TFDS dataset is built or read, with a hint when missing.
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise XvjaxError(
            "TFDS source needs tensorflow-datasets and array_record: pip install 'xvjax[tfds]'"
        ) from None
    return tfds


@functools.cache
def _builder_class():
    tfds = _tfds()

    class XvjaxSpeech(tfds.core.GeneratorBasedBuilder):
        """Prepared x-vector features of a Kaldi data dir, one record per utterance."""

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Prepared features (CMN + voiced frames), speaker, utterance id."}

        def __init__(self, *, store=None, feat_dim: int = 0, split: str = "train", **kwargs):
            self._store, self._feat_dim, self._split = store, feat_dim, split
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description="x-vector training features written by xvjax make-tfds-dataset",
                features=tfds.features.FeaturesDict(
                    {
                        "feats": tfds.features.Tensor(
                            shape=(None, self._feat_dim), dtype=np.float32
                        ),
                        "speaker": tfds.features.Text(),
                        "utt": tfds.features.Text(),
                    }
                ),
                metadata=tfds.core.MetadataDict(),
                disable_shuffling=True,
            )

        def _split_generators(self, dl_manager):
            return {self._split: self._generate_examples()}

        def _generate_examples(self):
            store = self._store
            utts = sorted(store.utt2len)
            self.info.metadata["utts"] = utts
            self.info.metadata["utt2len"] = {u: int(store.utt2len[u]) for u in utts}
            self.info.metadata["utt2spk"] = {u: store.utt2spk[u] for u in utts}
            for utt in utts:
                yield utt, {"feats": store.load(utt), "speaker": store.utt2spk[utt], "utt": utt}

    return XvjaxSpeech


def build_tfds_dataset(
    data_dir: str,
    out_dir: str,
    name: str = "default",
    prep: str = "auto",
    split: str = "train",
    num_shards: int = 4,
) -> str:
    """Writes `data_dir`'s prepared features as TFDS ArrayRecord; returns the dataset version dir."""
    tfds = _tfds()
    store = FeatsStore(data_dir, prep=prep, cache=False)
    cls = _builder_class()
    config = tfds.core.BuilderConfig(name=name)
    builder = cls(
        store=store,
        feat_dim=store.feat_dim,
        split=split,
        data_dir=out_dir,
        config=config,
        file_format="array_record",
    )
    if os.path.exists(builder.data_dir):
        raise XvjaxError(f"TFDS dataset {builder.data_dir} already exists (remove it to rebuild)")
    dl_config = tfds.download.DownloadConfig(max_shard_size=None, min_shard_size=1)
    del num_shards  # TFDS picks the shard count from the data size
    builder.download_and_prepare(download_config=dl_config)
    log.info("Wrote %d utterances of %s to %s", len(store.utt2len), data_dir, builder.data_dir)
    return str(builder.data_dir)


class TfdsStore:
    """Utterance store over an `xvjax_speech` TFDS dataset dir (random access, no TensorFlow)."""

    def __init__(self, path: str, split: str = "train"):
        tfds = _tfds()
        if not path or not os.path.isdir(path):
            raise XvjaxError(f"TFDS dataset dir '{path}' does not exist")
        try:
            builder = tfds.builder_from_directory(path)
        except Exception as e:
            raise XvjaxError(f"{path}: not a TFDS dataset version dir ({e})") from None
        meta = builder.info.metadata or {}
        if "utts" not in meta:
            raise XvjaxError(f"{path}: not an xvjax TFDS dataset (no utterance metadata)")
        if split not in builder.info.splits:
            raise XvjaxError(f"{path}: no split '{split}' (has {', '.join(builder.info.splits)})")
        self.path = path
        self._source = builder.as_data_source(split=split)
        self.utts = list(meta["utts"])
        self._index = {u: i for i, u in enumerate(self.utts)}
        self.utt2len = {u: int(n) for u, n in meta["utt2len"].items()}
        self.utt2spk = dict(meta["utt2spk"])
        self.feat_dim = int(builder.info.features["feats"].shape[-1])
        if len(self._source) != len(self.utts):
            raise XvjaxError(
                f"{path}: {len(self._source)} records but {len(self.utts)} utterances in the metadata"
            )

    def load(self, utt: str) -> np.ndarray:
        rec = self._source[self._index[utt]]
        got = rec["utt"].decode() if isinstance(rec["utt"], bytes) else rec["utt"]
        if got != utt:
            raise XvjaxError(f"{self.path}: record {self._index[utt]} is '{got}', expected '{utt}'")
        return np.asarray(rec["feats"], np.float32)
