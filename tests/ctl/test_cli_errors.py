"""What a user sees when something is wrong: one line, a documented exit status.

Every test drives the ``axonfs`` command as a subprocess, on real filesystems:
a tmpfs for a foreign mount, a read-only bind mount for a read-only store, a
mount namespace in which ``/dev/fuse`` cannot be opened.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from axonfs.mountinfo import find_mount

AXONFS = [sys.executable, "-m", "axonfs"]
TIMEOUT = 60

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts filesystems (needs root)")


def axonfs(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
           command: list[str] = AXONFS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=cwd, env=env, check=False)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed (no traceback, no log lines)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("axonfs: "), result.stderr
    return lines[0]


@contextmanager
def mounted(*mount_args: str, target: Path) -> Iterator[Path]:
    """``mount ARGS TARGET``, unmounted (lazily if busy) on the way out."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *mount_args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


# -- umount ------------------------------------------------------------------------------


@needs_root
def test_umount_leaves_other_filesystems_alone(tmp_path: Path) -> None:
    with mounted("-t", "tmpfs", "tmpfs", target=tmp_path / "tmpfs") as target:
        (target / "kept").write_text("still here")
        result = axonfs("umount", target)
        assert result.returncode == 1
        assert "not an axonfs mount" in one_line(result)
        assert find_mount(target) is not None
        assert (target / "kept").read_text() == "still here"


# -- starting the daemon -----------------------------------------------------------------


def test_daemon_starts_from_a_directory_holding_an_axonfs_folder(tmp_path: Path) -> None:
    """The detached daemon imports the installed package, not ./axonfs."""
    work = tmp_path / "work"
    (work / "axonfs").mkdir(parents=True)
    for name in ("__init__.py", "__main__.py"):
        (work / "axonfs" / name).write_text("raise ImportError('the decoy was imported')\n")
    store = tmp_path / "store"
    # The parent is started so that it cannot import the decoy itself: what is
    # under test is how it starts the daemon.
    parent = [sys.executable, "-P", "-m", "axonfs"]
    try:
        started = axonfs("serve", "--store", store, cwd=work, command=parent)
        assert started.returncode == 0, started.stderr + (store / "axonfs.log").read_text()
    finally:
        axonfs("stop", "--store", store)
    assert "decoy" not in (store / "axonfs.log").read_text()
