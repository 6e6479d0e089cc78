"""One hardened way to read every file a user gives: manifests, configs, catalogues, reports, series.

Whatever the bytes, the result is the document or one :class:`~nn_tracker.core.errors.ValidationError`
naming the file and the rule, never a traceback, and in bounded time and memory:

- the file must be a readable regular file (a FIFO or device is refused at once, never waited on), at
  most :data:`MAX_BYTES`, UTF-8 (a BOM is allowed), not empty;
  an invalid byte is reported with its offset;
- YAML and JSON may nest at most :data:`MAX_DEPTH` levels; YAML aliases may expand the document
  to at most :data:`MAX_NODES` nodes (an "alias bomb" is refused before it is built);
- numbers must be finite and within float range (``1e400``, ``.inf``, ``NaN``, a 400-digit integer:
  refused, naming where).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nn_tracker.core.errors import ValidationError

MAX_BYTES = 512 * 1024 * 1024
MAX_DEPTH = 1000
MAX_NODES = 1_000_000
FLOAT_MAX = sys.float_info.max


def read_text(path: str | Path, what: str, allow_empty: bool = False) -> str:
    """The text of a user's file (``allow_empty``: an empty file is an empty document, e.g. a config).

    Raises:
        ValidationError: unreadable, too large, not UTF-8, or empty.

    """
    path = Path(path)
    if "\x00" in str(path):  # open() would raise ValueError, not OSError
        raise ValidationError(what, str(path), "must be a path without NUL characters")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)  # a FIFO must not block the open
    except OSError as exc:
        raise ValidationError(what, str(path), f"must be a readable file ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValidationError(what, str(path), "must be a regular file (not a FIFO, device or folder)")
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ValidationError(what, str(path), f"must be a readable file ({exc.strerror or exc})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_BYTES:
        raise ValidationError(what, str(path), f"must be at most {MAX_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            what, str(path), f"must be UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start} is not)"
        ) from None
    if not text.strip() and not allow_empty:
        raise ValidationError(what, str(path), "must not be empty")
    return text


SYSTEM_FILE_BYTES = 1 << 20  # a sysfs, procfs or cgroup file nn_tracker reads is far smaller


def read_system_file(path: str | Path, limit: int = SYSTEM_FILE_BYTES) -> str:
    """A small file of the system (sysfs, procfs, cgroup): never blocks, never grows, never raises on bytes.

    Opened without blocking and only if it is a regular file (a FIFO or device in its place is an
    ``OSError``, not a hang); at most ``limit`` bytes are read; bytes that are not UTF-8 are replaced.

    Raises:
        OSError: it cannot be read, or it is not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = os.read(fd, limit)
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=64)
def proc_file(root: str | Path, name: str) -> str:
    """``root/name``, joined once (a sensor reads the same file at every sample)."""
    return os.path.join(root, name)


def read_head(path: str, size: int) -> bytes:
    """The first ``size`` bytes of a procfs file read at every sample (``/proc/stat``, ``/proc/meminfo``).

    Plain system calls: ``open()`` builds a buffered file object around them, which costs a
    reading of the CPU sensors ~11 us of its ~60 (``benchmarks/bench_tracker.py --only tick``).

    Raises:
        OSError: it cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


@contextlib.contextmanager
def deep_recursion(depth: int = MAX_DEPTH) -> Iterator[None]:
    """Allow the recursion that a document of up to ``depth`` levels needs (parsers, dumpers, walks)."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, depth * 12 + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def load_yaml(text: str, what: str) -> Any:
    """Parse YAML with PyYAML's safe loader, after checking depth and alias expansion.

    Raises:
        ValidationError: not YAML, too deep, an alias bomb, or a number out of range.

    """
    import yaml

    try:
        _check_yaml_shape(text, what)
        with deep_recursion():
            loader = _safe_loader()(text)  # what yaml.safe_load does, with the C loader where built
            try:
                document = loader.get_single_data()
            finally:
                loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__  # never the file's text: it may be secret
        if "tag" in problem:  # PyYAML names the tag it found: text of the file
            problem = "a YAML tag that is not plain data"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ValidationError(what, f"{where}{problem}", "must be valid YAML") from None
    except RecursionError:
        raise ValidationError(what, "YAML", f"must nest at most {MAX_DEPTH} levels") from None
    except ValidationError:
        raise
    except ValueError as exc:  # e.g. an integer longer than Python converts (4,300 digits)
        raise ValidationError(what, "YAML", f"must hold values Python can read ({exc})") from None
    check_numbers(document, what)
    return document


