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
    """Sample range [first, last) of a segment, as Kaldi's extract-segments computes it.

    Times are seconds; `end` = -1 means the end of the recording. A segment may end up to
    `max_overshoot` seconds past the recording (then truncated). Raises XvjaxError (Kaldi warns
    and skips) for segments out of range or not longer than `min_segment_length`.
    """
    if start < 0 or (end != -1.0 and end <= 0) or (end > 0 and start >= end):
        raise XvjaxError(f"empty or invalid segment {start}..{end}")
    first = int(start * sample_rate)
    last = int(end * sample_rate) if end != -1.0 else num_samples
    if first >= num_samples:
        raise XvjaxError(
            f"segment start {start}s (sample {first}) is past the end ({num_samples} samples)"
        )
    if last > num_samples:
        if last >= num_samples + int(max_overshoot * sample_rate):
            raise XvjaxError(
                f"segment end {end}s (sample {last}) is too far past the end ({num_samples} samples)"
            )
        last = num_samples
    if last <= first + int(min_segment_length * sample_rate):
        raise XvjaxError(f"segment {start}..{end}s is shorter than {min_segment_length}s")
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
