"""nnet3 config lines: `ConfigLine::ParseLine` and `Component::InitFromConfig` (nnet3-init).

`init_component(name, type, ConfigLine(line), rng)` builds a component with Kaldi's defaults for
every value the line omits (learning-rate 0.001, param-stddev 1/sqrt(input-dim), bias-stddev 1,
rank-in min(20, (in+1)/2), rank-out min(80, (out+1)/2), alpha 4, num-samples-history 2000,
update-period 4, BatchNorm epsilon 1e-3 / target-rms 1, StatisticsPooling variance-floor 1e-10,
...). Unused keys are an error, as in Kaldi. Random values use numpy's generator `rng`
(Kaldi's RNG cannot be reproduced); a zero stddev gives exact zeros, as Kaldi writes them.
"""

from __future__ import annotations

import math

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3.components import (
    NONLINEAR_TYPES,
    UNSET_THRESHOLD,
    Component,
    _assemble,
    _spec,
)


class ConfigLine:
    """A parsed nnet3 config line (`ConfigLine::ParseLine`): first token and key=value pairs."""

    def __init__(self, line: str, where: str = "config"):
        self.whole_line = line
        self.where = where
        self.values: dict[str, str] = {}
        self.used: set[str] = set()
        text = line.strip()
        pos, n = 0, len(text)
        first_end = pos
        while first_end < n and not text[first_end].isspace():
            if text[first_end] == "=":
                first_end = 0
                break
            first_end += 1
        self.first_token = text[:first_end]
        pos = first_end
        while pos < n:
            if text[pos].isspace():
                pos += 1
                continue
            eq = text.find("=", pos)
            if eq <= pos:
                raise XvjaxError(f"{where}: cannot parse config line '{line}' (expected key=value)")
            key = text[pos:eq]
            if eq + 1 < n and text[eq + 1] in "'\"":
                quote = text[eq + 1]
                close = text.find(quote, eq + 2)
                if close < 0:
                    raise XvjaxError(f"{where}: no matching quote in config line '{line}'")
                value, pos = text[eq + 2 : close], close + 1
            else:
                end = n
                nxt = text.find("=", eq + 1)
                if nxt >= 0:
                    space = max(text.rfind(" ", 0, nxt), text.rfind("\t", 0, nxt))
                    if space > eq:
                        end = space
                while end > 0 and text[end - 1].isspace():
                    end -= 1
                value, pos = text[eq + 1 : end], end
            self.values.setdefault(key, value)

    def has(self, key: str) -> bool:
        return key in self.values

    def _raw(self, key: str) -> str | None:
        if key in self.values:
            self.used.add(key)
            return self.values[key]
        return None

    def _bad(self, key: str, kind: str) -> XvjaxError:
        return XvjaxError(
            f"{self.where}: bad {kind} value {key}={self.values[key]} in '{self.whole_line}'"
        )

    def str(self, key: str, default=None):
        v = self._raw(key)
        return default if v is None else v

    def int(self, key: str, default=None):
        v = self._raw(key)
        if v is None:
            return default
        try:
            return int(v)
        except ValueError:
            raise self._bad(key, "integer") from None

    def float(self, key: str, default=None):
        v = self._raw(key)
        if v is None:
            return default
        try:
            return float(np.float32(float(v)))
        except ValueError:
            raise self._bad(key, "float") from None

    def bool(self, key: str, default=None):
        v = self._raw(key)
        if v is None:
            return default
        if v[:1] in ("T", "t"):
            return True
        if v[:1] in ("F", "f"):
            return False
        raise self._bad(key, "boolean")

    def ints(self, key: str, default=None):
        v = self._raw(key)
        if v is None:
            return default
        try:
            return [int(p) for p in v.split(",")]
        except ValueError:
            raise self._bad(key, "integer list") from None

    def require(self, value, key: str):
        if value is None:
            raise XvjaxError(f"{self.where}: missing {key}= in config line '{self.whole_line}'")
        return value

    def check_unused(self) -> None:
        unused = [k for k in self.values if k not in self.used]
        if unused:
            items = " ".join(f"{k}={self.values[k]}" for k in unused)
            raise XvjaxError(
                f"{self.where}: could not process '{items}' in config line '{self.whole_line}'"
            )


def _randn(rng: np.random.Generator, shape, stddev: float, mean: float = 0.0) -> np.ndarray:
    """SetRandn() * stddev (+ mean) in float32; exactly 0 when stddev is 0 (as Kaldi writes it)."""
    if stddev == 0.0:
        return np.full(shape, np.float32(mean) + np.float32(0.0), dtype=np.float32)
    x = rng.standard_normal(shape, dtype=np.float32) * np.float32(stddev)
    return (x + np.float32(mean)).astype(np.float32)


def _uc_from_config(cfg: ConfigLine) -> dict:
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


def _read_matrix_file(path: str) -> np.ndarray:
    from xvjax.kaldi import tables

    return tables.read_matrix(path, np.float32)


def _affine_from_matrix(cfg: ConfigLine) -> tuple[np.ndarray, np.ndarray] | None:
    path = cfg.str("matrix")
    if path is None:
        return None
    mat = _read_matrix_file(path)
    if mat.shape[1] < 2:
        raise XvjaxError(f"{cfg.where}: matrix {path} needs at least 2 columns")
    linear, bias = mat[:, :-1].copy(), mat[:, -1].copy()
    in_dim, out_dim = cfg.int("input-dim"), cfg.int("output-dim")
    if (in_dim is not None and in_dim != linear.shape[1]) or (
        out_dim is not None and out_dim != linear.shape[0]
    ):
        raise XvjaxError(f"{cfg.where}: input-dim/output-dim do not match matrix {path}")
    return linear, bias


