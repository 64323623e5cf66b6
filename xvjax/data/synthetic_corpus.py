"""The built-in two-domain demo corpus: Kaldi data dirs, MUSAN and RIRS_NOISES layouts, corpus.json.

Layout written by `make_corpus(out_dir, config)`:

    OUT/corpus.json                      sizes, seed, rates, domains, paths (written last)
    OUT/data/source_train/               16 kHz clean, labelled (wav.scp utt2spk spk2utt utt2dur spk2gender)
    OUT/data/source_eval_enroll/         16 kHz, enrollment utterances of the source eval speakers
    OUT/data/source_eval_test/           16 kHz, test utterances + `trials` (spk utt target|nontarget)
    OUT/data/target_train/               telephone, labelled in-domain training set
    OUT/data/target_adapt/               telephone, unlabelled (utt2spk maps each utterance to itself)
    OUT/data/target_enroll/              telephone enrollment
    OUT/data/target_test/                telephone test + `trials`
    OUT/musan/{noise,music,speech}/*.wav 16 kHz augmentation sources (music/ANNOTATIONS as MUSAN's)
    OUT/RIRS_NOISES/simulated_rirs/{smallroom,mediumroom,largeroom}/rir_list + RoomNNN/*.wav
    OUT/truth/                           hidden labels of target_adapt, every speaker's voice traits
    OUT/wav/<set>/<spk>/<utt>.wav        the audio

Speakers are disjoint across source_train, source_eval, target_train, target_adapt, target_eval (and
the MUSAN speech talkers); enroll and test share their eval speakers. Every utterance id starts with
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
import soundfile as sf
from scipy import signal

from xvjax.data import synthetic_channel as ch
from xvjax.data import synthetic_voice as sv
from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open
from xvjax.kaldi import datadir

log = logging.getLogger("xvjax")

GENERATOR_VERSION = 1


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """Sizes and seed of the demo corpus. Eval sets give every speaker `enroll_utts` enrollment
    and `test_utts` test utterances; trials are every (eval speaker, test utterance) pair."""

    seed: int = 777
    source_rate: int = 16000  # 8000: the wideband source downsampled (0-4 kHz, no phone filter)
    target_rate: int = 8000
    min_dur: float = 4.0  # seconds, utterance length drawn uniformly in [min_dur, max_dur]
    max_dur: float = 8.0
    source_train_spk: int = 80
    source_train_utts: int = 10
    source_eval_spk: int = 20
    target_train_spk: int = 40
    target_train_utts: int = 8
    target_adapt_spk: int = 40
    target_adapt_utts: int = 6
    target_eval_spk: int = 30
    enroll_utts: int = 2
    test_utts: int = 5
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
    # `make demo`: ~2.9 hours of audio; the whole recipe fits in 10 minutes on 2 cores.
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
        target_adapt_spk=200,
        target_adapt_utts=8,
        target_eval_spk=100,
        enroll_utts=3,
        test_utts=6,
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


# ---------------------------------------------------------------------------------------------
# Domains

SOURCE, TARGET, MUSAN_SPEECH, AUGMENT = 1, 2, 3, 4  # domain codes in the RNG seed

SOURCE_TRAITS = sv.TraitDistribution()
TARGET_TRAITS = sv.TraitDistribution(
    p_female=0.6,
    f0_male=128.0,
    f0_female=220.0,
    f0_range_st=(1.5, 3.5),
    scale_male=1.04,
    scale_female=1.2,
    tilt_db_oct=(-7.0, -1.5),
    open_quotient=(0.55, 0.85),
    breathiness=(0.05, 0.35),
    rate=(0.95, 1.4),
    sinus_zero=(3500.0, 5000.0),
)


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


def _traits(seed: int, domain: int, spk_index: int) -> sv.VoiceTraits:
    dist = TARGET_TRAITS if domain == TARGET else SOURCE_TRAITS
    return sv.sample_traits(np.random.default_rng([seed, domain, spk_index, 0]), dist)


def render_utterance(domain: int, traits: sv.VoiceTraits, rng, cfg: CorpusConfig):
    """One utterance of a speaker in a domain -> (float64 samples, rate)."""
    dur = float(rng.uniform(cfg.min_dur, cfg.max_dur))
    if domain == TARGET:
        session = sv.sample_session(rng, cfg.target_variability)
        x = sv.synthesize(rng, traits, session, sv.LANGUAGE_B, dur)
        if rng.random() < cfg.target_reverb_prob:
            rir = ch.room_impulse_response(rng, float(rng.uniform(0.2, 0.7)))
            x = ch.reverberate(x, rir)
        if rng.random() < cfg.target_noise_prob:
            noise, _ = ch.background_noise(rng, len(x), sv.RATE)
            x = ch.add_at_snr(
                x, noise, float(rng.uniform(cfg.target_snr_min, cfg.target_snr_max)), sv.RATE
            )
        x = ch.handset(rng, x, sv.RATE, cfg.target_handset_db)
        level = float(rng.normal(-22.0, 3.0))
        return ch.telephone(x, level, cfg.target_rate), cfg.target_rate
    x = sv.synthesize(rng, traits, sv.sample_session(rng, 1.0), sv.LANGUAGE_A, dur)
    x = ch.microphone(rng, x, sv.RATE)
    floor, _ = ch.background_noise(rng, len(x), sv.RATE, "colored")
    x = ch.add_at_snr(x, floor, float(rng.uniform(35.0, 50.0)), sv.RATE)
    if cfg.source_rate != sv.RATE:
        return signal.resample_poly(x, cfg.source_rate, sv.RATE), cfg.source_rate
    return x, sv.RATE


def _write_wav(path: str, x: np.ndarray, rate: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pcm = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    sf.write(path, pcm, rate, subtype="PCM_16", format="WAV")


def _run_speaker(job: _SpeakerJob) -> tuple[str, list[tuple[str, float]]]:
    """Renders and writes one speaker's utterances; returns (spk_id, [(utt_id, seconds)])."""
    traits = _traits(job.config.seed, job.domain, job.spk_index)
    out = []
    for utt in job.utts:
        rng = np.random.default_rng([job.config.seed, job.domain, job.spk_index, 1 + utt.index])
        x, rate = render_utterance(job.domain, traits, rng, job.config)
        _write_wav(utt.path, x, rate)
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

    n_src = cfg.source_train_spk
    add_speakers(SOURCE, "src", 1, n_src, [("source_train", cfg.source_train_utts, "")])
    add_speakers(
        SOURCE,
        "src",
        1 + n_src,
        cfg.source_eval_spk,
        [("source_eval_enroll", cfg.enroll_utts, "e"), ("source_eval_test", cfg.test_utts, "t")],
    )
    first = 1
    add_speakers(
        TARGET, "tgt", first, cfg.target_train_spk, [("target_train", cfg.target_train_utts, "")]
    )
    first += cfg.target_train_spk
    add_speakers(
        TARGET, "tgt", first, cfg.target_adapt_spk, [("target_adapt", cfg.target_adapt_utts, "")]
    )
    first += cfg.target_adapt_spk
    add_speakers(
        TARGET,
        "tgt",
        first,
        cfg.target_eval_spk,
        [("target_enroll", cfg.enroll_utts, "e"), ("target_test", cfg.test_utts, "t")],
    )

    # Unlabelled set: anonymous shuffled ids (and file names), each utterance its own speaker.
    true = sets["target_adapt"]
    order = np.random.default_rng([cfg.seed, TARGET, 0, 7]).permutation(len(true))
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
    num_tar = 0
    lines = []
    for m in sorted(models):
        for utt in sorted(test_utt2spk):
            tar = test_utt2spk[utt] == m
            num_tar += tar
            lines.append(f"{m} {utt} {'target' if tar else 'nontarget'}\n")
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return num_tar, len(lines) - num_tar


