"""Per-frame network outputs as Kaldi's `nnet3-compute` computes them (DecodableNnetSimple,
`src/nnet3/nnet-am-decodable-simple.cc`).

An utterance of N frames is processed in chunks of `frames_per_chunk` output frames [s, e). A
chunk's input is frames s - L .. e - 1 + R, where (L, R) is the network's context as nnet3-info
reports it plus the extra context options, and frames outside the utterance are copies of the
first/last frame. Then:

- a frame-level output (no statistics pooling on the way) has row t = the network at frame t,
  which does not depend on the chunking;
- an output after statistics pooling has row t = the network at time t inside that chunk: the
  pooling window [t - left, t + right] (at `Round(t, output period)`) sums the frame-level
  values computable from the chunk's input only. So rows depend on the chunking (the fixture
  note: the first rows of each chunk pool the same frames) and differ from nnet3-xvector-compute,
  which pools at t=0 over the whole (padded) utterance.

The frame-level part runs once per chunk on a fixed padded length (one jit compilation); the
pooled statistics of all rows come from that one frame-level result (`layers.stats_pool` with
per-row window weights), and the layers after pooling run on the rows as if they were frames.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from xvjax.errors import XvjaxError
from xvjax.model import layers
from xvjax.model.spec import ModelSpec, NodeSpec
from xvjax.model.xvector import XVector

_ROW_BUDGET = 1 << 23  # rows x frames x dim of one pooling call (memory bound)


@dataclasses.dataclass(frozen=True)
class ChunkOptions:
    """Kaldi's NnetSimpleComputationOptions that decide which frames a chunk sees."""

    frames_per_chunk: int = 50
    extra_left_context: int = 0
    extra_right_context: int = 0
    extra_left_context_initial: int = -1
    extra_right_context_final: int = -1
    acoustic_scale: float = 1.0

    def check(self) -> None:
        if self.frames_per_chunk < 1:
            raise XvjaxError(f"--frames-per-chunk must be positive, got {self.frames_per_chunk}")
        if self.extra_left_context < 0 or self.extra_right_context < 0:
            raise XvjaxError("--extra-left-context and --extra-right-context must be >= 0")


def chunk_input(feats: np.ndarray, first: int, last: int) -> np.ndarray:
    """Rows first..last (inclusive) of `feats`, indexes outside the utterance clamped to it."""
    idx = np.clip(np.arange(first, last + 1), 0, len(feats) - 1)
    return feats[idx]


def _utterance_part(spec: ModelSpec, target: str) -> tuple[NodeSpec, NodeSpec, ModelSpec]:
    """(pooling node, extraction node, the layers after pooling as a spec reading the pooled
    statistics as its input)."""
    needed = spec.required_nodes(target)
    pools = [n for n in needed if n.op == "stats_pooling"]
    if len(pools) != 1:
        raise XvjaxError(f"nnet3-compute supports one statistics pooling before '{target}'")
    pool = pools[0]
    ext = spec.node(pool.inputs[0][0])
    levels = spec.levels()
    after = [n for n in needed if levels[n.name] == "utt" and n.name != pool.name]
    renamed = tuple(
        dataclasses.replace(
            n, inputs=tuple(("input" if s == pool.name else s, o) for s, o in n.inputs)
        )
        for n in after
    )
    sub = ModelSpec(input_dim=pool.dim, nodes=renamed, outputs=())
    sub.validate()
    return pool, ext, sub


