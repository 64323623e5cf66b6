"""Kaldi rspecifiers/wspecifiers (`src/util/kaldi-table.cc`) and scp range suffixes.

`parse_rspecifier("ark,s,cs:feats.ark")`, `parse_wspecifier("ark,scp,t:a.ark,a.scp")`; invalid
specifiers raise XvjaxError naming the specifier. `split_range("a.ark:12[0:9,3:5]")` separates
Kaldi's inclusive row/column ranges from an extended filename.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from xvjax.errors import XvjaxError


@dataclasses.dataclass(frozen=True)
class RSpecifier:
    type: str  # "ark" or "scp"
    filename: str
    once: bool = False
    permissive: bool = False
    sorted: bool = False
    called_sorted: bool = False
    background: bool = False


@dataclasses.dataclass(frozen=True)
class WSpecifier:
    type: str  # "ark", "scp" or "both" (ark,scp)
    ark: str | None
    scp: str | None
    binary: bool | None = None  # None: not given (writers default to binary)
    flush: bool = False
    permissive: bool = False


_R_FLAGS = {
    "o": ("once", True),
    "no": ("once", False),
    "p": ("permissive", True),
    "np": ("permissive", False),
    "s": ("sorted", True),
    "ns": ("sorted", False),
    "cs": ("called_sorted", True),
    "ncs": ("called_sorted", False),
    "bg": ("background", True),
}


def _split_options(spec: str) -> tuple[list[str], str] | None:
    if ":" not in spec or not spec or spec[-1].isspace():
        return None
    before, _, after = spec.partition(":")
    return [o.strip() for o in before.split(",")], after


def parse_rspecifier(rspec: str) -> RSpecifier:
    """Parses `ark:`/`scp:` rspecifiers with their options; XvjaxError if it is not one."""
    parts = _split_options(rspec)
    if parts is None:
        raise XvjaxError(f"bad rspecifier '{rspec}' (expected e.g. ark:feats.ark or scp:feats.scp)")
    options, filename = parts
    kind, flags = None, {}
    for opt in options:
        if opt in ("b", "t"):
            continue
        if opt in _R_FLAGS:
            name, value = _R_FLAGS[opt]
            flags[name] = value
        elif opt in ("ark", "scp") and kind is None:
            kind = opt
        else:
            raise XvjaxError(f"bad rspecifier '{rspec}': unknown or repeated option '{opt}'")
    if kind is None:
        raise XvjaxError(f"bad rspecifier '{rspec}': neither ark nor scp given")
    return RSpecifier(kind, filename, **flags)


def parse_wspecifier(wspec: str) -> WSpecifier:
    """Parses `ark:`, `scp:` and `ark,scp:` wspecifiers with b/t/f/nf/p options."""
    parts = _split_options(wspec)
    if parts is None:
        raise XvjaxError(
            f"bad wspecifier '{wspec}' (expected e.g. ark:out.ark or ark,scp:a.ark,a.scp)"
        )
    options, filename = parts
    kind, binary, flush, permissive = None, None, False, False
    for opt in options:
        if opt == "b":
            binary = True
        elif opt == "t":
            binary = False
        elif opt == "f":
            flush = True
        elif opt == "nf":
            flush = False
        elif opt == "p":
            permissive = True
        elif opt == "ark" and kind is None:
            kind = "ark"
        elif opt == "scp" and kind in (None, "ark"):
            kind = "both" if kind == "ark" else "scp"
        else:
            raise XvjaxError(f"bad wspecifier '{wspec}': unknown or misplaced option '{opt}'")
    if kind is None:
        raise XvjaxError(f"bad wspecifier '{wspec}': neither ark nor scp given")
    ark = scp = None
    if kind == "ark":
        ark = filename
    elif kind == "scp":
        scp = filename
    else:
        ark, sep, scp = filename.partition(",")
        if not sep or not scp:
            raise XvjaxError(f"bad wspecifier '{wspec}': ark,scp needs two filenames 'a.ark,a.scp'")
    return WSpecifier(kind, ark, scp, binary, flush, permissive)


def is_rspecifier(text: str) -> bool:
    try:
        parse_rspecifier(text)
        return True
    except XvjaxError:
        return False


def is_wspecifier(text: str) -> bool:
    try:
        parse_wspecifier(text)
        return True
    except XvjaxError:
        return False


_RANGE = re.compile(r"^(.+)\[([0-9:,\s]*)\]$")


def split_range(rx: str) -> tuple[str, tuple[slice, slice] | None]:
    """`foo.ark:12[0:9,3:5]` -> ("foo.ark:12", (rows 0..9, cols 3..5)); Kaldi ranges are inclusive."""
    m = _RANGE.match(rx)
    if not m:
        return rx, None
    parts = m.group(2).split(",")
    if len(parts) > 2:
        raise XvjaxError(f"bad range '[{m.group(2)}]' in '{rx}'")
    slices = []
    for part in parts + [""] * (2 - len(parts)):
        part = part.strip()
        if not part:
            slices.append(slice(None))
            continue
        lo, sep, hi = part.partition(":")
        if not sep or not lo.strip().isdigit() or not hi.strip().isdigit() or int(hi) < int(lo):
            raise XvjaxError(f"bad range '[{m.group(2)}]' in '{rx}' (want [first:last] rows)")
        slices.append(slice(int(lo), int(hi) + 1))
    return m.group(1), (slices[0], slices[1])


def apply_range(obj, rng, where: str):
    if rng is None:
        return obj
    if not isinstance(obj, np.ndarray) or obj.ndim != 2:
        raise XvjaxError(f"{where}: a [range] applies only to matrices")
    rows, cols = rng
    for sl, n, what in ((rows, obj.shape[0], "rows"), (cols, obj.shape[1], "columns")):
        if sl.stop is not None and sl.stop > n:
            raise XvjaxError(f"{where}: range {sl.start}:{sl.stop - 1} exceeds the {n} {what}")
    return obj[rows, cols]


def check_key(key: str, wspec: str) -> None:
    if not isinstance(key, str) or not key or any(c.isspace() for c in key):
        raise XvjaxError(
            f"invalid key {key!r} for table '{wspec}' (keys are non-empty, no whitespace)"
        )
