"""nnet3 components: on-disk token layouts (Read/Write); InitFromConfig is in config.py.

Each supported type has a `Spec`: the ordered fields Kaldi's `Write` emits (token, meaning name,
value kind, and the condition under which Kaldi writes an optional token), plus back-compatibility
tokens its `Read` accepts. Reading is token driven, so optional tokens in any position are kept;
writing is canonical (exactly Kaldi's `Write`), so an unmodified model is written byte for byte as
Kaldi writes it (checked against `nnet3-copy` output in the tests).

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
from collections.abc import Callable

import numpy as np

from xvjax.errors import XvjaxError
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
        return _spec(self.type, self.name).input_dim(self)

    @property
    def output_dim(self) -> int:
        return _spec(self.type, self.name).output_dim(self)

    @property
    def updatable(self) -> bool:
        return _spec(self.type, self.name).updatable

    def num_parameters(self) -> int:
        """Kaldi's NumParameters (0 for non-updatable components)."""
        spec = _spec(self.type, self.name)
        if not spec.updatable:
            return 0
        return int(sum(np.asarray(self.params[k]).size for k in spec.param_keys))

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


# ---------------------------------------------------------------------------- specs

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


@dataclasses.dataclass
class Spec:
    type: str
    fields: list[Field]
    input_dim: Callable[[Component], int]
    output_dim: Callable[[Component], int]
    updatable: bool = False
    legacy: dict[str, tuple[str | None, str]] = dataclasses.field(default_factory=dict)
    param_keys: tuple[str, ...] = ()
    opening_terminates: bool = False  # Read accepts <Type> instead of </Type> at the end
    # What Kaldi's Read + Write do to stored statistics (kept as double sums in memory).
    roundtrip: Callable[[Component], Component] | None = None

    def __post_init__(self):
        self.by_token = {f.token: f for f in self.fields}


def _ne(key, value):
    return lambda a: a[key] != value


