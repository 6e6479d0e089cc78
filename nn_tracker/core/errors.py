"""The errors nn_tracker raises for bad input."""

from __future__ import annotations

import contextlib
import re
import sys


class NNTrackerError(Exception):
    """Base class of every error nn_tracker raises on purpose."""


class ValidationError(NNTrackerError, ValueError):
    """A value broke a rule; the message names the field, the value and the rule.

    Attributes:
        field: Name of the offending field (as the user spelled it).
        value: The value that was given.
        rule: The rule it broke, e.g. ``"must be >= 1"``.

    """

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{shorten(printable(field))} {printable(rule)}, got {shorten(printable(repr(value)))}")


MAX_MESSAGE_CHARS = 300  # the longest value or message nn_tracker repeats in an error or a report


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[: limit - 40]}... ({len(text) - limit + 40:,} more characters)"


def describe(exc: BaseException) -> str:
    """An exception's message for a report or a log line: one line, shortened, even if its ``__str__`` raises."""
    if isinstance(exc, SystemExit):
        return f"exit status {exc.code}" if isinstance(exc.code, int) else "sys.exit() with a message"
    if isinstance(exc, KeyboardInterrupt):
        return "SIGINT (Ctrl-C)"
    if type(exc).__name__ == "CancelledError":
        return "cancelled"
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break the report
        text = f"<{type(exc).__name__} whose message cannot be shown>"
    return shorten(printable(text))


# compiled at first use (by re's cache), not at import: ~0.3 ms
# an absolute path (or file:// URL); its folders may hold spaces (``/Users/Ada Lovelace/x.csv``), its name not
_ABSOLUTE_PATH = r"(?:\bfile://|(?<![\w:/.~<-]))/(?:[^\s'\"/](?:[^'\"/\n]*[^\s'\"/])?/)*([^\s'\"/]+)"
_QUOTED_PATH = r"(['\"])(?:file://)?/(?:[^'\"\n]*/)?([^'\"/\n]*)\1"  # Python quotes them: any name


def without_folders(text: str) -> str:
    """``text`` with every absolute path cut to its file's name (reports get published; folders say who and where)."""
    return re.sub(_ABSOLUTE_PATH, r"\1", re.sub(_QUOTED_PATH, r"\1\2\1", text))


def say(line: str) -> None:
    """One line on stderr, if stderr can take it (``2>/dev/full`` must not change an exit status)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(line, file=sys.stderr, flush=True)


def printable(text: str) -> str:
    """Keep a message on one line whatever the user's names contain (control characters are escaped)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class LookupFailed(NNTrackerError, KeyError):
    """A name is not in a bundled or user catalogue; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
