"""Data-directory validation, like Kaldi's utils/validate_data_dir.sh, with one line per problem."""

from __future__ import annotations

import os
from collections.abc import Iterable

from xvjax.errors import XvjaxError
from xvjax.kaldi import specifiers, streams
from xvjax.kaldi.datadir.files import c_order, parse_segment, sorted_keys, utt2spk_to_spk2utt


def _check_table(path: str, problems: list[str], min_fields: int = 2) -> dict[str, str] | None:
    """Reads a key-value file, recording format/sort/duplicate problems; None if unreadable."""
    try:
        with streams.input_stream(path) as f:
            raw = f.read()
    except XvjaxError as e:
        problems.append(str(e))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        problems.append(f"{path}:{line}: not UTF-8 text")
        return None
    out: dict[str, str] = {}
    prev = None
    for num, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            if num <= text.count("\n"):
                problems.append(f"{path}:{num}: empty line")
            continue
        fields = line.split()
        if len(fields) < min_fields:
            problems.append(
                f"{path}:{num}: expected at least {min_fields} fields, got '{line.strip()[:60]}'"
            )
            continue
        key = fields[0]
        if key in out:
            problems.append(f"{path}:{num}: duplicate key '{key}'")
            continue
        if prev is not None and c_order(key) < c_order(prev):
            problems.append(
                f"{path}:{num}: key '{key}' after '{prev}': not sorted (use LC_ALL=C sort, or fix_data_dir)"
            )
        out[key] = line.split(None, 1)[1].strip()
        prev = key
    return out


def _compare_keys(
    problems: list[str], path: str, keys: Iterable[str], want: set[str], what: str
) -> None:
    keys = set(keys)
    missing, extra = want - keys, keys - want
    if missing:
        ex = sorted_keys(missing)[0]
        problems.append(f"{path}: {len(missing)} {what} missing (e.g. '{ex}')")
    if extra:
        ex = sorted_keys(extra)[0]
        problems.append(f"{path}: {len(extra)} keys not in utt2spk/{what} (e.g. '{ex}')")


def check_data_dir(
    path: str, check_files: bool = True, need_feats: bool = False, need_wav: bool = False
) -> list[str]:
    """All problems found in a data dir, one line each (empty list = valid).

    Checks as utils/validate_data_dir.sh: every file sorted with unique keys, spk2utt consistent
    with utt2spk, utterances sorted consistently with speakers (speaker-id prefixes), the same
    utterance set in utt2spk, feats.scp, vad.scp, utt2num_frames, utt2dur and segments (or wav.scp
    without segments), segments' recordings in wav.scp, numeric fields valid; with `check_files`
    also that wav files and feature archives named in the scp files exist.
    """
    j = lambda name: os.path.join(path, name)  # noqa: E731
    if not os.path.isdir(path):
        return [f"data directory '{path}' does not exist"]
    if not os.path.exists(j("utt2spk")):
        return [f"{j('utt2spk')}: missing (every data dir needs utt2spk)"]
    problems: list[str] = []
    utt2spk = _check_table(j("utt2spk"), problems)
    if utt2spk is None:
        return problems
    _check_utt2spk(j("utt2spk"), utt2spk, problems)
    _check_spk2utt(j("spk2utt"), utt2spk, problems)
    utts = set(utt2spk)
    segments = _check_segments(j("segments"), utts, problems)
    _check_wav_scp(j("wav.scp"), utts, segments, check_files, need_wav, problems)
    for name in ("feats.scp", "vad.scp"):
        need = name == "feats.scp" and need_feats
        _check_utterance_scp(j(name), utts, check_files, need, problems)
    for name, kind in (("utt2num_frames", int), ("utt2dur", float)):
        _check_utterance_numbers(j(name), kind, utts, problems)
    _check_spk2gender(j("spk2gender"), set(utt2spk.values()), problems)
    return problems


def _check_utt2spk(path: str, utt2spk: dict[str, str], problems: list[str]) -> None:
    for utt, spk in utt2spk.items():
        if len(spk.split()) != 1:
            problems.append(f"{path}: utterance '{utt}': expected one speaker, got '{spk}'")
    if not utt2spk:
        problems.append(f"{path}: empty")
    ordered = sorted_keys(utt2spk)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if c_order(utt2spk[b]) < c_order(utt2spk[a]):
            problems.append(
                f"{path}: utterance '{b}' (speaker '{utt2spk[b]}') sorts after '{a}' (speaker "
                f"'{utt2spk[a]}'): utterance ids must be sorted consistently with speakers (make speaker-ids prefixes)"
            )
            break


