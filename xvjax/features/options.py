"""Option structs of Kaldi's feature binaries and scripts, with Kaldi's option names (`-` -> `_`).

`MfccOptions` mirrors `compute-mfcc-feats` (`FrameExtractionOptions` + `MelBanksOptions` +
`MfccOptions`), `FbankOptions` mirrors `compute-fbank-feats`, `VadOptions` `compute-vad`,
`CmnOptions` `apply-cmvn-sliding` and `AugmentDataDirOptions` steps/data/augment_data_dir.py (with
reverberate_data_dir.py's `--rir-lists`). Defaults are Kaldi's, so a recipe's `conf/mfcc.conf`
maps 1:1:

    opts = MfccOptions.from_config_file("conf/mfcc.conf")
    opts = MfccOptions(sample_frequency=8000, snip_edges=False, dither=0.0)

All option structs are frozen dataclasses (hashable), so they can be static arguments of `jax.jit`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.fileutil import atomic_open
from xvjax.kaldi.config_files import parse_bool, read_config_file

WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular", "blackman", "sine")


@dataclasses.dataclass(frozen=True)
class FrameOptions:
    """Kaldi's `FrameExtractionOptions` (frame length/shift in milliseconds)."""

    sample_frequency: float = 16000.0
    frame_length: float = 25.0
    frame_shift: float = 10.0
    dither: float = 1.0
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    round_to_power_of_two: bool = True
    blackman_coeff: float = 0.42
    snip_edges: bool = True
    allow_downsample: bool = False
    allow_upsample: bool = False

    # Kaldi computes these in double from the float option values and truncates to int.
    @property
    def window_shift(self) -> int:
        """Frame shift in samples (`WindowShift()`)."""
        return int(float(_f32(self.sample_frequency)) * 0.001 * float(_f32(self.frame_shift)))

    @property
    def window_size(self) -> int:
        """Frame length in samples (`WindowSize()`)."""
        return int(float(_f32(self.sample_frequency)) * 0.001 * float(_f32(self.frame_length)))

    @property
    def padded_window_size(self) -> int:
        """FFT size (`PaddedWindowSize()`)."""
        n = self.window_size
        if not self.round_to_power_of_two:
            return n
        p = 1
        while p < n:
            p *= 2
        return p

    def check(self) -> None:
        if self.window_type not in WINDOW_TYPES:
            raise XvjaxError(
                f"invalid --window-type={self.window_type} (use {', '.join(WINDOW_TYPES)})"
            )
        if self.window_size < 2 or self.window_shift < 1:
            raise XvjaxError(
                f"bad frame options: --frame-length={self.frame_length} ms and "
                f"--frame-shift={self.frame_shift} ms at {self.sample_frequency} Hz give "
                f"{self.window_size} and {self.window_shift} samples"
            )
        if self.padded_window_size % 2:
            raise XvjaxError("the FFT size must be even (use --round-to-power-of-two=true)")
        if not 0.0 <= self.preemphasis_coefficient <= 1.0:
            raise XvjaxError("--preemphasis-coefficient must be in [0, 1]")
        if self.dither < 0:
            raise XvjaxError("--dither must be >= 0")

    @classmethod
    def from_kaldi(cls, values: dict[str, Any], strict: bool = True):
        """Builds from `{"sample-frequency": "8000", ...}` or parsed CLI options."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            name = key.lstrip("-").replace("-", "_")
            if name not in fields:
                if strict:
                    raise XvjaxError(
                        f"unknown option --{name.replace('_', '-')} for {cls.__name__}"
                    )
                continue
            kwargs[name] = _coerce(fields[name], value)
        return cls(**kwargs)

    @classmethod
    def from_config_file(cls, path: str, strict: bool = True):
        """Reads a Kaldi config file (`--opt=value` per line)."""
        values = {}
        for line in read_config_file(path):
            name, _, text = line[2:].partition("=")
            values[name] = text
        return cls.from_kaldi(values, strict=strict)


@dataclasses.dataclass(frozen=True)
class MelOptions(FrameOptions):
    """`MelBanksOptions`; `high_freq <= 0` is an offset from Nyquist, `vtln_high < 0` too."""

    num_mel_bins: int = 23
    low_freq: float = 20.0
    high_freq: float = 0.0
    vtln_low: float = 100.0
    vtln_high: float = -500.0
    vtln_warp: float = 1.0
    use_energy: bool = True
    energy_floor: float = 0.0
    raw_energy: bool = True
    htk_compat: bool = False


@dataclasses.dataclass(frozen=True)
class MfccOptions(MelOptions):
    """Options of `compute-mfcc-feats` (Kaldi defaults: 13 ceps, 23 bins, energy, lifter 22)."""

    num_ceps: int = 13
    cepstral_lifter: float = 22.0

    def check(self) -> None:
        super().check()
        if self.num_ceps > self.num_mel_bins or self.num_ceps < 1:
            raise XvjaxError(
                f"--num-ceps={self.num_ceps} must be in [1, --num-mel-bins={self.num_mel_bins}]"
            )

    @property
    def dim(self) -> int:
        return self.num_ceps


@dataclasses.dataclass(frozen=True)
class FbankOptions(MelOptions):
    """Options of `compute-fbank-feats` (defaults: 23 bins, no energy, log power)."""

    use_energy: bool = False
    use_log_fbank: bool = True
    use_power: bool = True

    @property
    def dim(self) -> int:
        return self.num_mel_bins + int(self.use_energy)


@dataclasses.dataclass(frozen=True)
class VadOptions:
    """Options of `compute-vad` (`VadEnergyOptions`)."""

    vad_energy_threshold: float = 5.0
    vad_energy_mean_scale: float = 0.5
    vad_frames_context: int = 0
    vad_proportion_threshold: float = 0.6

    def check(self) -> None:
        if self.vad_frames_context < 0:
            raise XvjaxError("--vad-frames-context must be >= 0")
        if not 0.0 < self.vad_proportion_threshold < 1.0:
            raise XvjaxError("--vad-proportion-threshold must be in (0, 1)")
        if self.vad_energy_mean_scale < 0:
            raise XvjaxError("--vad-energy-mean-scale must be >= 0")

    from_kaldi = classmethod(FrameOptions.from_kaldi.__func__)
    from_config_file = classmethod(FrameOptions.from_config_file.__func__)


@dataclasses.dataclass(frozen=True)
class CmnOptions:
    """Options of `apply-cmvn-sliding` (`SlidingWindowCmnOptions`)."""

    cmn_window: int = 600
    min_cmn_window: int = 100
    center: bool = False
    norm_vars: bool = False

    def check(self) -> None:
        if self.cmn_window <= 0:
            raise XvjaxError("--cmn-window must be > 0")
        if self.center and not 0 < self.min_cmn_window <= self.cmn_window:
            raise XvjaxError("--min-cmn-window must be in (0, --cmn-window]")

    from_kaldi = classmethod(FrameOptions.from_kaldi.__func__)
    from_config_file = classmethod(FrameOptions.from_config_file.__func__)


@dataclasses.dataclass(frozen=True)
class AugmentDataDirOptions:
    """Options of one augmented copy of a data dir (`xvjax.features.datadir_jobs.augment_data_dir`).

    One kind per call, as Kaldi's x-vector recipes make them: reverberation (`rir_lists`: RIRS_NOISES
    rir_list files, folders or data dirs of RIRs), foreground noises (`fg_noise_dir`, back to back
    `fg_interval` seconds apart, each at one of `fg_snrs` dB) or background noises (`bg_noise_dir`,
    one of `num_bg_noises` tracks at once, each at one of `bg_snrs` dB). Augmented ids are
    `<utt>-<utt_suffix>` (or `<utt_prefix>-<utt>`); the same `random_seed` gives the same output.
    `max_source_seconds` keeps the first seconds of each noise file (0: all of it).
    """

    rir_lists: tuple[str, ...] = ()
    fg_noise_dir: str = ""
    bg_noise_dir: str = ""
    fg_snrs: tuple[float, ...] = (20.0, 10.0, 0.0)
    bg_snrs: tuple[float, ...] = (20.0, 10.0, 0.0)
    num_bg_noises: tuple[int, ...] = (1,)
    fg_interval: float = 0.0
    utt_suffix: str = ""
    utt_prefix: str = ""
    modify_spk_id: bool = False
    random_seed: int = 123
    max_source_seconds: float = 60.0

    def check(self) -> None:
        if sum(bool(k) for k in (self.rir_lists, self.fg_noise_dir, self.bg_noise_dir)) != 1:
            raise XvjaxError("give exactly one of --rir-lists, --fg-noise-dir, --bg-noise-dir")
        if not self.utt_suffix and not self.utt_prefix:
            raise XvjaxError(
                "give --utt-suffix or --utt-prefix so augmented ids differ from the input"
            )
        for name in ("fg_snrs", "bg_snrs", "num_bg_noises"):
            if not getattr(self, name):
                raise XvjaxError(f"--{name.replace('_', '-')}: empty list")

    def new_id(self, key: str) -> str:
        """The augmented copy's id of an utterance (or speaker) id."""
        return f"{self.utt_prefix}-{key}" if self.utt_prefix else f"{key}-{self.utt_suffix}"


