"""Output files: written to a temp file beside the target, renamed into place when complete, and,
while a command runs, kept or undone together.

- `mkstemp_beside(path)` / `mkdtemp_beside(path)`: a temp file or directory
  `.NAME.xvjax-HOST-PID-XXXXXXXX.tmp` beside `path`, with the permissions a plain `open`/`mkdir`
  would give (the umask's, not mkstemp's 0600/0700). The writer's host and pid are in the name, so
  temp files left by a process that no longer exists (SIGKILL, a crash, a reboot) are recognised
  and removed when that folder is next written to; a live writer's are never touched (nor any of
  another host's: on a shared file system only their host can tell; containers sharing a host
  name but not their process ids should not share an output folder).
- `replace(tmp, path)`: puts a finished temp file or directory in place of `path`.
- `remove(path)`: deletes an output that is no longer wanted (undone with the rest on failure).
- `command_outputs()`: the run wrapper's block (`xvjax.cli.run`). Inside it every `replace` and
  `remove` is recorded; when the block fails (an exception, or `outputs.rollback()` for a non-zero
  exit status) the new files are removed and the files they replaced are put back, so a failed
  command leaves the file system as it found it. Files stay readable during the command (a job may
  read back what it wrote), and each file is replaced atomically.
- `atomic_open`, `atomic_path`, `write_json`: write-then-rename for library code.

Standard output and pipes (`ark:-`, `ark:| gzip -c > x`) cannot be un-written: what was written
before a failure has gone downstream, as with Kaldi's binaries; the command's non-zero exit status
is the signal (xvjax's readers of `ark:cmd |` turn it into an error).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import threading

from xvjax.errors import XvjaxError

_HOST = socket.gethostname()
# `.NAME.xvjax-HOST-PID-RANDOM.tmp` (temp output) or `.old` (a replaced file kept for undo).
_OWNED = re.compile(r"\.xvjax-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+\.(?:tmp|old)$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _prefix(path: str) -> str:
    owner = f".xvjax-{_HOST}-{os.getpid()}-"
    base = os.path.basename(path)
    room = 255 - len(owner.encode()) - 1 - 12  # NAME_MAX, the dot, 8 random chars + ".tmp"
    while len(base.encode()) > room:  # a long name is shortened in its temp file's name only
        base = base[:-1]
    return f".{base}{owner}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


def remove_stale_temps(folder: str) -> list[str]:
    """Removes the temp files and directories in `folder` that were left by xvjax processes of this
    host that no longer exist; returns their names. Others' (other hosts, live processes, other
    programs) are left alone."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _OWNED.search(entry.name)
        if not entry.name.startswith(".") or m is None or m.group("host") != _HOST:
            continue
        if _process_exists(int(m.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def _prepare_folder(path: str) -> str:
    """The folder of `path`, created if needed (and recorded for undo), cleaned of stale temps
    once per process."""
    folder = os.path.dirname(os.path.abspath(path))
    makedirs(folder)
    with _cleaned_lock:
        first = folder not in _cleaned
        _cleaned.add(folder)
    if first:
        remove_stale_temps(folder)
    return folder


def mkstemp_beside(path: str | os.PathLike) -> tuple[int, str]:
    """(fd, name) of a new temp file in `path`'s folder (created if needed), with the permissions
    a plain `open(path, "w")` would give (mkstemp's own are 0600). XvjaxError if it cannot be made."""
    path = os.fspath(path)
    try:
        folder = _prepare_folder(path)
        fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=folder)
    except OSError as e:
        raise XvjaxError(f"cannot write '{path}': {e.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def mkdtemp_beside(path: str | os.PathLike) -> str:
    """A new temp directory in `path`'s folder, with the permissions a plain `mkdir` would give
    (mkdtemp's own are 0700, which would keep a shared model from colleagues)."""
    path = os.fspath(path)
    try:
        folder = _prepare_folder(path)
        tmp = tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=folder)
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as e:
        raise XvjaxError(f"cannot write '{path}': {e.strerror}") from None
    return tmp


def makedirs(folder: str | os.PathLike) -> None:
    """`os.makedirs(folder, exist_ok=True)`; inside `command_outputs` the folders it creates are
    removed again (when empty) if the command fails."""
    folder = os.path.abspath(os.fspath(folder))
    created = []
    parent = folder
    while not os.path.isdir(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    if not created:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise XvjaxError(f"cannot create directory '{folder}': {e.strerror}") from None
    outputs = _current()
    if outputs is not None:
        outputs._made_dirs.extend(reversed(created))


def _aside_name(target: str) -> str:
    folder = os.path.dirname(target)
    return os.path.join(folder, f"{_prefix(target)}{secrets.token_hex(4)}.old")


def _remove_any(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _replace_now(tmp: str, target: str) -> None:
    if os.path.isdir(tmp) and os.path.isdir(target) and not os.path.islink(target):
        old = _aside_name(target)  # a directory cannot be renamed onto a non-empty one
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


class Outputs:
    """The outputs one command has put in place, kept (`commit`) or undone (`rollback`) together."""

    def __init__(self):
        self.pid = os.getpid()
        self._asides: dict[str, str | None] = {}  # target -> what it replaced, set aside (or None)
        self._made_dirs: list[str] = []
        self._lock = threading.Lock()
        self.rolled_back = False

    def _set_aside(self, target: str) -> None:
        """Keeps what is at `target` before the command first changes it (a hard link for a file,
        so the target stays readable until its replacement is renamed over it)."""
        if target in self._asides:
            return
        aside = None
        if os.path.lexists(target):
            aside = _aside_name(target)
            if os.path.isdir(target) and not os.path.islink(target):
                os.rename(target, aside)
            else:
                try:
                    os.link(target, aside, follow_symlinks=False)
                except OSError:  # file systems without hard links
                    os.rename(target, aside)
        self._asides[target] = aside

    def replace(self, tmp: str, target: str) -> None:
        with self._lock:
            self._set_aside(target)
            if os.path.isdir(tmp) and os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)  # an earlier version from this same command
            os.replace(tmp, target)

    def remove(self, target: str) -> None:
        with self._lock:
            self._set_aside(target)
            with contextlib.suppress(FileNotFoundError):
                _remove_any(target)

    def commit(self) -> None:
        """Keeps every output; deletes what they replaced."""
        with self._lock, _signals_held():
            for aside in self._asides.values():
                if aside is not None:
                    with contextlib.suppress(OSError):
                        _remove_any(aside)
            self._asides, self._made_dirs = {}, []

    def rollback(self) -> None:
        """Removes every output and puts back what they replaced (last first)."""
        with self._lock, _signals_held():
            for target, aside in reversed(list(self._asides.items())):
                with contextlib.suppress(OSError):
                    _remove_any(target)
                    if aside is not None:
                        os.rename(aside, target)
            for folder in reversed(self._made_dirs):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only if empty: someone else may have written there too
            self._asides, self._made_dirs = {}, []
            self.rolled_back = True


_active: Outputs | None = None


def _current() -> Outputs | None:
    """The running command's outputs; None outside `command_outputs` and in forked workers (they
    cannot report back, so their files are theirs to finish)."""
    outputs = _active
    return outputs if outputs is not None and outputs.pid == os.getpid() else None


@contextlib.contextmanager
def _signals_held():
    """Defers SIGINT/SIGTERM/SIGHUP while a commit or rollback renames files."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def command_outputs():
    """Yields the `Outputs` of the block: committed when it ends normally (unless
    `outputs.rollback()` was called, e.g. for a non-zero exit status), rolled back when it raises.
    A nested block joins the outer one."""
    global _active
    if _current() is not None:
        yield _active
        return
    outputs = _active = Outputs()
    try:
        yield outputs
    except BaseException:
        outputs.rollback()
        raise
    else:
        if not outputs.rolled_back:
            outputs.commit()
    finally:
        _active = None


def replace(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Puts the finished temp file or directory `tmp` in place of `path` (a file atomically; an
    existing directory is moved aside first). Inside `command_outputs`, what was at `path` is kept
    until the command ends, so a failure can put it back."""
    tmp, path = os.fspath(tmp), os.path.abspath(os.fspath(path))
    outputs = _current()
    if outputs is None:
        _replace_now(tmp, path)
    else:
        outputs.replace(tmp, path)


def remove(path: str | os.PathLike) -> None:
    """Deletes an output file (or directory) if it exists; undone if the running command fails."""
    path = os.path.abspath(os.fspath(path))
    outputs = _current()
    if outputs is None:
        with contextlib.suppress(FileNotFoundError):
            _remove_any(path)
    else:
        outputs.remove(path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs):
    """Opens a temp file beside `path`; renames it onto `path` only if the block succeeds."""
    path = os.fspath(path)
    fd, tmp = mkstemp_beside(path)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temp path beside `path` for writers that want a filename; renamed on success."""
    path = os.fspath(path)
    fd, tmp = mkstemp_beside(path)
    os.close(fd)
    try:
        yield tmp
        replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    """obj as indented, key-sorted JSON, written atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
