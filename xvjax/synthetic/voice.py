"""Source-filter synthesis of speech-like audio: per-speaker voices speaking random phone strings.

Speaker identity lives in the voice (F0 and its range, vocal-tract length as a formant scale, the
speaker's own vowel-space offsets, spectral tilt, glottal open quotient, jitter, shimmer, breathiness,
speaking rate, nasal and hypopharyngeal (anti)resonances); the phone sequence is random and drawn
independently of the speaker, so only the voice tells speakers apart.

Synthesis, vectorised (no per-sample Python loops):
- control tracks are knot lists per phone segment, evaluated by `np.interp` (formants, amplitudes,
  frication spectrum, F0), so formants move smoothly from one target to the next (coarticulation);
- the glottal source is a Rosenberg flow pulse read from the instantaneous phase
  `cumsum(f0 / rate)`, with jitter/shimmer drawn once per glottal period, differentiated for lip
  radiation, plus aspiration noise gated by the glottal opening;
- the vocal tract is a cascade of second-order resonators (F1..F5, a nasal pole/zero pair and a
  speaker antiresonance), applied as a time-varying filter in the STFT domain: every frame of the
  source is multiplied by the cascade's complex response at that frame's formants, then
  overlap-added (hann analysis window, 50% overlap, zero-padded FFT so the short formant impulse
  responses do not wrap).
"""

from __future__ import annotations

import dataclasses

import numpy as np

RATE = 16000  # synthesis sample rate (Hz)

# STFT filtering grid: 25 ms hann frames, 12.5 ms hop, 1024-point FFT.
_WIN = 400
_HOP = 200
_NFFT = 1024


@dataclasses.dataclass(frozen=True)
class VoiceTraits:
    """One speaker's voice. Frequencies in Hz; `*_st` in semitones; levels in dB."""

    gender: str  # "m" or "f"
    f0: float  # mean fundamental frequency
    f0_range_st: float  # size of intonation movements (std, semitones)
    formant_scale: float  # 1 / relative vocal-tract length: multiplies all formants
    formant_offsets: tuple[float, float, float, float]  # speaker's own log offsets of F1..F4
    bandwidth_scale: float  # multiplies formant bandwidths
    tilt_db_oct: float  # extra source spectral tilt (dB per octave above 500 Hz)
    open_quotient: float  # glottal open quotient (0.4 pressed .. 0.8 breathy)
    jitter: float  # relative std of the glottal period, drawn per period
    shimmer: float  # relative std of the pulse amplitude, drawn per period
    breathiness: float  # aspiration noise level relative to the voiced source
    rate: float  # speaking rate (phone durations are divided by it)
    nasal_zero: float  # nasal antiresonance during nasals (coarticulated into vowels)
    sinus_zero: float  # fixed speaker antiresonance (piriform-fossa like, 3.5-6 kHz)
    f5: float  # fifth formant (hypopharyngeal cluster), partly speaker specific

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TraitDistribution:
    """How a population's voices are drawn (one per domain)."""

    p_female: float = 0.5
    f0_male: float = 115.0
    f0_female: float = 205.0
    f0_spread_st: float = 2.5  # between-speaker std of F0 (semitones)
    f0_range_st: tuple[float, float] = (1.0, 3.0)
    scale_male: float = 1.0
    scale_female: float = 1.16
    scale_spread: float = 0.07  # between-speaker std of log formant scale
    offset_spread: float = 0.07  # std of per-formant log offsets
    tilt_db_oct: tuple[float, float] = (-4.0, 1.0)
    open_quotient: tuple[float, float] = (0.45, 0.75)
    jitter: tuple[float, float] = (0.003, 0.02)
    shimmer: tuple[float, float] = (0.02, 0.12)
    breathiness: tuple[float, float] = (0.01, 0.25)
    rate: tuple[float, float] = (0.8, 1.25)
    sinus_zero: tuple[float, float] = (4000.0, 6000.0)