# The x-vector recipes' settings (egs/voxceleb/v2/conf/*.conf, egs/sre16/v2/conf/*.conf).
VOXCELEB_MFCC = MfccOptions(
    sample_frequency=16000, frame_length=25, low_freq=20, high_freq=7600, num_mel_bins=30,
    num_ceps=30, snip_edges=False, dither=1.0,
)  # fmt: skip
SRE16_MFCC = MfccOptions(
    sample_frequency=8000, frame_length=25, low_freq=20, high_freq=3700, num_mel_bins=23,
    num_ceps=23, snip_edges=False, dither=1.0,
)  # fmt: skip
RECIPE_VAD = VadOptions(
    vad_energy_threshold=5.5, vad_energy_mean_scale=0.5, vad_proportion_threshold=0.12,
    vad_frames_context=2,
)  # fmt: skip
RECIPE_CMN = CmnOptions(cmn_window=300, center=True, norm_vars=False)


def _f32(x: float):
    return np.float32(x)


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    kind = field.type if isinstance(field.type, type) else {"float": float, "int": int,
                                                            "bool": bool, "str": str}[field.type]  # fmt: skip
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is bool:
        if isinstance(value, str):
            return parse_bool(value, field.name.replace("_", "-"))
        return bool(value)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise XvjaxError(
            f"option --{field.name.replace('_', '-')}: invalid {kind.__name__} value '{value}'"
        ) from None


