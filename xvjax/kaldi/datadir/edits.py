"""Data-directory edits like Kaldi's utils/subset_data_dir.sh, combine_data.sh and fix_data_dir.sh."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable

from xvjax.errors import XvjaxError
from xvjax.kaldi import tables
from xvjax.kaldi.datadir.files import Segment, parse_segment, sorted_keys
from xvjax.kaldi.datadir.record import DataDir, load_data_dir, write_data_dir
from xvjax.kaldi.text_tables import rx_lines

log = logging.getLogger("xvjax")


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
        keep = sorted_keys(set(want))
    elif speakers is not None:
        spks = list(speakers)
        unknown = [s for s in spks if s not in d.spk2utt]
        if unknown:
            raise XvjaxError(
                f"subset: speaker '{unknown[0]}' is not in {src}/spk2utt ({len(unknown)} unknown)"
            )
        keep = sorted_keys(u for s in set(spks) for u in d.spk2utt[s])
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
        for _, line in rx_lines(p):
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
            try:
                seg_objs[u] = parse_segment(segs[u])
            except ValueError:
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
