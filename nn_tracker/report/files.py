"""Atomic file output: a killed process leaves the previous file or the new one, never half of one.

Files are created with mode 0o664 and folders with 0o775, less the user's umask: never
world-writable. Temporary files are named ``.nnt.<hex>.tmp`` (short: any name that fits the
folder fits); those a killed process left behind are removed by the next tracker that starts in
the same folder. Only regular files are replaced: a device, a FIFO or a link where a report is
to go is refused, never replaced.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

FILE_MODE = 0o664  # less the umask; never world-writable
FOLDER_MODE = 0o775
STALE_AFTER_S = 600.0  # a temporary file this old belongs to no write in progress


def make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) with mode 0o775 less the umask."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):  # Path.mkdir(parents=True) would give the parents mode 0o777
        path.mkdir(mode=FOLDER_MODE, exist_ok=True)


_HEX_DIGITS = frozenset("0123456789abcdef")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file of nn_tracker's: ``.<name>.<8 or more hex digits>.tmp``.

    (``.nnt.<hex>.tmp``, and ``.<report>.<hex>.tmp`` as earlier versions named them.)
    """
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    head, _, tag = name[1:-4].rpartition(".")  # no dot: no head
    return bool(head) and len(tag) >= 8 and set(tag) <= _HEX_DIGITS


def remove_stale_temporaries(folder: str | Path, now_s: float | None = None) -> list[Path]:
    """Remove nn_tracker's own temporary files older than :data:`STALE_AFTER_S` in ``folder``."""
    now_s = time.time() if now_s is None else now_s
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if not is_temporary(entry.name):  # the name first: a folder of many reports costs no stat each
                continue
            stale = now_s - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            if entry.is_file(follow_symlinks=False) and stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _temporary_copy(target: Path, text: str, sync: bool = True) -> Path:
    """``text`` written (and synced) to a new hidden temporary file beside ``target`` (its folder made if needed)."""
    make_folder(target.parent)
    temporary = target.with_name(f".nnt.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The file is created with mode 0o664 less the process umask: the user's umask
    applies and the file is never world-writable. The folder is created if missing.

    Raises:
        OSError: the folder cannot be created or written (the old file is untouched).

    """
    target = Path(path)
    _refuse_other_than_regular(target)
    temporary = _temporary_copy(target, text)
    try:
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def claim(path: str | Path, text: str, sync: bool = True) -> Path:
    """Create ``path`` with ``text`` only if nothing is there (atomic); else the next free ``stem-N`` name.

    Two runs given the same name never overwrite each other's report: after ``stem-999``, names take
    random suffixes. ``sync=False``: the text is not synced to disk first (a process killed still
    leaves all of it; a machine that loses power may leave an empty file).
    """
    target = Path(path)
    temporary = _temporary_copy(target, text, sync)
    try:
        stem, suffix = target.stem, target.suffix
        for n in range(1, 1100):
            tag = str(n) if n < 1000 else os.urandom(6).hex()
            candidate = target if n == 1 else target.with_name(f"{stem}-{tag}{suffix}")
            try:
                os.link(temporary, candidate)  # fails if the name is taken, whatever it is
            except FileExistsError:
                continue
            return candidate
        raise FileExistsError(f"no free name for {target}")
    finally:
        temporary.unlink(missing_ok=True)


def _refuse_other_than_regular(target: Path) -> None:
    """Raise unless ``target`` is a regular file or does not exist (a device or FIFO is never replaced).

    Raises:
        OSError: something other than a regular file is there.
    """
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise OSError(errno.EEXIST, "not a regular file: nn_tracker replaces only regular files", str(target))


def append_whole(
    path: str | Path,
    payload: Callable[[int], bytes],
    is_whole: Callable[[bytes, bytes], bool] | None = None,
    accept: Callable[[bytes], None] | None = None,
) -> Path:
    """Append ``payload(size of the file)`` to ``path``: whole or not at all, never through a symlink.

    The file is locked (``flock`` on the file itself, no lock file) while its tail is checked and
    the data written, so processes appending at once never interleave. A last line without its
    newline is completed when ``is_whole(first line, last line)`` says it is whole (a file edited by
    hand), else it was torn by an earlier crash or a full disk and is cut off; if this write fails,
    the file is cut back to its previous length, and a file this call created is removed.

    Raises:
        OSError: nothing was appended (the file is as it was).

    """
    target = Path(path)
    make_folder(target.parent)
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EEXIST, "not a regular file: nn_tracker appends only to regular files", str(target))
        fcntl.flock(fd, fcntl.LOCK_EX)
        if accept is not None and os.fstat(fd).st_size:  # before anything is changed: a file not ours is left as is
            accept(os.pread(fd, 1 << 16, 0).split(b"\n", 1)[0])
        size = _mend_last_line(fd, is_whole)
        data = payload(size)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # back to the lines that were whole
            if size == 0:
                os.unlink(target)  # created (or found empty) here: leave no empty file
            raise
    finally:
        os.close(fd)  # closing releases the lock
    return target


def _mend_last_line(fd: int, is_whole: Callable[[bytes, bytes], bool] | None) -> int:
    """Complete a whole last line without its newline, or cut a torn one off; return the file's length."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    block = min(size, 1 << 16)
    tail = os.pread(fd, block, size - block)
    if tail.endswith(b"\n"):
        return size
    last = tail.rfind(b"\n")
    while last < 0 and block < size:  # a very long last line: look further back
        block = min(size, block * 4)
        tail = os.pread(fd, block, size - block)
        last = tail.rfind(b"\n")
    keep = size - block + last + 1 if last >= 0 else 0
    first = os.pread(fd, min(size, 1 << 16), 0).split(b"\n", 1)[0]
    if is_whole is not None and is_whole(first, tail[last + 1 :]):
        os.write(fd, b"\n")  # O_APPEND: at the end
        return size + 1
    os.ftruncate(fd, keep)
    return keep
