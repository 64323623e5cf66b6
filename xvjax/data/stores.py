"""Utterance stores: where training chunks are cut from.

An *utterance store* knows `utt2spk`, `utt2len` (frames the network will see, i.e. after voiced-frame
selection) and `feat_dim`, and returns one utterance's prepared features with `load(utt)`;
`xvjax.data.loaders.ChunkLoader` cuts a `ChunkSampler`'s chunks from any store. `FeatsStore` (here)
reads a Kaldi data dir's feats.scp; `AudioStore` (`audio_source.py`) computes features from wav.scp
per batch; `TfdsStore` (`tfds_source.py`) reads a TFDS dataset.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.features.frontend_numpy import prepare_feats_numpy
from xvjax.features.options import RECIPE_CMN, CmnOptions
from xvjax.kaldi import tables

log = logging.getLogger("xvjax")


def _data_file(data_dir: str, name: str) -> str | None:
    path = os.path.join(data_dir, name)
    return path if os.path.isfile(path) else None


def read_utt2spk(data_dir: str) -> dict[str, str]:
    path = _data_file(data_dir, "utt2spk")
    if path is None:
        raise XvjaxError(f"data dir {data_dir}: no utt2spk")
    return tables.read_text_table(path)


class FeatsStore:
    """Features of a Kaldi data dir (`feats.scp`), prepared as `prepare_feats_for_egs.sh` does.

    `prep`: "raw" = apply sliding CMN (recipe settings: window 300, centred, no variance norm) and
    keep the frames `vad.scp` marks voiced; "prepared" = use feats.scp as it is (a `*_no_sil` dir);
    "auto" = "raw" when the dir has a vad.scp, else "prepared".
    `utt2len` is read from `utt2num_frames` (prepared) or from the VAD decisions (raw); without
    either the features are read once to count frames. Prepared utterances are cached in memory when
    `cache` (the default; set False for corpora larger than RAM).
    """

    def __init__(
        self,
        data_dir: str,
        prep: str = "auto",
        cache: bool = True,
        cmn_opts: CmnOptions = RECIPE_CMN,
    ):
        self.data_dir = data_dir
        feats_scp = _data_file(data_dir, "feats.scp")
        if feats_scp is None:
            raise XvjaxError(f"data dir {data_dir}: no feats.scp (run make-features first)")
        vad_scp = _data_file(data_dir, "vad.scp")
        if prep == "auto":
            prep = "raw" if vad_scp else "prepared"
        if prep not in ("raw", "prepared"):
            raise XvjaxError(f"feature preparation must be auto, raw or prepared, got '{prep}'")
        if prep == "raw" and vad_scp is None:
            raise XvjaxError(f"data dir {data_dir}: raw features need a vad.scp")
        self.prep = prep
        self.utt2spk = read_utt2spk(data_dir)
        self._feats = tables.RandomAccess(f"scp:{feats_scp}")
        self._vad = tables.RandomAccess(f"scp:{vad_scp}") if prep == "raw" else None
        self._cache: dict[str, np.ndarray] | None = {} if cache else None
        self.cmn_opts = cmn_opts
        self.utt2len = self._lengths()
        first = next(iter(self.utt2len), None)
        if first is None:
            raise XvjaxError(f"data dir {data_dir}: no utterance has features")
        self.feat_dim = int(self.load(first).shape[1])

    def _lengths(self) -> dict[str, int]:
        keys = set(self._feats.keys())
        utts = [u for u in self.utt2spk if u in keys]
        if self._vad is not None:
            vad_keys = set(self._vad.keys())
            missing = [u for u in utts if u not in vad_keys]
            if missing:
                log.warning(
                    "%d utterances of %s have no VAD decisions and were dropped (e.g. %s)",
                    len(missing),
                    self.data_dir,
                    missing[0],
                )
            return {u: int(np.sum(np.asarray(self._vad[u]) > 0.5)) for u in utts if u in vad_keys}
        path = _data_file(self.data_dir, "utt2num_frames")
        if path is not None:
            table = tables.read_text_table(path)
            if all(u in table for u in utts):
                return {u: int(table[u]) for u in utts}
        return {u: int(self.load(u).shape[0]) for u in utts}

    def load(self, utt: str) -> np.ndarray:
        """(frames, feat_dim) float32 prepared features of `utt`."""
        if self._cache is not None and utt in self._cache:
            return self._cache[utt]
        feats = np.asarray(self._feats[utt], np.float32)
        if feats.ndim != 2:
            raise XvjaxError(f"{self.data_dir}/feats.scp: '{utt}' is not a matrix")
        if self._vad is not None:
            vad = np.asarray(self._vad[utt])
            if len(vad) != len(feats):
                raise XvjaxError(
                    f"{self.data_dir}: '{utt}' has {len(feats)} feature frames but {len(vad)} VAD "
                    "decisions"
                )
            feats = prepare_feats_numpy(feats, vad, self.cmn_opts)
        if self._cache is not None:
            self._cache[utt] = feats
        return feats
