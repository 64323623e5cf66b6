"""Kaldi rxfilenames and wxfilenames: files, `file:offset`, `-` (stdin/stdout) and pipes.

- rxfilename: `-` or empty = stdin; `cmd |` = stdout of a shell command; `foo.ark:1234` = file
  opened at byte 1234; anything else is a file.
- wxfilename: `-` or empty = stdout; `| cmd` = stdin of a shell command; anything else is a file,
  written atomically (temp file beside it, renamed on success) unless it is a device such as
  `/dev/null`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile

from xvjax.errors import XvjaxError

_OFFSET = re.compile(r"^(.*):(\d+)$")


def classify_rxfilename(rx: str) -> tuple[str, str, int]:
    """("stdin" | "pipe" | "file", path_or_command, offset)."""
    if rx in ("", "-"):
        return "stdin", "-", 0
    if rx.rstrip().endswith("|"):
        return "pipe", rx.rstrip()[:-1].strip(), 0
    if rx.lstrip().startswith("|"):
        raise XvjaxError(f"'{rx}' is an output pipe, but a readable filename was expected")
    m = _OFFSET.match(rx)
    if m and m.group(1):
        return "file", m.group(1), int(m.group(2))
    return "file", rx, 0


def classify_wxfilename(wx: str) -> tuple[str, str]:
    """("stdout" | "pipe" | "file", path_or_command)."""
    if wx in ("", "-"):
        return "stdout", "-"
    if wx.lstrip().startswith("|"):
        return "pipe", wx.lstrip()[1:].strip()
    if wx.rstrip().endswith("|"):
        raise XvjaxError(f"'{wx}' is an input pipe, but a writable filename was expected")
    return "file", wx


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def printable(name: str) -> str:
    return "standard input" if name in ("", "-") else name


class _PipeReader(io.BufferedReader):
    """Stdout of a shell command; closing it waits and checks the exit status."""

    def __init__(self, command: str):
        self.command = command
        try:
            self.proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE)
        except OSError as e:
            raise XvjaxError(f"cannot run input command '{command}': {e.strerror}") from None
        super().__init__(self.proc.stdout, buffer_size=1 << 20)

    def close(self) -> None:
        if self.closed:
            return
        try:
            at_end = not self.peek(1)
        except (OSError, ValueError):
            at_end = False
        super().close()
        status = self.proc.wait()
        # A reader that stops early makes the command die of SIGPIPE: not an error then.
        if status != 0 and at_end:
            raise XvjaxError(f"input command '{self.command}' exited with status {status}")


def open_input(rx: str, binary_check: bool = False) -> io.BufferedIOBase:
    """Opens an rxfilename for binary reading, positioned at its offset. Caller closes it."""
    kind, target, offset = classify_rxfilename(rx)
    if kind == "stdin":
        return sys.stdin.buffer
    if kind == "pipe":
        return _PipeReader(target)
    try:
        f = open(target, "rb", buffering=1 << 20)
    except OSError as e:
        raise XvjaxError(f"cannot open '{target}' for reading: {e.strerror}") from None
    if offset:
        size = os.fstat(f.fileno()).st_size
        if offset >= size and os.path.isfile(target):
            f.close()
            raise XvjaxError(f"offset {offset} is past the end of '{target}' ({size} bytes)")
        f.seek(offset)
    return f


@contextlib.contextmanager
def input_stream(rx: str):
    """Context manager around `open_input` (stdin is not closed)."""
    f = open_input(rx)
    try:
        yield f
    finally:
        if f is not sys.stdin.buffer:
            f.close()


class Output:
    """A wxfilename opened for binary writing; `commit()` on success, `abort()` on failure.

    Files are written to a temp file beside the target and renamed by `commit()`; `abort()`
    deletes the temp file, so a failed command leaves no output behind.
    """

    def __init__(self, wx: str):
        self.wx = wx
        self.kind, self.target = classify_wxfilename(wx)
        self.tmp: str | None = None
        self.proc: subprocess.Popen | None = None
        if self.kind == "stdout":
            self.stream = sys.stdout.buffer
        elif self.kind == "pipe":
            try:
                self.proc = subprocess.Popen(self.target, shell=True, stdin=subprocess.PIPE)
            except OSError as e:
                raise XvjaxError(
                    f"cannot run output command '{self.target}': {e.strerror}"
                ) from None
            self.stream = self.proc.stdin
        elif os.path.exists(self.target) and not os.path.isfile(self.target):
            try:  # a device or fifo (/dev/null): no temp file possible or needed
                self.stream = open(self.target, "wb")
            except OSError as e:
                raise XvjaxError(f"cannot open '{self.target}' for writing: {e.strerror}") from None
        else:
            folder = os.path.dirname(os.path.abspath(self.target))
            try:
                os.makedirs(folder, exist_ok=True)
                fd, self.tmp = tempfile.mkstemp(
                    prefix=f".{os.path.basename(self.target)}.", suffix=".tmp", dir=folder
                )
            except OSError as e:
                raise XvjaxError(f"cannot open '{self.target}' for writing: {e.strerror}") from None
            os.fchmod(fd, 0o666 & ~_umask())  # as a plain open() would create it
            self.stream = open(fd, "wb", buffering=1 << 20)

    def write(self, data: bytes) -> int:
        try:
            return self.stream.write(data)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise XvjaxError(f"error writing to '{self.wx}': {e.strerror}") from None

    def tell(self) -> int:
        return self.stream.tell()

    def commit(self) -> None:
        try:
            if self.kind == "stdout":
                self.stream.flush()
            elif self.kind == "pipe":
                self.stream.close()
                status = self.proc.wait()
                if status != 0:
                    raise XvjaxError(f"output command '{self.target}' exited with status {status}")
            else:
                self.stream.close()
                if self.tmp is not None:
                    os.replace(self.tmp, self.target)
                    self.tmp = None
        except OSError as e:
            self.abort()
            raise XvjaxError(f"error closing '{self.wx}': {e.strerror}") from None

    def abort(self) -> None:
        if self.kind == "stdout":
            with contextlib.suppress(OSError):
                self.stream.flush()
            return
        with contextlib.suppress(OSError):
            self.stream.close()
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.wait()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None


@contextlib.contextmanager
def output_stream(wx: str):
    """`with output_stream(wx) as out: out.write(...)`: atomic file, stdout or pipe."""
    out = Output(wx)
    try:
        yield out
    except BaseException:
        out.abort()
        raise
    out.commit()