_UC = [
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


def _rows(key):
    return lambda c: int(np.shape(c.params[key])[0])


def _cols(key):
    return lambda c: int(np.shape(c.params[key])[1])


def _attr(key):
    return lambda c: int(c.attrs[key])


SPECS: dict[str, Spec] = {}


def _register(spec: Spec) -> None:
    SPECS[spec.type] = spec


_register(Spec(
    "NaturalGradientAffineComponent",
    _UC + [
        Field("<LinearParams>", "linear", "fmat"),
        Field("<BiasParams>", "bias", "fvec"),
        Field("<RankIn>", "rank_in", "int"),
        Field("<RankOut>", "rank_out", "int"),
        _ORTHO,
        Field("<UpdatePeriod>", "update_period", "int"),
        Field("<NumSamplesHistory>", "num_samples_history", "float"),
        Field("<Alpha>", "alpha", "float"),
    ],
    _cols("linear"), _rows("linear"), updatable=True, param_keys=("linear", "bias"),
    legacy={
        "<MaxChangePerSample>": (None, "float"),
        "<UpdateCount>": (None, "double"),
        "<ActiveScalingCount>": (None, "double"),
        "<MaxChangeScaleStats>": (None, "double"),
    },
    opening_terminates=True,
))  # fmt: skip
_register(Spec(
    "AffineComponent",
    _UC + [Field("<LinearParams>", "linear", "fmat"), Field("<BiasParams>", "bias", "fvec"), _ORTHO],
    _cols("linear"), _rows("linear"), updatable=True, param_keys=("linear", "bias"),
))  # fmt: skip
_register(Spec(
    "LinearComponent",
    _UC + [
        Field("<Params>", "linear", "fmat"),
        _ORTHO,
        Field("<UseNaturalGradient>", "use_natural_gradient", "bool"),
        Field("<RankInOut>", ("rank_in", "rank_out"), "int2"),
        Field("<Alpha>", "alpha", "float"),
        Field("<NumSamplesHistory>", "num_samples_history", "float"),
        Field("<UpdatePeriod>", "update_period", "int"),
    ],
    _cols("linear"), _rows("linear"), updatable=True, param_keys=("linear",),
))  # fmt: skip
_register(Spec(
    "FixedAffineComponent",
    [Field("<LinearParams>", "linear", "fmat"), Field("<BiasParams>", "bias", "fvec")],
    _cols("linear"), _rows("linear"),
))  # fmt: skip

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


NONLINEAR_TYPES = (
    "RectifiedLinearComponent", "LogSoftmaxComponent", "SoftmaxComponent", "SigmoidComponent",
    "TanhComponent",
)  # fmt: skip
for _t in NONLINEAR_TYPES:
    _register(
        Spec(
            _t, list(_NONLINEAR_FIELDS), _attr("dim"), _attr("dim"), roundtrip=_nonlinear_roundtrip
        )
    )

_register(Spec(
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
    _attr("dim"), _attr("dim"), roundtrip=_batchnorm_roundtrip,
))  # fmt: skip
_register(Spec(
    "StatisticsExtractionComponent",
    [
        Field("<InputDim>", "input_dim", "int"),
        Field("<InputPeriod>", "input_period", "int"),
        Field("<OutputPeriod>", "output_period", "int"),
        Field("<IncludeVarinance>", "include_variance", "bool"),  # sic: Kaldi's on-disk token
    ],
    _attr("input_dim"),
    lambda c: 1 + int(c.attrs["input_dim"]) * (2 if c.attrs["include_variance"] else 1),
))  # fmt: skip
_register(Spec(
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
))  # fmt: skip
_register(Spec(
    "NoOpComponent",
    [Field("<Dim>", "dim", "int"), Field("<BackpropScale>", "backprop_scale", "float", None, 1.0)],
    _attr("dim"), _attr("dim"),
    legacy={
        "<ValueAvg>": (None, "fvec"), "<DerivAvg>": (None, "fvec"), "<Count>": (None, "real"),
        "<OderivRms>": (None, "fvec"), "<OderivCount>": (None, "real"),
        "<NumDimsSelfRepaired>": (None, "real"), "<NumDimsProcessed>": (None, "real"),
    },
))  # fmt: skip
_register(Spec(
    "DropoutComponent",
    [
        Field("<Dim>", "dim", "int"),
        Field("<DropoutProportion>", "dropout_proportion", "float"),
        Field("<DropoutPerFrame>", "dropout_per_frame", "bool", None, False),
        Field("<TestMode>", "test_mode", "bool", None, False),
    ],
    _attr("dim"), _attr("dim"),
))  # fmt: skip
_register(Spec(
    "GeneralDropoutComponent",
    [
        Field("<Dim>", "dim", "int"),
        Field("<BlockDim>", "block_dim", "int"),
        Field("<TimePeriod>", "time_period", "int"),
        Field("<DropoutProportion>", "dropout_proportion", "float"),
        Field("<TestMode>", "test_mode", "flag", lambda a: bool(a["test_mode"]), False),
        Field("<Continuous>", "continuous", "flag", lambda a: bool(a["continuous"]), False),
    ],
    _attr("dim"), _attr("dim"),
))  # fmt: skip
_register(Spec(
    "TdnnComponent",
    _UC + [
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
    _rows("linear"), updatable=True, param_keys=("linear", "bias"),
    legacy={"<Alpha>": ("alpha_in+out", "float")},
))  # fmt: skip
_register(Spec(
    "ScaleAndOffsetComponent",
    _UC + [
        Field("<Dim>", "dim", "int"),
        Field("<Scales>", "scales", "fvec"),
        Field("<Offsets>", "offsets", "fvec"),
        Field("<UseNaturalGradient>", "use_natural_gradient", "bool"),
        Field("<Rank>", "rank", "int"),
    ],
    _attr("dim"), _attr("dim"), updatable=True, param_keys=("scales", "offsets"),
))  # fmt: skip
_register(Spec(
    "SumGroupComponent",
    [Field("<Sizes>", "sizes", "ivec")],
    lambda c: int(np.sum(c.attrs["sizes"])), lambda c: len(c.attrs["sizes"]),
    opening_terminates=True,
))  # fmt: skip


def supported_types() -> list[str]:
    return sorted(SPECS)


def _spec(type_name: str, comp_name: str = "") -> Spec:
    spec = SPECS.get(type_name)
    if spec is None:
        who = f" (component '{comp_name}')" if comp_name else ""
        raise XvjaxError(
            f"unsupported nnet3 component type {type_name}{who}; supported: "
            + ", ".join(supported_types())
        )
    return spec


# ---------------------------------------------------------------------------- read / write


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
    spec = _spec(type_name, name)
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
            if spec.opening_terminates:
                break
        first = False
        field = spec.by_token.get(tok)
        what = f"{tok} of component '{name}'"
        if field is None:
            legacy = spec.legacy.get(tok)
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
    return _assemble(spec, name, values, f"{inp.source}: component '{name}'")


def _assemble(spec: Spec, name: str, values: dict, where: str) -> Component:
    """Orders values as Kaldi writes them and fills Kaldi's defaults for omitted tokens."""
    params: dict[str, np.ndarray] = {}
    attrs: dict[str, object] = {}
    for f in spec.fields:
        keys = f.key if isinstance(f.key, tuple) else (f.key,)
        for key in keys:
            if key in values:
                value = values[key]
            elif f.default is not None:
                value = f.default
            elif key == "block_dim" and "dim" in values:
                value = values["dim"]
            else:
                raise XvjaxError(f"{where}: {spec.type} has no {f.token}")
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
    return Component(name, spec.type, params, attrs)


def write_component(out: KaldiOutput, comp: Component, kaldi_roundtrip: bool = True) -> None:
    """Component::Write: the `<Type>` token, the fields Kaldi writes, the closing token.

    With kaldi_roundtrip (default) the averaged statistics of nonlinearities and BatchNorm are
    written as Kaldi writes them after reading them (Kaldi keeps them as double sums and divides
    by the count in float on writing, which can move the last bit), so the output equals Kaldi's
    `nnet3-copy` output; without it the stored values are written verbatim.
    """
    spec = _spec(comp.type, comp.name)
    if kaldi_roundtrip and spec.roundtrip is not None:
        comp = spec.roundtrip(comp)
    out.token(f"<{comp.type}>")
    for f in spec.fields:
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
