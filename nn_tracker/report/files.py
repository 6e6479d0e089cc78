"""Atomic file output: a killed process leaves the previous file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o664  # less the umask; never world-writable


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The file is created with mode 0o664 less the process umask: the user's umask
    applies and the file is never world-writable. The folder is created if missing.

    Raises:
        OSError: the folder cannot be created or written (the old file is untouched).

    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target
