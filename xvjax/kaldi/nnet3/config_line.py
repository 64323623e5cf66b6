"""nnet3 config lines (`ConfigLine::ParseLine`): `first-token key=value key='a b' ...`.

Config files (`nnet3-init`, `nnet3-copy --nnet-config`) and edit directives (`--edits`) are read
line by line into a `ConfigLine`; its typed getters (`cfg.int("dim")`, `cfg.float(...)`,
`cfg.bool(...)`, `cfg.ints("time-offsets")`) mark keys as used, and `check_unused()` rejects the
rest, as Kaldi does. What a component makes of its line is its type's `init` in `components.py`.
"""

from __future__ import annotations

import numpy as np

from xvjax.errors import XvjaxError


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