def sample_traits(rng: np.random.Generator, dist: TraitDistribution) -> VoiceTraits:
    """Draws one speaker's voice from a population."""
    female = rng.random() < dist.p_female
    f0 = (dist.f0_female if female else dist.f0_male) * 2 ** (
        rng.normal(0.0, dist.f0_spread_st) / 12
    )
    scale = (dist.scale_female if female else dist.scale_male) * np.exp(
        rng.normal(0.0, dist.scale_spread)
    )
    u = lambda lo_hi: float(rng.uniform(*lo_hi))
    return VoiceTraits(
        gender="f" if female else "m",
        f0=float(f0),
        f0_range_st=u(dist.f0_range_st),
        formant_scale=float(scale),
        formant_offsets=tuple(float(x) for x in rng.normal(0.0, dist.offset_spread, 4)),
        bandwidth_scale=float(np.exp(rng.normal(0.0, 0.2))),
        tilt_db_oct=u(dist.tilt_db_oct),
        open_quotient=u(dist.open_quotient),
        jitter=u(dist.jitter),
        shimmer=u(dist.shimmer),
        breathiness=u(dist.breathiness),
        rate=u(dist.rate),
        nasal_zero=float(rng.uniform(900.0, 1800.0) * scale),
        sinus_zero=u(dist.sinus_zero) * float(scale) ** 0.5,
        f5=float(rng.uniform(3900.0, 4700.0) * scale),
    )


@dataclasses.dataclass(frozen=True)
class Session:
    """Within-speaker variation of one utterance (mood, effort, recording level)."""

    f0_shift_st: float = 0.0
    f0_range_factor: float = 1.0
    rate_factor: float = 1.0
    scale_factor: float = 1.0
    tilt_shift_db_oct: float = 0.0
    level_db: float = -26.0  # RMS level of the written utterance (dBFS)


def sample_session(rng: np.random.Generator, variability: float = 1.0) -> Session:
    """Small random within-speaker changes; `variability` scales them all."""
    v = variability
    return Session(
        f0_shift_st=float(rng.normal(0.0, 1.0 * v)),
        f0_range_factor=float(np.exp(rng.normal(0.0, 0.2 * v))),
        rate_factor=float(np.exp(rng.normal(0.0, 0.08 * v))),
        scale_factor=float(np.exp(rng.normal(0.0, 0.012 * v))),
        tilt_shift_db_oct=float(rng.normal(0.0, 0.5 * v)),
        level_db=float(-26.0 + rng.normal(0.0, 3.0)),
    )


# ---------------------------------------------------------------------------------------------
# Phones. Formant targets are for a reference (scale 1) adult male vocal tract.

_VOWELS_A = {  # an English-like vowel system (Peterson & Barney style averages)
    "i": (270, 2290, 3010),
    "I": (390, 1990, 2550),
    "E": (530, 1840, 2480),
    "ae": (660, 1720, 2410),
    "A": (730, 1090, 2440),
    "O": (570, 840, 2410),
    "U": (440, 1020, 2240),
    "u": (300, 870, 2240),
    "V": (640, 1190, 2390),
    "3": (490, 1350, 1690),
}
_VOWELS_B = {  # another language: front rounded vowels, a five-vowel core, a central high vowel
    "a": (780, 1300, 2500),
    "e": (400, 2100, 2700),
    "i": (280, 2250, 3050),
    "o": (450, 800, 2500),
    "u": (310, 800, 2300),
    "y": (280, 1800, 2200),
    "2": (400, 1550, 2300),
    "M": (320, 1400, 2400),
}

# Consonants: (kind, F1..F3 loci, frication centre Hz, frication bandwidth Hz, duration ms).
# kinds: stop / vstop (voiced stop) / fric / vfric / nasal / approx / h
_CONSONANTS = {
    "p": ("stop", (250, 800, 2200), 1200, 3000, 85),
    "t": ("stop", (250, 1750, 2650), 4000, 2500, 80),
    "k": ("stop", (250, 2000, 2500), 2300, 1200, 90),
    "b": ("vstop", (250, 800, 2200), 1200, 3000, 65),
    "d": ("vstop", (250, 1700, 2600), 4000, 2500, 60),
    "g": ("vstop", (250, 1900, 2400), 2300, 1200, 70),
    "f": ("fric", (300, 900, 2300), 5000, 6000, 110),
    "s": ("fric", (300, 1700, 2700), 6000, 2200, 120),
    "S": ("fric", (300, 1900, 2400), 3200, 1600, 120),
    "v": ("vfric", (300, 900, 2300), 5000, 6000, 70),
    "z": ("vfric", (300, 1700, 2700), 6000, 2200, 80),
    "m": ("nasal", (280, 900, 2200), 0, 0, 75),
    "n": ("nasal", (280, 1650, 2600), 0, 0, 70),
    "N": ("nasal", (280, 2000, 2500), 0, 0, 80),
    "l": ("approx", (360, 1300, 2700), 0, 0, 65),
    "r": ("approx", (350, 1100, 1600), 0, 0, 65),
    "w": ("approx", (300, 700, 2200), 0, 0, 60),
    "j": ("approx", (270, 2200, 3000), 0, 0, 60),
    "h": ("h", None, 0, 0, 80),
}