def init_component(
    name: str, type_name: str, cfg: ConfigLine, rng: np.random.Generator
) -> Component:
    """Component::InitFromConfig for the supported types (Kaldi's defaults for every value)."""
    spec = _spec(type_name, name)
    v: dict = {}
    t = type_name
    if t in ("NaturalGradientAffineComponent", "AffineComponent", "LinearComponent", "TdnnComponent",
             "ScaleAndOffsetComponent"):  # fmt: skip
        v.update(_uc_from_config(cfg))
    if t in ("NaturalGradientAffineComponent", "AffineComponent", "LinearComponent"):
        loaded = None if t == "LinearComponent" else _affine_from_matrix(cfg)
        if t == "LinearComponent" and cfg.has("matrix"):
            v["linear"] = _read_matrix_file(cfg.str("matrix"))
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
    elif t == "FixedAffineComponent":
        loaded = _affine_from_matrix(cfg)
        if loaded is None:
            in_dim = cfg.require(cfg.int("input-dim"), "input-dim")
            out_dim = cfg.require(cfg.int("output-dim"), "output-dim")
            mat = _randn(rng, (out_dim, in_dim + 1), 1.0)
            loaded = mat[:, :-1].copy(), mat[:, -1].copy()
        v["linear"], v["bias"] = loaded
    elif t in NONLINEAR_TYPES:
        dim = cfg.require(cfg.int("dim"), "dim")
        v.update(
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
    elif t == "BatchNormComponent":
        dim = cfg.require(cfg.int("dim"), "dim")
        block_dim = cfg.int("block-dim", -1)
        block_dim = dim if block_dim == -1 else block_dim
        v.update(
            dim=dim, block_dim=block_dim, epsilon=cfg.float("epsilon", 1e-3),
            target_rms=cfg.float("target-rms", 1.0), test_mode=cfg.bool("test-mode", False),
            count=0.0,
        )  # fmt: skip
        if (
            dim <= 0
            or block_dim <= 0
            or dim % block_dim
            or v["epsilon"] <= 0
            or v["target_rms"] <= 0
        ):
            raise XvjaxError(f"{cfg.where}: invalid BatchNormComponent config '{cfg.whole_line}'")
        v["stats_mean"] = np.zeros(block_dim, np.float32)
        v["stats_var"] = np.zeros(block_dim, np.float32)
    elif t == "StatisticsExtractionComponent":
        v.update(
            input_dim=cfg.require(cfg.int("input-dim"), "input-dim"),
            input_period=cfg.int("input-period", 1),
            output_period=cfg.int("output-period", 1),
            include_variance=cfg.bool("include-variance", True),
        )
        if v["input_dim"] <= 0 or v["input_period"] <= 0 or v["output_period"] % v["input_period"]:
            raise XvjaxError(
                f"{cfg.where}: invalid StatisticsExtractionComponent '{cfg.whole_line}'"
            )
    elif t == "StatisticsPoolingComponent":
        v.update(
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
    elif t == "NoOpComponent":
        v.update(
            dim=cfg.require(cfg.int("dim"), "dim"), backprop_scale=cfg.float("backprop-scale", 1.0)
        )
    elif t == "DropoutComponent":
        v.update(
            dim=cfg.require(cfg.int("dim"), "dim"),
            dropout_proportion=cfg.require(cfg.float("dropout-proportion"), "dropout-proportion"),
            dropout_per_frame=cfg.bool("dropout-per-frame", False),
            test_mode=cfg.bool("test-mode", False),
        )
    elif t == "GeneralDropoutComponent":
        dim = cfg.require(cfg.int("dim"), "dim")
        v.update(
            dim=dim, block_dim=cfg.int("block-dim", dim), time_period=cfg.int("time-period", 0),
            dropout_proportion=cfg.float("dropout-proportion", 0.5),
            continuous=cfg.bool("continuous", False), test_mode=cfg.bool("test-mode", False),
        )  # fmt: skip
    elif t == "TdnnComponent":
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
    elif t == "ScaleAndOffsetComponent":
        dim = cfg.require(cfg.int("dim"), "dim")
        block_dim = cfg.int("block-dim", dim)
        if dim <= 0 or block_dim <= 0 or dim % block_dim:
            raise XvjaxError(f"{cfg.where}: invalid dim/block-dim in '{cfg.whole_line}'")
        v.update(
            dim=dim, use_natural_gradient=cfg.bool("use-natural-gradient", True),
            rank=cfg.int("rank", 20), scales=np.ones(block_dim, np.float32),
            offsets=np.zeros(block_dim, np.float32),
        )  # fmt: skip
    elif t == "SumGroupComponent":
        sizes = cfg.ints("sizes")
        if sizes is None:
            in_dim = cfg.require(cfg.int("input-dim"), "input-dim")
            out_dim = cfg.require(cfg.int("output-dim"), "output-dim")
            if out_dim <= 0 or in_dim % out_dim:
                raise XvjaxError(f"{cfg.where}: input-dim must be a multiple of output-dim")
            sizes = [in_dim // out_dim] * out_dim
        v["sizes"] = sizes
    else:  # pragma: no cover - every registered type is handled above
        raise XvjaxError(f"{cfg.where}: cannot initialise {t} from a config line")
    cfg.check_unused()
    return _assemble(spec, name, v, cfg.where)
