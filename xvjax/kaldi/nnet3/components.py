"""nnet3 component types: what xvjax knows about each, in one `ComponentType` entry per type.

An entry (`COMPONENT_TYPES[type_name]`) holds everything about one Kaldi component type:

- `fields`: the ordered tokens Kaldi's `Write` emits (token, meaning name, value kind, and the
  condition under which Kaldi writes an optional token), plus `legacy` tokens its `Read` accepts;
- `input_dim` / `output_dim`: the dims as functions of the component;
- `init`: `InitFromConfig`, the values a config line (`nnet3-init`, `nnet3-copy --nnet-config`)
  gives, with Kaldi's defaults for every value the line omits (learning-rate 0.001, param-stddev
  1/sqrt(input-dim), bias-stddev 1, rank-in min(20, (in+1)/2), rank-out min(80, (out+1)/2),
  alpha 4, num-samples-history 2000, update-period 4, BatchNorm epsilon 1e-3 / target-rms 1, ...);
- `roundtrip`: what Kaldi's Read + Write do to stored statistics (kept as double sums in memory);
- `input_frames`: for components that mix time (Tdnn, statistics), which input frames an output
  frame needs (`IsComputable`), for the context computation in `context.py`;
- `info`: the component's `Info()` text after `type=` in `nnet3-info` (formats in `info.py`);
  None: Kaldi's default `Type, input-dim=I, output-dim=O`.

So a new type is one entry here (and one in `xvjax.model.ops` for the Flax model to run it).
`read_component`, `write_component` and `init_component` are the same code for every type:
reading is token driven, so optional tokens in any position are kept; writing is canonical
(exactly Kaldi's `Write`), so an unmodified model is written byte for byte as Kaldi writes it
(checked against `nnet3-copy` output in the tests). Unused config keys are an error, as in Kaldi.
Random initial values come from numpy's generator `rng` (Kaldi's RNG cannot be reproduced); a
zero stddev gives exact zeros, as Kaldi writes them.

Numeric arrays go to `Component.params` by meaning (`linear` (out, in), `bias`, `stats_mean`,
`stats_var`, `value_avg`, `deriv_avg`, `oderiv_rms`, `scales`, `offsets`), float32; every other
value is in `Component.attrs` (snake_case of the Kaldi token: `learning_rate`, `max_change`,
`rank_in`, `dim`, `epsilon`, `count`, `time_offsets`, ...), always present (Kaldi's defaults are
filled in for tokens a file omits) and in Kaldi's write order.

Sources: `src/nnet3/nnet-simple-component.cc`, `nnet-normalize-component.cc`,
`nnet-general-component.cc`, `nnet-tdnn-component.cc`, `nnet-component-itf.cc` (Kaldi master as
of the fixtures' f4007661, where NonlinearComponent also writes `<OderivRms>`/`<OderivCount>`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import tables
from xvjax.kaldi.nnet3 import info as I
from xvjax.kaldi.nnet3.config_line import ConfigLine
from xvjax.kaldi.primitives import KaldiInput, KaldiOutput

UNSET_THRESHOLD = -1000.0  # Kaldi's kUnsetThreshold for self-repair thresholds


@dataclasses.dataclass
class Component:
    """One nnet3 component. See the module docstring for the params/attrs names."""

    name: str
    type: str
    params: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    attrs: dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return component_type(self.type, self.name).input_dim(self)

    @property
    def output_dim(self) -> int:
        return component_type(self.type, self.name).output_dim(self)

    @property
    def updatable(self) -> bool:
        return component_type(self.type, self.name).updatable

    def num_parameters(self) -> int:
        """Kaldi's NumParameters (0 for non-updatable components)."""
        ctype = component_type(self.type, self.name)
        if not ctype.updatable:
            return 0
        return int(sum(np.asarray(self.params[k]).size for k in ctype.param_keys))

    def copy(self) -> Component:
        return Component(
            self.name,
            self.type,
            {k: np.array(v, copy=True) for k, v in self.params.items()},
            {k: _copy_value(v) for k, v in self.attrs.items()},
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, Component):
            return NotImplemented
        if (self.name, self.type) != (other.name, other.type):
            return False
        if self.params.keys() != other.params.keys() or list(self.attrs) != list(other.attrs):
            return False
        for k, v in self.params.items():
            w = other.params[k]
            if np.shape(v) != np.shape(w) or np.asarray(v).tobytes() != np.asarray(w).tobytes():
                return False
        for k, v in self.attrs.items():
            if not np.array_equal(np.asarray(v), np.asarray(other.attrs[k])):
                return False
        return True


def _copy_value(v):
    if isinstance(v, np.ndarray):
        return np.array(v, copy=True)
    if isinstance(v, list):
        return list(v)
    return v


# ---------------------------------------------------------------------------- the entries

# Value kinds: int, float (BaseFloat), double, bool, flag (token alone), fmat, fvec, ivec,
# int2 / float2 (two values after one token; key is a pair of names).
ARRAY_KINDS = ("fmat", "fvec")


@dataclasses.dataclass(frozen=True)
class Field:
    token: str
    key: str | tuple[str, str]
    kind: str
    write_if: Callable[[dict], bool] | None = None  # None: always written
    default: object = None  # None: required (unless write_if makes it optional)


# (input frames that output frame t needs, whether it needs all of them (else any one)).
InputFrames = tuple[Sequence[int], bool]


