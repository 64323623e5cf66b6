"""Kaldi option files and values as `ParseOptions` reads them: `--opt=value` lines, booleans."""

from __future__ import annotations

from xvjax.errors import XvjaxError


def parse_bool(text: str, option: str) -> bool:
    """Kaldi's boolean spellings (`true`/`false`, `t`/`f`, `1`/`0`; empty means true)."""
    low = text.strip().lower()
    if low in ("true", "t", "1", "yes", ""):
        return True
    if low in ("false", "f", "0", "no"):
        return False
    raise XvjaxError(f"option --{option}: invalid boolean value '{text}' (use true or false)")


def read_config_file(path: str) -> list[str]:
    """Lines `--opt=value` of a Kaldi-style config file; blank lines and `#` comments skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise XvjaxError(f"cannot read config file {path}: {e.strerror}") from None
    out = []
    for num, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.startswith("--"):
            raise XvjaxError(f"{path}:{num}: expected '--option=value', got '{line}'")
        out.append(line)
    return out
