"""What each domain sounds like: speaker voices, recording chains, and the augmentation sets.

- source: clean 16 kHz microphone speech (language A), 35-50 dB SNR noise floor;
- target: other voices (`TARGET_TRAITS`: higher F0, shorter vocal tracts, steeper tilt, breathier,
  faster, and less spread between speakers: one language community's voices are more alike than the
  source's mixed population, as SRE16's Cantonese/Tagalog speakers are to an English-trained
  model) speaking language B, then room reverberation, background noise, a random handset per
  call, 300-3400 Hz band limit, 8 kHz and 8-bit mu-law;
- MUSAN-like noise/music/speech and RIRS_NOISES-like simulated room responses, 16 kHz.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from xvjax.fileutil import atomic_open
from xvjax.synthetic import channel as ch
from xvjax.synthetic import voice as sv

SOURCE, TARGET, MUSAN_SPEECH, AUGMENT = 1, 2, 3, 4  # domain codes in the RNG seed

SOURCE_TRAITS = sv.TraitDistribution()
TARGET_TRAITS = sv.TraitDistribution(
    p_female=0.6,
    f0_male=128.0,
    f0_female=220.0,
    f0_spread_st=1.8,
    f0_range_st=(1.5, 3.5),
    scale_male=1.04,
    scale_female=1.2,
    scale_spread=0.05,
    offset_spread=0.05,
    tilt_db_oct=(-7.0, -1.5),
    open_quotient=(0.55, 0.85),
    breathiness=(0.05, 0.35),
    rate=(0.95, 1.4),
    sinus_zero=(3500.0, 5000.0),
)


def speaker_traits(seed: int, domain: int, spk_index: int) -> sv.VoiceTraits:
    """The voice of speaker `spk_index` of a domain (seeded by [seed, domain, spk_index, 0])."""
    dist = TARGET_TRAITS if domain == TARGET else SOURCE_TRAITS
    return sv.sample_traits(np.random.default_rng([seed, domain, spk_index, 0]), dist)


def render_utterance(domain: int, traits: sv.VoiceTraits, rng, cfg):
    """One utterance of a speaker in a domain -> (float64 samples, rate). `cfg` is a CorpusConfig."""
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


def write_wav(path: str, x: np.ndarray, rate: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pcm = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    sf.write(path, pcm, rate, subtype="PCM_16", format="WAV")


# ---------------------------------------------------------------------------------------------
# Augmentation sets


def write_musan(root: Path, cfg) -> dict[str, int]:
    """MUSAN-like noise/music/speech wavs at 16 kHz (+ music/ANNOTATIONS as in the real corpus)."""
    n = int(cfg.musan_dur * sv.RATE)
    counts = {}
    kinds = []
    for k in range(cfg.musan_noise):
        rng = np.random.default_rng([cfg.seed, AUGMENT, 1, k])
        x, kind = ch.background_noise(rng, n, sv.RATE)
        kinds.append(kind)
        write_wav(str(root / "noise" / f"noise-synth-{k:04d}.wav"), 0.05 * x, sv.RATE)
    counts["noise"] = cfg.musan_noise
    notes = []
    for k in range(cfg.musan_music):
        rng = np.random.default_rng([cfg.seed, AUGMENT, 2, k])
        write_wav(
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
        traits = speaker_traits(cfg.seed, MUSAN_SPEECH, k)
        rng = np.random.default_rng([cfg.seed, MUSAN_SPEECH, k, 1])
        lang = sv.LANGUAGE_A if k % 2 == 0 else sv.LANGUAGE_B
        x = sv.synthesize(rng, traits, sv.sample_session(rng), lang, cfg.musan_dur)
        write_wav(str(root / "speech" / f"speech-synth-{k:04d}.wav"), x, sv.RATE)
    counts["speech"] = cfg.musan_speech
    return counts


ROOM_SIZES = {"smallroom": (0.15, 0.4), "mediumroom": (0.3, 0.7), "largeroom": (0.5, 1.0)}


def write_rirs(root: Path, cfg) -> dict[str, str]:
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
                write_wav(str(root.parent / rel), h, sv.RATE)
                lines.append(
                    f"--rir-id {size}-Room{room:03d}-{r:05d} --room-id {size}-Room{room:03d} {rel}\n"
                )
        path = root / "simulated_rirs" / size / "rir_list"
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
        lists[size] = str(path)
    return lists
