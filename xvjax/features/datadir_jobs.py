"""Whole-data-dir jobs of Kaldi's x-vector recipes, as functions the commands and the recipe call.

- `make_features(data_dir, mfcc_opts, vad_opts, ...)`: make_mfcc.sh + compute_vad_decision.sh
  (batched MFCC of wav.scp into a compressed archive, energy VAD, then feats.scp, vad.scp and
  utt2num_frames in the data dir), optionally resampling the audio first and writing the prepared
  copy of prepare_feats_for_egs.sh (sliding CMN + voiced frames, a `_no_sil` data dir) in the same
  pass.
- `import_features(data_dir, no_sil_dir, ...)`: the same archives and prepared copy for a data dir
  whose features were made elsewhere (feats.scp + vad.scp, no audio).
- `augment_data_dir(in_dir, out_dir, AugmentDataDirOptions(...))`: steps/data/augment_data_dir.py /
  reverberate_data_dir.py, one kind of augmentation per call, written as 16-bit wavs.

Archives are named as Kaldi's scripts name them, in the archive dir: raw_mfcc_<name>.{ark,scp},
vad_<name>.{ark,scp} and xvector_feats_<name>.{ark,scp} (the prepared copy).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from xvjax import distributed, fileutil
from xvjax.errors import XvjaxError
from xvjax.features import augment, noise_banks, options
from xvjax.features.frontend_numpy import prepare_feats_numpy
from xvjax.features.options import (
    RECIPE_CMN,
    AugmentDataDirOptions,
    CmnOptions,
    MfccOptions,
    VadOptions,
)
from xvjax.features.resample import resample
from xvjax.features.stream import bucket_length, extract_features
from xvjax.features.vad import compute_vad_numpy
from xvjax.kaldi import audio, datadir, jobs, streams, tables

log = logging.getLogger("xvjax")


@dataclasses.dataclass
class FeaturesReport:
    """What `make_features` / `import_features` did to one data dir."""

    num_utts: int = 0  # utterances with features (in feats.scp)
    failed: list[str] = dataclasses.field(default_factory=list)  # utterances without features
    unvoiced: int = 0  # utterances without a voiced frame (left out of the prepared copy)
    frames: int = 0
    voiced_frames: int = 0  # frames in the prepared copy
    resampled: int = 0  # utterances resampled before the MFCC


class _Archives:
    """The archives of one data dir (MFCC, VAD decisions, prepared copy) and what went into them."""

    def __init__(
        self,
        archive_dir: str,
        name: str,
        compression_method: int | None,
        cmn_opts: CmnOptions,
        jobs: tuple[int, int] = (0, 1),
    ):
        self.raw = os.path.join(archive_dir, f"raw_mfcc_{name}")
        self.vad = os.path.join(archive_dir, f"vad_{name}")
        self.no_sil = os.path.join(archive_dir, f"xvector_feats_{name}")
        self.compression_method, self.cmn_opts = compression_method, cmn_opts
        self.job, self.num_jobs = jobs
        self.num_frames: dict[str, int] = {}
        self.voiced_frames: dict[str, int] = {}
        self.unvoiced = 0
        self._writers: dict[str, tables.Writer] = {}

    @contextlib.contextmanager
    def open(self, raw: bool, vad: bool, no_sil: bool):
        """Opens the archives asked for (`add` writes to the open ones)."""
        wanted = {self.raw: raw, self.vad: vad, self.no_sil: no_sil}
        with contextlib.ExitStack() as stack:
            for path in (p for p, want in wanted.items() if want):
                method = self.compression_method if path == self.raw else None
                spec = f"ark,scp:{self.job_file(path, 'ark')},{self.job_file(path, 'scp')}"
                self._writers[path] = stack.enter_context(
                    tables.Writer(spec, compression_method=method)
                )
            try:
                yield
            finally:
                self._writers = {}

    def add(self, utt: str, feats: np.ndarray, voiced: np.ndarray | None = None) -> None:
        """An utterance's MFCC and VAD decisions, and its prepared features when it has voiced
        frames (each to its archive when open)."""
        if self.raw in self._writers:
            self._writers[self.raw][utt] = feats
            self.num_frames[utt] = len(feats)
        if voiced is None:
            return
        self._writers[self.vad][utt] = voiced
        keep = voiced > 0.5
        if not keep.any():
            log.warning("No frames were judged voiced for utterance %s", utt)
            self.unvoiced += 1
        elif self.no_sil in self._writers:
            self._writers[self.no_sil][utt] = prepare_feats_numpy(feats, voiced, self.cmn_opts)
            self.voiced_frames[utt] = int(keep.sum())

    def job_file(self, path: str, ext: str, job: int | None = None) -> str:
        """`path.ext` of one job: `raw_mfcc_<name>.<job>.ark` as make_mfcc.sh names them (with
        several jobs), else `raw_mfcc_<name>.ark`. Default: this process's job."""
        if self.num_jobs == 1:
            return f"{path}.{ext}"
        return f"{path}.{(self.job if job is None else job) + 1}.{ext}"

    def table(self, path: str) -> dict[str, str]:
        """{utt: ark:offset} of an archive written here (`self.raw`, `self.vad`, `self.no_sil`),
        every job's."""
        out: dict[str, str] = {}
        for job in range(self.num_jobs):
            out.update(tables.read_scp(self.job_file(path, "scp", job)))
        return out

    def collect_jobs(self, prepared: bool, unvoiced: int) -> None:
        """Every job's utterances and frame counts (read from the archives' matrix headers), for
        the data dir's tables written by process 0."""
        self.num_frames = {u: tables.matrix_num_rows(rx) for u, rx in self.table(self.raw).items()}
        if prepared:
            self.voiced_frames = {
                u: tables.matrix_num_rows(rx) for u, rx in self.table(self.no_sil).items()
            }
        self.unvoiced = unvoiced

    def report(self, failed: list[str], resampled: int) -> FeaturesReport:
        return FeaturesReport(
            num_utts=len(self.num_frames), failed=failed, unvoiced=self.unvoiced,
            frames=sum(self.num_frames.values()), voiced_frames=sum(self.voiced_frames.values()),
            resampled=resampled,
        )  # fmt: skip


