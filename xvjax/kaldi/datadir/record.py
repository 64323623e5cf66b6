"""The `DataDir` record: a data directory loaded into memory; `load_data_dir`, `write_data_dir`.

Loading validates first (`validation.validate_data_dir`) unless told not to; writing writes every
file sorted and atomically, derives spk2utt, removes the files not given and loads the result.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping

import numpy as np

from xvjax import fileutil
from xvjax.errors import XvjaxError
from xvjax.kaldi import audio, specifiers, tables
from xvjax.kaldi.datadir.files import (
    Segment,
    format_seconds,
    format_segment,
    parse_segment,
    sorted_keys,
    utt2spk_to_spk2utt,
)
from xvjax.kaldi.datadir.validation import validate_data_dir

log = logging.getLogger("xvjax")


@dataclasses.dataclass
class DataDir:
    """A loaded data directory. Dicts are keyed by utterance (or recording for wav_scp)."""

    path: str
    utt2spk: dict[str, str]
    spk2utt: dict[str, list[str]]
    wav_scp: dict[str, str] | None = None
    segments: dict[str, Segment] | None = None
    feats_scp: str | None = None  # path of feats.scp (read with tables.read("scp:" + ...))
    vad_scp: str | None = None
    utt2num_frames: dict[str, int] | None = None
    utt2dur: dict[str, float] | None = None
    spk2gender: dict[str, str] | None = None

    @property
    def utts(self) -> list[str]:
        return sorted_keys(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        return sorted_keys(self.spk2utt)

    def feats_rspecifier(self) -> str:
        if self.feats_scp is None:
            raise XvjaxError(f"{self.path}: no feats.scp")
        return "scp:" + self.feats_scp

    def vad_rspecifier(self) -> str:
        if self.vad_scp is None:
            raise XvjaxError(f"{self.path}: no vad.scp")
        return "scp:" + self.vad_scp

    def iter_audio(
        self, channel: int = -1, skip_errors: bool = False
    ) -> Iterator[tuple[str, np.ndarray, int]]:
        """Yields (utt, samples float32 at int16 scale, sample_rate) in utterance order.

        With segments each recording is read once per run of its segments. Bad segments (out of
        range, too short) are skipped with a warning as Kaldi's extract-segments does; unreadable
        audio raises XvjaxError unless `skip_errors`.
        """
        if self.wav_scp is None:
            raise XvjaxError(f"{self.path}: no wav.scp")
        cache: tuple[str, np.ndarray, int] | None = None
        for utt in self.utts:
            try:
                if self.segments is None:
                    if utt not in self.wav_scp:
                        raise XvjaxError(f"{self.path}/wav.scp: no entry for utterance '{utt}'")
                    samples, sr = audio.read_wav_entry(self.wav_scp[utt], channel)
                    yield utt, samples, sr
                    continue
                seg = self.segments.get(utt)
                if seg is None:
                    raise XvjaxError(f"{self.path}/segments: no entry for utterance '{utt}'")
                if seg.recording not in self.wav_scp:
                    raise XvjaxError(
                        f"{self.path}/wav.scp: no recording '{seg.recording}' (segment '{utt}')"
                    )
                if cache is None or cache[0] != seg.recording:
                    ch = seg.channel if seg.channel >= 0 else channel
                    samples, sr = audio.read_wav_entry(self.wav_scp[seg.recording], ch)
                    cache = (seg.recording, samples, sr)
                _, samples, sr = cache
            except XvjaxError as e:
                if not skip_errors:
                    raise
                log.warning("%s (skipped)", e)
                continue
            try:
                first, last = audio.segment_bounds(seg.start, seg.end, sr, len(samples))
            except XvjaxError as e:
                log.warning("%s/segments: segment '%s': %s, skipping it", self.path, utt, e)
                continue
            yield utt, samples[first:last], sr


# ------------------------------------------------------------------------------ reading


def _read_segments(path: str) -> dict[str, Segment]:
    out: dict[str, Segment] = {}
    for utt, rest in tables.read_text_table(path).items():
        try:
            seg = parse_segment(rest)
        except ValueError:
            raise XvjaxError(
                f"{path}: segment '{utt}': expected 'utt rec start end [channel]', got '{utt} {rest}'"
            ) from None
        out[utt] = seg
    return out


def _numbers(path: str, kind) -> dict:
    out = {}
    for key, value in tables.read_text_table(path).items():
        try:
            out[key] = kind(value)
        except ValueError:
            raise XvjaxError(
                f"{path}: key '{key}': expected a {kind.__name__}, got '{value}'"
            ) from None
    return out


def load_data_dir(path: str, validate: bool = True, check_files: bool = True) -> DataDir:
    """Loads a data directory; with `validate` first runs `validate_data_dir` (raising on problems)."""
    if not os.path.isdir(path):
        raise XvjaxError(f"data directory '{path}' does not exist")
    if validate:
        validate_data_dir(path, check_files=check_files)

    def have(name: str) -> str | None:
        p = os.path.join(path, name)
        return p if os.path.exists(p) else None

    if not have("utt2spk"):
        raise XvjaxError(f"{path}: no utt2spk")
    utt2spk = tables.read_text_table(os.path.join(path, "utt2spk"))
    spk2utt = utt2spk_to_spk2utt(utt2spk)
    d = DataDir(path=path, utt2spk=utt2spk, spk2utt=spk2utt)
    if have("wav.scp"):
        d.wav_scp = tables.read_text_table(have("wav.scp"))
    if have("segments"):
        d.segments = _read_segments(have("segments"))
    d.feats_scp, d.vad_scp = have("feats.scp"), have("vad.scp")
    if have("utt2num_frames"):
        d.utt2num_frames = _numbers(have("utt2num_frames"), int)
    if have("utt2dur"):
        d.utt2dur = _numbers(have("utt2dur"), float)
    if have("spk2gender"):
        d.spk2gender = tables.read_text_table(have("spk2gender"))
    return d


# ------------------------------------------------------------------------------ writing


def _scp_items(value) -> dict[str, str] | None:
    """A mapping, a list of pairs, or the path of an existing scp file -> {key: value}."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return dict(tables.read_scp(os.fspath(value)))
    return dict(value.items() if isinstance(value, Mapping) else value)


