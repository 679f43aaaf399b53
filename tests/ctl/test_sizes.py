"""Byte counts with units in ``axonfs ctl`` (the daemon's options: tests/mount)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import Daemon


def ctl(daemon: Daemon, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "axonfs", "ctl", *args], input=stdin,
                          capture_output=True, env=daemon.env(), timeout=60)


def test_get_size_takes_units(daemon: Daemon) -> None:
    data = bytes(range(256)) * 16
    sha = ctl(daemon, "put", "-", stdin=data).stdout.split()[1].decode()
    assert ctl(daemon, "get", sha, "--size", "1K").stdout == data[:1024]
    assert ctl(daemon, "get", sha, "--offs", "4000", "--size", "1k").stdout == data[4000:]
    refused = ctl(daemon, "get", sha, "--size", "lots")
    assert refused.returncode == 2
    assert b"not a byte count: 'lots'" in refused.stderr
