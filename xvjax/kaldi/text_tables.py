"""Plain text tables: `key value` per line (utt2spk, utt2num_frames, num_utts.ark, trials) and
`key v1 v2 ...` (spk2utt). Paths are rxfilenames (`-`, `cmd |`) or `ark:`/`ark,t:` rspecifiers."""

from __future__ import annotations

from collections.abc import Iterator

from xvjax.errors import XvjaxError
from xvjax.kaldi import streams
from xvjax.kaldi.specifiers import check_key, is_rspecifier, parse_rspecifier


def _text_path(path: str) -> str:
    """Accepts a plain path/rxfilename or an `ark:`/`ark,t:` rspecifier for text tables."""
    if is_rspecifier(path):
        spec = parse_rspecifier(path)
        if spec.type != "ark":
            raise XvjaxError(f"text table '{path}' must be a file or ark: (not scp:)")
        return spec.filename
    return path


def text_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text table given as a path, rxfilename or `ark:` rspecifier."""
    return rx_lines(_text_path(path))


def rx_lines(rx: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text rxfilename; a line that is not UTF-8 is an error."""
    with streams.input_stream(rx) as f:
        for num, raw in enumerate(f, 1):
            try:
                yield num, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise XvjaxError(
                    f"{streams.printable(rx)}:{num}: not UTF-8 text (byte {e.start + 1} of the line)"
                ) from None


def read_text_table(path: str, sorted_check: bool = False) -> dict[str, str]:
    """`key value` per line (utt2spk, utt2num_frames, num_utts.ark); value is the rest of the line.

    Blank lines are skipped; a line without a value and a duplicate key are errors; with
    `sorted_check` keys must be strictly increasing (as `LC_ALL=C sort` orders them).
    """
    out: dict[str, str] = {}
    prev = None
    for num, line in text_lines(path):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2:
            raise XvjaxError(f"{path}:{num}: expected 'key value', got '{line.strip()[:60]}'")
        key = parts[0]
        if key in out:
            raise XvjaxError(f"{path}:{num}: duplicate key '{key}'")
        if sorted_check and prev is not None and key.encode() < prev.encode():
            raise XvjaxError(
                f"{path}:{num}: key '{key}' after '{prev}': not sorted (LC_ALL=C sort)"
            )
        out[key], prev = parts[1].strip(), key
    return out


def read_text_lists(path: str, sorted_check: bool = False) -> dict[str, list[str]]:
    """`key v1 v2 ...` per line (spk2utt)."""
    return {k: v.split() for k, v in read_text_table(path, sorted_check).items()}


def write_text_table(path: str, table: dict, sort: bool = True) -> None:
    """Writes `key value` lines atomically; list values are joined by spaces (spk2utt)."""
    keys = sorted(table, key=lambda k: k.encode()) if sort else list(table)
    lines = []
    for key in keys:
        check_key(key, path)
        value = table[key]
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value)
        lines.append(f"{key} {value}\n")
    streams.write_all(path, "".join(lines).encode("utf-8"))


def read_trials(path: str) -> list[tuple[str, str, str | None]]:
    """Trials / score lines `enroll test [target|nontarget|score]`, in order (keys repeat here).

    Returns (enroll, test, third field or None); a line with fewer than 2 or more than 3 fields
    is an error naming the file and line.
    """
    out: list[tuple[str, str, str | None]] = []
    for num, line in text_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (2, 3):
            raise XvjaxError(
                f"{path}:{num}: expected 'enroll test [label]', got '{line.strip()[:60]}'"
            )
        out.append((fields[0], fields[1], fields[2] if len(fields) == 3 else None))
    return out
