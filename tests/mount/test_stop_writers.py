"""SIGTERM/SIGINT while a file is being written into /incoming.

The daemon keeps serving until the writer closes its file (which commits it),
then unmounts; past ``--stop-timeout`` it stops anyway, logs the discarded
upload by name, and the writer gets ENOTCONN. A second signal stops at once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal

import pytest
from helpers.daemon import MountDaemon
from helpers.fuse import wait_until

WAITING = "are closed (at most"


def log_says(mounted: MountDaemon, text: str) -> bool:
    return mounted.log_file.exists() and text in mounted.log_file.read_text(errors="replace")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_waits_for_a_writer_to_close(local_mount: MountDaemon, signum: int) -> None:
    local_mount.start()
    assert local_mount.pid is not None
    first, second = os.urandom(1 << 20), os.urandom(1 << 20)
    with open(local_mount.path("incoming", "copy"), "wb") as file:
        file.write(first)
        file.flush()
        os.kill(local_mount.pid, signum)
        assert wait_until(lambda: log_says(local_mount, WAITING), timeout=20)
        file.write(second)  # the mount still serves the writer
    # close() returned: committed; then the daemon stops on its own.
    assert wait_until(local_mount.gone, timeout=30)
    log = local_mount.log_file.read_text()
    assert "every file being written to /incoming was closed: stopping" in log
    assert "discarded" not in log
    local_mount.start()
    sha = hashlib.sha256(first + second).hexdigest()
    assert local_mount.path("by-sha256", sha).read_bytes() == first + second


def test_stop_timeout_discards_and_logs_the_upload(local_mount: MountDaemon) -> None:
    local_mount.start("--stop-timeout", "1")
    assert local_mount.pid is not None
    file = open(local_mount.path("incoming", "slow"), "wb")  # noqa: SIM115
    try:
        file.write(b"x" * 4096)
        file.flush()
        os.kill(local_mount.pid, signal.SIGTERM)
        assert wait_until(local_mount.gone, timeout=30)
        with pytest.raises(OSError) as caught:
            file.write(b"more")
            file.flush()
        assert caught.value.errno == errno.ENOTCONN
    finally:
        with contextlib.suppress(OSError):  # its buffered bytes cannot be written
            file.close()
    log = local_mount.log_file.read_text()
    assert "files still being written to /incoming after 1 s: stopping anyway" in log
    assert "incoming/slow: discarded at shutdown while being written (4096 bytes, not stored" in log


def test_a_second_signal_stops_at_once(local_mount: MountDaemon) -> None:
    local_mount.start()
    assert local_mount.pid is not None
    fd = os.open(local_mount.path("incoming", "f"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"data")
        os.kill(local_mount.pid, signal.SIGTERM)
        assert wait_until(lambda: log_says(local_mount, WAITING), timeout=20)
        os.kill(local_mount.pid, signal.SIGTERM)
        assert wait_until(local_mount.gone, timeout=30)
        with pytest.raises(OSError) as caught:
            os.write(fd, b"more")
        assert caught.value.errno == errno.ENOTCONN
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    assert "incoming/f: discarded at shutdown" in local_mount.log_file.read_text()