# ---------------------------------------------------------------------------------------------
# Augmentation sets


def write_musan(root: Path, cfg: CorpusConfig) -> dict[str, int]:
    """MUSAN-like noise/music/speech wavs at 16 kHz (+ music/ANNOTATIONS as in the real corpus)."""
    n = int(cfg.musan_dur * sv.RATE)
    counts = {}
    kinds = []
    for k in range(cfg.musan_noise):
        rng = np.random.default_rng([cfg.seed, AUGMENT, 1, k])
        x, kind = ch.background_noise(rng, n, sv.RATE)
        kinds.append(kind)
        _write_wav(str(root / "noise" / f"noise-synth-{k:04d}.wav"), 0.05 * x, sv.RATE)
    counts["noise"] = cfg.musan_noise
    notes = []
    for k in range(cfg.musan_music):
        rng = np.random.default_rng([cfg.seed, AUGMENT, 2, k])
        _write_wav(
            str(root / "music" / f"music-synth-{k:04d}.wav"),
            0.08 * ch.music(rng, n, sv.RATE),
            sv.RATE,
        )
        notes.append(f"music-synth-{k:04d} synthetic N synth-band-{k:02d}\n")
    with atomic_open(root / "music" / "ANNOTATIONS", "w", encoding="utf-8") as f:
        f.writelines(notes)
    counts["music"] = cfg.musan_music
    for k in range(cfg.musan_speech):
        # Talkers of their own (not in any split), clean 16 kHz, several sentences each.
        traits = _traits(cfg.seed, MUSAN_SPEECH, k)
        rng = np.random.default_rng([cfg.seed, MUSAN_SPEECH, k, 1])
        lang = sv.LANGUAGE_A if k % 2 == 0 else sv.LANGUAGE_B
        x = sv.synthesize(rng, traits, sv.sample_session(rng), lang, cfg.musan_dur)
        _write_wav(str(root / "speech" / f"speech-synth-{k:04d}.wav"), x, sv.RATE)
    counts["speech"] = cfg.musan_speech
    return counts


