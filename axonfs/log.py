"""Logging setup: one handler on the root logger, journald-aware, level changeable live.

Every module logs through ``logging.getLogger(__name__)``; this module only
decides where the records go and how they look:

* on a terminal or into a file: ``TIME PID LEVEL logger: message``;
* under systemd with stderr connected to the journal: ``<N>logger: message``,
  N being the syslog priority (journald reads it and strips it; it adds the
  timestamp and pid itself). Tracebacks keep the prefix on every line, or
  journald would file the continuation lines at the default priority.

Detection follows ``sd_journal_stream_fd(3)``: ``$JOURNAL_STREAM`` names the
``device:inode`` of the journal stream, and only when stderr *is* that stream
(not redirected elsewhere by the unit or a shell) is the journal format used.
``$INVOCATION_ID`` alone (a unit whose stderr goes to a file) keeps the plain
format.

:func:`set_level` changes a logger's level while the daemon runs
(``axonfs ctl log-level``); handlers stay at NOTSET, so the loggers' levels
alone decide.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error", "critical")
"""Level names accepted on the command line, in the config file and over the socket."""

PLAIN_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """``<N>`` syslog priority prefix on every line, no timestamp (journald adds it)."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        priority = _priority(record.levelno)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.split("\n"))


def _priority(levelno: int) -> int:
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _SYSLOG_PRIORITY[threshold]
    return _SYSLOG_PRIORITY[logging.DEBUG]


def stderr_is_journal(stream: TextIO | None = None) -> bool:
    """Whether *stream* (default stderr) is the journal stream systemd connected."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = expected.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def level_number(name: str) -> int:
    """The :mod:`logging` number of a level name from :data:`LEVELS` (any case).

    Raises:
        ValueError: not a level name.
    """
    if name.lower() not in LEVELS:
        raise ValueError(f"not a log level: {name!r} (one of {', '.join(LEVELS)})")
    return logging.getLevelNamesMapping()[name.upper()]


def setup_logging(level: str = "info", file: Path | None = None) -> None:
    """Send every record to stderr (journal-formatted under systemd) or to *file*.

    Replaces the root logger's handlers, so calling it again (the daemon
    switching to its log file) does not duplicate lines.
    """
    handler: logging.Handler
    if file is not None:
        handler = logging.FileHandler(file)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JournalFormatter() if stderr_is_journal() else logging.Formatter(PLAIN_FORMAT)
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level_number(level))


def set_level(level: str, logger: str = "") -> tuple[str, str]:
    """Set the level of *logger* (the root logger by default) while running.

    Returns:
        ``(previous, new)`` effective level names, lower case.

    Raises:
        ValueError: *level* is not a level name.
    """
    number = level_number(level)
    target = logging.getLogger(logger or None)
    previous = logging.getLevelName(target.getEffectiveLevel()).lower()
    target.setLevel(number)
    logging.getLogger(__name__).info(
        "log level of %s set to %s (was %s)", logger or "the root logger", level.lower(), previous
    )
    return previous, level.lower()


def levels() -> dict[str, str]:
    """The root logger's level and every logger whose level was set explicitly."""
    found = {"": logging.getLevelName(logging.getLogger().level).lower()}
    for name, logger in sorted(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            found[name] = logging.getLevelName(logger.level).lower()
    return found
