"""Noise and RIR sources for augmentation, from the layouts users have, packed into `SourceBank`s.

- MUSAN (`musan/noise`, `musan/music`, `musan/speech`, wavs in any sub-folder): `list_musan`.
- RIRS_NOISES (`RIRS_NOISES/simulated_rirs/{small,medium,large}room/rir_list`, lines
  `--rir-id ... --room-id ... <path/to/rir.wav>`, paths relative to the folder holding
  RIRS_NOISES; `real_rirs_isotropic_noises/rir_list` too): `list_rir_list`.
- A Kaldi data dir of noises or RIRs (`wav.scp`, e.g. the recipes' data/musan_noise): `list_data_dir`.
- `resolve` picks the layout of a path, `load_specs` reads the files into a bank (`make_bank`), and
  `load_sources` turns paths per kind into the `Sources` tuple used by `augment_batch`.

Audio is read at Kaldi's scale (int16 values as floats, `xvjax.kaldi.audio`). RIRs are scaled by
1/2^15 as wav-reverberate does. Files at another sample rate are resampled
(`xvjax.features.resample`). `max_seconds` keeps the first seconds of each source (background
noises only ever use the first utterance-length of a file, so this is exact for them when it is
at least the longest utterance).
"""

from __future__ import annotations

import glob
import logging
import math
import os

import jax.numpy as jnp
import numpy as np

from xvjax.errors import XvjaxError
from xvjax.features.augment import SourceBank, Sources
from xvjax.features.resample import resample
from xvjax.kaldi import audio, tables

log = logging.getLogger("xvjax")


def _read(spec: str, target_rate: int) -> np.ndarray:
    samples, rate = audio.read_wav_entry(spec)
    if samples.ndim > 1:
        samples = samples[:, 0] if samples.shape[1] < samples.shape[0] else samples[0]
    return resample(np.asarray(samples, np.float32), int(rate), int(target_rate))


def make_bank(signals: list[np.ndarray], max_samples: int | None = None, scale: float = 1.0):
    """Packs 1-D signals (first `max_samples` of each) back to back into a `SourceBank`."""
    if not signals:
        raise XvjaxError("no source signals to build a bank from")
    parts = [np.asarray(s[:max_samples] if max_samples else s, np.float32) * np.float32(scale)
             for s in signals]  # fmt: skip
    lengths = np.array([len(p) for p in parts], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    max_len = max(1, int(lengths.max()))
    flat = np.concatenate(parts + [np.zeros(max_len, np.float32)])
    powers = np.array([np.dot(p.astype(np.float64), p) / max(len(p), 1) for p in parts], np.float32)
    return SourceBank(jnp.asarray(flat), jnp.asarray(offsets, jnp.int32),
                      jnp.asarray(lengths, jnp.int32), jnp.asarray(powers), max_len)  # fmt: skip


def list_musan(root: str, kind: str) -> list[str]:
    """Wav files of MUSAN's `noise`, `music` or `speech` folder (sorted, recursive)."""
    folder = os.path.join(root, kind)
    if not os.path.isdir(folder):
        raise XvjaxError(f"MUSAN folder {folder} not found (expected musan/{{noise,music,speech}})")
    files = sorted(glob.glob(os.path.join(folder, "**", "*.wav"), recursive=True))
    if not files:
        raise XvjaxError(f"no .wav files under {folder}")
    return files


def list_rir_list(path: str) -> list[str]:
    """RIR wav paths of a RIRS_NOISES `rir_list` (resolved against the folder holding RIRS_NOISES)."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.split() for ln in f if ln.strip()]
    except OSError as e:
        raise XvjaxError(f"cannot read rir list {path}: {e.strerror}") from None
    here = os.path.dirname(os.path.abspath(path))
    parts = here.split(os.sep)
    base = os.sep.join(parts[: parts.index("RIRS_NOISES")]) if "RIRS_NOISES" in parts else None
    for num, tokens in enumerate(lines, 1):
        wav = tokens[-1]
        candidates = [wav, os.path.join(base, wav) if base else None, os.path.join(here, wav)]
        found = next((c for c in candidates if c and os.path.exists(c)), None)
        if found is None:
            raise XvjaxError(f"{path}:{num}: RIR file {wav} not found")
        out.append(found)
    if not out:
        raise XvjaxError(f"{path}: empty rir list")
    return out


def list_data_dir(path: str) -> list[str]:
    """wav.scp values of a Kaldi data dir (paths or `cmd |` pipes), in key order."""
    scp = os.path.join(path, "wav.scp")
    if not os.path.exists(scp):
        raise XvjaxError(f"{path}: no wav.scp")
    table = tables.read_text_table(scp)
    return [table[k] for k in sorted(table)]


def load_specs(specs: list[str], rate: int, max_seconds: float | None, scale: float = 1.0):
    """Reads every audio spec (skipping unreadable ones with a warning) into a bank."""
    signals = []
    for spec in specs:
        try:
            signals.append(_read(spec, rate))
        except XvjaxError as e:
            log.warning("skipping augmentation source %s: %s", spec, e)
    max_samples = int(math.ceil(max_seconds * rate)) if max_seconds else None
    return make_bank(signals, max_samples, scale)


def resolve(spec: str, kind: str) -> list[str]:
    """Audio specs from a path: a MUSAN root, a rir_list file, a data dir, or a folder of wavs."""
    if os.path.isfile(spec):
        return list_rir_list(spec)
    if os.path.exists(os.path.join(spec, "wav.scp")):
        return list_data_dir(spec)
    if kind in ("noise", "music", "speech") and os.path.isdir(os.path.join(spec, kind)):
        return list_musan(spec, kind)
    if kind == "rirs" and os.path.isdir(os.path.join(spec, "simulated_rirs")):
        lists = sorted(glob.glob(os.path.join(spec, "simulated_rirs", "*", "rir_list")))
        return [w for lst in lists for w in list_rir_list(lst)]
    files = sorted(glob.glob(os.path.join(spec, "**", "*.wav"), recursive=True))
    if not files:
        raise XvjaxError(
            f"{spec}: no audio found for '{kind}' (MUSAN root, rir_list, data dir or wavs)"
        )
    return files


def load_sources(
    rirs: list[str] | None = None,
    noise: list[str] | None = None,
    music: list[str] | None = None,
    speech: list[str] | None = None,
    sample_rate: int = 16000,
    max_seconds: float | None = 60.0,
):
    """`Sources` for `augment_batch` from paths (each kind: list of MUSAN roots, rir_lists, dirs)."""

    def bank(paths, kind, scale=1.0, cap=max_seconds):
        if not paths:
            return None
        specs = [s for p in paths for s in resolve(p, kind)]
        log.info("augmentation: %d %s sources", len(specs), kind)
        return load_specs(specs, sample_rate, cap, scale)

    return Sources(
        rirs=bank(rirs, "rirs", scale=1.0 / 32768.0, cap=None),
        noise=bank(noise, "noise"),
        music=bank(music, "music"),
        speech=bank(speech, "speech"),
    )