def _safe_loader() -> Any:
    """PyYAML's safe loader, in C (libyaml, in PyYAML's wheels) where available: ~10x faster on large files."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump_yaml(data: Any, **options: Any) -> str:
    """``yaml.safe_dump`` with PyYAML's C emitter where available (a large manifest in a second, not a minute)."""
    import yaml

    result: str = yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), **options)
    return result


def _check_yaml_shape(text: str, what: str) -> None:
    """Walk the parser's events (no recursion, nothing built): depth and expanded size."""
    import yaml

    depth = total = 0
    sizes: list[int] = []  # node count of each open collection (for anchors on it)
    anchored: dict[str, int] = {}
    open_anchors: list[str | None] = []
    for event in yaml.parse(text, Loader=_safe_loader()):
        added = 0
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ValidationError(what, f"{depth} levels", f"must nest at most {MAX_DEPTH} levels")
            sizes.append(0)
            open_anchors.append(event.anchor)
            added = 1
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            size = sizes.pop() + 1
            anchor = open_anchors.pop()
            if anchor is not None:
                anchored[anchor] = size
            if sizes:
                sizes[-1] += size
        elif isinstance(event, yaml.ScalarEvent):
            added = 1
            if event.anchor is not None:
                anchored[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            added = anchored.get(event.anchor, 1)
        if added and sizes and not isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            sizes[-1] += added
        total += added
        if total > MAX_NODES:
            raise ValidationError(what, "YAML", f"must expand to at most {MAX_NODES:,} nodes (aliases included)")


def load_json(text: str, what: str) -> Any:
    """Parse JSON (``NaN``/``Infinity`` refused), nesting at most :data:`MAX_DEPTH` levels.

    Raises:
        ValidationError: not JSON, too deep, or a number out of range.

    """

    def refuse(constant: str) -> None:
        raise ValidationError(what, constant, "must contain only finite numbers")

    try:
        with deep_recursion():
            document = json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise ValidationError(what, f"line {exc.lineno}, column {exc.colno}: {exc.msg}", "must be valid JSON") from None
    except RecursionError:
        raise ValidationError(what, "JSON", f"must nest at most {MAX_DEPTH} levels") from None
    except ValidationError:
        raise
    except ValueError as exc:  # e.g. an integer longer than Python converts (4,300 digits)
        raise ValidationError(what, "JSON", f"must hold values Python can read ({exc})") from None
    check_numbers(document, what)
    return document


def check_numbers(document: Any, what: str) -> None:
    """Refuse numbers that are not finite or beyond float range, anywhere (an iterative walk).

    Raises:
        ValidationError: naming the first such number's place.

    """
    stack: list[tuple[Any, str, int]] = [(document, what, 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValidationError(where, "...", f"must nest at most {MAX_DEPTH} levels")
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if abs(value) > FLOAT_MAX:
                raise ValidationError(
                    where, f"{str(value)[:20]}... ({len(str(value))} digits)", "must be within float range"
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValidationError(where, value, "must be a finite number")
        elif isinstance(value, dict):
            stack.extend((item, f"{where}.{key}", depth + 1) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))


def output_path(value: str | Path, what: str = "output") -> Path:
    """A path a file can be written to (not empty, not a folder).

    Raises:
        ValidationError: it cannot name a file.

    """
    text = str(value)
    if not text.strip() or text.endswith(("/", "\\")) or Path(text).is_dir() or Path(text).name in ("", ".", ".."):
        raise ValidationError(what, text, "must be a file path (not empty, not a folder)")
    try:
        mode = os.lstat(text).st_mode
    except OSError:
        return Path(text)  # a new name
    if not stat.S_ISREG(mode):
        raise ValidationError(what, text, "must be a regular file or a new name (never a device, FIFO or link)")
    return Path(text)
