"""The built-in two-domain demo corpus: Kaldi data dirs, MUSAN and RIRS_NOISES layouts, corpus.json.

Layout written by `make_corpus(out_dir, config)`:

    OUT/corpus.json                      sizes, seed, rates, domains, paths (written last)
    OUT/data/source_train/               16 kHz clean, labelled (wav.scp utt2spk spk2utt utt2dur spk2gender)
    OUT/data/source_eval_enroll/         16 kHz, enrollment utterances of the source eval speakers
    OUT/data/source_eval_test/           16 kHz, test utterances + `trials` (spk utt target|nontarget)
    OUT/data/target_train/               telephone, labelled in-domain training set
    OUT/data/target_adapt/               telephone, unlabelled (utt2spk maps each utterance to itself)
    OUT/data/target_dev_enroll/          telephone enrollment of the dev speakers (choices are made here)
    OUT/data/target_dev_test/            telephone test of the dev speakers + `trials`
    OUT/data/target_enroll/              telephone enrollment of the evaluation speakers
    OUT/data/target_test/                telephone test of the evaluation speakers + `trials`
    OUT/musan/{noise,music,speech}/*.wav 16 kHz augmentation sources (music/ANNOTATIONS as MUSAN's)
    OUT/RIRS_NOISES/simulated_rirs/{smallroom,mediumroom,largeroom}/rir_list + RoomNNN/*.wav
    OUT/truth/                           hidden labels of target_adapt, every speaker's voice traits
    OUT/wav/<set>/<spk>/<utt>.wav        the audio

Speakers are disjoint across source_train, source_eval, target_train, target_adapt, target_dev,
target_eval (and the MUSAN speech talkers); enroll and test share their speakers. Every utterance id starts with
its speaker id (`src0007-003`); target_adapt ids are anonymous (`tgtadapt-00042`) and shuffled.

Rates: the source domain is 16 kHz wideband. The target domain is written at `target_rate`
(default 8000): the 16 kHz synthesis is band-limited to 300-3400 Hz, resampled to 8 kHz and mu-law
companded, as telephone speech is. With `target_rate=16000` the same narrowband calls are upsampled
back to 16 kHz, so one 16 kHz front end (the source model's) reads both domains. MUSAN and RIR sets
are 16 kHz, as the real ones; users of an 8 kHz pipeline resample them (Kaldi's
`make_musan.sh --sampling-rate 8000`, `reverberate_data_dir.py --source-sampling-rate 8000`).

Every random draw comes from `np.random.default_rng([seed, domain, speaker, utterance])`, so the
bytes written depend only on the config, not on `num_jobs`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open
from xvjax.kaldi import datadir
from xvjax.synthetic import domains as dom
from xvjax.synthetic import voice as sv

log = logging.getLogger("xvjax")

GENERATOR_VERSION = 2  # 2: target_dev sets; target voices less spread than source ones


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """Sizes and seed of the demo corpus. Eval and dev sets give every speaker `enroll_utts`
    enrollment and `test_utts` test utterances; trials are every (speaker, test utterance) pair."""

    seed: int = 777
    source_rate: int = 16000  # 8000: the wideband source downsampled (0-4 kHz, no phone filter)
    target_rate: int = 8000
    min_dur: float = 3.0  # seconds, utterance length drawn uniformly in [min_dur, max_dur]
    max_dur: float = 6.0
    source_train_spk: int = 80
    source_train_utts: int = 10
    source_eval_spk: int = 20
    target_train_spk: int = 40
    target_train_utts: int = 8
    target_adapt_spk: int = 80
    target_adapt_utts: int = 10
    target_dev_spk: int = 20
    target_eval_spk: int = 52
    enroll_utts: int = 2
    test_utts: int = 12
    # Target-domain corruption.
    target_snr_min: float = 15.0
    target_snr_max: float = 35.0
    target_noise_prob: float = 0.6
    target_reverb_prob: float = 0.3
    target_handset_db: float = 3.0  # std of the random handset EQ peaks (one handset per call)
    target_variability: float = 1.15  # within-speaker (session) variation, source is 1.0
    # Augmentation sets (MUSAN / RIRS_NOISES layouts).
    musan_noise: int = 12
    musan_music: int = 6
    musan_speech: int = 6
    musan_dur: float = 10.0
    rir_rooms: int = 4  # rooms per room size
    rirs_per_room: int = 5

    def validate(self) -> None:
        if not 0 < self.min_dur <= self.max_dur:
            raise XvjaxError(f"bad durations: min-dur={self.min_dur} max-dur={self.max_dur}")
        for name in ("source_rate", "target_rate"):
            if getattr(self, name) not in (8000, 16000):
                raise XvjaxError(f"--{name.replace('_', '-')} must be 8000 or 16000")
        for name in (
            "source_train_spk",
            "source_eval_spk",
            "target_train_spk",
            "target_adapt_spk",
            "target_dev_spk",
            "target_eval_spk",
        ):
            if getattr(self, name) < 2:
                raise XvjaxError(f"--{name.replace('_', '-')} must be at least 2")
        for name in (
            "source_train_utts",
            "target_train_utts",
            "target_adapt_utts",
            "enroll_utts",
            "test_utts",
        ):
            if getattr(self, name) < 1:
                raise XvjaxError(f"--{name.replace('_', '-')} must be at least 1")
        if self.target_snr_min > self.target_snr_max:
            raise XvjaxError("--target-snr-min is above --target-snr-max")
        for name in ("musan_noise", "musan_music", "musan_speech", "rir_rooms", "rirs_per_room"):
            if getattr(self, name) < 0:
                raise XvjaxError(f"--{name.replace('_', '-')} must not be negative")
        if self.musan_dur <= 0:
            raise XvjaxError("--musan-dur must be positive")
        for name in ("target_noise_prob", "target_reverb_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise XvjaxError(f"--{name.replace('_', '-')} must be in [0, 1]")


PRESETS: dict[str, CorpusConfig] = {
    # CI end to end: ~7 minutes of audio, generated in a few seconds.
    "tiny": CorpusConfig(
        min_dur=3.0,
        max_dur=4.0,
        source_train_spk=12,
        source_train_utts=6,
        source_eval_spk=6,
        target_train_spk=8,
        target_train_utts=5,
        target_adapt_spk=8,
        target_adapt_utts=4,
        target_dev_spk=6,
        target_eval_spk=8,
        enroll_utts=2,
        test_utts=3,
        musan_noise=4,
        musan_music=2,
        musan_speech=3,
        musan_dur=5.0,
        rir_rooms=2,
        rirs_per_room=2,
    ),
    # `make demo`: ~3.8 hours of audio, 624 target / 31,824 nontarget evaluation trials; the
    # whole recipe fits in 10 minutes on 2 cores.
    "default": CorpusConfig(),
    # A bigger run for a workstation: ~22 hours of audio.
    "large": CorpusConfig(
        min_dur=5.0,
        max_dur=12.0,
        source_train_spk=400,
        source_train_utts=12,
        source_eval_spk=60,
        target_train_spk=150,
        target_train_utts=10,
        target_adapt_spk=300,
        target_adapt_utts=10,
        target_dev_spk=60,
        target_eval_spk=150,
        enroll_utts=3,
        test_utts=12,
        musan_noise=40,
        musan_music=20,
        musan_speech=20,
        musan_dur=20.0,
        rir_rooms=10,
        rirs_per_room=10,
    ),
}


def preset(name: str, **overrides) -> CorpusConfig:
    """A preset config with some fields replaced (`preset("tiny", seed=3)`)."""
    if name not in PRESETS:
        raise XvjaxError(f"unknown corpus preset '{name}' (choose from {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name], **overrides)


@dataclasses.dataclass(frozen=True)
class _Utt:
    utt_id: str
    index: int  # utterance number within its speaker (seeds its RNG)
    path: str


@dataclasses.dataclass(frozen=True)
class _SpeakerJob:
    domain: int
    spk_index: int
    spk_id: str
    utts: tuple[_Utt, ...]
    config: CorpusConfig


def _run_speaker(job: _SpeakerJob) -> tuple[str, list[tuple[str, float]]]:
    """Renders and writes one speaker's utterances; returns (spk_id, [(utt_id, seconds)])."""
    traits = dom.speaker_traits(job.config.seed, job.domain, job.spk_index)
    out = []
    for utt in job.utts:
        rng = np.random.default_rng([job.config.seed, job.domain, job.spk_index, 1 + utt.index])
        x, rate = dom.render_utterance(job.domain, traits, rng, job.config)
        dom.write_wav(utt.path, x, rate)
        out.append((utt.utt_id, len(x) / rate))
    return job.spk_id, out