def _check_spk2utt(path: str, utt2spk: dict[str, str], problems: list[str]) -> None:
    if not os.path.exists(path):
        problems.append(f"{path}: missing (create it from utt2spk)")
        return
    expected = {k: " ".join(v) for k, v in utt2spk_to_spk2utt(utt2spk).items()}
    spk2utt = _check_table(path, problems)
    if spk2utt is None:
        return
    for spk in sorted_keys(set(spk2utt) | set(expected)):
        got = " ".join(spk2utt.get(spk, "").split())
        if got != expected.get(spk, ""):
            problems.append(
                f"{path}: speaker '{spk}' does not match utt2spk "
                f"(got '{got[:60]}', want '{expected.get(spk, '')[:60]}'); regenerate with utt2spk_to_spk2utt"
            )
            break


def _check_segments(path: str, utts: set[str], problems: list[str]) -> dict[str, str] | None:
    """The segments table (utterance -> rest of the line) if the file exists and is readable."""
    if not os.path.exists(path):
        return None
    segments = _check_table(path, problems, min_fields=4)
    if segments is None:
        return None
    _compare_keys(problems, path, segments, utts, "utterances")
    for utt, rest in segments.items():
        try:
            seg = parse_segment(rest)
            if len(rest.split()) == 4 and seg.channel < 0:
                raise ValueError("negative channel")
        except ValueError:
            problems.append(f"{path}: segment '{utt}': bad line '{utt} {rest}'")
            continue
        start, end = seg.start, seg.end
        if start < 0 or (end != -1 and end <= start):
            problems.append(f"{path}: segment '{utt}': bad times start={start} end={end}")
    return segments


def _check_wav_scp(
    path: str,
    utts: set[str],
    segments: dict[str, str] | None,
    check_files: bool,
    need: bool,
    problems: list[str],
) -> None:
    """Keyed by utterance, or by the recordings of `segments` when there are segments."""
    if not os.path.exists(path):
        if need:
            problems.append(f"{path}: missing")
        return
    wav = _check_table(path, problems)
    if wav is None:
        return
    if segments is not None:
        recs = {rest.split()[0] for rest in segments.values()}
        missing = recs - set(wav)
        if missing:
            problems.append(
                f"{path}: {len(missing)} recordings used in segments missing (e.g. '{sorted_keys(missing)[0]}')"
            )
    else:
        _compare_keys(problems, path, wav, utts, "utterances")
    if check_files:
        for rec, spec in wav.items():
            kind, target, _ = streams.classify_rxfilename(spec)
            if kind == "file" and not os.path.exists(target):
                problems.append(f"{path}: recording '{rec}': file '{target}' does not exist")
                break


def _check_utterance_scp(
    path: str, utts: set[str], check_files: bool, need: bool, problems: list[str]
) -> None:
    """feats.scp / vad.scp: the utterances of utt2spk, archives that exist."""
    if not os.path.exists(path):
        if need:
            problems.append(f"{path}: missing")
        return
    scp = _check_table(path, problems)
    if scp is None:
        return
    _compare_keys(problems, path, scp, utts, "utterances")
    if check_files:
        for utt, spec in scp.items():
            target, _ = specifiers.split_range(spec)
            kind, fname, _ = streams.classify_rxfilename(target)
            if kind == "file" and not os.path.exists(fname):
                problems.append(f"{path}: utterance '{utt}': file '{fname}' does not exist")
                break


def _check_utterance_numbers(path: str, kind: type, utts: set[str], problems: list[str]) -> None:
    """utt2num_frames / utt2dur: the utterances of utt2spk, non-negative numbers."""
    if not os.path.exists(path):
        return
    table = _check_table(path, problems)
    if table is None:
        return
    _compare_keys(problems, path, table, utts, "utterances")
    for utt, value in table.items():
        try:
            if kind(value) < 0:
                raise ValueError
        except ValueError:
            problems.append(f"{path}: utterance '{utt}': bad value '{value}'")
            break


def _check_spk2gender(path: str, speakers: set[str], problems: list[str]) -> None:
    if not os.path.exists(path):
        return
    genders = _check_table(path, problems)
    if genders is None:
        return
    _compare_keys(problems, path, genders, speakers, "speakers")
    bad = [s for s, g in genders.items() if g not in ("m", "f")]
    if bad:
        problems.append(f"{path}: speaker '{bad[0]}': gender must be m or f")


def validate_data_dir(
    path: str, check_files: bool = True, need_feats: bool = False, need_wav: bool = False
) -> None:
    """Raises XvjaxError naming the first problem (and how many more) if the data dir is invalid."""
    problems = check_data_dir(path, check_files, need_feats, need_wav)
    if problems:
        more = (
            f" (and {len(problems) - 1} more problems; run xvjax validate-data-dir)"
            if len(problems) > 1
            else ""
        )
        raise XvjaxError(problems[0] + more)
