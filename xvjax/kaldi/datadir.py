"""Kaldi data directories (`data/train/`): load, validate, write, subset, combine and fix.

Files (all `key value` text, sorted by key in C-locale byte order, as Kaldi's utils/ expect):

  utt2spk         utt spk                  (required)
  spk2utt         spk utt1 utt2 ...        (derived from utt2spk; checked for consistency)
  wav.scp         rec extended-filename    (rec = utt unless `segments` exists)
  segments        utt rec start end [ch]   (seconds; end -1 = to the end)
  feats.scp       utt ark-offset           (vad.scp likewise)
  utt2num_frames  utt num_frames
  utt2dur         utt seconds
  spk2gender      spk m|f                  (kept when subsetting/combining)

    d = load_data_dir("data/train")               # validates like utils/validate_data_dir.sh
    for utt, samples, sr in d.iter_audio(): ...   # int16-scale float32, segments cut
    write_data_dir("data/new", utt2spk=..., wav_scp=...)
    subset_data_dir("data/train", "data/sub", speakers=[...])
    combine_data_dirs("data/all", ["data/a", "data/b"])
    fix_data_dir("data/train")                    # like utils/fix_data_dir.sh

Relative paths inside wav.scp/feats.scp are relative to the working directory, as in Kaldi.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import audio, streams, tables

log = logging.getLogger("xvjax")

# Files keyed by utterance, by recording and by speaker.
UTT_FILES = ("utt2spk", "feats.scp", "vad.scp", "utt2num_frames", "utt2dur", "segments", "text")
REC_FILES = ("wav.scp", "reco2dur", "reco2file_and_channel")
SPK_FILES = ("spk2utt", "spk2gender", "cmvn.scp")


def _ckey(key: str) -> bytes:
    return key.encode("utf-8")


def _sorted(keys: Iterable[str]) -> list[str]:
    return sorted(keys, key=_ckey)


@dataclasses.dataclass
class Segment:
    recording: str
    start: float
    end: float
    channel: int = -1


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
        return _sorted(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        return _sorted(self.spk2utt)

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
        fields = rest.split()
        try:
            if len(fields) not in (3, 4):
                raise ValueError
            seg = Segment(
                fields[0],
                float(fields[1]),
                float(fields[2]),
                int(fields[3]) if len(fields) == 4 else -1,
            )
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


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """spk -> sorted utterances, speakers sorted (utils/utt2spk_to_spk2utt.pl on a sorted file)."""
    out: dict[str, list[str]] = {}
    for utt in _sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: out[spk] for spk in _sorted(out)}


# ------------------------------------------------------------------------------ validation


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
        if prev is not None and _ckey(key) < _ckey(prev):
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
        ex = _sorted(missing)[0]
        problems.append(f"{path}: {len(missing)} {what} missing (e.g. '{ex}')")
    if extra:
        ex = _sorted(extra)[0]
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
    problems: list[str] = []
    j = lambda name: os.path.join(path, name)  # noqa: E731
    if not os.path.isdir(path):
        return [f"data directory '{path}' does not exist"]
    if not os.path.exists(j("utt2spk")):
        return [f"{j('utt2spk')}: missing (every data dir needs utt2spk)"]
    utt2spk = _check_table(j("utt2spk"), problems)
    if utt2spk is None:
        return problems
    for utt, spk in utt2spk.items():
        if len(spk.split()) != 1:
            problems.append(f"{j('utt2spk')}: utterance '{utt}': expected one speaker, got '{spk}'")
    utts = set(utt2spk)
    if not utts:
        problems.append(f"{j('utt2spk')}: empty")
    ordered = _sorted(utts)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if _ckey(utt2spk[b]) < _ckey(utt2spk[a]):
            problems.append(
                f"{j('utt2spk')}: utterance '{b}' (speaker '{utt2spk[b]}') sorts after '{a}' (speaker "
                f"'{utt2spk[a]}'): utterance ids must be sorted consistently with speakers (make speaker-ids prefixes)"
            )
            break
    expected_spk2utt = {k: " ".join(v) for k, v in utt2spk_to_spk2utt(utt2spk).items()}
    if os.path.exists(j("spk2utt")):
        spk2utt = _check_table(j("spk2utt"), problems)
        if spk2utt is not None:
            for spk in _sorted(set(spk2utt) | set(expected_spk2utt)):
                got = " ".join(spk2utt.get(spk, "").split())
                if got != expected_spk2utt.get(spk, ""):
                    problems.append(
                        f"{j('spk2utt')}: speaker '{spk}' does not match utt2spk "
                        f"(got '{got[:60]}', want '{expected_spk2utt.get(spk, '')[:60]}'); regenerate with utt2spk_to_spk2utt"
                    )
                    break
    else:
        problems.append(f"{j('spk2utt')}: missing (create it from utt2spk)")

    segments = None
    if os.path.exists(j("segments")):
        segments = _check_table(j("segments"), problems, min_fields=4)
        if segments is not None:
            _compare_keys(problems, j("segments"), segments, utts, "utterances")
            for utt, rest in segments.items():
                f = rest.split()
                try:
                    start, end = float(f[1]), float(f[2])
                    if len(f) > 4 or (len(f) == 4 and int(f[3]) < 0):
                        raise ValueError
                except (ValueError, IndexError):
                    problems.append(f"{j('segments')}: segment '{utt}': bad line '{utt} {rest}'")
                    continue
                if start < 0 or (end != -1 and end <= start):
                    problems.append(
                        f"{j('segments')}: segment '{utt}': bad times start={start} end={end}"
                    )
    if os.path.exists(j("wav.scp")):
        wav = _check_table(j("wav.scp"), problems)
        if wav is not None:
            if segments is not None:
                recs = {rest.split()[0] for rest in segments.values()}
                missing = recs - set(wav)
                if missing:
                    problems.append(
                        f"{j('wav.scp')}: {len(missing)} recordings used in segments missing (e.g. '{_sorted(missing)[0]}')"
                    )
            else:
                _compare_keys(problems, j("wav.scp"), wav, utts, "utterances")
            if check_files:
                for rec, spec in wav.items():
                    kind, target, _ = streams.classify_rxfilename(spec)
                    if kind == "file" and not os.path.exists(target):
                        problems.append(
                            f"{j('wav.scp')}: recording '{rec}': file '{target}' does not exist"
                        )
                        break
    elif need_wav:
        problems.append(f"{j('wav.scp')}: missing")
    for name in ("feats.scp", "vad.scp"):
        if os.path.exists(j(name)):
            scp = _check_table(j(name), problems)
            if scp is not None:
                _compare_keys(problems, j(name), scp, utts, "utterances")
                if check_files:
                    for utt, spec in scp.items():
                        target, _ = tables._split_range(spec)
                        kind, fname, _ = streams.classify_rxfilename(target)
                        if kind == "file" and not os.path.exists(fname):
                            problems.append(
                                f"{j(name)}: utterance '{utt}': file '{fname}' does not exist"
                            )
                            break
        elif name == "feats.scp" and need_feats:
            problems.append(f"{j(name)}: missing")
    for name, kind in (("utt2num_frames", int), ("utt2dur", float)):
        if os.path.exists(j(name)):
            table = _check_table(j(name), problems)
            if table is not None:
                _compare_keys(problems, j(name), table, utts, "utterances")
                for utt, value in table.items():
                    try:
                        if kind(value) < 0:
                            raise ValueError
                    except ValueError:
                        problems.append(f"{j(name)}: utterance '{utt}': bad value '{value}'")
                        break
    if os.path.exists(j("spk2gender")):
        genders = _check_table(j("spk2gender"), problems)
        if genders is not None:
            _compare_keys(problems, j("spk2gender"), genders, set(utt2spk.values()), "speakers")
            bad = [s for s, g in genders.items() if g not in ("m", "f")]
            if bad:
                problems.append(f"{j('spk2gender')}: speaker '{bad[0]}': gender must be m or f")
    return problems


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
    os.makedirs(path, exist_ok=True)
    for key in utt2spk:
        tables._check_key(key, os.path.join(path, "utt2spk"))
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
        "utt2dur": {k: _fmt_seconds(v) for k, v in utt2dur.items()} if utt2dur else None,
        "spk2gender": dict(spk2gender) if spk2gender else None,
    }
    if segments is not None:
        segs = {}
        for utt, seg in segments.items():
            seg = seg if isinstance(seg, Segment) else Segment(*seg)
            ch = f" {seg.channel}" if seg.channel >= 0 else ""
            segs[utt] = f"{seg.recording} {_fmt_seconds(seg.start)} {_fmt_seconds(seg.end)}{ch}"
        files["segments"] = segs
    for name, table in files.items():
        target = os.path.join(path, name)
        if table is None:
            if os.path.exists(target):
                os.unlink(target)
            continue
        tables.write_text_table(target, table)
    return load_data_dir(path, validate=validate)


def _fmt_seconds(x: float) -> str:
    return f"{float(x):.10g}"


def _save_dir(d: DataDir, path: str, utts: list[str], validate: bool = True) -> DataDir:
    """Writes the subset `utts` of a loaded data dir to `path`."""
    keep = set(utts)
    segs = {u: s for u, s in d.segments.items() if u in keep} if d.segments is not None else None
    if d.wav_scp is not None:
        recs = {s.recording for s in segs.values()} if segs is not None else keep
        wav = {r: v for r, v in d.wav_scp.items() if r in recs}
    else:
        wav = None
    sub = lambda table: {k: v for k, v in table.items() if k in keep} if table is not None else None  # noqa: E731
    feats = sub(dict(tables.read_scp(d.feats_scp))) if d.feats_scp else None
    vad = sub(dict(tables.read_scp(d.vad_scp))) if d.vad_scp else None
    utt2spk = sub(d.utt2spk)
    spks = set(utt2spk.values())
    gender = {s: g for s, g in d.spk2gender.items() if s in spks} if d.spk2gender else None
    return write_data_dir(
        path,
        utt2spk,
        wav_scp=wav,
        segments=segs,
        feats_scp=feats,
        vad_scp=vad,
        utt2num_frames=sub(d.utt2num_frames),
        utt2dur=sub(d.utt2dur),
        spk2gender=gender,
        validate=validate,
    )


def subset_data_dir(
    src: str,
    dest: str,
    utts: Iterable[str] | None = None,
    speakers: Iterable[str] | None = None,
    num_utts: int | None = None,
    first: int | None = None,
    last: int | None = None,
) -> DataDir:
    """Like utils/subset_data_dir.sh: by utterance list, speaker list, N evenly spaced, first/last N.

    Unknown utterances/speakers in the lists are an error (they usually mean the wrong list).
    """
    if os.path.abspath(src) == os.path.abspath(dest):
        raise XvjaxError(f"subset: source and destination are the same directory '{src}'")
    d = load_data_dir(src, validate=False)
    all_utts = d.utts
    chosen = [
        utts is not None,
        speakers is not None,
        num_utts is not None,
        first is not None,
        last is not None,
    ]
    if sum(chosen) != 1:
        raise XvjaxError("subset: give exactly one of utts, speakers, num_utts, first, last")
    if utts is not None:
        want = list(utts)
        unknown = [u for u in want if u not in d.utt2spk]
        if unknown:
            raise XvjaxError(
                f"subset: utterance '{unknown[0]}' is not in {src}/utt2spk ({len(unknown)} unknown)"
            )
        keep = _sorted(set(want))
    elif speakers is not None:
        spks = list(speakers)
        unknown = [s for s in spks if s not in d.spk2utt]
        if unknown:
            raise XvjaxError(
                f"subset: speaker '{unknown[0]}' is not in {src}/spk2utt ({len(unknown)} unknown)"
            )
        keep = _sorted(u for s in set(spks) for u in d.spk2utt[s])
    elif num_utts is not None:
        if not 0 < num_utts <= len(all_utts):
            raise XvjaxError(f"subset: asked for {num_utts} utterances, {src} has {len(all_utts)}")
        # evenly spaced, as subset_scp.pl: utterance floor(i * n_all / n) for i in 0..n-1
        keep = [all_utts[(i * len(all_utts)) // num_utts] for i in range(num_utts)]
    elif first is not None:
        keep = all_utts[: max(first, 0)]
    else:
        keep = all_utts[len(all_utts) - max(last, 0) :]
    if not keep:
        raise XvjaxError(f"subset: no utterances selected from {src}")
    out = _save_dir(d, dest, keep, validate=False)
    log.info(
        "Subset %s -> %s: %d of %d utterances, %d speakers",
        src,
        dest,
        len(keep),
        len(all_utts),
        len(out.spk2utt),
    )
    return out


def combine_data_dirs(dest: str, srcs: list[str]) -> DataDir:
    """Like utils/combine_data.sh: union of the sources; a file is kept only if all sources have it.

    The same utterance in two sources with different speakers/entries is an error.
    """
    if not srcs:
        raise XvjaxError("combine: no source directories")
    dirs = [load_data_dir(s, validate=False) for s in srcs]
    any_segments = any(d.segments is not None for d in dirs)
    sources = []
    for d in dirs:
        tabs = {
            "wav_scp": d.wav_scp,
            "feats": dict(tables.read_scp(d.feats_scp)) if d.feats_scp else None,
            "vad": dict(tables.read_scp(d.vad_scp)) if d.vad_scp else None,
            "utt2num_frames": d.utt2num_frames,
            "utt2dur": d.utt2dur,
            "spk2gender": d.spk2gender,
            "segments": d.segments,
        }
        if any_segments and d.segments is None and d.wav_scp is not None:
            # As combine_data.sh: a dir without segments gets whole-recording segments.
            tabs["segments"] = {u: Segment(u, 0.0, -1.0) for u in d.utt2spk}
        sources.append(tabs)
    utt2spk: dict[str, str] = {}
    merged: dict[str, dict | None] = {}
    for name in sources[0]:
        have = [t[name] is not None for t in sources]
        if any(have) and not all(have) and name != "spk2gender":
            lacking = srcs[have.index(False)]
            log.warning("combine: %s has no %s; the combined dir will have none", lacking, name)
        merged[name] = {} if all(have) else None
    for d, src, tabs in zip(dirs, srcs, sources, strict=True):
        for utt, spk in d.utt2spk.items():
            if utt in utt2spk and utt2spk[utt] != spk:
                raise XvjaxError(
                    f"combine: utterance '{utt}' has speaker '{spk}' in {src} but '{utt2spk[utt]}' elsewhere"
                )
            utt2spk[utt] = spk
        for name, table in tabs.items():
            if merged[name] is None:
                continue
            for k, v in table.items():
                if k in merged[name] and merged[name][k] != v:
                    raise XvjaxError(
                        f"combine: key '{k}' of {name} differs between {src} and an earlier source"
                    )
                merged[name][k] = v
    out = write_data_dir(
        dest,
        utt2spk,
        wav_scp=merged["wav_scp"],
        segments=merged["segments"],
        feats_scp=merged["feats"],
        vad_scp=merged["vad"],
        utt2num_frames=merged["utt2num_frames"],
        utt2dur=merged["utt2dur"],
        spk2gender=merged["spk2gender"],
        validate=False,
    )
    log.info(
        "Combined %d dirs into %s: %d utterances, %d speakers",
        len(srcs),
        dest,
        len(utt2spk),
        len(out.spk2utt),
    )
    return out


def fix_data_dir(path: str) -> DataDir:
    """Like utils/fix_data_dir.sh: sorts every file and keeps only utterances present everywhere.

    The originals are copied to `path/.backup/` first. Returns the fixed dir (validated).
    """
    if not os.path.exists(os.path.join(path, "utt2spk")):
        raise XvjaxError(f"fix: {path}/utt2spk does not exist")
    backup = os.path.join(path, ".backup")
    os.makedirs(backup, exist_ok=True)
    for name in os.listdir(path):
        if os.path.isfile(os.path.join(path, name)):
            shutil.copy2(os.path.join(path, name), os.path.join(backup, name))

    # Read leniently: duplicates keep the first entry, order does not matter.
    def lenient(name: str) -> dict[str, str] | None:
        p = os.path.join(path, name)
        if not os.path.exists(p):
            return None
        out: dict[str, str] = {}
        for _, raw in enumerate(open(p, "rb"), 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise XvjaxError(f"fix: {p}: not UTF-8 text") from None
            f = line.split(None, 1)
            if len(f) == 2 and f[1].strip():
                out.setdefault(f[0], f[1].strip())
        return out

    utt2spk = lenient("utt2spk") or {}
    utt_tables = {
        n: lenient(n) for n in ("feats.scp", "vad.scp", "utt2num_frames", "utt2dur", "segments")
    }
    wav = lenient("wav.scp")
    keep = set(utt2spk)
    for table in utt_tables.values():
        if table is not None:
            keep &= set(table)
    segs = utt_tables["segments"]
    if wav is not None:
        if segs is not None:
            keep = {u for u in keep if segs[u].split()[0] in wav}
        else:
            keep &= set(wav)
    removed = len(utt2spk) - len(keep)
    sub = lambda t: {k: v for k, v in t.items() if k in keep} if t is not None else None  # noqa: E731
    seg_objs = None
    if segs is not None:
        seg_objs = {}
        for u in keep:
            f = segs[u].split()
            try:
                seg_objs[u] = Segment(
                    f[0], float(f[1]), float(f[2]), int(f[3]) if len(f) > 3 else -1
                )
            except (ValueError, IndexError):
                raise XvjaxError(f"fix: {path}/segments: segment '{u}': bad line") from None
        recs = {s.recording for s in seg_objs.values()}
        wav = {r: v for r, v in wav.items() if r in recs} if wav is not None else None
    elif wav is not None:
        wav = sub(wav)
    num_frames = sub(utt_tables["utt2num_frames"])
    durs = sub(utt_tables["utt2dur"])
    gender = lenient("spk2gender")
    spks = {utt2spk[u] for u in keep}
    out = write_data_dir(
        path,
        {u: utt2spk[u].split()[0] for u in keep},
        wav_scp=wav,
        segments=seg_objs,
        feats_scp=sub(utt_tables["feats.scp"]),
        vad_scp=sub(utt_tables["vad.scp"]),
        utt2num_frames={k: int(v) for k, v in num_frames.items()} if num_frames else None,
        utt2dur={k: float(v) for k, v in durs.items()} if durs else None,
        spk2gender={s: g for s, g in gender.items() if s in spks} if gender else None,
        validate=False,
    )
    log.info(
        "fix_data_dir %s: kept %d utterances, removed %d (backup in %s)",
        path,
        len(keep),
        removed,
        backup,
    )
    return out