# ---------------------------------------------------------------------------------------------
# Plan: which speaker says which utterance, into which set.


@dataclasses.dataclass
class _Plan:
    jobs: list[_SpeakerJob]
    sets: dict[str, dict[str, str]]  # set name -> utt_id -> spk label written to utt2spk
    spk_sets: dict[str, list[tuple[int, int, str]]]  # set -> [(domain, spk_index, spk_id)]
    adapt_truth: dict[str, str]
    wav: dict[str, str]  # utt_id -> path


def _plan(out: Path, cfg: CorpusConfig) -> _Plan:
    jobs, sets, spk_sets, wav, adapt_truth = [], {}, {}, {}, {}

    def add_speakers(domain, prefix, first, count, groups):
        """groups: [(set_name, num_utts, utt_tag)] said by each of `count` speakers."""
        for k in range(count):
            spk_index = first + k
            spk_id = f"{prefix}{spk_index:04d}"
            utts, idx = [], 0
            for set_name, num, tag in groups:
                sets.setdefault(set_name, {})
                spk_sets.setdefault(set_name, []).append((domain, spk_index, spk_id))
                for j in range(num):
                    utt_id = f"{spk_id}-{tag}{j:03d}"
                    path = str(out / "wav" / set_name / spk_id / f"{utt_id}.wav")
                    utts.append(_Utt(utt_id, idx, path))
                    sets[set_name][utt_id] = spk_id
                    wav[utt_id] = path
                    idx += 1
            jobs.append(_SpeakerJob(domain, spk_index, spk_id, tuple(utts), cfg))

    # (domain, id prefix, speakers, sets they speak in); speaker numbers run on per prefix.
    speaker_groups = (
        (dom.SOURCE, "src", cfg.source_train_spk, [("source_train", cfg.source_train_utts, "")]),
        (
            dom.SOURCE,
            "src",
            cfg.source_eval_spk,
            [
                ("source_eval_enroll", cfg.enroll_utts, "e"),
                ("source_eval_test", cfg.test_utts, "t"),
            ],
        ),
        (dom.TARGET, "tgt", cfg.target_train_spk, [("target_train", cfg.target_train_utts, "")]),
        (dom.TARGET, "tgt", cfg.target_adapt_spk, [("target_adapt", cfg.target_adapt_utts, "")]),
        (
            dom.TARGET,
            "tgt",
            cfg.target_dev_spk,
            [("target_dev_enroll", cfg.enroll_utts, "e"), ("target_dev_test", cfg.test_utts, "t")],
        ),
        (
            dom.TARGET,
            "tgt",
            cfg.target_eval_spk,
            [("target_enroll", cfg.enroll_utts, "e"), ("target_test", cfg.test_utts, "t")],
        ),
    )
    next_index: dict[str, int] = {}
    for domain, prefix, count, groups in speaker_groups:
        first = next_index.get(prefix, 1)
        add_speakers(domain, prefix, first, count, groups)
        next_index[prefix] = first + count

    # Unlabelled set: anonymous shuffled ids (and file names), each utterance its own speaker.
    true = sets["target_adapt"]
    order = np.random.default_rng([cfg.seed, dom.TARGET, 0, 7]).permutation(len(true))
    old2new = {old: f"tgtadapt-{n + 1:05d}" for n, old in zip(order, sorted(true), strict=True)}
    sets["target_adapt"] = {new: new for new in old2new.values()}
    for old, new in old2new.items():
        adapt_truth[new] = true[old]
        del wav[old]
        wav[new] = str(out / "wav" / "target_adapt" / f"{new}.wav")

    def rename(u: _Utt) -> _Utt:
        new = old2new.get(u.utt_id)
        return u if new is None else _Utt(new, u.index, wav[new])

    jobs = [dataclasses.replace(j, utts=tuple(rename(u) for u in j.utts)) for j in jobs]
    return _Plan(jobs, sets, spk_sets, adapt_truth, wav)


