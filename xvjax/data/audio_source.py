"""Training chunks computed on the fly from audio (wav.scp), with PRNG-keyed augmentation.

What Kaldi's recipe does offline (augment -> MFCC -> sliding CMN -> voiced frames with the *clean*
VAD -> egs) happens per minibatch here:

1. At start, each utterance's clean MFCC gives its energy-VAD decisions; the voiced frames define the
   utterance length the chunk allocation sees (`utt2len`), as in `prepare_feats_for_egs.sh`.
2. For a chunk of voiced frames [off, off + L) the loader cuts the audio of the raw frames they span
   plus `cmn_window` frames of margin on each side, augments it (`features.augment`:
   reverb / noise / music / babble, one per example with probability `aug_prob`), and prepares it
   with the front end (`features.frontend.prepare_feats`: MFCC, sliding CMN) keeping the L voiced
   frames of the clean decisions, as Kaldi's recipes reuse the clean vad.scp for augmented copies.
   With that margin every chunk frame has the same CMN window as in the whole utterance, so without
   augmentation (and dither 0) a chunk equals the same rows of the offline pipeline's output.

Determinism: augmentation and dither keys are `fold_in(key(seed), archive, batch)`, so a resumed run
recomputes exactly the same batches. Segment lengths are padded to buckets of `bucket_frames`
frames to bound jit compilations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.data.loaders import ChunkLoader, TrainBatch
from xvjax.errors import XvjaxError
from xvjax.features.augment import AugmentConfig, augment_batch
from xvjax.features.frontend import prepare_feats
from xvjax.features.mfcc import num_frames, resolve_fft_impl
from xvjax.features.noise_banks import load_sources
from xvjax.features.options import (
    RECIPE_CMN,
    RECIPE_VAD,
    SRE16_MFCC,
    VOXCELEB_MFCC,
    MfccOptions,
    VadOptions,
)
from xvjax.features.stream import extract_features
from xvjax.features.vad import compute_vad_numpy
from xvjax.kaldi import audio, tables

log = logging.getLogger("xvjax")


def _default_mfcc(sample_rate: int) -> MfccOptions:
    if sample_rate == 16000:
        return VOXCELEB_MFCC
    if sample_rate == 8000:
        return SRE16_MFCC
    raise XvjaxError(
        f"no default MFCC config for {sample_rate} Hz audio; set data.mfcc_config=conf/mfcc.conf"
    )


class AudioStore:
    """Utterances of a data dir's wav.scp; features are made per batch by `AudioChunkLoader`.

    `fft_impl` (of `compute_mfcc`): "auto" (default) is XLA's FFT on every backend (the faster
    path on CPU too; on accelerators augmented batches then stay on the device)."""

    def __init__(
        self,
        data_dir: str,
        mfcc_opts=None,
        vad_opts=None,
        cmn_opts=None,
        sources=None,
        aug_prob: float = 0.0,
        seed: int = 0,
        bucket_frames: int = 100,
        fft_impl: str = "auto",
    ):
        wav_scp = os.path.join(data_dir, "wav.scp")
        if not os.path.isfile(wav_scp):
            raise XvjaxError(f"data dir {data_dir}: no wav.scp for on-the-fly features")
        self.data_dir = data_dir
        self.utt2spk = tables.read_text_table(os.path.join(data_dir, "utt2spk"))
        wavs = tables.read_text_table(wav_scp)
        self.vad_opts = vad_opts or RECIPE_VAD
        self.cmn_opts = cmn_opts or RECIPE_CMN
        self.sources, self.aug_prob, self.seed = sources, float(aug_prob), int(seed)
        self.bucket_frames = int(bucket_frames)
        self.fft_impl = fft_impl
        # One batch at a time through the host FFT kernel: it already runs on every core, and XLA
        # CPU computations that call back into Python (jax.pure_callback) deadlock the CPU client
        # when several threads run them at once (seen with 2 loader workers on 2 cores).
        host_kernel = resolve_fft_impl(fft_impl) == "kaldi"
        self._host_kernel_lock = threading.Lock() if host_kernel else contextlib.nullcontext()
        self.audio: dict[str, np.ndarray] = {}
        self.voiced_idx: dict[str, np.ndarray] = {}
        self.num_frames: dict[str, int] = {}
        rate0 = None
        bad = []
        for utt in sorted(self.utt2spk):
            if utt not in wavs:
                bad.append(utt)
                continue
            try:
                x, rate = audio.read_wav_entry(wavs[utt])
            except XvjaxError as e:
                log.warning("skipping %s: %s", utt, e)
                bad.append(utt)
                continue
            x = np.asarray(x, np.float32)
            if x.ndim > 1:
                x = x[:, 0] if x.shape[1] < x.shape[0] else x[0]
            if rate0 is None:
                rate0 = rate
            elif rate != rate0:
                raise XvjaxError(f"{wav_scp}: '{utt}' is {rate} Hz, others are {rate0} Hz")
            self.audio[utt] = x
        if bad:
            log.warning(
                "%d utterances of %s have no readable audio and were dropped", len(bad), data_dir
            )
        if not self.audio:
            raise XvjaxError(f"data dir {data_dir}: no readable audio")
        self.mfcc_opts = mfcc_opts or _default_mfcc(int(rate0))
        if int(self.mfcc_opts.sample_frequency) != int(rate0):
            raise XvjaxError(
                f"{data_dir}: audio is {rate0} Hz but the MFCC config expects "
                f"{self.mfcc_opts.sample_frequency:g} Hz"
            )
        self.feat_dim = int(self.mfcc_opts.num_ceps)
        self.clean_opts = dataclasses.replace(self.mfcc_opts, dither=0.0)
        # Clean VAD decisions, in batches (make-features' extraction and compute-vad).
        clean = ((utt, x, rate0) for utt, x in self.audio.items())
        for r in extract_features(clean, self.clean_opts, batch_size=16, fft_impl=fft_impl):
            if r.error is not None:  # no frames: the chunk table leaves it out
                log.warning("%s: no features for %s: %s", data_dir, r.key, r.error)
                self.num_frames[r.key], self.voiced_idx[r.key] = 0, np.zeros(0, np.int64)
                continue
            self.num_frames[r.key] = len(r.feats)
            vad = compute_vad_numpy(r.feats, self.vad_opts)
            self.voiced_idx[r.key] = np.flatnonzero(vad > 0.5)
        self.utt2spk = {u: s for u, s in self.utt2spk.items() if u in self.audio}
        self.utt2len = {u: len(self.voiced_idx[u]) for u in self.audio}

    @classmethod
    def from_config(cls, d, seed: int) -> AudioStore:
        """From `config.data` (train_dir, mfcc_config, vad_config, musan, rirs, aug_prob)."""
        mfcc = MfccOptions.from_config_file(d.mfcc_config) if d.mfcc_config else None
        vad = VadOptions.from_config_file(d.vad_config) if d.vad_config else None
        sources = None
        if d.aug_prob > 0 and (d.musan or d.rirs):
            rate = int(mfcc.sample_frequency) if mfcc else None
            if rate is None:  # peek at the first utterance's rate
                first = sorted(
                    tables.read_text_table(os.path.join(d.train_dir, "wav.scp")).items()
                )[0]
                rate = int(audio.read_wav_entry(first[1])[1])
            sources = load_sources(
                rirs=[d.rirs] if d.rirs else None,
                noise=[d.musan] if d.musan else None,
                music=[d.musan] if d.musan else None,
                speech=[d.musan] if d.musan else None,
                sample_rate=rate,
            )
        elif d.aug_prob > 0:
            raise XvjaxError("data.aug_prob > 0 needs --musan and/or --rirs")
        return cls(d.train_dir, mfcc, vad, None, sources, d.aug_prob, seed)

    def bucket_samples(self, n: int) -> int:
        """Padded length of an n-sample waveform (multiples of `bucket_frames` frames)."""
        step = self.bucket_frames * self.mfcc_opts.window_shift
        return max(step, -(-n // step) * step)

    def load(self, utt: str) -> np.ndarray:
        """Whole-utterance clean prepared features (MFCC -> CMN -> voiced), for dev/inspection."""
        x = self.audio[utt]
        wav = np.zeros((1, self.bucket_samples(len(x))), np.float32)
        wav[0, : len(x)] = x
        voiced_idx = self.voiced_idx[utt]
        feats = self.prepare(wav, np.asarray([len(x)]), [voiced_idx], self.clean_opts)
        return feats[0, : len(voiced_idx)]

    def prepare(self, wav, lengths: np.ndarray, voiced_idx, mfcc_opts: MfccOptions, key=None):
        """Prepared features (`prepare_feats`) of padded (rows, samples) waveforms, with row i's
        frames `voiced_idx[i]` taken as the voiced ones (the clean signal's VAD decisions).

        Returns (rows, frames, dim): row i's selected frames first, in order, then zeros. `key`
        is the dither key (unused when `mfcc_opts` has no dither).
        """
        voiced = np.zeros((len(wav), int(num_frames(wav.shape[1], mfcc_opts))), np.float32)
        for row, idx in enumerate(voiced_idx):
            voiced[row, idx] = 1.0
        with self._host_kernel_lock:
            feats, _ = prepare_feats(
                jnp.asarray(wav), jnp.asarray(lengths), mfcc_opts, cmn_opts=self.cmn_opts,
                key=key if mfcc_opts.dither != 0 else None, fft_impl=self.fft_impl,
                voiced=jnp.asarray(voiced),
            )  # fmt: skip
            return np.asarray(feats)

    def make_loader(self, sampler, prefetch: int = 2, num_workers: int = 1) -> AudioChunkLoader:
        return AudioChunkLoader(self, sampler, prefetch, num_workers)


def segment_for_chunk(
    store: AudioStore, utt: str, off: int, length: int
) -> tuple[int, int, np.ndarray]:
    """(first raw frame, sample range start, end) of the audio a chunk needs, and the chunk's frame
    indices relative to the first raw frame."""
    opts = store.mfcc_opts
    idx = store.voiced_idx[utt][off : off + length]
    margin = store.cmn_opts.cmn_window  # near an edge a frame's CMN window reaches W-1 frames away
    nf = store.num_frames[utt]
    f0 = max(0, int(idx[0]) - margin)
    f1 = min(nf, int(idx[-1]) + 1 + margin)
    shift = opts.window_shift
    start = f0 * shift
    n = len(store.audio[utt])
    if opts.snip_edges:
        end = min(n, (f1 - 1) * shift + opts.window_size)
    else:
        end = n if f1 == nf else f1 * shift
    return f0, (start, end), idx - f0


class AudioChunkLoader(ChunkLoader):
    """ChunkLoader whose batches are computed from audio (see the module docstring)."""

    def make_batch(self, spec) -> TrainBatch:
        table = self.sampler.table
        utts = [table.utt_ids[int(u)] for u in spec.utt_idx]
        rows = []
        for utt, off in zip(utts, spec.offsets, strict=True):
            try:
                _, (s0, s1), rel = segment_for_chunk(self.store, utt, int(off), spec.chunk_len)
            except Exception as e:
                raise XvjaxError(
                    f"utterance '{utt}': no {spec.chunk_len}-frame chunk at voiced frame {off} "
                    f"({type(e).__name__}: {e})"
                ) from e
            rows.append((self.store.audio[utt][s0:s1], rel))
        try:
            return self._features(spec, rows)
        except Exception as e:
            names = ", ".join(dict.fromkeys(utts))
            raise XvjaxError(
                f"archive {spec.archive} batch {spec.batch} (utterances {names}): on-the-fly "
                f"features failed: {type(e).__name__}: {e}"
            ) from e

    def _features(self, spec, rows) -> TrainBatch:
        store = self.store
        width = store.bucket_samples(max(len(r[0]) for r in rows))
        wav = np.zeros((len(rows), width), np.float32)
        lengths = np.asarray([len(r[0]) for r in rows], np.int32)
        for i, (x, _) in enumerate(rows):
            wav[i, : len(x)] = x
        key = jax.random.fold_in(
            jax.random.fold_in(jax.random.key(store.seed), spec.archive), spec.batch
        )
        key = jax.random.fold_in(key, self.sampler.process_index)
        aug_key, dither_key = jax.random.split(key)
        if store.sources is not None and store.aug_prob > 0:
            p = store.aug_prob
            kinds = [
                store.sources.rirs,
                store.sources.noise,
                store.sources.music,
                store.sources.speech,
            ]
            avail = [k is not None for k in kinds]
            share = p / max(sum(avail), 1)
            probs = (1.0 - p, *[share if a else 0.0 for a in avail])
            cfg = AugmentConfig(
                probs=probs, sample_frequency=float(store.mfcc_opts.sample_frequency)
            )
            wav, _ = augment_batch(
                aug_key, jnp.asarray(wav), jnp.asarray(lengths), store.sources, cfg
            )
        feats = store.prepare(wav, lengths, [rel for _, rel in rows], store.mfcc_opts, dither_key)
        out = feats[:, : spec.chunk_len].astype(np.float32)
        return TrainBatch(out, spec.labels.astype(np.int32), spec.next_position)