@dataclasses.dataclass(frozen=True)
class Language:
    """The content distribution of a domain: vowel system and consonant frequencies."""

    vowels: dict
    consonant_weights: dict
    p_coda: float = 0.4  # probability a syllable ends with a consonant
    p_cluster: float = 0.15  # probability of a two-consonant onset


LANGUAGE_A = Language(
    vowels=_VOWELS_A,
    consonant_weights={c: 1.0 for c in _CONSONANTS} | {"s": 2.0, "t": 2.0, "n": 2.0, "r": 1.5},
)
LANGUAGE_B = Language(
    vowels=_VOWELS_B,
    consonant_weights={c: 1.0 for c in _CONSONANTS}
    | {"S": 2.0, "k": 2.0, "m": 2.0, "N": 2.0, "z": 0.2, "r": 0.3, "h": 2.0},
    p_coda=0.25,
    p_cluster=0.05,
)


@dataclasses.dataclass
class _Segment:
    kind: str  # vowel, stop, vstop, burst, fric, vfric, nasal, approx, h, sil
    dur: float  # seconds
    formants: tuple | None = None  # F1..F3 (reference male), None keeps the neighbours'
    fric: tuple[float, float] = (0.0, 0.0)  # frication centre, bandwidth
    stress: float = 0.0


def phone_sequence(rng: np.random.Generator, lang: Language, seconds: float) -> list[_Segment]:
    """Random syllables grouped in words and phrases, about `seconds` long at rate 1."""
    vowels = list(lang.vowels)
    cons = list(lang.consonant_weights)
    cw = np.array([lang.consonant_weights[c] for c in cons])
    cw = cw / cw.sum()
    segs = [_Segment("sil", rng.uniform(0.15, 0.35))]
    total = segs[0].dur
    while total < seconds - 0.25:
        for _ in range(rng.integers(2, 7)):  # words in a phrase
            for syl in range(rng.integers(1, 4)):  # syllables in a word
                onset = []
                if rng.random() < 0.8:
                    onset.append(cons[rng.choice(len(cons), p=cw)])
                    if rng.random() < lang.p_cluster:
                        onset.append(rng.choice(["l", "r", "w"]))
                for c in onset:
                    segs += _consonant(rng, c)
                v = lang.vowels[vowels[rng.integers(len(vowels))]]
                stress = 1.0 if (syl == 0 and rng.random() < 0.6) else 0.0
                segs.append(
                    _Segment(
                        "vowel", rng.uniform(0.07, 0.16) * (1 + 0.4 * stress), v, stress=stress
                    )
                )
                if rng.random() < lang.p_coda:
                    segs += _consonant(rng, cons[rng.choice(len(cons), p=cw)])
            if rng.random() < 0.25:
                segs.append(_Segment("sil", rng.uniform(0.04, 0.12)))
        segs.append(_Segment("sil", rng.uniform(0.15, 0.5)))
        total = sum(s.dur for s in segs)
    segs.append(_Segment("sil", rng.uniform(0.15, 0.35)))
    return segs


def _consonant(rng: np.random.Generator, name: str) -> list[_Segment]:
    kind, loci, fc, bw, ms = _CONSONANTS[name]
    dur = ms / 1000 * rng.uniform(0.75, 1.3)
    if kind in ("stop", "vstop"):
        closure = _Segment(kind, dur * 0.7, loci)
        burst = _Segment("burst", rng.uniform(0.007, 0.014), loci, (fc, bw))
        out = [closure, burst]
        if kind == "stop":
            out.append(_Segment("h", dur * 0.45, None))
        return out
    if kind == "h":
        return [_Segment("h", dur, None)]
    return [_Segment(kind, dur, loci, (fc, bw))]


