"""Logging: the journal format under systemd and ``axonfs ctl log-level`` at runtime."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest

from axonfs import client
from axonfs import log as logsetup
from axonfs.errors import BadArg

from .conftest import StartServe, clean_env, wait_for


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("axonfs.x", level, __file__, 1, message, (), None)


def test_journal_format_has_priorities_and_no_timestamps() -> None:
    formatter = logsetup.JournalFormatter()
    assert formatter.format(record(logging.INFO, "hello")) == "<6>axonfs.x: hello"
    assert formatter.format(record(logging.DEBUG, "d")) == "<7>axonfs.x: d"
    assert formatter.format(record(logging.WARNING, "w")) == "<4>axonfs.x: w"
    assert formatter.format(record(logging.CRITICAL, "c")) == "<2>axonfs.x: c"
    # Every line of a multi-line message (a traceback) keeps its priority.
    assert formatter.format(record(logging.ERROR, "a\nb")) == "<3>axonfs.x: a\n<3>b"


def test_journal_detection_compares_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "stream", "w") as stream:
        status = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        assert logsetup.stderr_is_journal(stream)
        with open(tmp_path / "other", "w") as other:
            assert not logsetup.stderr_is_journal(other)  # stderr redirected elsewhere
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not logsetup.stderr_is_journal(io.StringIO())


async def test_ctl_log_level_changes_the_daemon_level(start_serve: StartServe) -> None:
    served = start_serve(env=clean_env())
    missing = "00" * 32

    def debug_lines() -> list[str]:
        return [line for line in served.log_text().splitlines() if " DEBUG " in line]

    assert served.ctl("has", missing).returncode == 1
    assert not debug_lines(), "debug lines at the default level"
    shown = served.ctl("log-level")
    assert shown.returncode == 0 and shown.stdout.splitlines() == ["(root) info"]

    changed = served.ctl("log-level", "debug")
    assert changed.returncode == 0 and "(root) debug" in changed.stdout
    assert served.ctl("has", missing).returncode == 1
    wait_for(
        lambda: any("axonfs.ctlserver: request" in line for line in debug_lines()),
        timeout=5,
        what="debug lines",
    )

    # One logger back to info: its debug lines stop, the others' stay.
    quiet = served.ctl("--json", "log-level", "info", "--logger", "axonfs.ctlserver")
    assert quiet.returncode == 0 and '"axonfs.ctlserver":"info"' in quiet.stdout
    before = len(debug_lines())
    assert served.ctl("has", missing).returncode == 1
    assert not [line for line in debug_lines()[before:] if "axonfs.ctlserver: request" in line]

    assert served.ctl("log-level", "loud").returncode == 2  # refused by the CLI
    async with client.connect(served.socket) as axon:  # and by the daemon
        with pytest.raises(BadArg, match="not a log level"):
            await axon.log_level("loud")
        levels = (await axon.log_level())["levels"]
    assert levels[""] == "debug" and levels["axonfs.ctlserver"] == "info"
