"""What a training run is built from: the data stream and the network (checked, nothing written).

data = build_data(config)                       # TrainData: loader, num_speakers, feat_dim, ...
spec, variables = build_model(config, data.num_speakers, data.feat_dim)
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class TrainData:
    loader: Any  # iterator of loaders.TrainBatch with state_dict/load_state_dict/close
    num_speakers: int
    feat_dim: int
    speakers: tuple[str, ...] | None
    description: str


def build_data(config, process_index: int = 0, process_count: int = 1) -> TrainData:
    """The training stream of `config.data` (reads metadata and checks it; no network compute)."""
    from xvjax.data import chunks, loaders, stores

    d = config.data
    seed = int(config.seed)
    batch = int(config.train.batch_size)
    if (d.musan or d.rirs) and d.source != "audio":
        raise XvjaxError(
            f"--musan/--rirs augment audio on the fly: use --source=audio with a data dir that has "
            f"wav.scp (data.source is '{d.source}')"
        )
    if d.source == "egs":
        if not d.egs_dir:
            raise XvjaxError("data.source=egs needs data.egs_dir (Kaldi exp/.../egs)")
        loader = loaders.EgsLoader(
            d.egs_dir, batch, seed, process_index, process_count, d.get("num_speakers") or None
        )
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
        from xvjax.data.tfds_source import TfdsStore

        store = TfdsStore(d.tfds_dir, split=d.get("tfds_split", "train"))
        where = d.tfds_dir
    elif d.source == "audio":
        from xvjax.data.audio_source import AudioStore

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
        loader = store.make_loader(sampler, prefetch=int(d.prefetch))
    else:
        loader = loaders.ChunkLoader(store, sampler, prefetch=int(d.prefetch))
    return TrainData(loader, table.num_speakers, store.feat_dim, table.speakers, where)


# ----------------------------------------------------------------------------- model


def build_model(config, num_speakers: int, feat_dim: int):
    """(spec, variables) from config.init_from (resized) or from scratch."""
    import jax

    from xvjax.model.spec import xvector_1a_spec
    from xvjax.model.xvector import init_variables, resize_output

    key = jax.random.key(int(config.seed))
    if config.init_from:
        from xvjax.model.checkpoint import load_any

        spec, variables = load_any(config.init_from)
        if spec.input_dim != feat_dim:
            raise XvjaxError(
                f"model {config.init_from} takes {spec.input_dim}-dim input but the training "
                f"features are {feat_dim}-dim (check the MFCC config: num-ceps)"
            )
        out_affine = config.model.get("output_affine", "output.affine")
        old = spec.node(out_affine).dim
        if config.resize_output:
            spec, variables = resize_output(
                spec,
                variables,
                num_speakers,
                jax.random.fold_in(key, 1),
                param_stddev=float(config.output_init.param_stddev),
                bias_stddev=float(config.output_init.bias_stddev),
                output_affine=out_affine,
            )
            log.info(
                "Resized %s from %d to %d outputs (in-domain speakers)",
                out_affine,
                old,
                num_speakers,
            )
        elif old != num_speakers:
            raise XvjaxError(
                f"model {config.init_from} has {old} outputs but the data has {num_speakers} "
                "speakers; set resize_output=True"
            )
    else:
        m = config.model
        spec = xvector_1a_spec(
            input_dim=feat_dim,
            num_speakers=num_speakers,
            frame_dims=tuple(m.frame_dims),
            embedding_dims=tuple(m.embedding_dims),
            bn_momentum=float(m.bn_momentum),
        )
        variables = init_variables(spec, key)
    return spec, variables


def model_factors(spec) -> tuple[dict[str, float], dict[str, float]]:
    """Per-layer Kaldi `max-change` and `learning-rate-factor` recorded in the model spec."""
    caps, factors = {}, {}
    for node in spec.nodes:
        layer = node.var_path[0]
        if "max-change" in node.kaldi:
            caps[layer] = float(node.kaldi["max-change"])
        if "learning-rate-factor" in node.kaldi:
            factors[layer] = float(node.kaldi["learning-rate-factor"])
    return caps, factors