# Per-kind source amplitudes: (voicing, aspiration, frication).
_AMPS = {
    "vowel": (1.0, 0.0, 0.0),
    "approx": (0.55, 0.0, 0.0),
    "nasal": (0.35, 0.0, 0.0),
    "vstop": (0.08, 0.0, 0.0),
    "stop": (0.0, 0.0, 0.0),
    "burst": (0.0, 0.0, 1.6),
    "fric": (0.0, 0.05, 0.45),
    "vfric": (0.35, 0.0, 0.3),
    "h": (0.0, 0.35, 0.0),
    "sil": (0.0, 0.0, 0.0),
}


# ---------------------------------------------------------------------------------------------
# Signal pieces.


def _knot_track(times: np.ndarray, starts, ends, values, ramp: float) -> np.ndarray:
    """Piecewise-constant `values` over [start, end) with linear ramps of 2*ramp at boundaries."""
    starts = np.asarray(starts)
    ends = np.asarray(ends)
    r = np.minimum(ramp, (ends - starts) / 3)
    kt = np.stack([starts + r, ends - r], 1).ravel()
    kv = np.repeat(np.asarray(values, dtype=np.float64), 2, axis=0)
    return np.interp(times, kt, kv)


def _rosenberg(phase: np.ndarray, open_quotient: float) -> np.ndarray:
    """Glottal flow in [0, 1] at fractional period position `phase` (0..1)."""
    tp = 0.62 * open_quotient
    tn = 0.38 * open_quotient
    opening = 0.5 * (1 - np.cos(np.pi * phase / tp))
    closing = np.cos(0.5 * np.pi * (phase - tp) / tn)
    return np.where(phase < tp, opening, np.where(phase < tp + tn, closing, 0.0))


def _resonator_coefs(freq, bw, rate):
    """Feedback coefficients (a1, a2) of y[n] = x[n] + a1 y[n-1] + a2 y[n-2] for a resonance."""
    r = np.exp(-np.pi * np.asarray(bw, np.float64) / rate)
    return 2 * r * np.cos(2 * np.pi * np.asarray(freq, np.float64) / rate), -(r**2)


def _frames(x: np.ndarray) -> np.ndarray:
    """(num_frames, _WIN) hann-windowed frames at hop _HOP of x padded by _WIN on both sides."""
    pad = np.concatenate([np.zeros(_WIN), x, np.zeros(_WIN + _HOP)])
    num = (len(pad) - _WIN) // _HOP + 1
    idx = np.arange(_WIN)[None, :] + _HOP * np.arange(num)[:, None]
    return (pad[idx] * np.hanning(_WIN + 2)[1:-1]).astype(np.float32)


def _overlap_add(y: np.ndarray, length: int) -> np.ndarray:
    """Inverse of `_frames` for (num_frames, _NFFT) filtered frames (hann at 50% sums to 1)."""
    num = y.shape[0]
    out = np.zeros((num - 1) * _HOP + _NFFT)
    blocks = _NFFT // _HOP + (_NFFT % _HOP > 0)
    ypad = np.zeros((num, blocks * _HOP))
    ypad[:, :_NFFT] = y
    ypad = ypad.reshape(num, blocks, _HOP)
    outb = np.zeros((num + blocks, _HOP))
    for j in range(blocks):
        outb[j : j + num] += ypad[:, j]
    out = outb.ravel()
    return out[_WIN : _WIN + length]


