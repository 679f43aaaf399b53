"""The daemon as systemd runs it (``Type=notify``), with systemd simulated.

The test plays the service manager: it binds the ``$NOTIFY_SOCKET`` datagram
socket, connects the daemon's stderr to a file named by ``$JOURNAL_STREAM``,
starts ``ExecStart``'s command line, waits for READY=1 and then sends
SIGTERM, as ``systemctl stop`` does. READY must come only once the mount and
the control socket work; SIGTERM must unmount cleanly, send STOPPING=1 and
exit 0, which is why the unit needs no ExecStop=.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.daemon import socket_answers
from helpers.fuse import cleanup, fuse_available, is_mounted

from .conftest import clean_env

READY_TIMEOUT = 30.0


def receive_until(
    sock: socket.socket, wanted: str, process: subprocess.Popen[bytes], timeout: float
) -> list[str]:
    """Datagrams received until one contains *wanted* (raises on timeout or exit)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(0.2)
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            if process.poll() is not None:
                break
            continue
        if any(wanted in message for message in got):
            return got
    raise AssertionError(f"no {wanted} from the daemon (got {got}, exit {process.poll()})")


@pytest.mark.parametrize("command", ["serve", "mount"])
def test_type_notify_lifecycle(tmp_path: Path, command: str) -> None:
    if command == "mount" and not fuse_available():
        pytest.skip("needs /dev/fuse")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    config = tmp_path / "instance.toml"
    config.write_text(f'store = "{tmp_path / "store"}"\nmountpoint = "{mnt}"\nlog-level = "info"\n')
    control = tmp_path / "store" / "run" / "ctl.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    journal = tmp_path / "journal"
    process: subprocess.Popen[bytes] | None = None
    try:
        with open(journal, "wb") as stderr:
            status = os.fstat(stderr.fileno())
            env = clean_env(
                NOTIFY_SOCKET=str(tmp_path / "notify"),
                JOURNAL_STREAM=f"{status.st_dev}:{status.st_ino}",
                INVOCATION_ID="0" * 32,
            )
            process = subprocess.Popen(
                [sys.executable, "-m", "axonfs", command, "--foreground", "--config", str(config)],
                stderr=stderr,
                stdout=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        receive_until(notify, "READY=1", process, READY_TIMEOUT)
        # READY means usable: the socket answers and (for mount) the tree is there.
        assert socket_answers(control)
        if command == "mount":
            assert is_mounted(mnt)
            assert sorted(os.listdir(mnt)) == ["by-sha256", "history", "history.log", "incoming"]
        process.send_signal(signal.SIGTERM)
        receive_until(notify, "STOPPING=1", process, READY_TIMEOUT)
        assert process.wait(30) == 0
        assert not is_mounted(mnt)
        assert not control.exists()
    finally:
        notify.close()
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        cleanup(mnt)
    lines = journal.read_text().splitlines()
    assert any(line.startswith("<6>axonfs.daemon: received SIGTERM") for line in lines), lines
    assert all(line[:3] in ("<7>", "<6>", "<5>") for line in lines), lines