@dataclasses.dataclass
class ComponentType:
    """Everything about one nnet3 component type (see the module docstring)."""

    type: str
    fields: list[Field]
    input_dim: Callable[[Component], int]
    output_dim: Callable[[Component], int]
    # InitFromConfig: config line -> values by meaning name (before Kaldi's write order is applied).
    init: Callable[[ConfigLine, np.random.Generator], dict]
    updatable: bool = False
    legacy: dict[str, tuple[str | None, str]] = dataclasses.field(default_factory=dict)
    param_keys: tuple[str, ...] = ()
    opening_terminates: bool = False  # Read accepts <Type> instead of </Type> at the end
    # What Kaldi's Read + Write do to stored statistics (kept as double sums in memory).
    roundtrip: Callable[[Component], Component] | None = None
    # IsComputable of time-mixing components: attrs, output frame t -> the input frames it needs.
    # None: output frame t needs input frame t.
    input_frames: Callable[[dict, int], InputFrames] | None = None
    # Info(): the text after `type=` in nnet3-info (None: type, input-dim, output-dim).
    info: Callable[[Component], str] | None = None

    def __post_init__(self):
        self.by_token = {f.token: f for f in self.fields}


COMPONENT_TYPES: dict[str, ComponentType] = {}


def _register(ctype: ComponentType) -> None:
    COMPONENT_TYPES[ctype.type] = ctype


def _ne(key, value):
    return lambda a: a[key] != value


def _rows(key):
    return lambda c: int(np.shape(c.params[key])[0])


def _cols(key):
    return lambda c: int(np.shape(c.params[key])[1])


def _attr(key):
    return lambda c: int(c.attrs[key])


def _randn(rng: np.random.Generator, shape, stddev: float, mean: float = 0.0) -> np.ndarray:
    """SetRandn() * stddev (+ mean) in float32; exactly 0 when stddev is 0 (as Kaldi writes it)."""
    if stddev == 0.0:
        return np.full(shape, np.float32(mean) + np.float32(0.0), dtype=np.float32)
    x = rng.standard_normal(shape, dtype=np.float32) * np.float32(stddev)
    return (x + np.float32(mean)).astype(np.float32)


# ---- UpdatableComponent: the options every trainable type reads and writes first

_UPDATABLE_FIELDS = [
    Field(
        "<LearningRateFactor>",
        "learning_rate_factor",
        "float",
        _ne("learning_rate_factor", 1.0),
        1.0,
    ),
    Field("<IsGradient>", "is_gradient", "bool", lambda a: bool(a["is_gradient"]), False),
    Field("<MaxChange>", "max_change", "float", lambda a: a["max_change"] > 0.0, 0.0),
    Field("<L2Regularize>", "l2_regularize", "float", lambda a: a["l2_regularize"] > 0.0, 0.0),
    Field("<LearningRate>", "learning_rate", "float", None, 0.001),
]
_ORTHO = Field(
    "<OrthonormalConstraint>", "orthonormal_constraint", "float",
    _ne("orthonormal_constraint", 0.0), 0.0,
)  # fmt: skip


def _updatable_info(c: Component) -> str:
    """UpdatableComponent::Info: type, dims, learning rate and the non-default options."""
    a = c.attrs
    text = (
        f"{c.type}, input-dim={c.input_dim}, output-dim={c.output_dim}, "
        f"learning-rate={I.cpp_float(a['learning_rate'])}"
    )
    if a["is_gradient"]:
        text += ", is-gradient=true"
    if a["l2_regularize"] != 0.0:
        text += f", l2-regularize={I.cpp_float(a['l2_regularize'])}"
    if a["learning_rate_factor"] != 1.0:
        text += f", learning-rate-factor={I.cpp_float(a['learning_rate_factor'])}"
    if a["max_change"] > 0.0:
        text += f", max-change={I.cpp_float(a['max_change'])}"
    return text


def _orthonormal_info(c: Component) -> str:
    value = c.attrs.get("orthonormal_constraint", 0.0)
    return f", orthonormal-constraint={I.cpp_float(value)}" if value != 0.0 else ""


def _natural_gradient_info(c: Component) -> str:
    a = c.attrs
    return (
        f", rank-in={a['rank_in']}, rank-out={a['rank_out']}, "
        f"num-samples-history={I.cpp_float(a['num_samples_history'])}, "
        f"update-period={a['update_period']}, alpha={I.cpp_float(a['alpha'])}"
    )


def _affine_info(c: Component) -> str:
    """AffineComponent::Info (NaturalGradientAffineComponent adds its preconditioner)."""
    text = _updatable_info(c) + _orthonormal_info(c)
    text += I.matrix_stats("linear-params", c.params["linear"], row_norms=True, col_norms=True)
    text += I.vector_stats("bias", c.params["bias"], include_mean=True)
    if c.type == "NaturalGradientAffineComponent":
        text += _natural_gradient_info(c)
    return text


def _linear_info(c: Component) -> str:
    text = _updatable_info(c)
    text += I.matrix_stats("params", c.params["linear"], row_norms=True, col_norms=True)
    text += _orthonormal_info(c)
    text += f", use-natural-gradient={I.cpp_bool(c.attrs['use_natural_gradient'])}"
    return text + _natural_gradient_info(c)


def _fixed_affine_info(c: Component) -> str:
    text = f"{c.type}, input-dim={c.input_dim}, output-dim={c.output_dim}"
    text += I.matrix_stats("linear-params", c.params["linear"])
    return text + I.vector_stats("bias", c.params["bias"], include_mean=True)


def _updatable_config(cfg: ConfigLine) -> dict:
    vals = {
        "learning_rate": cfg.float("learning-rate", 0.001),
        "learning_rate_factor": cfg.float("learning-rate-factor", 1.0),
        "max_change": cfg.float("max-change", 0.0),
        "l2_regularize": cfg.float("l2-regularize", 0.0),
        "is_gradient": False,
    }
    if (
        min(
            vals["learning_rate"],
            vals["learning_rate_factor"],
            vals["max_change"],
            vals["l2_regularize"],
        )
        < 0
    ):
        raise XvjaxError(f"{cfg.where}: bad initializer '{cfg.whole_line}'")
    return vals


# ---- affine types: NaturalGradientAffine, Affine, Linear, FixedAffine