def _archive_dir(archive_dir: str | None, data_dir: str) -> str:
    path = os.path.abspath(archive_dir or os.path.join(data_dir, "data"))
    fileutil.makedirs(path)  # removed again if the command fails
    return path


def _resampled(utterances: Iterable, rate: int, from_rates: collections.Counter) -> Iterator:
    """(utt, samples, rate) with every utterance at `rate`, counting the rates resampled from."""
    for utt, samples, sr in utterances:
        if int(sr) != rate:
            samples = resample(samples, int(sr), rate)
            from_rates[int(sr)] += 1
        yield utt, samples, rate


def make_features(
    data_dir: str,
    mfcc_opts: MfccOptions,
    vad_opts: VadOptions | None,
    *,
    archive_dir: str | None = None,
    compression_method: int | None = 1,
    write_utt2num_frames: bool = True,
    no_sil_dir: str | None = None,
    cmn_opts: CmnOptions = RECIPE_CMN,
    resample_to: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    fft_impl: str = "kaldi",
    progress: bool = False,
) -> FeaturesReport:
    """MFCC (+ energy VAD) of a data dir's audio, as make_mfcc.sh + compute_vad_decision.sh.

    Args:
      data_dir: a data dir with wav.scp. feats.scp, vad.scp and utt2num_frames are written into it;
        utterances whose audio gives no features are left out of them (and reported: fix-data-dir
        drops them from the other files).
      mfcc_opts: MFCC options; must use energy when there is a VAD (it reads column 0).
      vad_opts: energy-VAD options, or None for no VAD. The VAD reads the MFCC as stored
        (compressed), as compute_vad_decision.sh does, unless `no_sil_dir` is given.
      archive_dir: where the archives go (default <data_dir>/data); scp files hold absolute paths.
      compression_method: Kaldi's compression of the MFCC archive (1 = automatic, what
        make_mfcc.sh's copy-feats --compress=true does); None: uncompressed.
      write_utt2num_frames: also write <data_dir>/utt2num_frames.
      no_sil_dir: also write the prepared copy (sliding CMN with `cmn_opts`, voiced frames) as a
        data dir here, in the extraction pass: its CMN and the VAD then read the uncompressed MFCC.
        Utterances without a voiced frame are left out of it.
      resample_to: audio at another rate is first resampled to this rate; None: such audio is an
        error of that utterance (the rate must be `mfcc_opts.sample_frequency`).
      batch_size, seed, fft_impl: of `extract_features` (dither seed; "kaldi", "xla" or "auto").
      progress: show a progress bar.
    """
    mfcc_opts.check()
    if vad_opts is not None:
        vad_opts.check()
    elif no_sil_dir:
        raise XvjaxError("the prepared (_no_sil) copy needs VAD options")
    d = datadir.load_data_dir(data_dir, check_files=False)
    if d.wav_scp is None:
        raise XvjaxError(f"{data_dir}: no wav.scp")
    job, num_jobs = jax.process_index(), jax.process_count()
    name = os.path.basename(os.path.normpath(data_dir))
    archives = _Archives(
        _archive_dir(archive_dir, data_dir), name, compression_method, cmn_opts, (job, num_jobs)
    )
    share = d.utts
    if num_jobs > 1:
        owners = jobs.assign_by_length(utterance_lengths(d), num_jobs)
        share = [u for u, owner in zip(d.utts, owners, strict=True) if owner == job]
        log.info("This process's share: %d of %d utterances", len(share), len(d.utts))
    from_rates: collections.Counter = collections.Counter()
    one_pass = no_sil_dir is not None

    def compute_share() -> None:
        utterances = d.iter_audio(skip_errors=True, utts=share)
        if resample_to:
            utterances = _resampled(utterances, int(resample_to), from_rates)
        with (
            tqdm(total=len(share), unit="utt", desc=f"features {name}", leave=False,
                 disable=not progress) as bar,
            archives.open(raw=True, vad=one_pass, no_sil=one_pass),
        ):  # fmt: skip
            results = extract_features(
                utterances, mfcc_opts, batch_size, seed=seed, fft_impl=fft_impl
            )
            for r in results:
                bar.update(1)
                if r.error is not None:
                    log.warning("Failed to compute features for utterance %s: %s", r.key, r.error)
                    continue
                vad = compute_vad_numpy(r.feats, vad_opts) if one_pass else None
                archives.add(r.key, r.feats, vad)
        if vad_opts is not None and not one_pass:
            # Like compute_vad_decision.sh: VAD on the features as stored (compressed or not).
            with archives.open(raw=False, vad=True, no_sil=False):
                for utt, feats in tables.read(f"scp:{archives.job_file(archives.raw, 'scp')}"):
                    archives.add(utt, feats, compute_vad_numpy(feats, vad_opts))

    distributed.all_succeed(compute_share)
    if num_jobs > 1:
        counts = [len(archives.num_frames), archives.unvoiced, from_rates.total()]
        num_utts, unvoiced, resampled = distributed.allgather_rows(np.array(counts)).sum(axis=0)
        if num_utts and job == 0:
            archives.collect_jobs(one_pass, int(unvoiced))
    else:
        num_utts, resampled = len(archives.num_frames), from_rates.total()
    if not num_utts:
        raise XvjaxError(f"{data_dir}: no utterance gave features (see the warnings above)")
    if resampled:
        log.info(
            "%d utterances resampled to %d Hz before MFCC%s", resampled, resample_to,
            f" (from {'/'.join(map(str, sorted(from_rates)))} Hz)" if num_jobs == 1 else "",
        )  # fmt: skip
    if job != 0:  # process 0 writes the data dir's tables from every job's archives
        distributed.check_all(None)
        return archives.report([u for u in share if u not in archives.num_frames], resampled)
    failed = [u for u in d.utts if u not in archives.num_frames]
    if failed:
        log.warning(
            "%d of %d utterances produced no features (run fix-data-dir to drop them)",
            len(failed), len(d.utts),
        )  # fmt: skip

    def write_tables() -> None:
        _write_tables(d, archives, vad_opts is not None, write_utt2num_frames, no_sil_dir)
        # What the features were made with, as Kaldi recipes keep their conf/ (models record it).
        options.write_frontend_conf(data_dir, options.frontend_record(mfcc_opts, vad_opts))
        if no_sil_dir is not None:
            options.write_frontend_conf(
                no_sil_dir, options.frontend_record(mfcc_opts, vad_opts, cmn_opts)
            )

    distributed.all_succeed(write_tables)
    log.info(
        "Succeeded creating MFCC features for %s: %d utterances, %d had errors%s.",
        name, len(archives.num_frames), len(failed),
        f" ({num_jobs} processes)" if num_jobs > 1 else "",
    )  # fmt: skip
    return archives.report(failed, int(resampled))