class FrameComputer:
    """`nnet3-compute` for one model: `compute(feats)` -> (N, dim) per-frame outputs."""

    def __init__(
        self,
        spec: ModelSpec,
        variables: dict,
        context: tuple[int, int],
        opts: ChunkOptions = ChunkOptions(),
        output_node: str = "output",
    ):
        opts.check()
        self.spec, self.opts, self.context = spec, opts, context
        self.target = spec.resolve(output_node)
        self.dim = spec.output_dim(output_node)
        self.variables = jax.device_put(variables)
        self.frame_level = spec.levels()[self.target] == "frame"
        extra = max(opts.extra_left_context, opts.extra_left_context_initial)
        extra_r = max(opts.extra_right_context, opts.extra_right_context_final)
        self.chunk_len = opts.frames_per_chunk + context[0] + context[1] + extra + extra_r
        model = XVector(spec)
        if self.frame_level:
            self.node_context = spec.contexts()[self.target]
            self._frames = jax.jit(lambda v, x: model.apply(v, x, output_node=self.target))
        else:
            self.pool, self.ext, sub = _utterance_part(spec, self.target)
            source = self.ext.inputs[0][0]
            self.node_context = spec.contexts()[source]
            self._frames = jax.jit(lambda v, x: model.apply(v, x, output_node=source))
            head = XVector(sub)
            self._head = jax.jit(lambda v, x: head.apply(v, x, output_node=self.target))
            self._pool = jax.jit(
                lambda x, w: layers.stats_pool(x, w, self.ext.attrs, self.pool.attrs)
            )

    def _chunk_context(self, s: int, e: int, n: int) -> tuple[int, int]:
        o = self.opts
        left = o.extra_left_context
        if s == 0 and o.extra_left_context_initial >= 0:
            left = o.extra_left_context_initial
        right = o.extra_right_context
        if e == n and o.extra_right_context_final >= 0:
            right = o.extra_right_context_final
        return self.context[0] + left, self.context[1] + right

    def compute(self, feats: np.ndarray) -> np.ndarray:
        feats = np.asarray(feats, np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.spec.input_dim:
            raise XvjaxError(
                f"features have shape {feats.shape}; the model wants {self.spec.input_dim} columns"
            )
        n = len(feats)
        if n == 0:
            raise XvjaxError("zero-length utterance")
        out = np.zeros((n, self.dim), np.float32)
        for s in range(0, n, self.opts.frames_per_chunk):
            e = min(s + self.opts.frames_per_chunk, n)
            left, right = self._chunk_context(s, e, n)
            x = chunk_input(feats, s - left, e - 1 + right)
            if len(x) < self.chunk_len:  # pad to one shape; the padding feeds no used output
                x = np.concatenate([x, np.repeat(x[-1:], self.chunk_len - len(x), 0)])
            lc, rc = self.node_context
            y = np.asarray(self._frames(self.variables, x[None]))[0]  # times s - left + lc ...
            if self.frame_level:
                out[s:e] = y[left - lc : left - lc + (e - s)]
            else:
                # frame-level values computable from the chunk's real input
                valid = (e - 1 + right) - rc - (s - left + lc) + 1
                out[s:e] = self._pooled_rows(y[: max(valid, 0)], s - left + lc, s, e)
        return out * np.float32(self.opts.acoustic_scale)

    def _pooled_rows(self, frames: np.ndarray, first_time: int, s: int, e: int) -> np.ndarray:
        """Rows s..e-1 of an output after pooling, from the frame-level values at times
        first_time, first_time + 1, ... of one chunk."""
        if len(frames) == 0:
            raise XvjaxError("utterance chunk too short for the network's context")
        period = int(self.ext.attrs["output_period"])
        rows = np.arange(s, e)
        at = rows - rows % period  # Round(t, period): where the pooled statistics are read
        weights = np.stack(
            [
                layers.pooling_frame_weights(self.ext.attrs, self.pool.attrs, first_time - t, len(frames))
                for t in at
            ]
        )  # fmt: skip
        if np.any(weights.sum(1) == 0):
            raise XvjaxError("a frame has no computable frames in its pooling window")
        step = max(1, _ROW_BUDGET // max(frames.size, 1))
        stats = []
        for r in range(0, len(rows), step):
            w = weights[r : r + step]
            x = np.broadcast_to(frames, (len(w), *frames.shape))
            stats.append(np.asarray(self._pool(x, w)))
        pooled = np.concatenate(stats)
        padded = np.zeros((self.opts.frames_per_chunk, pooled.shape[1]), np.float32)
        padded[: len(pooled)] = pooled
        return np.asarray(self._head(self.variables, padded[None]))[0][: len(rows)]
