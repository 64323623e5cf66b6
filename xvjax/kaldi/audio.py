"""Audio for Kaldi data directories: wav.scp entries and segments, at Kaldi's sample scale.

Kaldi reads 16-bit PCM as its integer values stored in floats (range -32768..32767), not as
[-1, 1) fractions; xvjax does the same so features match Kaldi's. Other integer PCM widths keep
their integer scale as Kaldi's WaveData does (8-bit: unsigned minus 128; 24-bit: the 24-bit
value; 32-bit: the 32-bit value). Float and compressed formats that soundfile reads (float WAV,
FLAC, ...) are scaled to the 16-bit range (x 32768), an xvjax extension.

A wav.scp value (Kaldi's "extended filename") is one of:
  path/to/a.wav                  a file soundfile can read
  sox a.sph -t wav - |           a command writing a WAV to stdout
  foo.ark:1234                   a WAV stored at a byte offset (wav archives)
"""

from __future__ import annotations

import io
import logging
import os
import struct
from typing import NamedTuple

import numpy as np
import soundfile

from xvjax.errors import XvjaxError
from xvjax.kaldi import streams

log = logging.getLogger("xvjax")

# RIFF/data chunk sizes that mean "read to the end" (streamed WAVs; 0x7FFFF000 is SoX's).
_STREAMED_SIZES = (0, 0xFFFFFFFF, 0x7FFFF000)


def _read_riff_at(f) -> bytes:
    """The bytes of one RIFF/WAVE file starting at the stream's position (wav archive entries)."""
    head = f.read(8)
    if len(head) < 8 or head[:4] not in (b"RIFF", b"RIFX"):
        raise XvjaxError(f"expected a RIFF header, got {head[:4]!r}")
    (size,) = struct.unpack("<I" if head[:4] == b"RIFF" else ">I", head[4:8])
    body = f.read(size)
    if len(body) < size:
        raise XvjaxError(f"truncated WAV data: expected {size} bytes, got {len(body)}")
    return head + body


def wav_data_shortfall(head: bytes, total_size: int) -> tuple[int, int] | None:
    """(bytes the data chunk declares, bytes present) of a RIFF/WAVE file whose data is shorter
    than its header says, or None (complete, streamed, or not a WAV whose data chunk starts within
    `head`). `head`: the file's first bytes; `total_size`: the whole file's size."""
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    order = "<" if head[:4] == b"RIFF" else ">"
    if struct.unpack(order + "I", head[4:8])[0] in _STREAMED_SIZES:
        return None
    pos = 12
    while pos + 8 <= len(head):
        tag, (size,) = head[pos : pos + 4], struct.unpack(order + "I", head[pos + 4 : pos + 8])
        if tag == b"data":
            present = total_size - (pos + 8)
            if size in _STREAMED_SIZES or present >= size:
                return None
            return size, max(present, 0)
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def _warn_if_truncated(head: bytes, total_size: int, name: str) -> None:
    short = wav_data_shortfall(head, total_size)
    if short is not None:  # Kaldi's WaveData::Read warns and uses what is there
        log.warning(
            "%s: expected %d bytes of wave data, but read only %d bytes. Truncated file?",
            name, short[0], short[1],
        )  # fmt: skip