ROOM_SIZES = {"smallroom": (0.15, 0.4), "mediumroom": (0.3, 0.7), "largeroom": (0.5, 1.0)}


def write_rirs(root: Path, cfg: CorpusConfig) -> dict[str, str]:
    """RIRS_NOISES/simulated_rirs/<size>/{rir_list, RoomNNN/RoomNNN-NNNNN.wav}, 16 kHz.

    rir_list lines as in the real corpus (paths relative to the parent of RIRS_NOISES):
    `--rir-id smallroom-Room001-00001 --room-id smallroom-Room001 RIRS_NOISES/simulated_rirs/...`
    """
    lists = {}
    for s_idx, (size, (rt_lo, rt_hi)) in enumerate(ROOM_SIZES.items()):
        lines = []
        for room in range(1, cfg.rir_rooms + 1):
            rng = np.random.default_rng([cfg.seed, AUGMENT, 10 + s_idx, room])
            rt60 = float(rng.uniform(rt_lo, rt_hi))  # one RT60 per room, RIRs differ in position
            for r in range(1, cfg.rirs_per_room + 1):
                rel = f"RIRS_NOISES/simulated_rirs/{size}/Room{room:03d}/Room{room:03d}-{r:05d}.wav"
                h = ch.room_impulse_response(rng, rt60 * float(rng.uniform(0.9, 1.1)))
                _write_wav(str(root.parent / rel), h, sv.RATE)
                lines.append(
                    f"--rir-id {size}-Room{room:03d}-{r:05d} --room-id {size}-Room{room:03d} {rel}\n"
                )
        path = root / "simulated_rirs" / size / "rir_list"
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
        lists[size] = str(path)
    return lists


# ---------------------------------------------------------------------------------------------
# The whole corpus

SETS = (
    "source_train",
    "source_eval_enroll",
    "source_eval_test",
    "target_train",
    "target_adapt",
    "target_enroll",
    "target_test",
)


def corpus_paths(out_dir: str | os.PathLike) -> dict[str, str]:
    """Where `make_corpus` puts everything (absolute paths)."""
    out = Path(out_dir).resolve()
    paths = {name: str(out / "data" / name) for name in SETS}
    paths["source_eval_trials"] = str(out / "data" / "source_eval_test" / "trials")
    paths["target_trials"] = str(out / "data" / "target_test" / "trials")
    paths["musan"] = str(out / "musan")
    paths["rirs"] = str(out / "RIRS_NOISES")
    for size in ROOM_SIZES:
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
            t = _traits(cfg.seed, domain, idx)
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
        ("target_test", "target_enroll", "target_trials"),
    ):
        models = sorted(set(plan.sets[enroll].values()))
        tar, non = write_trials(Path(paths[key]), models, plan.sets[test])
        summary[test]["trials"] = {"target": tar, "nontarget": non}

    truth = Path(paths["truth"])
    _write_table(truth / "target_adapt.utt2spk", plan.adapt_truth)
    with atomic_open(truth / "spk2traits.json", "w", encoding="utf-8") as f:
        json.dump({k: traits[k] for k in sorted(traits)}, f, indent=1, sort_keys=True)

    musan = write_musan(Path(paths["musan"]), cfg)
    rirs = write_rirs(Path(paths["rirs"]), cfg)
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
                "traits": dataclasses.asdict(SOURCE_TRAITS),
                "language": "A",
                "channel": "clean 16 kHz microphone, 35-50 dB SNR noise floor",
            },
            "target": {
                "traits": dataclasses.asdict(TARGET_TRAITS),
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