def utterance_lengths(d: datadir.DataDir) -> list[float]:
    """A length for each utterance of `d` (in `d.utts` order) to balance jobs by: the segment's
    duration, else utt2dur's, else the wav file's size; an utterance whose length cannot be told
    without reading its audio (a pipe) counts as the average of the others."""
    if d.segments is not None:
        lengths = [d.segments[u].end - d.segments[u].start if u in d.segments else None
                   for u in d.utts]  # fmt: skip
    elif d.utt2dur is not None:
        lengths = [d.utt2dur.get(u) for u in d.utts]
    else:
        lengths = []
        for u in d.utts:
            kind, path, _ = streams.classify_rxfilename(d.wav_scp.get(u, "-"))
            lengths.append(
                os.path.getsize(path) if kind == "file" and os.path.isfile(path) else None
            )
    known = [float(n) for n in lengths if n is not None]
    fill = sum(known) / len(known) if known else 1.0
    return [fill if n is None else float(n) for n in lengths]


def import_features(
    data_dir: str,
    no_sil_dir: str,
    *,
    archive_dir: str | None = None,
    compression_method: int | None = 1,
    cmn_opts: CmnOptions = RECIPE_CMN,
    progress: bool = False,
) -> FeaturesReport:
    """`make_features`'s outputs for a data dir whose features were made elsewhere.

    Reads its feats.scp and vad.scp, writes them into the archives (MFCC compressed) and points the
    data dir's tables at them, and writes the prepared copy to `no_sil_dir` from the features as
    read. Arguments as `make_features`'s.
    """
    d = datadir.load_data_dir(data_dir, check_files=False)
    name = os.path.basename(os.path.normpath(data_dir))
    archives = _Archives(_archive_dir(archive_dir, data_dir), name, compression_method, cmn_opts)
    decisions = tables.RandomAccess(d.vad_rspecifier())
    with (
        tqdm(total=len(d.utts), unit="utt", desc=f"features {name}", leave=False,
             disable=not progress) as bar,
        archives.open(raw=True, vad=True, no_sil=True),
    ):  # fmt: skip
        for utt, feats in tables.read(d.feats_rspecifier()):
            archives.add(utt, np.asarray(feats, np.float32), np.asarray(decisions[utt]))
            bar.update(1)
    if not archives.num_frames:
        raise XvjaxError(f"{data_dir}: no utterance has features")
    _write_tables(d, archives, True, True, no_sil_dir)
    return archives.report([], 0)