def decode_audio(data, name: str, channel: int = -1) -> tuple[np.ndarray, int]:
    """Decodes audio bytes or a binary file with soundfile; returns (samples float32, sample_rate).

    As Kaldi: a WAV whose data is shorter than its header says is read with a warning, and with
    `channel` = -1 (not chosen) audio of several channels gives channel 0 with a warning;
    otherwise `channel` selects that channel (an error if there is no such channel).
    """
    if isinstance(data, (bytes, bytearray)):
        _warn_if_truncated(bytes(data[:65536]), len(data), name)
    elif hasattr(data, "fileno"):
        _warn_if_truncated(data.read(65536), os.fstat(data.fileno()).st_size, name)
        data.seek(0)
    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with soundfile.SoundFile(src) as snd:
            subtype, sr, num_chan = snd.subtype, snd.samplerate, snd.channels
            if subtype in ("PCM_16", "PCM_S8", "PCM_U8"):
                raw = snd.read(dtype="int16", always_2d=True)
                samples = raw.astype(np.float32)
                if subtype != "PCM_16":
                    samples /= 256.0  # soundfile left-aligns 8-bit samples in int16
            elif subtype in ("PCM_24", "PCM_32"):
                raw = snd.read(dtype="int32", always_2d=True)
                samples = (raw // (256 if subtype == "PCM_24" else 1)).astype(np.float32)
            else:
                samples = (snd.read(dtype="float64", always_2d=True) * 32768.0).astype(np.float32)
    except XvjaxError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise XvjaxError(f"cannot read audio '{name}': {msg}") from None
    if channel == -1:
        if num_chan != 1:
            log.warning(
                "%s: channel not specified but the audio has %d channels; defaulting to zero "
                "(--channel chooses one)", name, num_chan,
            )  # fmt: skip
        channel = 0
    if not 0 <= channel < num_chan:
        raise XvjaxError(f"audio '{name}' has {num_chan} channels, no channel {channel}")
    return np.ascontiguousarray(samples[:, channel]), int(sr)


def read_wav_entry(spec: str, channel: int = -1) -> tuple[np.ndarray, int]:
    """Reads a wav.scp value (path, `cmd |`, `foo.ark:offset`): (samples float32 (n,), rate)."""
    kind, target, offset = streams.classify_rxfilename(spec.strip())
    if kind == "stdin":
        raise XvjaxError("wav.scp entries cannot read standard input ('-')")
    if kind == "pipe":
        try:
            data = streams.read_all(spec.strip())
        except XvjaxError as e:
            raise XvjaxError(f"cannot read audio '{spec.strip()}': {e}") from None
        if not data:
            raise XvjaxError(f"cannot read audio '{spec.strip()}': the command wrote nothing")
        return decode_audio(data, spec.strip(), channel)
    if offset:
        with streams.input_stream(spec.strip()) as f:
            try:
                data = _read_riff_at(f)
            except XvjaxError as e:
                raise XvjaxError(f"cannot read audio '{spec.strip()}': {e}") from None
        return decode_audio(data, spec.strip(), channel)
    try:
        with open(target, "rb") as f:
            return decode_audio(f, target, channel)
    except OSError as e:
        raise XvjaxError(f"cannot read audio '{target}': {e.strerror}") from None


def segment_bounds(
    start: float,
    end: float,
    sample_rate: float,
    num_samples: int,
    max_overshoot: float = 0.5,
    min_segment_length: float = 0.1,
) -> tuple[int, int]:
    """Sample range [first, last) of a segment, exactly as Kaldi's extract-segments computes it.

    Times are seconds; `end` = -1 means the end of the recording. A segment may end up to
    `max_overshoot` seconds past the recording (then truncated); the ends are rounded to the
    nearest sample. Raises XvjaxError (Kaldi warns and skips) for segments out of range or
    shorter than `min_segment_length`.
    """
    if start < 0 or (end != -1.0 and end <= 0) or (start >= end and end > 0):
        raise XvjaxError(f"empty or invalid segment {start}..{end}")
    rate = np.float32(sample_rate)
    length = float(np.float32(num_samples) / rate)  # Kaldi's BaseFloat file length
    if start > length:
        raise XvjaxError(f"segment start {start}s is past the end of the recording ({length:g}s)")
    if end > float(np.float32(length) + np.float32(max_overshoot)):
        raise XvjaxError(
            f"segment end {end}s is too far past the end of the recording ({length:g}s)"
        )
    if end < 0 or end > length:
        end = length
    if end - start < min_segment_length:
        raise XvjaxError(f"segment {start}..{end}s is shorter than {min_segment_length}s")
    first = int(start * float(rate) + 0.5)
    last = min(int(end * float(rate) + 0.5), num_samples)
    return first, last


def read_segment(spec: str, start: float, end: float, channel: int = -1) -> tuple[np.ndarray, int]:
    """Samples of one segment (seconds) of a wav.scp entry."""
    samples, sr = read_wav_entry(spec, channel)
    first, last = segment_bounds(start, end, sr, len(samples))
    return samples[first:last], sr


def write_wav(path: str, samples: np.ndarray, sample_rate: int) -> None:
    """Writes int16-scale float samples as 16-bit PCM WAV, atomically (clipped to int16)."""
    pcm = np.clip(np.rint(np.asarray(samples, dtype=np.float64)), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    soundfile.write(buf, pcm, int(sample_rate), subtype="PCM_16", format="WAV")
    streams.write_all(path, buf.getvalue())


# ------------------------------------------------------------------------------ wave tables


class Wave(NamedTuple):
    """Kaldi's WaveData: `data` (channels, samples) float32 at the 16-bit scale, `rate` Hz."""

    data: np.ndarray
    rate: float

    @property
    def duration(self) -> float:
        """Seconds, as Kaldi's float `Duration()`."""
        return float(np.float32(self.data.shape[1]) / np.float32(self.rate))


class WaveInfo(NamedTuple):
    """A WAV header (WaveInfo): rate, channels, and samples per channel (-1: streamed, unknown)."""

    rate: float
    channels: int
    num_samples: int
    data_bytes: int  # -1: streamed
    big_endian: bool = False  # RIFX

    @property
    def duration(self) -> float:
        return float(np.float32(self.num_samples) / np.float32(self.rate))


_STREAMED_SIZES = (0, 0xFFFFFFFF, 0x7FFFF000)  # sox writes 0x7FFFF000 to a pipe


def read_wave_info(f) -> WaveInfo:
    """Reads a RIFF/RIFX header up to the start of the samples (Kaldi's WaveInfo::Read: 16-bit
    PCM, chunks before `fmt `/`data` skipped, unknown sizes mean "read to the end")."""

    def take(n: int, what: str) -> bytes:
        data = f.read(n)
        if len(data) < n:
            raise XvjaxError(f"WAV header: unexpected end of data reading {what}")
        return data

    tag = take(4, "the RIFF tag")
    if tag not in (b"RIFF", b"RIFX"):
        raise XvjaxError(f"WaveData: expected RIFF or RIFX, got {tag!r}")
    endian = "<" if tag == b"RIFF" else ">"
    (riff_size,) = struct.unpack(endian + "I", take(4, "the RIFF size"))
    if take(4, "the WAVE tag") != b"WAVE":
        raise XvjaxError("WaveData: expected WAVE after the RIFF header")
    chunk = take(4, "a chunk tag")
    while chunk != b"fmt ":
        (size,) = struct.unpack(endian + "I", take(4, "a chunk size"))
        take(size, "a chunk")
        chunk = take(4, "a chunk tag")
    (fmt_size,) = struct.unpack(endian + "I", take(4, "the fmt size"))
    fmt = take(fmt_size, "the fmt chunk")
    if fmt_size < 16:
        raise XvjaxError("WaveData: expect PCM format data to have fmt chunk of at least size 16")
    audio_format, channels, rate, byte_rate, block_align, bits = struct.unpack(
        endian + "HHIIHH", fmt[:16]
    )
    if audio_format == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the sub-format must be PCM
        if fmt_size < 40 or fmt[24:28] != b"\x01\x00\x00\x00":
            raise XvjaxError("WaveData: unsupported WAVE_FORMAT_EXTENSIBLE format")
    elif audio_format != 1:
        raise XvjaxError(f"WaveData: can read only PCM data, format id in file is: {audio_format}")
    if channels == 0:
        raise XvjaxError("WaveData: no channels present")
    if bits != 16:
        raise XvjaxError(f"WaveData: unsupported bits_per_sample = {bits}")
    if byte_rate != rate * 2 * channels or block_align != 2 * channels:
        raise XvjaxError("WaveData: inconsistent byte rate or block align in the fmt chunk")
    chunk = take(4, "a chunk tag")
    while chunk != b"data":
        (size,) = struct.unpack(endian + "I", take(4, "a chunk size"))
        take(size, "a chunk")
        chunk = take(4, "a chunk tag")
    (data_size,) = struct.unpack(endian + "I", take(4, "the data size"))
    streamed = riff_size in _STREAMED_SIZES[:2] or data_size in _STREAMED_SIZES
    num = -1 if streamed else data_size // block_align
    return WaveInfo(
        float(rate), int(channels), num, -1 if streamed else int(data_size), endian == ">"
    )


def read_wave(f) -> Wave:
    """Kaldi's WaveData::Read from a stream at a RIFF header (a file, a pipe, an archive)."""
    info = read_wave_info(f)
    data = f.read() if info.data_bytes < 0 else f.read(info.data_bytes)
    if not data:
        raise XvjaxError("WaveData: empty file (no data)")
    if info.data_bytes >= 0 and len(data) < info.data_bytes:
        log.warning(
            "Expected %d bytes of wave data, but read only %d bytes. Truncated file?",
            info.data_bytes, len(data),
        )  # fmt: skip
    frames = len(data) // (2 * info.channels)
    dtype = ">i2" if info.big_endian else "<i2"
    samples = np.frombuffer(data, dtype=dtype, count=frames * info.channels)
    return Wave(samples.reshape(frames, info.channels).T.astype(np.float32), info.rate)


def wave_bytes(wave: Wave) -> bytes:
    """Kaldi's WaveData::Write: a 16-bit PCM RIFF file, samples truncated toward zero and clipped
    to int16 (a warning counts the clipped ones)."""
    data = np.asarray(wave.data, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] == 0:
        raise XvjaxError("attempting to write empty WAVE file")
    channels, frames = data.shape
    ints = np.trunc(data.astype(np.float64))
    clipped = int(np.count_nonzero((ints < -32768) | (ints > 32767)))
    if clipped:
        log.warning("WARNING: clipped %d samples out of total %d. Reduce volume?",
                    clipped, data.size)  # fmt: skip
    pcm = np.clip(ints, -32768, 32767).astype("<i2").T.tobytes()
    rate = int(wave.rate)
    head = (
        b"RIFF"
        + struct.pack("<I", 36 + len(pcm))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
    )
    return head + b"data" + struct.pack("<I", len(pcm)) + pcm


class _WaveCodec:
    """Wave tables (Kaldi's WaveHolder): `key RIFF...` with no binary marker, always binary."""

    binary_header = False

    def read(self, f, binary: bool) -> Wave:
        return read_wave(f)

    def write(self, wave: Wave, binary: bool) -> bytes:
        if not binary:
            raise XvjaxError("wave data can only be written in binary mode (no ',t')")
        return wave_bytes(wave)


class _WaveInfoCodec:
    """Wave headers only (WaveInfoHolder, for durations); the samples are skipped."""

    binary_header = False

    def read(self, f, binary: bool) -> WaveInfo:
        info = read_wave_info(f)
        if info.data_bytes >= 0:
            f.read(info.data_bytes)
        return info

    def write(self, info: WaveInfo, binary: bool) -> bytes:
        raise XvjaxError("wave headers cannot be written")


WAVE_CODEC = _WaveCodec()
WAVE_INFO_CODEC = _WaveInfoCodec()
