"""Frame-level activations of the forward pass: values with their time origin, and a node's input.

A frame-level node's output is `Frames(x, start, rc)`: `x[:, j]` (x: (batch, frames, dim)) is
time `start + j`, and it is computable from a row of `n` real input frames while
`time + rc <= n - 1` (rc: the right context used so far). A frame-level node reads
`Append(Offset(src_1, o_1), ...)`: `FrameInputs` holds those `(Frames, o_i)` pairs before they
are spliced, so an op can use them unspliced (the TDNN affine as a dilated convolution) or
call `spliced()` for the aligned concatenation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from xvjax.errors import XvjaxError
from xvjax.model import layers


class Frames(NamedTuple):
    """A frame-level activation: `x[:, j]` is time `start + j`; valid while `time + rc <= n-1`."""

    x: jax.Array  # (B, T, D)
    start: int
    rc: int


def frame_mask(v: Frames, num_frames: jax.Array | None) -> jax.Array | None:
    """(B, T) bool: frame j is computable from the real (unpadded) input of each row."""
    if num_frames is None:
        return None
    t = v.start + jnp.arange(v.x.shape[1])
    return t[None, :] + v.rc <= num_frames[:, None] - 1


class FrameInputs(NamedTuple):
    """A frame-level node's input `Append(Offset(src_i, o_i), ...)` as (source Frames, o_i)."""

    parts: tuple[tuple[Frames, int], ...]

    def spliced(self) -> Frames:
        """The parts aligned on time and concatenated along features."""
        parts = self.parts
        if all(v is parts[0][0] for v, _ in parts):  # one source at several offsets
            v = parts[0][0]
            if len(parts) == 1:
                o = parts[0][1]
                return Frames(v.x, v.start - o, v.rc + o)
            sp = layers.splice([(v.x, o) for _, o in parts])
            lo = min(o for _, o in parts)
            hi = max(o for _, o in parts)
            return Frames(sp, v.start - lo, v.rc + hi)
        start = max(v.start - o for v, o in parts)
        end = min(v.start + v.x.shape[1] - 1 - o for v, o in parts)
        length = end - start + 1
        if length <= 0:
            raise XvjaxError("input too short for the network's context")
        xs = [v.x[:, start + o - v.start : start + o - v.start + length] for v, o in parts]
        return Frames(jnp.concatenate(xs, -1), start, max(v.rc + o for v, o in parts))