def _write_tables(
    d: datadir.DataDir,
    archives: _Archives,
    vad: bool,
    utt2num_frames: bool,
    no_sil_dir: str | None,
) -> None:
    """The data dir's feats.scp (vad.scp, utt2num_frames) and the prepared copy's data dir."""
    if no_sil_dir is not None and not archives.voiced_frames:
        raise XvjaxError(f"{d.path}: no utterance has a voiced frame (see the warnings above)")
    tables.write_text_table(os.path.join(d.path, "feats.scp"), archives.table(archives.raw))
    if vad:
        tables.write_text_table(os.path.join(d.path, "vad.scp"), archives.table(archives.vad))
        log.info(
            "VAD: %d utterances, %d completely unvoiced",
            len(archives.num_frames),
            archives.unvoiced,
        )
    if utt2num_frames:
        tables.write_text_table(
            os.path.join(d.path, "utt2num_frames"),
            {k: str(v) for k, v in archives.num_frames.items()},
        )
    if no_sil_dir is None:
        return
    prepared = archives.table(archives.no_sil)
    datadir.write_data_dir(
        no_sil_dir, {u: s for u, s in d.utt2spk.items() if u in prepared}, feats_scp=prepared,
        utt2num_frames=archives.voiced_frames, spk2gender=d.spk2gender, validate=False,
    )  # fmt: skip
    voiced, frames = sum(archives.voiced_frames.values()), sum(archives.num_frames.values())
    log.info(
        "%s: %d utterances, %.1f%% of %d frames voiced",
        os.path.basename(os.path.normpath(no_sil_dir)), len(prepared),
        100.0 * voiced / max(frames, 1), frames,
    )  # fmt: skip


def _source_bank(opts: AugmentDataDirOptions, rate: int) -> augment.SourceBank:
    cap = opts.max_source_seconds or None
    if opts.rir_lists:
        specs = [s for p in opts.rir_lists for s in noise_banks.resolve(p, "rirs")]
        return noise_banks.load_specs(specs, rate, None, scale=1.0 / 32768.0)
    if opts.fg_noise_dir:
        return noise_banks.load_specs(noise_banks.resolve(opts.fg_noise_dir, "noise"), rate, cap)
    return noise_banks.load_specs(noise_banks.resolve(opts.bg_noise_dir, "music"), rate, cap)