def _affine_from_matrix(cfg: ConfigLine) -> tuple[np.ndarray, np.ndarray] | None:
    """`matrix=FILE`: linear params and bias (the last column) from a Kaldi matrix file."""
    path = cfg.str("matrix")
    if path is None:
        return None
    mat = tables.read_matrix(path, np.float32)
    if mat.shape[1] < 2:
        raise XvjaxError(f"{cfg.where}: matrix {path} needs at least 2 columns")
    linear, bias = mat[:, :-1].copy(), mat[:, -1].copy()
    in_dim, out_dim = cfg.int("input-dim"), cfg.int("output-dim")
    if (in_dim is not None and in_dim != linear.shape[1]) or (
        out_dim is not None and out_dim != linear.shape[0]
    ):
        raise XvjaxError(f"{cfg.where}: input-dim/output-dim do not match matrix {path}")
    return linear, bias


def _init_affine(type_name: str, cfg: ConfigLine, rng: np.random.Generator) -> dict:
    """InitFromConfig of NaturalGradientAffine/Affine/LinearComponent: parameters from `matrix=`
    (LinearComponent: no bias column) or random; then the natural-gradient options (not Affine)."""
    t = type_name
    v = _updatable_config(cfg)
    loaded = None if t == "LinearComponent" else _affine_from_matrix(cfg)
    if t == "LinearComponent" and cfg.has("matrix"):
        v["linear"] = tables.read_matrix(cfg.str("matrix"), np.float32)
    elif loaded is not None:
        v["linear"], v["bias"] = loaded
    else:
        in_dim = cfg.require(cfg.int("input-dim"), "input-dim")
        out_dim = cfg.require(cfg.int("output-dim"), "output-dim")
        if in_dim <= 0 or out_dim <= 0:
            raise XvjaxError(f"{cfg.where}: bad dimensions in '{cfg.whole_line}'")
        param_stddev = cfg.float("param-stddev", float(np.float32(1.0 / math.sqrt(in_dim))))
        if param_stddev < 0:
            raise XvjaxError(f"{cfg.where}: param-stddev must be >= 0")
        v["linear"] = _randn(rng, (out_dim, in_dim), param_stddev)
        if t != "LinearComponent":
            bias_stddev = cfg.float("bias-stddev", 1.0)
            bias_mean = (
                cfg.float("bias-mean", 0.0) if t == "NaturalGradientAffineComponent" else 0.0
            )
            v["bias"] = _randn(rng, (out_dim,), bias_stddev, bias_mean)
    v["orthonormal_constraint"] = cfg.float("orthonormal-constraint", 0.0)
    if t != "AffineComponent":
        out_dim, in_dim = v["linear"].shape
        rank_in, rank_out = cfg.int("rank-in", -1), cfg.int("rank-out", -1)
        v["rank_in"] = rank_in if rank_in >= 0 else min(20, (in_dim + 1) // 2)
        v["rank_out"] = rank_out if rank_out >= 0 else min(80, (out_dim + 1) // 2)
        v["update_period"] = cfg.int("update-period", 4)
        v["num_samples_history"] = cfg.float("num-samples-history", 2000.0)
        v["alpha"] = cfg.float("alpha", 4.0)
        if t == "LinearComponent":
            v["use_natural_gradient"] = cfg.bool("use-natural-gradient", True)
    return v


_register(ComponentType(
    "NaturalGradientAffineComponent",
    _UPDATABLE_FIELDS + [
        Field("<LinearParams>", "linear", "fmat"),
        Field("<BiasParams>", "bias", "fvec"),
        Field("<RankIn>", "rank_in", "int"),
        Field("<RankOut>", "rank_out", "int"),
        _ORTHO,
        Field("<UpdatePeriod>", "update_period", "int"),
        Field("<NumSamplesHistory>", "num_samples_history", "float"),
        Field("<Alpha>", "alpha", "float"),
    ],
    _cols("linear"), _rows("linear"),
    init=functools.partial(_init_affine, "NaturalGradientAffineComponent"),
    updatable=True, param_keys=("linear", "bias"), info=_affine_info,
    legacy={
        "<MaxChangePerSample>": (None, "float"),
        "<UpdateCount>": (None, "double"),
        "<ActiveScalingCount>": (None, "double"),
        "<MaxChangeScaleStats>": (None, "double"),
    },
    opening_terminates=True,
))  # fmt: skip
_register(ComponentType(
    "AffineComponent",
    _UPDATABLE_FIELDS + [
        Field("<LinearParams>", "linear", "fmat"), Field("<BiasParams>", "bias", "fvec"), _ORTHO,
    ],
    _cols("linear"), _rows("linear"),
    init=functools.partial(_init_affine, "AffineComponent"),
    updatable=True, param_keys=("linear", "bias"), info=_affine_info,
))  # fmt: skip
_register(ComponentType(
    "LinearComponent",
    _UPDATABLE_FIELDS + [
        Field("<Params>", "linear", "fmat"),
        _ORTHO,
        Field("<UseNaturalGradient>", "use_natural_gradient", "bool"),
        Field("<RankInOut>", ("rank_in", "rank_out"), "int2"),
        Field("<Alpha>", "alpha", "float"),
        Field("<NumSamplesHistory>", "num_samples_history", "float"),
        Field("<UpdatePeriod>", "update_period", "int"),
    ],
    _cols("linear"), _rows("linear"),
    init=functools.partial(_init_affine, "LinearComponent"),
    updatable=True, param_keys=("linear",), info=_linear_info,
))  # fmt: skip


def _init_fixed_affine(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    loaded = _affine_from_matrix(cfg)
    if loaded is None:
        in_dim = cfg.require(cfg.int("input-dim"), "input-dim")
        out_dim = cfg.require(cfg.int("output-dim"), "output-dim")
        mat = _randn(rng, (out_dim, in_dim + 1), 1.0)
        loaded = mat[:, :-1].copy(), mat[:, -1].copy()
    return {"linear": loaded[0], "bias": loaded[1]}


_register(ComponentType(
    "FixedAffineComponent",
    [Field("<LinearParams>", "linear", "fmat"), Field("<BiasParams>", "bias", "fvec")],
    _cols("linear"), _rows("linear"), init=_init_fixed_affine, info=_fixed_affine_info,
))  # fmt: skip


# ---- TdnnComponent: the spliced affine with its time offsets inside the component


def _init_tdnn(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    v = _updatable_config(cfg)
    offsets = cfg.require(cfg.ints("time-offsets"), "time-offsets")
    in_dim = cfg.require(cfg.int("input-dim"), "input-dim")
    out_dim = cfg.require(cfg.int("output-dim"), "output-dim")
    if len(set(offsets)) != len(offsets):
        raise XvjaxError(f"{cfg.where}: repeated time-offsets in '{cfg.whole_line}'")
    spliced = in_dim * len(offsets)
    param_stddev = cfg.float("param-stddev", -1.0)
    if param_stddev < 0:
        param_stddev = float(np.float32(1.0 / math.sqrt(spliced)))
    bias_stddev, bias_mean = cfg.float("bias-stddev", 1.0), cfg.float("bias-mean", 0.0)
    use_bias = cfg.bool("use-bias", True)
    v["time_offsets"] = offsets
    v["orthonormal_constraint"] = cfg.float("orthonormal-constraint", 0.0)
    v["linear"] = _randn(rng, (out_dim, spliced), param_stddev)
    v["bias"] = (
        _randn(rng, (out_dim,), bias_stddev, bias_mean) if use_bias else np.zeros(0, np.float32)
    )
    rank_in, rank_out = cfg.int("rank-in", -1), cfg.int("rank-out", -1)
    v.update(
        use_natural_gradient=cfg.bool("use-natural-gradient", True),
        rank_in=rank_in if rank_in >= 0 else min(20, (spliced + 1) // 2),
        rank_out=rank_out if rank_out >= 0 else min(80, (out_dim + 1) // 2),
        alpha_in=cfg.float("alpha-in", 4.0), alpha_out=cfg.float("alpha-out", 4.0),
        num_samples_history=cfg.float("num-samples-history", 2000.0),
    )  # fmt: skip
    return v


def _tdnn_info(c: Component) -> str:
    a = c.attrs
    text = _updatable_info(c) + _orthonormal_info(c)
    text += ", time-offsets=" + ",".join(str(int(o)) for o in a["time_offsets"])
    text += I.matrix_stats("linear-params", c.params["linear"], row_norms=True, col_norms=True)
    if np.size(c.params["bias"]) == 0:
        text += ", has-bias=false"
    else:
        text += I.vector_stats("bias", c.params["bias"], include_mean=True)
    if not a["use_natural_gradient"]:
        return text + ", use-natural-gradient=false"
    return text + (
        f", rank-in={a['rank_in']}, rank-out={a['rank_out']}, "
        f"num-samples-history={I.cpp_float(a['num_samples_history'])}, update-period=4, "
        f"alpha-in={I.cpp_float(a['alpha_in'])}, alpha-out={I.cpp_float(a['alpha_out'])}"
    )


def _tdnn_input_frames(a: dict, t: int) -> InputFrames:
    return [t + o for o in a["time_offsets"]], True


_register(ComponentType(
    "TdnnComponent",
    _UPDATABLE_FIELDS + [
        Field("<TimeOffsets>", "time_offsets", "ivec"),
        Field("<LinearParams>", "linear", "fmat"),
        Field("<BiasParams>", "bias", "fvec"),
        Field("<OrthonormalConstraint>", "orthonormal_constraint", "float"),
        Field("<JointL2RegularizeProportion>", "joint_l2_regularize_proportion", "float",
              _ne("joint_l2_regularize_proportion", 0.0), 0.0),
        Field("<UseNaturalGradient>", "use_natural_gradient", "bool"),
        Field("<NumSamplesHistory>", "num_samples_history", "float"),
        Field("<AlphaInOut>", ("alpha_in", "alpha_out"), "float2"),
        Field("<RankInOut>", ("rank_in", "rank_out"), "int2"),
    ],
    lambda c: int(np.shape(c.params["linear"])[1]) // max(1, len(c.attrs["time_offsets"])),
    _rows("linear"), init=_init_tdnn,
    updatable=True, param_keys=("linear", "bias"),
    legacy={"<Alpha>": ("alpha_in+out", "float")},
    input_frames=_tdnn_input_frames, info=_tdnn_info,
))  # fmt: skip


# ---- nonlinearities (NonlinearComponent): ReLU, (log-)softmax, sigmoid, tanh

_NONLINEAR_FIELDS = [
    Field("<Dim>", "dim", "int"),
    Field("<BlockDim>", "block_dim", "int", lambda a: a["block_dim"] != a["dim"], None),
    Field("<ValueAvg>", "value_avg", "fvec"),
    Field("<DerivAvg>", "deriv_avg", "fvec"),
    Field("<Count>", "count", "double"),
    Field("<OderivRms>", "oderiv_rms", "fvec", None, np.zeros(0, np.float32)),
    Field("<OderivCount>", "oderiv_count", "double", None, 0.0),
    Field("<NumDimsSelfRepaired>", "num_dims_self_repaired", "double", None, 0.0),
    Field("<NumDimsProcessed>", "num_dims_processed", "double", None, 0.0),
    Field("<SelfRepairLowerThreshold>", "self_repair_lower_threshold", "float",
          _ne("self_repair_lower_threshold", UNSET_THRESHOLD), UNSET_THRESHOLD),
    Field("<SelfRepairUpperThreshold>", "self_repair_upper_threshold", "float",
          _ne("self_repair_upper_threshold", UNSET_THRESHOLD), UNSET_THRESHOLD),
    Field("<SelfRepairScale>", "self_repair_scale", "float", _ne("self_repair_scale", 0.0), 0.0),
]  # fmt: skip
_F32, _F64 = np.float32, np.float64


def _avg_roundtrip(avg: np.ndarray, count: float) -> np.ndarray:
    """Read: sum = avg * count (double); Write: float(sum) * float(1 / count) in float."""
    total = np.asarray(avg, _F64) * _F64(count)
    if count != 0.0:
        return (total.astype(_F32) * _F32(1.0 / count)).astype(_F32)
    return total.astype(_F32)


def _nonlinear_roundtrip(c: Component) -> Component:
    out = c.copy()
    count, ocount = float(c.attrs["count"]), float(c.attrs["oderiv_count"])
    out.params["value_avg"] = _avg_roundtrip(c.params["value_avg"], count)
    out.params["deriv_avg"] = _avg_roundtrip(c.params["deriv_avg"], count)
    sumsq = np.square(np.asarray(c.params["oderiv_rms"], _F64)) * _F64(ocount)
    msq = (sumsq.astype(_F32) * _F32(1.0 / ocount)) if ocount != 0.0 else sumsq.astype(_F32)
    out.params["oderiv_rms"] = np.sqrt(np.maximum(msq.astype(_F32), _F32(0))).astype(_F32)
    return out


def _nonlinear_info(c: Component) -> str:
    """NonlinearComponent::Info: options, then the stored averages when there are any."""
    a, p = c.attrs, c.params
    dim = int(a["dim"])
    text = f"{c.type}, dim={dim}"
    if a["block_dim"] != dim:
        text += f", block-dim={a['block_dim']}"
    for key in ("self_repair_lower_threshold", "self_repair_upper_threshold"):
        if _F32(a[key]) != _F32(UNSET_THRESHOLD):
            text += f", {key.replace('_', '-')}={I.cpp_float(a[key])}"
    if a["self_repair_scale"] != 0.0:
        text += f", self-repair-scale={I.cpp_float(a['self_repair_scale'])}"
    count, ocount = float(a["count"]), float(a["oderiv_count"])
    if count > 0 and np.size(p["value_avg"]) == dim:
        processed = float(a["num_dims_processed"])
        proportion = float(a["num_dims_self_repaired"]) / processed if processed > 0 else 0
        text += f", count={I.cpp_float(count, 3)}"
        text += f", self-repaired-proportion={I.cpp_float(proportion)}"
        # Kaldi holds double sums: value-avg is float(sum) * float(1/count), deriv-avg in double.
        text += f", value-avg={I.summarize_vector(_avg_roundtrip(p['value_avg'], count))}"
        if np.size(p["deriv_avg"]) == dim:
            deriv = np.asarray(p["deriv_avg"], _F64) * _F64(count) * (1.0 / count)
            text += f", deriv-avg={I.summarize_vector(deriv.astype(_F32))}"
    if ocount > 0 and np.size(p["oderiv_rms"]) == dim:
        msq = np.square(np.asarray(p["oderiv_rms"], _F64)) * _F64(ocount) * (1.0 / ocount)
        rms = np.sqrt(np.maximum(msq, 0.0)).astype(_F32)
        text += f", oderiv-rms={I.summarize_vector(rms)}, oderiv-count={I.cpp_float(ocount)}"
    return text


def _init_nonlinear(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    dim = cfg.require(cfg.int("dim"), "dim")
    v = dict(
        dim=dim,
        block_dim=cfg.int("block-dim", dim),
        value_avg=np.zeros(0, np.float32),
        deriv_avg=np.zeros(0, np.float32),
        count=0.0,
        self_repair_lower_threshold=cfg.float("self-repair-lower-threshold", UNSET_THRESHOLD),
        self_repair_upper_threshold=cfg.float("self-repair-upper-threshold", UNSET_THRESHOLD),
        self_repair_scale=cfg.float("self-repair-scale", 0.0),
    )
    if dim <= 0 or v["block_dim"] <= 0 or dim % v["block_dim"]:
        raise XvjaxError(f"{cfg.where}: invalid dim/block-dim in '{cfg.whole_line}'")
    return v


for _type in (
    "RectifiedLinearComponent", "LogSoftmaxComponent", "SoftmaxComponent", "SigmoidComponent",
    "TanhComponent",
):  # fmt: skip
    _register(ComponentType(
        _type, list(_NONLINEAR_FIELDS), _attr("dim"), _attr("dim"), init=_init_nonlinear,
        roundtrip=_nonlinear_roundtrip, info=_nonlinear_info,
    ))  # fmt: skip


# ---- BatchNormComponent


def _batchnorm_roundtrip(c: Component) -> Component:
    out = c.copy()
    count = float(c.attrs["count"])
    mean = np.asarray(c.params["stats_mean"], _F64)
    var = np.asarray(c.params["stats_var"], _F64)
    total, total_sq = mean * count, (var + mean * mean) * count
    m, v = total.astype(_F32), total_sq.astype(_F32)
    if count != 0.0:
        scale = _F32(1.0 / count)
        m = (m * scale).astype(_F32)
        v = ((v * scale).astype(_F32) - m * m).astype(_F32)
    out.params["stats_mean"], out.params["stats_var"] = m, v
    return out


def _batchnorm_info(c: Component) -> str:
    a = c.attrs
    count = float(a["count"])
    text = (
        f"{c.type}, dim={a['dim']}, block-dim={a['block_dim']}, "
        f"epsilon={I.cpp_float(a['epsilon'])}, target-rms={I.cpp_float(a['target_rms'])}, "
        f"count={I.cpp_float(count)}, test-mode={I.cpp_bool(a['test_mode'])}"
    )
    if count > 0:
        # Kaldi's float mean and E[x^2] - mean^2 from its double sums: what its Write stores.
        stats = _batchnorm_roundtrip(c).params
        stddev = np.sqrt(np.maximum(stats["stats_var"], _F32(0))).astype(_F32)
        text += f", data-mean={I.summarize_vector(stats['stats_mean'])}"
        text += f", data-stddev={I.summarize_vector(stddev)}"
    return text


def _init_batchnorm(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    dim = cfg.require(cfg.int("dim"), "dim")
    block_dim = cfg.int("block-dim", -1)
    block_dim = dim if block_dim == -1 else block_dim
    v = dict(
        dim=dim, block_dim=block_dim, epsilon=cfg.float("epsilon", 1e-3),
        target_rms=cfg.float("target-rms", 1.0), test_mode=cfg.bool("test-mode", False),
        count=0.0,
    )  # fmt: skip
    if dim <= 0 or block_dim <= 0 or dim % block_dim or v["epsilon"] <= 0 or v["target_rms"] <= 0:
        raise XvjaxError(f"{cfg.where}: invalid BatchNormComponent config '{cfg.whole_line}'")
    v["stats_mean"] = np.zeros(block_dim, np.float32)
    v["stats_var"] = np.zeros(block_dim, np.float32)
    return v


_register(ComponentType(
    "BatchNormComponent",
    [
        Field("<Dim>", "dim", "int"),
        Field("<BlockDim>", "block_dim", "int"),
        Field("<Epsilon>", "epsilon", "float"),
        Field("<TargetRms>", "target_rms", "float"),
        Field("<TestMode>", "test_mode", "bool"),
        Field("<Count>", "count", "double"),
        Field("<StatsMean>", "stats_mean", "fvec"),
        Field("<StatsVar>", "stats_var", "fvec"),
    ],
    _attr("dim"), _attr("dim"), init=_init_batchnorm, roundtrip=_batchnorm_roundtrip,
    info=_batchnorm_info,
))  # fmt: skip


# ---- statistics extraction and pooling (the x-vector's frame -> utterance step)


def _init_stats_extraction(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    v = dict(
        input_dim=cfg.require(cfg.int("input-dim"), "input-dim"),
        input_period=cfg.int("input-period", 1),
        output_period=cfg.int("output-period", 1),
        include_variance=cfg.bool("include-variance", True),
    )
    if v["input_dim"] <= 0 or v["input_period"] <= 0 or v["output_period"] % v["input_period"]:
        raise XvjaxError(f"{cfg.where}: invalid StatisticsExtractionComponent '{cfg.whole_line}'")
    return v


def _stats_extraction_input_frames(a: dict, t: int) -> InputFrames:
    """Any input frame of the output period's block that starts at or before t."""
    op, ip = int(a["output_period"]), int(a["input_period"])
    t0 = op * (t // op)
    return range(t0, t0 + op, ip), False


_register(ComponentType(
    "StatisticsExtractionComponent",
    [
        Field("<InputDim>", "input_dim", "int"),
        Field("<InputPeriod>", "input_period", "int"),
        Field("<OutputPeriod>", "output_period", "int"),
        Field("<IncludeVarinance>", "include_variance", "bool"),  # sic: Kaldi's on-disk token
    ],
    _attr("input_dim"),
    lambda c: 1 + int(c.attrs["input_dim"]) * (2 if c.attrs["include_variance"] else 1),
    init=_init_stats_extraction, input_frames=_stats_extraction_input_frames,
))  # fmt: skip


def _init_stats_pooling(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    v = dict(
        input_dim=cfg.require(cfg.int("input-dim"), "input-dim"),
        input_period=cfg.int("input-period", 1),
        left_context=cfg.int("left-context", -1),
        right_context=cfg.int("right-context", -1),
        num_log_count_features=cfg.int("num-log-count-features", 0),
        output_stddevs=cfg.bool("output-stddevs", False),
        variance_floor=cfg.float("variance-floor", float(np.float32(1e-10))),
    )
    lc, rc, ip = v["left_context"], v["right_context"], v["input_period"]
    if v["input_dim"] <= 0 or lc < 0 or rc < 0 or lc + rc <= 0 or lc % ip or rc % ip:
        raise XvjaxError(f"{cfg.where}: invalid StatisticsPoolingComponent '{cfg.whole_line}'")
    return v


def _stats_pooling_input_frames(a: dict, t: int) -> InputFrames:
    """Any frame of the pooling window [t - left_context, t + right_context]."""
    ip = int(a["input_period"])
    return range(t - int(a["left_context"]), t + int(a["right_context"]) + 1, ip), False


_register(ComponentType(
    "StatisticsPoolingComponent",
    [
        Field("<InputDim>", "input_dim", "int"),
        Field("<InputPeriod>", "input_period", "int"),
        Field("<LeftContext>", "left_context", "int"),
        Field("<RightContext>", "right_context", "int"),
        Field("<NumLogCountFeatures>", "num_log_count_features", "int"),
        Field("<OutputStddevs>", "output_stddevs", "bool"),
        Field("<VarianceFloor>", "variance_floor", "float"),
    ],
    _attr("input_dim"),
    lambda c: int(c.attrs["input_dim"]) - 1 + int(c.attrs["num_log_count_features"]),
    init=_init_stats_pooling, input_frames=_stats_pooling_input_frames,
))  # fmt: skip


# ---- pass-through types: NoOp, Dropout, GeneralDropout


def _init_noop(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    return dict(
        dim=cfg.require(cfg.int("dim"), "dim"), backprop_scale=cfg.float("backprop-scale", 1.0)
    )


def _noop_info(c: Component) -> str:
    scale = c.attrs["backprop_scale"]
    return f"{c.type}, dim={c.attrs['dim']}" + (
        f", backprop-scale={I.cpp_float(scale)}" if scale != 1.0 else ""
    )


def _dropout_info(c: Component) -> str:
    a = c.attrs
    return (
        f"{c.type}, dim={a['dim']}, dropout-proportion={I.cpp_float(a['dropout_proportion'])}, "
        f"dropout-per-frame={I.cpp_bool(a['dropout_per_frame'])}"
    )


def _general_dropout_info(c: Component) -> str:
    a = c.attrs
    text = (
        f"{c.type}, dim={a['dim']}, block-dim={a['block_dim']}, "
        f"dropout-proportion={I.cpp_float(a['dropout_proportion'])}"
    )
    if a["continuous"]:
        text += ", continuous=true"
    if a["time_period"] > 0:
        text += f", time-period={a['time_period']}"
    return text


_register(ComponentType(
    "NoOpComponent",
    [Field("<Dim>", "dim", "int"), Field("<BackpropScale>", "backprop_scale", "float", None, 1.0)],
    _attr("dim"), _attr("dim"), init=_init_noop, info=_noop_info,
    legacy={
        "<ValueAvg>": (None, "fvec"), "<DerivAvg>": (None, "fvec"), "<Count>": (None, "real"),
        "<OderivRms>": (None, "fvec"), "<OderivCount>": (None, "real"),
        "<NumDimsSelfRepaired>": (None, "real"), "<NumDimsProcessed>": (None, "real"),
    },
))  # fmt: skip


def _init_dropout(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    return dict(
        dim=cfg.require(cfg.int("dim"), "dim"),
        dropout_proportion=cfg.require(cfg.float("dropout-proportion"), "dropout-proportion"),
        dropout_per_frame=cfg.bool("dropout-per-frame", False),
        test_mode=cfg.bool("test-mode", False),
    )


_register(ComponentType(
    "DropoutComponent",
    [
        Field("<Dim>", "dim", "int"),
        Field("<DropoutProportion>", "dropout_proportion", "float"),
        Field("<DropoutPerFrame>", "dropout_per_frame", "bool", None, False),
        Field("<TestMode>", "test_mode", "bool", None, False),
    ],
    _attr("dim"), _attr("dim"), init=_init_dropout, info=_dropout_info,
))  # fmt: skip


def _init_general_dropout(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    dim = cfg.require(cfg.int("dim"), "dim")
    return dict(
        dim=dim, block_dim=cfg.int("block-dim", dim), time_period=cfg.int("time-period", 0),
        dropout_proportion=cfg.float("dropout-proportion", 0.5),
        continuous=cfg.bool("continuous", False), test_mode=cfg.bool("test-mode", False),
    )  # fmt: skip


_register(ComponentType(
    "GeneralDropoutComponent",
    [
        Field("<Dim>", "dim", "int"),
        Field("<BlockDim>", "block_dim", "int"),
        Field("<TimePeriod>", "time_period", "int"),
        Field("<DropoutProportion>", "dropout_proportion", "float"),
        Field("<TestMode>", "test_mode", "flag", lambda a: bool(a["test_mode"]), False),
        Field("<Continuous>", "continuous", "flag", lambda a: bool(a["continuous"]), False),
    ],
    _attr("dim"), _attr("dim"), init=_init_general_dropout, info=_general_dropout_info,
))  # fmt: skip


# ---- ScaleAndOffsetComponent, SumGroupComponent


def _init_scale_and_offset(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    v = _updatable_config(cfg)
    dim = cfg.require(cfg.int("dim"), "dim")
    block_dim = cfg.int("block-dim", dim)
    if dim <= 0 or block_dim <= 0 or dim % block_dim:
        raise XvjaxError(f"{cfg.where}: invalid dim/block-dim in '{cfg.whole_line}'")
    v.update(
        dim=dim, use_natural_gradient=cfg.bool("use-natural-gradient", True),
        rank=cfg.int("rank", 20), scales=np.ones(block_dim, np.float32),
        offsets=np.zeros(block_dim, np.float32),
    )  # fmt: skip
    return v


def _scale_and_offset_info(c: Component) -> str:
    text = _updatable_info(c) + f", rank={c.attrs['rank']}"
    if c.attrs["dim"] != np.size(c.params["scales"]):
        text += f", block-size={np.size(c.params['scales'])}"
    text += I.vector_stats("scales", c.params["scales"], include_mean=True)
    return text + I.vector_stats("offsets", c.params["offsets"], include_mean=True)


_register(ComponentType(
    "ScaleAndOffsetComponent",
    _UPDATABLE_FIELDS + [
        Field("<Dim>", "dim", "int"),
        Field("<Scales>", "scales", "fvec"),
        Field("<Offsets>", "offsets", "fvec"),
        Field("<UseNaturalGradient>", "use_natural_gradient", "bool"),
        Field("<Rank>", "rank", "int"),
    ],
    _attr("dim"), _attr("dim"), init=_init_scale_and_offset,
    updatable=True, param_keys=("scales", "offsets"), info=_scale_and_offset_info,
))  # fmt: skip


def _init_sum_group(cfg: ConfigLine, rng: np.random.Generator) -> dict:
    sizes = cfg.ints("sizes")
    if sizes is None:
        in_dim = cfg.require(cfg.int("input-dim"), "input-dim")
        out_dim = cfg.require(cfg.int("output-dim"), "output-dim")
        if out_dim <= 0 or in_dim % out_dim:
            raise XvjaxError(f"{cfg.where}: input-dim must be a multiple of output-dim")
        sizes = [in_dim // out_dim] * out_dim
    return {"sizes": sizes}


_register(ComponentType(
    "SumGroupComponent",
    [Field("<Sizes>", "sizes", "ivec")],
    lambda c: int(np.sum(c.attrs["sizes"])), lambda c: len(c.attrs["sizes"]),
    init=_init_sum_group, opening_terminates=True,
))  # fmt: skip


def component_info(comp: Component) -> str:
    """The component's `Info()` as nnet3-info prints it after `type=`."""
    ctype = component_type(comp.type, comp.name)
    if ctype.info is not None:
        return ctype.info(comp)
    return f"{comp.type}, input-dim={comp.input_dim}, output-dim={comp.output_dim}"


def supported_types() -> list[str]:
    return sorted(COMPONENT_TYPES)


def component_type(type_name: str, comp_name: str = "") -> ComponentType:
    """The entry of a type name (`TdnnComponent`); XvjaxError naming the supported ones if none."""
    ctype = COMPONENT_TYPES.get(type_name)
    if ctype is None:
        who = f" (component '{comp_name}')" if comp_name else ""
        raise XvjaxError(
            f"unsupported nnet3 component type {type_name}{who}; supported: "
            + ", ".join(supported_types())
        )
    return ctype


# ---------------------------------------------------------------------------- read / write / init


def _read_value(inp: KaldiInput, kind: str, what: str):
    if kind == "int":
        return inp.int32(what)
    if kind == "float":
        return inp.float32(what)
    if kind in ("double", "real"):
        return inp.real(what)
    if kind == "bool":
        return inp.boolean(what)
    if kind == "flag":
        return True
    if kind == "fmat":
        return inp.matrix(what)
    if kind == "fvec":
        return inp.vector(what)
    if kind == "ivec":
        return inp.int_vector(what)
    if kind == "int2":
        return inp.int32(what), inp.int32(what)
    if kind == "float2":
        return inp.float32(what), inp.float32(what)
    raise AssertionError(kind)


def read_component(inp: KaldiInput, type_token: str, name: str) -> Component:
    """Reads a component body after its `<Type>` token (Component::ReadNew + Read)."""
    if not (type_token.startswith("<") and type_token.endswith(">")):
        raise inp.error(
            f"expected a component type token for component '{name}', got '{type_token}'"
        )
    type_name = type_token[1:-1]
    ctype = component_type(type_name, name)
    close, opening = f"</{type_name}>", f"<{type_name}>"
    values: dict = {}
    first = True
    while True:
        tok = inp.token(f"token of {type_name} '{name}'")
        if tok == close:
            break
        if tok == opening:
            if first:
                first = False
                continue
            if ctype.opening_terminates:
                break
        first = False
        field = ctype.by_token.get(tok)
        what = f"{tok} of component '{name}'"
        if field is None:
            legacy = ctype.legacy.get(tok)
            if legacy is None:
                raise inp.error(f"unexpected token '{tok}' in {type_name} '{name}'")
            key, kind = legacy
            value = _read_value(inp, kind, what)
            if key == "alpha_in+out":
                values["alpha_in"] = values["alpha_out"] = value
            continue
        value = _read_value(inp, field.kind, what)
        if field.kind in ("int2", "float2"):
            values[field.key[0]], values[field.key[1]] = value
        else:
            values[field.key] = value
    return _assemble(ctype, name, values, f"{inp.source}: component '{name}'")


def _assemble(ctype: ComponentType, name: str, values: dict, where: str) -> Component:
    """Orders values as Kaldi writes them and fills Kaldi's defaults for omitted tokens."""
    params: dict[str, np.ndarray] = {}
    attrs: dict[str, object] = {}
    for f in ctype.fields:
        keys = f.key if isinstance(f.key, tuple) else (f.key,)
        for key in keys:
            if key in values:
                value = values[key]
            elif f.default is not None:
                value = f.default
            elif key == "block_dim" and "dim" in values:
                value = values["dim"]
            else:
                raise XvjaxError(f"{where}: {ctype.type} has no {f.token}")
            if f.kind in ARRAY_KINDS:
                params[key] = np.asarray(value, dtype=np.float32)
            elif f.kind in ("float", "float2"):
                attrs[key] = float(np.float32(value))  # BaseFloat
            elif f.kind == "double":
                attrs[key] = float(value)
            elif f.kind == "ivec":
                attrs[key] = [int(v) for v in np.asarray(value).tolist()]
            else:
                attrs[key] = value
    return Component(name, ctype.type, params, attrs)


def init_component(
    name: str, type_name: str, cfg: ConfigLine, rng: np.random.Generator
) -> Component:
    """Component::InitFromConfig: the type's `init` (Kaldi's defaults for every value the line
    omits); keys the line has but the type does not read are an error."""
    ctype = component_type(type_name, name)
    values = ctype.init(cfg, rng)
    cfg.check_unused()
    return _assemble(ctype, name, values, cfg.where)


def write_component(out: KaldiOutput, comp: Component, kaldi_roundtrip: bool = True) -> None:
    """Component::Write: the `<Type>` token, the fields Kaldi writes, the closing token.

    With kaldi_roundtrip (default) the averaged statistics of nonlinearities and BatchNorm are
    written as Kaldi writes them after reading them (Kaldi keeps them as double sums and divides
    by the count in float on writing, which can move the last bit), so the output equals Kaldi's
    `nnet3-copy` output; without it the stored values are written verbatim.
    """
    ctype = component_type(comp.type, comp.name)
    if kaldi_roundtrip and ctype.roundtrip is not None:
        comp = ctype.roundtrip(comp)
    out.token(f"<{comp.type}>")
    for f in ctype.fields:
        if f.write_if is not None and not f.write_if(comp.attrs):
            continue
        out.token(f.token)
        key = f.key
        try:
            if f.kind == "fmat":
                out.matrix(comp.params[key])
            elif f.kind == "fvec":
                out.vector(comp.params[key])
            elif f.kind == "int":
                out.int32(comp.attrs[key])
            elif f.kind == "float":
                out.float32(comp.attrs[key])
            elif f.kind == "double":
                out.float64(comp.attrs[key])
            elif f.kind == "bool":
                out.boolean(bool(comp.attrs[key]))
            elif f.kind == "flag":
                pass
            elif f.kind == "ivec":
                out.int_vector(comp.attrs[key])
            elif f.kind == "int2":
                out.int32(comp.attrs[key[0]])
                out.int32(comp.attrs[key[1]])
            elif f.kind == "float2":
                out.float32(comp.attrs[key[0]])
                out.float32(comp.attrs[key[1]])
        except KeyError as e:
            raise XvjaxError(f"component '{comp.name}' ({comp.type}) lacks {e.args[0]!r}") from None
    out.token(f"</{comp.type}>")