# ----------------------------------------------------------------------------- front-end records
# What features were made with, kept beside them (a data dir's conf/, as Kaldi recipes keep their
# conf/) and in every model xvjax trains (`ModelSpec.frontend`), so extraction can say when the
# features given to a model are not the ones it was trained on.

FRONTEND_FILES = {"mfcc": "mfcc.conf", "vad": "vad.conf", "cmn": "cmvn.conf"}
FRONTEND_KINDS = {"mfcc": MfccOptions, "vad": VadOptions, "cmn": CmnOptions}


def kaldi_values(opts) -> dict[str, str]:
    """Every field of an options struct as Kaldi spells it on a command line: {"num-ceps": "30"}."""
    out = {}
    for f in dataclasses.fields(opts):
        v = getattr(opts, f.name)
        out[f.name.replace("_", "-")] = (
            str(v).lower() if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)
        )
    return out


def frontend_record(
    mfcc: MfccOptions, vad: VadOptions | None = None, cmn: CmnOptions | None = None
) -> dict[str, dict[str, str]]:
    """{"mfcc": {...}, "vad": {...}, "cmn": {...}} (Kaldi option names and values)."""
    parts = {"mfcc": mfcc, "vad": vad, "cmn": cmn}
    return {k: kaldi_values(v) for k, v in parts.items() if v is not None}


def write_frontend_conf(data_dir: str, record: dict[str, dict[str, str]]) -> None:
    """<data_dir>/conf/{mfcc,vad,cmvn}.conf, one `--name=value` a line (Kaldi config files)."""
    for kind, values in record.items():
        path = os.path.join(data_dir, "conf", FRONTEND_FILES[kind])
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.writelines(f"--{k}={v}\n" for k, v in values.items())


def read_frontend_conf(data_dir: str) -> dict[str, dict[str, str]] | None:
    """The front end recorded in <data_dir>/conf/ (None when there is none), normalised through
    the option structs so that omitted defaults and spellings compare equal."""
    record = {}
    for kind, name in FRONTEND_FILES.items():
        path = os.path.join(data_dir, "conf", name)
        if os.path.isfile(path):
            record[kind] = kaldi_values(FRONTEND_KINDS[kind].from_config_file(path, strict=False))
    return record or None


def frontend_differences(trained: dict, used: dict) -> list[str]:
    """Options on which two front-end records differ: ["mfcc --num-ceps: 30 vs 23", ...] (kinds
    recorded on one side only are not compared)."""
    out = []
    for kind in sorted(set(trained) & set(used)):
        a, b = trained[kind], used[kind]
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                out.append(f"{kind} --{name}: {a.get(name)} vs {b.get(name)}")
    return out