def synthesize(
    rng: np.random.Generator,
    traits: VoiceTraits,
    session: Session,
    lang: Language,
    seconds: float,
    rate: int = RATE,
) -> np.ndarray:
    """One utterance of about `seconds`, float64 in [-1, 1], RMS at `session.level_db` dBFS."""
    speed = traits.rate * session.rate_factor
    segs = phone_sequence(rng, lang, seconds * speed)
    durs = np.array([s.dur for s in segs]) / speed
    durs *= np.exp(rng.normal(0.0, 0.12, len(durs)))
    # Scale to the requested length exactly (content length varies with phone draws).
    durs *= seconds / durs.sum()
    ends = np.cumsum(durs)
    starts = ends - durs
    num = int(round(seconds * rate))
    t = np.arange(num) / rate
    kinds = [s.kind for s in segs]

    # Source amplitudes per sample: voicing, aspiration, frication (bursts switch on fast).
    amps = np.array([_AMPS[k] for k in kinds])
    stress = np.array([s.stress for s in segs])
    amps[:, 0] *= 1 + 0.35 * stress
    ramps = np.where(np.array(kinds) == "burst", 0.001, 0.012)
    av = _knot_track(t, starts, ends, amps[:, 0], 0.012)
    ah = _knot_track(t, starts, ends, amps[:, 1], 0.01)
    af = _knot_track(t, starts, ends, amps[:, 2], ramps)

    f0 = _f0_contour(rng, traits, session, starts, ends, stress, t, seconds)
    flow, dflow = _glottal_flow(rng, traits, f0, rate)
    asp_noise = rng.standard_normal(num)
    voiced = av * (dflow + traits.breathiness * asp_noise * (0.3 + 0.7 * flow))
    voiced += ah * rng.standard_normal(num) * 0.5
    fric = af * rng.standard_normal(num)

    # Filter frame by frame, only the frames where each source is on.
    vf = _frames(voiced)
    nfr = vf.shape[0]
    tf = (np.arange(nfr) * _HOP + _WIN / 2 - _WIN) / rate  # frame centre times
    von = np.abs(vf).max(1) > 0
    ff = _frames(fric)
    fon = np.abs(ff).max(1) > 0
    scale = traits.formant_scale * session.scale_factor
    spec = np.zeros((nfr, _NFFT // 2 + 1), np.complex64)
    spec[von] = np.fft.rfft(vf[von], _NFFT) * _tract_response(
        traits, session, tf[von], segs, starts, ends, rate
    )
    spec[fon] += np.fft.rfft(ff[fon], _NFFT) * _frication_response(
        tf[fon], segs, starts, ends, scale, rate
    )
    y = _overlap_add(np.fft.irfft(spec, _NFFT).astype(np.float64), num)

    # Level: RMS over the voiced part at the session's level.
    active = av > 0.3
    rms = np.sqrt(np.mean(y[active] ** 2)) if active.any() else np.sqrt(np.mean(y**2)) + 1e-9
    y *= 10 ** (session.level_db / 20) / max(rms, 1e-9)
    return np.clip(y, -0.99, 0.99)


def _f0_contour(rng, traits, session, starts, ends, stress, t, seconds) -> np.ndarray:
    """(samples,) F0 in Hz: phrase declination, accents on stressed vowels, slow wander."""
    srange = traits.f0_range_st * session.f0_range_factor
    mids = (starts + ends) / 2
    accent = stress * rng.normal(1.6, 0.6, len(starts)) * srange
    knots_t = np.concatenate([[0.0], mids, [seconds]])
    wander = np.cumsum(rng.normal(0.0, 0.35 * srange, len(knots_t)))
    wander -= wander.mean()
    phrase_pos = np.interp(knots_t, [0, seconds], [1.0, -1.0])
    semis = (
        session.f0_shift_st
        + 0.6 * srange * phrase_pos
        + np.concatenate([[0.0], accent, [0.0]])
        + 0.3 * wander
    )
    return traits.f0 * 2 ** (np.interp(t, knots_t, semis) / 12)


def _glottal_flow(rng, traits: VoiceTraits, f0: np.ndarray, rate: int):
    """Glottal flow (samples,) in [0, ~1] and its derivative (the radiated source), with jitter
    and shimmer drawn once per glottal period of the phase `cumsum(f0 / rate)`."""
    phase = np.cumsum(f0 / rate)
    jit = 1 + traits.jitter * rng.standard_normal(int(phase[-1]) + 2)
    phase = np.cumsum(f0 * jit[phase.astype(np.int64)] / rate)
    period = phase.astype(np.int64)
    shim = 1 + traits.shimmer * rng.standard_normal(period[-1] + 1)
    flow = _rosenberg(phase - period, traits.open_quotient) * shim[period]
    return flow, np.diff(flow, prepend=0.0) * (rate / traits.f0) * 0.25


def _tract_response(traits, session, tf, segs, starts, ends, rate) -> np.ndarray:
    """(frames, _NFFT // 2 + 1) complex response at frame times `tf`: F1..F5 cascade, nasal
    pole/zero, the speaker's antiresonance and spectral tilt."""
    scale = traits.formant_scale * session.scale_factor
    offs = np.exp(np.array(traits.formant_offsets))
    freqs = np.empty((len(tf), 5))
    freqs[:, :3] = _formant_tracks(tf, segs, starts, ends) * scale * offs[:3]
    freqs[:, 3] = 3400.0 * scale * offs[3]
    freqs[:, 4] = traits.f5
    freqs = np.minimum(freqs, 0.45 * rate)
    bws = np.array([70.0, 90.0, 130.0, 200.0, 300.0]) * traits.bandwidth_scale * (1 + freqs / 3000)
    nasal_amt = _knot_track(tf, starts, ends, [s.kind == "nasal" for s in segs], 0.03)
    nasal_zero = 270 + nasal_amt * (traits.nasal_zero - 270)

    # All-pole part: the product of the five formant quadratics in z^-1, evaluated on the FFT grid
    # by an FFT of its 11 coefficients (cheaper than evaluating each resonator at every bin).
    a1, a2 = _resonator_coefs(freqs, bws, rate)  # (frames, 5) each
    den = np.zeros((len(tf), 11))
    den[:, 0] = 1.0
    for k in range(5):
        shifted1 = np.zeros_like(den)
        shifted1[:, 1:] = den[:, :-1]
        shifted2 = np.zeros_like(den)
        shifted2[:, 2:] = den[:, :-2]
        den = den - a1[:, k : k + 1] * shifted1 - a2[:, k : k + 1] * shifted2
    gain = np.prod(1 - a1 - a2, axis=1)
    w = np.linspace(0.0, np.pi, _NFFT // 2 + 1)
    z1 = np.exp(-1j * w)
    # Nasal zero (moves up during nasals), cancelling the fixed 270 Hz nasal pole elsewhere.
    za1, za2 = _resonator_coefs(nasal_zero[:, None], 100.0, rate)
    za1, za2 = za1.astype(np.float32), za2.astype(np.float32)
    z1f = z1.astype(np.complex64)
    zero = (1 - za1 * z1f - za2 * (z1f * z1f)) * (gain[:, None] / (1 - za1 - za2)).astype(
        np.float32
    )
    h_tract = zero / np.fft.rfft(den.astype(np.float32), _NFFT)
    # Fixed per speaker: the nasal pole, the antiresonance and the source tilt.
    pa1, pa2 = _resonator_coefs(270.0, 100.0, rate)
    sa1, sa2 = _resonator_coefs(traits.sinus_zero, 250.0, rate)
    fhz = w * rate / (2 * np.pi)
    tilt = traits.tilt_db_oct + session.tilt_shift_db_oct
    fixed = (
        (1 - pa1 - pa2)
        / (1 - pa1 * z1 - pa2 * z1 * z1)
        * (1 - sa1 * z1 - sa2 * z1 * z1)
        / (1 - sa1 - sa2)
        * 10 ** (tilt / 20 * np.log2(np.maximum(fhz, 500.0) / 500.0))
    ).astype(np.complex64)
    return h_tract * fixed


def _frication_response(tf, segs, starts, ends, scale, rate) -> np.ndarray:
    """(frames, _NFFT // 2 + 1) frication noise shaping: one broad resonance per fricative or
    burst (centre scaled with the vocal tract), unit peak, over a gentle high-pass."""
    fc = _knot_track(tf, starts, ends, [s.fric[0] for s in segs], 0.02)
    fb = _knot_track(tf, starts, ends, [max(s.fric[1], 1.0) for s in segs], 0.02)
    fc = np.clip(fc * np.sqrt(scale), 300.0, 0.45 * rate).astype(np.float32)[:, None]
    fb = np.maximum(fb, 300.0).astype(np.float32)[:, None]
    f = np.linspace(0.0, rate / 2, _NFFT // 2 + 1, dtype=np.float32)[None, :]
    return 1.0 / (1.0 + ((f - fc) / (0.5 * fb)) ** 2) + 0.05 * (f / (f + 1500.0))


def _formant_tracks(tf, segs, starts, ends) -> np.ndarray:
    """(frames, 3) F1..F3 at frame times: targets held over each segment's middle, linear between."""
    kt, kv = [], []
    for s, a, b in zip(segs, starts, ends, strict=True):
        if s.formants is None:
            continue
        if s.kind == "vowel":
            m = 0.3 * (b - a)
            kt += [a + m, b - m]
            kv += [s.formants, s.formants]
        else:
            kt.append((a + b) / 2)
            kv.append(s.formants)
    if not kt:
        return np.tile([500.0, 1500.0, 2500.0], (len(tf), 1))
    kt = np.array(kt)
    kv = np.array(kv, dtype=np.float64)
    return np.stack([np.interp(tf, kt, kv[:, i]) for i in range(3)], 1)