def _augmenter(opts: AugmentDataDirOptions, rate: int):
    """jit(key, padded waveform, length, bank) -> the augmented waveform, for the kind of `opts`.

    The bank is an argument, not a closure constant: captured arrays would be baked into every
    compiled bucket shape as (large) HLO constants.
    """
    interval = int(round(opts.fg_interval * rate))
    fg_snrs, bg_snrs = tuple(map(float, opts.fg_snrs)), tuple(map(float, opts.bg_snrs))
    counts = tuple(map(int, opts.num_bg_noises))

    @jax.jit
    def run(key, x, n, bank):
        if opts.rir_lists:
            i = jax.random.randint(key, (), 0, bank.size)
            return augment.reverberate(x, n, bank.segment(i), bank.lengths[i])
        if opts.fg_noise_dir:
            return augment.add_foreground(key, x, n, bank, fg_snrs, interval, 64)[0]
        return augment.add_background(key, x, n, bank, bg_snrs, counts)[0]

    return run


def augment_data_dir(
    in_dir: str, out_dir: str, opts: AugmentDataDirOptions, progress: bool = False
) -> datadir.DataDir:
    """Writes an augmented copy of `in_dir` to `out_dir` (augment_data_dir.py /
    reverberate_data_dir.py): one 16-bit wav per utterance in <out_dir>/wavs/, a data dir pointing
    at them, and utt2uniq (augmented id -> source id, as Kaldi's scripts write it, so egs/valid
    splits can keep copies of one recording together). Utterance i's augmentation is keyed by
    `fold_in(key(random_seed), i)`. Returns the written data dir.
    """
    opts.check()
    d = datadir.load_data_dir(in_dir, check_files=False)
    if os.path.abspath(in_dir) == os.path.abspath(out_dir):
        raise XvjaxError("input and output data dirs must differ")
    first = next(iter(d.iter_audio(skip_errors=True)), None)
    if first is None:
        raise XvjaxError(f"{in_dir}: no readable audio")
    rate = int(first[2])
    bank = _source_bank(opts, rate)
    run = _augmenter(opts, rate)
    wav_dir = os.path.abspath(os.path.join(out_dir, "wavs"))
    os.makedirs(wav_dir, exist_ok=True)
    base = jax.random.key(opts.random_seed)
    utt2spk, wav_scp, utt2uniq = {}, {}, {}
    utterances = tqdm(d.iter_audio(skip_errors=True), total=len(d.utts), unit="utt",
                      desc="augment-data-dir", disable=not progress)  # fmt: skip
    for index, (utt, samples, sr) in enumerate(utterances):
        if sr != rate or samples.ndim != 1 or not np.all(np.isfinite(samples)) or not len(samples):
            log.warning(
                "skipping utterance %s: bad audio (rate %s, %d samples)", utt, sr, len(samples)
            )
            continue
        padded = np.zeros(bucket_length(len(samples)), np.float32)
        padded[: len(samples)] = samples
        out = run(jax.random.fold_in(base, index), jnp.asarray(padded), len(samples), bank)
        new = opts.new_id(utt)
        path = os.path.join(wav_dir, f"{new}.wav")
        audio.write_wav(path, np.asarray(out)[: len(samples)], int(sr))
        spk = d.utt2spk[utt]
        utt2spk[new] = opts.new_id(spk) if opts.modify_spk_id else spk
        wav_scp[new] = path
        utt2uniq[new] = utt
    if not utt2spk:
        raise XvjaxError(f"{in_dir}: no utterance could be augmented")
    gender = None
    if d.spk2gender and opts.modify_spk_id:
        gender = {opts.new_id(s): g for s, g in d.spk2gender.items()}
    elif d.spk2gender:
        gender = dict(d.spk2gender)
    utt2dur = None
    if d.utt2dur:
        utt2dur = {opts.new_id(u): v for u, v in d.utt2dur.items() if opts.new_id(u) in utt2spk}
    out = datadir.write_data_dir(
        out_dir, utt2spk, wav_scp=wav_scp, spk2gender=gender, utt2dur=utt2dur
    )
    tables.write_text_table(os.path.join(out_dir, "utt2uniq"), utt2uniq)
    log.info("Wrote %d augmented utterances to %s", len(utt2spk), out_dir)
    return out
