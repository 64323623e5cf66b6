"""What every data-dir file shares: key order, `segments` lines, times, spk2utt from utt2spk.

Kaldi's utils/ sort every data-dir file by key in C-locale byte order (`LC_ALL=C sort`): keys
compare as their UTF-8 bytes (`c_order`), not as Python strings. Loading, validation and the edits
all use these definitions, so they agree on what "sorted" and a valid segment are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping


def c_order(key: str) -> bytes:
    """Sort key of a data-dir key in C-locale order (its UTF-8 bytes)."""
    return key.encode("utf-8")


def sorted_keys(keys: Iterable[str]) -> list[str]:
    """Keys in C-locale order, as `LC_ALL=C sort` orders a data-dir file."""
    return sorted(keys, key=c_order)


@dataclasses.dataclass
class Segment:
    """A `segments` line: the part of `recording` from `start` to `end` seconds (end -1 = to its
    end), on `channel` (-1 = the data dir's default)."""

    recording: str
    start: float
    end: float
    channel: int = -1


def parse_segment(rest: str) -> Segment:
    """A segments line after the utterance id: `recording start end [channel]`; ValueError if not."""
    fields = rest.split()
    if len(fields) not in (3, 4):
        raise ValueError(f"expected 3 or 4 fields, got {len(fields)}")
    channel = int(fields[3]) if len(fields) == 4 else -1
    return Segment(fields[0], float(fields[1]), float(fields[2]), channel)


def format_seconds(x: float) -> str:
    """A time or duration as data-dir files write it (`%.10g`)."""
    return f"{float(x):.10g}"


def format_segment(seg: Segment) -> str:
    """A segments line after the utterance id (the inverse of `parse_segment`)."""
    channel = f" {seg.channel}" if seg.channel >= 0 else ""
    return f"{seg.recording} {format_seconds(seg.start)} {format_seconds(seg.end)}{channel}"


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """spk -> sorted utterances, speakers sorted (utils/utt2spk_to_spk2utt.pl on a sorted file)."""
    out: dict[str, list[str]] = {}
    for utt in sorted_keys(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: out[spk] for spk in sorted_keys(out)}
