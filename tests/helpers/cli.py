"""Run the ``axonfs`` command line as a subprocess of the test.

Every run has a timeout, reads nothing from the terminal (stdin is /dev/null
unless the test gives input) and captures stdout and stderr. It never raises
on a non-zero status unless asked to with ``check=True``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

AXONFS = [sys.executable, "-m", "axonfs"]
"""The command line that runs this checkout's axonfs."""
TIMEOUT = 60.0


def run_axonfs(
    *args: str | Path,
    check: bool = False,
    timeout: float = TIMEOUT,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:  # noqa: A002
    """``axonfs ARGS`` to completion; its output as text."""
    return subprocess.run(
        [*AXONFS, *map(str, args)],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        env=env,
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def run_axonfs_bytes(
    *args: str | Path,
    stdin: bytes = b"",
    check: bool = False,
    timeout: float = TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``axonfs ARGS`` to completion with *stdin* as its input; its output as bytes."""
    return subprocess.run(
        [*AXONFS, *map(str, args)],
        capture_output=True,
        input=stdin,
        check=check,
        timeout=timeout,
        env=env,
    )
