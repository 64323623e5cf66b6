"""On-the-fly waveform augmentation, as Kaldi's x-vector recipes do it offline, in jnp.

Kaldi (egs/sre16/v2/run.sh, egs/voxceleb/v2/run.sh) makes four augmented copies of the training
data and samples from their union; each copy is one `wav-reverberate` call per utterance:
- reverb (`steps/data/reverberate_data_dir.py`, RIRS_NOISES small/medium rooms, 0.5/0.5): FFT
  convolution with the RIR (scaled by 1/2^15), output shifted by the RIR's peak index so the direct
  path is aligned with the input (`--shift-output=true`), then scaled to the input's power
  (`--normalize-output=true`, power of the full convolution over n + rir_len - 1 samples);
- noise (`augment_data_dir.py --fg-interval 1 --fg-snrs 15:10:5:0`, MUSAN noise): foreground noises
  back to back (1 s gaps) from t=0 while the utterance lasts, each at its own SNR against the
  utterance's power (noise power over the noise's own length), truncated at the end;
- music (`--bg-snrs 15:10:8:5 --num-bg-noises 1`, MUSAN music): one background track, repeated
  or trimmed to the utterance length (`wav-reverberate --duration`), at the SNR;
- babble (`--bg-snrs 20:17:15:13 --num-bg-noises 3:4:5:6:7`, MUSAN speech): 3-7 such tracks,
  each at its own SNR;
and the noisy copies are also scaled back to the input's power (`--normalize-output`).

The formulas (FFT convolution, SNR gain, power normalisation) are `reverberate.py`'s, where Kaldi's
wav-reverberate itself runs on one waveform in numpy (`xvjax wav-reverberate`).

`augment_batch` picks one of {clean, reverb, noise, music, babble} per example with configurable
probabilities and is a pure function of its PRNG key (same key -> bit-identical output). Sources
are `SourceBank`s (see `noise_banks.py` for MUSAN / RIRS_NOISES / data-dir loaders).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xvjax.features.reverberate import fft_convolve, fft_size, power_gain, snr_gain

KINDS = ("clean", "reverb", "noise", "music", "babble")


@jax.tree_util.register_pytree_node_class
class SourceBank:
    """Augmentation sources stored back to back (no padding per source, so MUSAN fits).

    signals: (total + max_len,) float32, source i at [offsets[i], offsets[i] + lengths[i]), with
    max_len zeros at the end so fixed-size slices never run off the array; powers: (num,) mean
    square of each source over its own samples (Kaldi's noise power). `max_len` is static.
    """

    def __init__(self, signals, offsets, lengths, powers, max_len: int):
        self.signals, self.offsets, self.lengths, self.powers = signals, offsets, lengths, powers
        self.max_len = int(max_len)

    def tree_flatten(self):
        return (self.signals, self.offsets, self.lengths, self.powers), self.max_len

    @classmethod
    def tree_unflatten(cls, max_len, children):
        return cls(*children, max_len)

    @property
    def size(self) -> int:
        return int(self.offsets.shape[0])

    def segment(self, i, width: int | None = None):
        """(width,) source i from its start, zero past its length (width defaults to max_len)."""
        width = self.max_len if width is None else int(width)
        seg = jax.lax.dynamic_slice(self.signals, (self.offsets[i],), (width,))
        return jnp.where(jnp.arange(width) < self.lengths[i], seg, 0.0)

    def at(self, i, positions):
        """Samples of source i at `positions` (clipped into the source)."""
        pos = jnp.clip(positions, 0, jnp.maximum(self.lengths[i] - 1, 0))
        return self.signals[self.offsets[i] + pos]


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Probabilities of each kind and the recipes' SNR / count lists (hashable: a jit static arg)."""

    probs: tuple[float, ...] = (0.0, 0.25, 0.25, 0.25, 0.25)  # clean, reverb, noise, music, babble
    noise_snrs: tuple[float, ...] = (15.0, 10.0, 5.0, 0.0)
    music_snrs: tuple[float, ...] = (15.0, 10.0, 8.0, 5.0)
    babble_snrs: tuple[float, ...] = (20.0, 17.0, 15.0, 13.0)
    babble_speakers: tuple[int, ...] = (3, 4, 5, 6, 7)
    fg_interval: float = 1.0  # seconds between foreground noises
    sample_frequency: float = 16000.0
    max_fg_noises: int = 32  # cap on foreground noises per utterance (static shape)


class Sources(NamedTuple):
    """Augmentation sources; a kind without sources is None (its probability is then 0)."""

    rirs: SourceBank | None = None  # RIR samples already scaled by 1/2^15 (Kaldi's RIR scale)
    noise: SourceBank | None = None  # MUSAN noise (foreground)
    music: SourceBank | None = None  # MUSAN music (background)
    speech: SourceBank | None = None  # MUSAN speech (babble)


# ----------------------------------------------------------------------------- one utterance


def _power(x, n):
    return jnp.sum(x * x) / jnp.maximum(n, 1).astype(jnp.float32)


def reverberate(x, n, rir, rir_len):
    """Kaldi `wav-reverberate --shift-output=true --normalize-output=true --impulse-response`.

    Args:
      x: (samples,) padded waveform; n: its length. rir: (rir_max,) padded RIR (already /2^15);
      rir_len: its length.
    Returns:
      (samples,) reverberated waveform aligned on the RIR peak, at the input's power, zero past n.
    """
    total = x.shape[0]
    t = jnp.arange(total)
    x = jnp.where(t < n, x, 0.0)
    rir = jnp.where(jnp.arange(rir.shape[0]) < rir_len, rir, 0.0)
    size = fft_size(total + rir.shape[0] - 1)
    full = fft_convolve(x, rir, size, jnp)
    peak = jnp.argmax(jnp.where(jnp.arange(rir.shape[0]) < rir_len, rir, -jnp.inf))
    full_len = n + rir_len - 1
    full = jnp.where(jnp.arange(size) < full_len, full, 0.0)
    gain = power_gain(_power(x, n), jnp.maximum(_power(full, full_len), 1e-20), jnp)
    out = jax.lax.dynamic_slice(full, (peak,), (total,)) * gain
    return jnp.where(t < n, out, 0.0)


def mix_at_snr(x, n, noise_tracks, snrs, noise_powers, active):
    """Adds noise tracks at SNRs against the speech power, then restores the speech power.

    Args:
      x: (samples,) speech; n: length.
      noise_tracks: (k, samples) each noise already placed in time (zero where absent).
      snrs: (k,) dB. noise_powers: (k,) power used for the SNR (Kaldi: over the noise's samples).
      active: (k,) bool, inactive tracks are ignored.
    Returns:
      mixture (samples,), the added noise after the final gain (samples,), and that gain.
    """
    t = jnp.arange(x.shape[0])
    x = jnp.where(t < n, x, 0.0)
    speech_power = _power(x, n)
    scale = snr_gain(speech_power, jnp.maximum(noise_powers, 1e-20), snrs, jnp)
    scale = jnp.where(active & (noise_powers > 0), scale, 0.0)
    noise = jnp.where(t < n, jnp.sum(noise_tracks * scale[:, None], axis=0), 0.0)
    mixed = x + noise
    gain = power_gain(speech_power, jnp.maximum(_power(mixed, n), 1e-20), jnp)
    gain = jnp.where(speech_power > 0, gain, 1.0)
    return mixed * gain, noise * gain, gain


def background_track(bank: SourceBank, i, total: int):
    """Source i repeated from its start to fill `total` samples (`wav-reverberate --duration`)."""
    length = bank.lengths[i]
    idx = jnp.arange(total) % jnp.maximum(length, 1)
    return jnp.where(length > 0, bank.at(i, idx), 0.0)


def add_background(key, x, n, bank: SourceBank, snr_choices, count_choices):
    """Music (1 track) or babble (3-7 tracks): each track from `bank`, own SNR, tiled to n."""
    max_k = int(max(count_choices))
    k_key, i_key, s_key = jax.random.split(key, 3)
    k = jnp.asarray(count_choices)[jax.random.randint(k_key, (), 0, len(count_choices))]
    idx = jax.random.randint(i_key, (max_k,), 0, bank.size)
    snrs = jnp.asarray(snr_choices, jnp.float32)[
        jax.random.randint(s_key, (max_k,), 0, len(snr_choices))
    ]
    tracks = jax.vmap(lambda i: background_track(bank, i, x.shape[0]))(idx)
    t = jnp.arange(x.shape[0])
    powers = jax.vmap(lambda tr: _power(jnp.where(t < n, tr, 0.0), n))(tracks)
    return mix_at_snr(x, n, tracks, snrs, powers, jnp.arange(max_k) < k)


def add_foreground(key, x, n, bank: SourceBank, snr_choices, interval: int, max_noises: int):
    """Foreground noises back to back from t=0 with `interval` samples between them."""
    i_key, s_key = jax.random.split(key)
    idx = jax.random.randint(i_key, (max_noises,), 0, bank.size)
    snrs = jnp.asarray(snr_choices, jnp.float32)[
        jax.random.randint(s_key, (max_noises,), 0, len(snr_choices))
    ]
    lens = bank.lengths[idx]
    starts = jnp.cumsum(lens + interval) - (lens + interval)  # exclusive cumsum
    active = starts < n
    t = jnp.arange(x.shape[0])

    def place(i, start, length):
        rel = t - start
        return jnp.where((rel >= 0) & (rel < length), bank.at(i, rel), 0.0)

    tracks = jax.vmap(place)(idx, starts, lens)
    return mix_at_snr(x, n, tracks, snrs, bank.powers[idx], active)


# ----------------------------------------------------------------------------- batches


def _augment_one(key, x, n, sources: Sources, config: AugmentConfig):
    kind_key, r_key, f_key, m_key, b_key = jax.random.split(key, 5)
    banks = (sources.rirs, sources.noise, sources.music, sources.speech)
    probs = np.asarray(config.probs, np.float64)
    probs = np.where([True] + [bank is not None for bank in banks], probs, 0.0)
    if probs.sum() <= 0:
        raise ValueError("no augmentation kind has both a probability > 0 and sources")
    kind = jax.random.choice(kind_key, len(KINDS), p=jnp.asarray(probs / probs.sum()))
    clean = jnp.where(jnp.arange(x.shape[0]) < n, x, 0.0)
    outs = [clean]
    if sources.rirs is not None:
        i = jax.random.randint(r_key, (), 0, sources.rirs.size)
        outs.append(reverberate(x, n, sources.rirs.segment(i), sources.rirs.lengths[i]))
    else:
        outs.append(clean)
    interval = int(round(config.fg_interval * config.sample_frequency))
    if sources.noise is not None:
        outs.append(add_foreground(f_key, x, n, sources.noise, config.noise_snrs, interval,
                                   config.max_fg_noises)[0])  # fmt: skip
    else:
        outs.append(clean)
    if sources.music is not None:
        outs.append(add_background(m_key, x, n, sources.music, config.music_snrs, (1,))[0])
    else:
        outs.append(clean)
    if sources.speech is not None:
        outs.append(add_background(b_key, x, n, sources.speech, config.babble_snrs,
                                   config.babble_speakers)[0])  # fmt: skip
    else:
        outs.append(clean)
    return jnp.stack(outs)[kind], kind.astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("config",))
def augment_batch(key, waveforms, lengths, sources: Sources, config: AugmentConfig):
    """Augments each example with one randomly chosen kind (see module docstring).

    Args:
      key: PRNG key (same key and inputs -> bit-identical output).
      waveforms: (batch, samples) float32 (int16 scale); lengths: (batch,) valid samples.
      sources: `Sources` banks; kinds whose bank is None are never chosen.
      config: `AugmentConfig` (static).
    Returns:
      (batch, samples) augmented waveforms (same lengths, zero past them) and (batch,) int32 kind
      indices into `KINDS`.
    """
    keys = jax.random.split(key, waveforms.shape[0])
    return jax.vmap(lambda k, x, n: _augment_one(k, x, n, sources, config))(
        keys, waveforms.astype(jnp.float32), lengths.astype(jnp.int32)
    )
