"""Helpers of the reliability suite: tmpfs, writes like ``cp``, fsck, the raw control socket.

Everything here is loopback-only and bounded: every wait has a timeout, and
every mount made through :func:`tmpfs` is undone on the way out even when the
test fails. The daemons are :mod:`helpers.daemon`'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.cli import run_axonfs

DEAD_MOUNT_ERRNOS = (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO)
"""What a syscall on a FUSE mount returns once its daemon is gone. EIO comes
from the writeback cache: a close() whose dirty pages the dead daemon never
took reports the failed writeback as EIO (only ever accepted after the kill)."""
COMMAND_TIMEOUT = 60.0


def write_file(path: Path | str, data: bytes, piece: int = 128 << 10) -> None:
    """create + write in *piece*-sized writes + close, like ``cp`` (errors raise)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:piece]) :]
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    os.close(fd)  # the commit: its error is the writer's error


def spools(store: Path) -> list[str]:
    tmp = store / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fsck(store: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_axonfs("fsck", "--store", store, *extra, timeout=COMMAND_TIMEOUT)


def assert_fsck_clean(store: Path) -> str:
    result = fsck(store)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "no problems found" in output, output
    return output


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of *size* on *path*, unmounted (lazily if busy) on the way out."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        result = subprocess.run(["umount", str(path)], capture_output=True, check=False)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def tmpfs_supported() -> bool:
    return os.geteuid() == 0


# -- the raw control socket -------------------------------------------------------------


def raw_connect(path: Path, timeout: float = 5.0) -> socket.socket:
    """A plain socket to the daemon, the hello frame already read."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
        hello = read_frame(sock)
        assert hello is not None and hello.get("t") == "hello", hello
    except BaseException:
        sock.close()
        raise
    return sock


def read_frame(sock: socket.socket) -> dict[str, Any] | None:
    """The next frame as a message, or None at EOF (raises socket.timeout)."""
    import msgpack

    header = _read_exactly(sock, 4)
    if header is None:
        return None
    size = int.from_bytes(header, "big")
    assert size <= 256 << 20, f"absurd frame of {size} bytes from the daemon"
    body = _read_exactly(sock, size)
    assert body is not None, "the daemon closed the connection mid-frame"
    message = msgpack.unpackb(body, raw=False, use_list=False, strict_map_key=False)
    assert isinstance(message, dict) and message.get("v") == 1, message
    return message


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        try:
            chunk = sock.recv(min(remaining, 1 << 20))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            if chunks:
                raise AssertionError("the daemon closed the connection mid-frame")
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
