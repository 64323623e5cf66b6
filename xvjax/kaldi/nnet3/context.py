"""Left/right context of a simple nnet (Kaldi's ComputeSimpleNnetContext, nnet-utils.cc).

For each shift s = 0..modulus, frames t in [s, s + 150) of `input` are given and the same frames
of `output` requested; the context is (first computable output - s, window end - first
non-computable output after it), maximised over shifts. Computability follows each piece's
IsComputable: Append and Sum need every part, Failover either, IfDefined and Const always,
Offset/Round/ReplaceIndex/Switch map t; a component needs its input at t, or the frames its
type's `input_frames` names (`components.py`: TdnnComponent every time offset,
StatisticsExtraction any frame of its output period, StatisticsPooling any frame of its
[t - left, t + right] window). Frames a component may use "any one of" are searched within 200
frames of the input window, far more than any frame-level context.
"""

from __future__ import annotations

import functools
import sys

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import descriptors as D
from xvjax.kaldi.nnet3.components import component_type

WINDOW = 150
_MARGIN = 200


def simple_context(nnet, input_name: str = "input", output_name: str = "output") -> tuple[int, int]:
    """(left_context, right_context) as printed by `nnet3-info`."""
    nodes = {n.name: n for n in nnet.nodes}
    if nodes.get(input_name) is None or nodes[input_name].kind != "input":
        raise XvjaxError(f"not a simple nnet: no input node '{input_name}'")
    if nodes.get(output_name) is None or nodes[output_name].kind != "output":
        raise XvjaxError(f"not a simple nnet: no output node '{output_name}'")
    modulus = nnet.modulus()
    lefts, rights = [], []
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 20000))
    try:
        for start in range(modulus + 1):
            left, right = _context_for_shift(nnet, nodes, input_name, output_name, start)
            lefts.append(left)
            rights.append(right)
    finally:
        sys.setrecursionlimit(old_limit)
    return max(lefts), max(rights)


def _context_for_shift(nnet, nodes, input_name, output_name, start):
    end = start + WINDOW
    lo, hi = start - _MARGIN, end + _MARGIN

    @functools.cache
    def node_ok(name: str, t: int) -> bool:
        node = nodes[name]
        if node.kind == "input":
            return name == input_name and start <= t < end
        if node.kind == "dim-range":
            return node_ok(node.input.name, t)
        if node.kind == "output":
            return desc_ok(node.input, t)
        comp = nnet.components[node.component]
        input_frames = component_type(comp.type, comp.name).input_frames
        if input_frames is None:
            return desc_ok(node.input, t)
        frames, need_all = input_frames(comp.attrs, t)
        if need_all:
            return all(desc_ok(node.input, u) for u in frames)
        return any(desc_ok(node.input, u) for u in _within(frames, lo, hi))

    def desc_ok(d: D.Descriptor, t: int) -> bool:
        if isinstance(d, D.NodeRef):
            return node_ok(d.name, t)
        if isinstance(d, D.Append):
            return all(desc_ok(p, t) for p in d.parts)
        if isinstance(d, D.Offset):
            return d.x == 0 and desc_ok(d.src, t + d.t)
        if isinstance(d, D.Round):
            return desc_ok(d.src, t - t % d.modulus)
        if isinstance(d, D.ReplaceIndex):
            if d.var == "t":
                return desc_ok(d.src, d.value)
            return d.value == 0 and desc_ok(d.src, t)
        if isinstance(d, D.Switch):
            return desc_ok(d.parts[t % len(d.parts)], t)
        if isinstance(d, D.Sum):
            return desc_ok(d.a, t) and desc_ok(d.b, t)
        if isinstance(d, D.Failover):
            return desc_ok(d.a, t) or desc_ok(d.b, t)
        if isinstance(d, (D.IfDefined, D.Const)):
            return True
        if isinstance(d, D.Scale):
            return desc_ok(d.src, t)
        raise XvjaxError(f"unknown descriptor {d!r}")

    ok = [node_ok(output_name, t) for t in range(start, end)]
    if True not in ok:
        raise XvjaxError("no output frames are computable from a 150-frame input window")
    first_ok = ok.index(True)
    first_not_ok = ok.index(False, first_ok) if False in ok[first_ok:] else WINDOW
    return first_ok, WINDOW - first_not_ok


def _within(frames, lo: int, hi: int):
    """The frames in [lo, hi]; a range (a pooling window of 10000 frames) stays a range."""
    if not isinstance(frames, range):
        return [u for u in frames if lo <= u <= hi]
    step = frames.step
    first = frames.start + max(0, -((frames.start - lo) // step)) * step  # whole steps below lo
    return range(first, min(frames.stop, hi + 1), step)