def write_data_dir(
    path: str,
    utt2spk: Mapping[str, str],
    wav_scp: Mapping[str, str] | None = None,
    segments: Mapping[str, Segment | tuple] | None = None,
    feats_scp=None,
    vad_scp=None,
    utt2num_frames: Mapping[str, int] | None = None,
    utt2dur: Mapping[str, float] | None = None,
    spk2gender: Mapping[str, str] | None = None,
    validate: bool = True,
) -> DataDir:
    """Writes a data dir (sorted files, spk2utt derived), each file atomically; returns it loaded.

    `segments` values are `Segment`s or (recording, start, end[, channel]) tuples; `feats_scp` /
    `vad_scp` are {utt: rxfilename} (or the path of an scp to copy). Files not given are removed,
    so the directory describes exactly what was passed.
    """
    fileutil.makedirs(path)
    for key in utt2spk:
        specifiers.check_key(key, os.path.join(path, "utt2spk"))
    files: dict[str, dict | None] = {
        "utt2spk": dict(utt2spk),
        "spk2utt": utt2spk_to_spk2utt(utt2spk),
        "wav.scp": dict(wav_scp) if wav_scp is not None else None,
        "segments": None,
        "feats.scp": _scp_items(feats_scp),
        "vad.scp": _scp_items(vad_scp),
        "utt2num_frames": {k: str(int(v)) for k, v in utt2num_frames.items()}
        if utt2num_frames
        else None,
        "utt2dur": {k: format_seconds(v) for k, v in utt2dur.items()} if utt2dur else None,
        "spk2gender": dict(spk2gender) if spk2gender else None,
    }
    if segments is not None:
        files["segments"] = {
            utt: format_segment(seg if isinstance(seg, Segment) else Segment(*seg))
            for utt, seg in segments.items()
        }
    for name, table in files.items():
        target = os.path.join(path, name)
        if table is None:
            fileutil.remove(target)
            continue
        tables.write_text_table(target, table)
    return load_data_dir(path, validate=validate)