# ---------------------------------------------------------------------------------------------
# Kaldi data dirs: written by xvjax.kaldi.datadir (sorted, spk2utt derived, validated).


def _write_table(path: Path, table: dict[str, str]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        for key in sorted(table):
            f.write(f"{key} {table[key]}\n")


def write_trials(path: Path, models: list[str], test_utt2spk: dict[str, str]) -> tuple[int, int]:
    """Every (model, test utterance) pair; returns (num_target, num_nontarget)."""
    trials = Trials.every_pair(models, test_utt2spk)
    trials.write(str(path))
    num_tar = int(trials.labels.sum())
    return num_tar, len(trials) - num_tar


# ---------------------------------------------------------------------------------------------
# The whole corpus

SETS = (
    "source_train",
    "source_eval_enroll",
    "source_eval_test",
    "target_train",
    "target_adapt",
    "target_dev_enroll",
    "target_dev_test",
    "target_enroll",
    "target_test",
)


def corpus_paths(out_dir: str | os.PathLike) -> dict[str, str]:
    """Where `make_corpus` puts everything (absolute paths)."""
    out = Path(out_dir).resolve()
    paths = {name: str(out / "data" / name) for name in SETS}
    paths["source_eval_trials"] = str(out / "data" / "source_eval_test" / "trials")
    paths["target_dev_trials"] = str(out / "data" / "target_dev_test" / "trials")
    paths["target_trials"] = str(out / "data" / "target_test" / "trials")
    paths["musan"] = str(out / "musan")
    paths["rirs"] = str(out / "RIRS_NOISES")
    for size in dom.ROOM_SIZES:
        paths[f"rir_list_{size}"] = str(out / "RIRS_NOISES" / "simulated_rirs" / size / "rir_list")
    paths["truth"] = str(out / "truth")
    paths["corpus_json"] = str(out / "corpus.json")
    return paths


def _pool_map(func, jobs, num_jobs: int):
    if num_jobs <= 1 or len(jobs) <= 1:
        yield from map(func, jobs)
        return
    # fork is fastest, but not once JAX (multithreaded) is loaded: then spawn (which, as usual,
    # needs the caller's script to be import-safe, `if __name__ == "__main__":`).
    ctx = multiprocessing.get_context("spawn" if "jax" in sys.modules else "fork")
    with concurrent.futures.ProcessPoolExecutor(num_jobs, mp_context=ctx) as pool:
        yield from pool.map(func, jobs, chunksize=max(1, len(jobs) // (8 * num_jobs)))


def make_corpus(
    out_dir: str | os.PathLike,
    config: CorpusConfig | None = None,
    num_jobs: int = 2,
    preset_name: str = "custom",
    force: bool = False,
) -> dict[str, str]:
    """Writes the demo corpus under out_dir and returns `corpus_paths(out_dir)`.

    If out_dir/corpus.json already describes this exact config, nothing is regenerated (unless
    `force`). corpus.json is written last, so its presence means the corpus is complete.
    """
    cfg = config or PRESETS["default"]
    cfg.validate()
    out = Path(out_dir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise XvjaxError(f"cannot create the corpus directory {out}: {e.strerror}") from None
    paths = corpus_paths(out)
    meta_path = Path(paths["corpus_json"])
    if meta_path.exists() and not force:
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("config") == dataclasses.asdict(cfg) and old.get("version") == GENERATOR_VERSION:
            log.info(f"{meta_path} exists with the same config; not regenerating")
            return paths
    if meta_path.exists():
        # A previous corpus of ours: clear its audio so no stale file is picked up by a glob.
        meta_path.unlink()
        for sub in ("wav", "musan", "RIRS_NOISES", "truth"):
            shutil.rmtree(out / sub, ignore_errors=True)

    start = time.time()
    plan = _plan(out, cfg)
    jobs = sorted(plan.jobs, key=lambda j: -len(j.utts))  # longest first balances workers
    durs: dict[str, float] = {}
    for _, utts in _pool_map(_run_speaker, jobs, num_jobs):
        durs.update(utts)

    summary = {}
    traits = {}
    for name in SETS:
        utt2spk = plan.sets[name]
        spk_rows = {spk_id: (domain, idx) for domain, idx, spk_id in plan.spk_sets[name]}
        gender = {}
        for spk_id, (domain, idx) in spk_rows.items():
            t = dom.speaker_traits(cfg.seed, domain, idx)
            traits[spk_id] = t.to_dict()
            gender[spk_id] = t.gender
        datadir.write_data_dir(
            paths[name],
            utt2spk,
            wav_scp={u: plan.wav[u] for u in utt2spk},
            utt2dur={u: round(durs[u], 4) for u in utt2spk},
            spk2gender=None if name == "target_adapt" else gender,
        )
        summary[name] = {
            "num_speakers": len(spk_rows),
            "num_utts": len(utt2spk),
            "hours": round(sum(durs[u] for u in utt2spk) / 3600, 4),
            "sample_rate": cfg.source_rate if name.startswith("source") else cfg.target_rate,
        }
    for test, enroll, key in (
        ("source_eval_test", "source_eval_enroll", "source_eval_trials"),
        ("target_dev_test", "target_dev_enroll", "target_dev_trials"),
        ("target_test", "target_enroll", "target_trials"),
    ):
        models = sorted(set(plan.sets[enroll].values()))
        tar, non = write_trials(Path(paths[key]), models, plan.sets[test])
        summary[test]["trials"] = {"target": tar, "nontarget": non}

    truth = Path(paths["truth"])
    _write_table(truth / "target_adapt.utt2spk", plan.adapt_truth)
    with atomic_open(truth / "spk2traits.json", "w", encoding="utf-8") as f:
        json.dump({k: traits[k] for k in sorted(traits)}, f, indent=1, sort_keys=True)

    musan = dom.write_musan(Path(paths["musan"]), cfg)
    rirs = dom.write_rirs(Path(paths["rirs"]), cfg)
    meta = {
        "version": GENERATOR_VERSION,
        "preset": preset_name,
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "source_rate": cfg.source_rate,
        "target_rate": cfg.target_rate,
        "target_band_hz": [300, 3400],
        "augment_rate": sv.RATE,
        "sets": summary,
        "musan": musan,
        "rir_lists": {k: os.path.relpath(v, out) for k, v in rirs.items()},
        "domains": {
            "source": {
                "traits": dataclasses.asdict(dom.SOURCE_TRAITS),
                "language": "A",
                "channel": "clean 16 kHz microphone, 35-50 dB SNR noise floor",
            },
            "target": {
                "traits": dataclasses.asdict(dom.TARGET_TRAITS),
                "language": "B",
                "channel": "reverb, noise, random handset, 300-3400 Hz, 8 kHz mu-law",
            },
        },
    }
    with atomic_open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    hours = sum(v["hours"] for v in summary.values())
    log.info(
        f"Wrote {sum(v['num_utts'] for v in summary.values())} utterances ({hours:.2f} h) in "
        f"{len(SETS)} data dirs, {sum(musan.values())} MUSAN files and "
        f"{3 * cfg.rir_rooms * cfg.rirs_per_room} RIRs to {out} in {time.time() - start:.1f}s"
    )
    return paths
