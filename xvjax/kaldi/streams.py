"""Kaldi rxfilenames and wxfilenames: files, `file:offset`, `-` (stdin/stdout) and pipes.

- rxfilename: `-` or empty = stdin; `cmd |` = stdout of a shell command; `foo.ark:1234` = file
  opened at byte 1234; anything else is a file.
- wxfilename: `-` or empty = stdout; `| cmd` = stdin of a shell command; anything else is a file,
  written atomically (temp file beside it, renamed on success, kept only if the command succeeds:
  `xvjax.fileutil`) unless it is a device such as `/dev/null`. Standard output and output pipes
  are written as the data comes, as in Kaldi: a command that fails has already sent part of its
  output downstream, and closes the stream (the reader sees the table end there and the command's
  non-zero exit status).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys

from xvjax import fileutil
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


def printable(name: str) -> str:
    return "standard input" if name in ("", "-") else name


class InputStream:
    """A small buffered reader over a raw stream, with cheap `peek(n)` (BufferedReader.peek copies
    its whole buffer), `readinto` straight into numpy arrays, `readline`, and `seek` for files."""

    def __init__(self, raw, name: str, chunk: int = 1 << 20, proc: subprocess.Popen | None = None):
        self.raw, self.name, self.chunk, self.proc = raw, name, chunk, proc
        self._buf, self._pos = b"", 0
        self.closed = False

    def _fill(self, n: int, exact: bool = True) -> int:
        """Buffers at least n bytes (fewer at the end of data); with exact=False, stops as soon as
        a read returned something, so streaming pipelines are not held up."""
        avail = len(self._buf) - self._pos
        if avail >= n or (not exact and avail):
            return avail
        parts = [self._buf[self._pos :]]
        read = getattr(self.raw, "read1", self.raw.read)  # what is there, without waiting for more
        while avail < n:
            data = read(max(self.chunk, n - avail))
            if not data:
                break
            parts.append(data)
            avail += len(data)
            if not exact:
                break
        self._buf, self._pos = b"".join(parts), 0
        return avail

    def peek(self, n: int = 1) -> bytes:
        """The next n bytes (fewer only at the end of data), not consumed."""
        self._fill(n)
        return self._buf[self._pos : self._pos + n]

    def peek_available(self, n: int) -> bytes:
        """Up to n next bytes, at least one unless at the end, without waiting for more."""
        self._fill(n, exact=False)
        return self._buf[self._pos : self._pos + n]

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._buf[self._pos :]]
            while data := self.raw.read(self.chunk):
                parts.append(data)
            self._buf, self._pos = b"", 0
            return b"".join(parts)
        avail = len(self._buf) - self._pos
        if n > avail and n > self.chunk:  # big read: buffer remainder + the rest directly
            out = bytearray(n)
            got = self.readinto(memoryview(out))
            return bytes(out[:got])
        self._fill(n)
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def readinto(self, view) -> int:
        view = memoryview(view).cast("B")
        n = len(view)
        k = min(n, len(self._buf) - self._pos)
        view[:k] = self._buf[self._pos : self._pos + k]
        self._pos += k
        while k < n:
            got = self.raw.readinto(view[k:])
            if not got:
                break
            k += got
        return k

    def readline(self) -> bytes:
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                line = self._buf[self._pos : end + 1]
                self._pos = end + 1
                return line
            avail = len(self._buf) - self._pos
            if self._fill(avail + 1) == avail:  # end of data
                return self.read(avail)

    def __iter__(self):
        while line := self.readline():
            yield line

    def seek(self, offset: int) -> None:
        self.raw.seek(offset)
        self._buf, self._pos = b"", 0

    def tell(self) -> int:
        return self.raw.tell() - (len(self._buf) - self._pos)

    def close(self, abandon: bool = False) -> None:
        """Closes the stream; for an input command, waits for it and raises if it failed.

        `abandon=True` (the reader stops early or is unwinding from an error or a signal): the
        command's exit status is not checked and it is not waited for long. Closing the pipe
        makes it die of SIGPIPE when it next writes; one that is not writing (still computing,
        or sleeping) is sent SIGTERM after a second, so an interrupted command exits promptly.
        """
        if self.closed:
            return
        self.closed = True
        if self.proc is None:
            self.raw.close()
            return
        if abandon:
            self.raw.close()
            try:
                self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5.0)
            return
        try:
            at_end = not self.peek(1)
        except (OSError, ValueError):
            at_end = False
        self.raw.close()
        status = self.proc.wait()
        # A reader that stops early makes the command die of SIGPIPE: not an error then.
        if status != 0 and at_end:
            raise XvjaxError(f"input command '{self.name}' exited with status {status}")


def open_input(rx: str, chunk: int = 1 << 20) -> InputStream:
    """Opens an rxfilename for binary reading, positioned at its offset. Caller closes it."""
    kind, target, offset = classify_rxfilename(rx)
    if kind == "stdin":
        return InputStream(sys.stdin.buffer, "-", chunk)
    if kind == "pipe":
        try:
            proc = subprocess.Popen(target, shell=True, stdout=subprocess.PIPE, bufsize=0)
        except OSError as e:
            raise XvjaxError(f"cannot run input command '{target}': {e.strerror}") from None
        return InputStream(proc.stdout, target, chunk, proc)
    try:
        raw = open(target, "rb", buffering=0)
    except OSError as e:
        raise XvjaxError(f"cannot open '{target}' for reading: {e.strerror}") from None
    if offset:
        size = os.fstat(raw.fileno()).st_size
        if offset >= size and os.path.isfile(target):
            raw.close()
            raise XvjaxError(f"offset {offset} is past the end of '{target}' ({size} bytes)")
        raw.seek(offset)
    return InputStream(raw, target, chunk)


@contextlib.contextmanager
def input_stream(rx: str):
    """Context manager around `open_input` (stdin is not closed)."""
    f = open_input(rx)
    try:
        yield f
    except BaseException:  # an error, a signal, or a generator closed early (GeneratorExit)
        if f.raw is not sys.stdin.buffer:
            f.close(abandon=True)
        raise
    if f.raw is not sys.stdin.buffer:
        f.close()


def read_all(rx: str) -> bytes:
    """All bytes of an rxfilename: a file, `file:offset`, `-` (stdin) or `command |`."""
    with input_stream(rx) as f:
        try:
            return f.read()
        except OSError as e:
            raise XvjaxError(f"cannot read {printable(rx)}: {e}") from None


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
            try:
                fd, self.tmp = fileutil.mkstemp_beside(self.target)
            except OSError as e:
                raise XvjaxError(f"cannot open '{self.target}' for writing: {e.strerror}") from None
            self.stream = open(fd, "wb", buffering=1 << 20)

    def write(self, data: bytes) -> int:
        try:
            return self.stream.write(data)
        except BrokenPipeError:
            if self.kind == "pipe":
                try:
                    status = self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    status = "unknown"
                raise XvjaxError(
                    f"output command '{self.target}' stopped reading (exit status {status})"
                ) from None
            raise  # stdout closed by the reader (e.g. `| head`): the CLI exits quietly
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
                    fileutil.replace(self.tmp, self.target)
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


def write_all(wx: str, data: bytes) -> None:
    """Writes bytes to a wxfilename: a file (atomically), `-` (stdout) or `| command`."""
    with output_stream(wx) as out:
        out.write(data)
