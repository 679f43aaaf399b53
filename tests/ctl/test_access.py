"""Who may use the control socket: SO_PEERCRED admits the owner, root and --ctl-group."""

from __future__ import annotations

import grp
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from helpers.daemon import ServeDaemon
from helpers.users import as_user

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch uid")


def connect_as(path: Path, uid: int, gid: int) -> str:
    """From a child running as uid/gid: the first frame's kind (and error code)."""

    def connect() -> str:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                data = b""
                while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError as exc:
            return f"oserror {exc.errno}"
        message = msgpack.unpackb(data[4:])
        return f"{message['t']} {message.get('error', {}).get('code', '')}".strip()

    return as_user(uid, gid, connect)


@pytest.fixture(scope="module")
def reachable_dir() -> Iterator[Path]:
    """A directory other uids can traverse (pytest's own tmp dirs are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="axonfs-access-"))
    directory.chmod(0o711)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(reachable_dir: Path) -> Iterator[ServeDaemon]:
    running = ServeDaemon.start(reachable_dir / "store", wait_telepath=True)
    running.store.chmod(0o711)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def group_daemon(reachable_dir: Path) -> Iterator[tuple[ServeDaemon, int]]:
    gid = grp.getgrnam("daemon").gr_gid
    running = ServeDaemon.start(
        reachable_dir / "group-store", "--ctl-group", str(gid), wait_telepath=True
    )
    running.store.chmod(0o711)
    yield running, gid
    running.stop()


def test_socket_modes_default(daemon: ServeDaemon) -> None:
    assert daemon.socket.stat().st_mode & 0o777 == 0o600
    assert daemon.socket.parent.stat().st_mode & 0o777 == 0o700
    assert connect_as(daemon.socket, NOBODY, NOBODY) == "oserror 13"  # cannot even enter


def test_other_uid_refused_by_peercred(daemon: ServeDaemon) -> None:
    # Open the file modes up (an operator's mistake): SO_PEERCRED still says no.
    os.chmod(daemon.socket.parent, 0o755)
    os.chmod(daemon.socket, 0o666)
    try:
        assert connect_as(daemon.socket, NOBODY, NOBODY) == "err AccessDenied"
        assert connect_as(daemon.socket, 0, 0) == "hello"
    finally:
        os.chmod(daemon.socket.parent, 0o700)
        os.chmod(daemon.socket, 0o600)
    assert daemon.process.poll() is None
    log = (daemon.store.parent / f"{daemon.store.name}.log").read_text()
    assert "refused control connection" in log


def test_ctl_group_admits_its_members(group_daemon: tuple[ServeDaemon, int]) -> None:
    daemon, gid = group_daemon
    assert daemon.socket.stat().st_mode & 0o777 == 0o660
    assert daemon.socket.stat().st_gid == gid
    assert daemon.socket.parent.stat().st_mode & 0o777 == 0o750
    assert connect_as(daemon.socket, NOBODY, gid) == "hello"
    os.chmod(daemon.socket.parent, 0o755)
    os.chmod(daemon.socket, 0o666)
    try:
        assert connect_as(daemon.socket, NOBODY, NOBODY) == "err AccessDenied"
    finally:
        os.chmod(daemon.socket.parent, 0o750)
        os.chmod(daemon.socket, 0o660)
