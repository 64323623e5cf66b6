"""The training data of a run: `config.data` -> a stream of chunk minibatches (checked, nothing
written, no network compute).

    data = build_data(config, jax.process_index(), jax.process_count())
    data.check_model(spec)                 # the network takes these features, one output a speaker
    batch = next(data.loader)              # loaders.TrainBatch: feats (batch, frames, dim), labels
    data.loader.load_state_dict(position)  # the data position saved with a checkpoint

Sources (`config.data.source`): `feats` (a Kaldi data dir's feats.scp), `audio` (wav.scp, features
and augmentation on the fly), `egs` (Kaldi egs archives, Kaldi's own chunking), `tfds` (a TFDS
dataset written by `xvjax make-tfds-dataset`). Each process reads its own rows of every batch.
`data.num_workers` threads make the batches (up to `data.prefetch` more wait ready); the batches do
not depend on the worker count, so it may change when a run resumes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xvjax.data import chunks, loaders, stores
from xvjax.data.audio_source import AudioStore
from xvjax.data.tfds_source import TfdsStore
from xvjax.errors import XvjaxError


@dataclasses.dataclass
class TrainData:
    loader: Any  # iterator of loaders.TrainBatch with state_dict/load_state_dict/close
    num_speakers: int
    feat_dim: int
    speakers: tuple[str, ...] | None  # output index -> speaker id (None for egs)
    description: str

    def check_model(self, spec) -> None:
        """Raises unless the network `spec` takes these features and has one output per speaker."""
        if spec.input_dim != self.feat_dim:
            raise XvjaxError(
                f"model takes {spec.input_dim}-dim input, features are {self.feat_dim}-dim"
            )
        if spec.output_dim("output") != self.num_speakers:
            raise XvjaxError(
                f"model has {spec.output_dim('output')} outputs, the data has {self.num_speakers} "
                "speakers"
            )


def build_data(config, process_index: int = 0, process_count: int = 1) -> TrainData:
    """The training stream of `config.data` (reads metadata and checks it; no network compute)."""
    d = config.data
    seed = int(config.seed)
    batch = int(config.train.batch_size)
    workers, prefetch = int(d.get("num_workers", 1)), int(d.prefetch)
    if (d.musan or d.rirs) and d.source != "audio":
        raise XvjaxError(
            f"--musan/--rirs augment audio on the fly: use --source=audio with a data dir that has "
            f"wav.scp (data.source is '{d.source}')"
        )
    if d.source == "egs":
        if not d.egs_dir:
            raise XvjaxError("data.source=egs needs data.egs_dir (Kaldi exp/.../egs)")
        loader = loaders.EgsLoader(
            d.egs_dir, batch, seed, process_index, process_count, d.get("num_speakers") or None,
            num_workers=workers,
        )  # fmt: skip
        if not loader.num_speakers:
            raise XvjaxError(
                f"egs {d.egs_dir}: no pdf2num to tell the number of speakers; set data.num_speakers"
            )
        return TrainData(loader, loader.num_speakers, loader.feat_dim, None, f"egs {d.egs_dir}")
    if d.source == "feats":
        if not d.train_dir:
            raise XvjaxError("no training data: pass --data=DATA_DIR (or data.train_dir)")
        store = stores.FeatsStore(d.train_dir, prep=d.feats_prep, cache=d.cache)
        where = d.train_dir
    elif d.source == "tfds":
        store = TfdsStore(d.tfds_dir, split=d.get("tfds_split", "train"))
        where = d.tfds_dir
    elif d.source == "audio":
        store = AudioStore.from_config(d, seed)
        where = d.train_dir
    else:
        raise XvjaxError(f"unknown data.source '{d.source}' (feats, audio, egs, tfds)")
    table, _ = chunks.build_utt_table(
        store.utt2len, store.utt2spk, int(d.min_chunk), int(d.min_utts_per_spk), source=where
    )
    cfg = chunks.ChunkConfig(
        min_chunk=int(d.min_chunk),
        max_chunk=int(d.max_chunk),
        chunk_quantum=int(d.chunk_quantum),
        frames_per_archive=int(d.frames_per_archive),
        num_repeats=int(d.num_repeats),
        batch_size=batch,
        seed=seed,
    )
    sampler = chunks.ChunkSampler(table, cfg, process_index, process_count)
    if hasattr(store, "make_loader"):
        loader = store.make_loader(sampler, prefetch=prefetch, num_workers=workers)
    else:
        loader = loaders.ChunkLoader(store, sampler, prefetch=prefetch, num_workers=workers)
    return TrainData(loader, table.num_speakers, store.feat_dim, table.speakers, where)
