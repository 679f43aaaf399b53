"""Helpers of the reliability suite: daemons that are always stopped, tmpfs, checks.

Everything here is loopback-only and bounded: every wait has a timeout, and
every mount made through :class:`Daemon` or :func:`tmpfs` is undone in the
fixture's ``finally`` even when the test fails.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpers.fuse import AXONFS, axonfs, is_mounted, pid_alive, wait_until

from axonfs.config import control_socket

DEAD_MOUNT_ERRNOS = (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO)
"""What a syscall on a FUSE mount returns once its daemon is gone. EIO comes
from the writeback cache: a close() whose dirty pages the dead daemon never
took reports the failed writeback as EIO (only ever accepted after the kill)."""
COMMAND_TIMEOUT = 60.0


def sha_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path | str, chunk: int = 1 << 20) -> str:
    """The sha256 of a file read sequentially (through the mount, usually)."""
    hasher = hashlib.sha256()
    with open(path, "rb", buffering=0) as file:
        while piece := file.read(chunk):
            hasher.update(piece)
    return hasher.hexdigest()


def write_file(path: Path | str, data: bytes, piece: int = 128 << 10) -> None:
    """create + write in *piece*-sized writes + close, like ``cp`` (errors raise)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:piece]):]
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
    return axonfs("fsck", "--store", store, *extra, check=False, timeout=COMMAND_TIMEOUT)


def assert_fsck_clean(store: Path) -> str:
    result = fsck(store)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "no problems found" in output, output
    return output


def log_problems(log: Path) -> list[str]:
    """ERROR/CRITICAL lines and tracebacks in a daemon's log."""
    if not log.exists():
        return []
    return [line for line in log.read_text(errors="replace").splitlines()
            if " ERROR " in line or " CRITICAL " in line or "Traceback" in line]


@dataclass
class Daemon:
    """``axonfs mount`` (or ``serve`` when *mnt* is None) of one store, logged
    outside the store (the store may sit on a full disk)."""

    store: Path
    mnt: Path | None
    log: Path
    options: tuple[str, ...] = ()
    pid: int | None = None
    pids: list[int] = field(default_factory=list)
    tolerated: tuple[str, ...] = ()
    """Log lines containing one of these are expected (e.g. S3 errors during an outage)."""

    def __post_init__(self) -> None:
        if self.mnt is not None:
            self.mnt.mkdir(parents=True, exist_ok=True)

    @property
    def socket(self) -> Path:
        return control_socket(self.store)

    def start(self, *extra: str) -> subprocess.CompletedProcess[str]:
        if self.mnt is None:
            result = axonfs("serve", "--store", self.store, "--log", self.log, *self.options,
                            *extra, timeout=COMMAND_TIMEOUT)
            self.pid = int((self.store / "run" / "daemon.pid").read_text())
        else:
            result = axonfs("mount", "--store", self.store, "--log", self.log, *self.options,
                            *extra, self.mnt, timeout=COMMAND_TIMEOUT)
            self.pid = int(os.getxattr(self.mnt, "user.axonfs.pid"))
        self.pids.append(self.pid)
        return result

    def kill(self) -> None:
        """SIGKILL the daemon and wait until it is gone (the mount stays, dead)."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(self.pid), timeout=20)

    def stop(self) -> None:
        """A clean stop: ``axonfs umount``, or SIGTERM for ``serve``."""
        if self.mnt is not None:
            axonfs("umount", self.mnt, timeout=COMMAND_TIMEOUT)
            assert not is_mounted(self.mnt)
        elif self.pid is not None and pid_alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
        if self.pid is not None:
            assert wait_until(lambda: not pid_alive(self.pid), timeout=30), "daemon lingers"

    def alive(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def close(self) -> None:
        """Unmount and stop for sure, whatever the state (the fixture's finally)."""
        if self.mnt is not None and is_mounted(self.mnt):
            with contextlib.suppress(Exception):
                axonfs("umount", self.mnt, check=False, timeout=30)
            if is_mounted(self.mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)],
                               capture_output=True, check=False)
        for pid in self.pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not wait_until(lambda p=pid: not pid_alive(p), timeout=10):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    wait_until(lambda p=pid: not pid_alive(p), timeout=5)

    def problems(self) -> list[str]:
        return [line for line in log_problems(self.log)
                if not any(pattern in line for pattern in self.tolerated)]


def mounts_of_type(fstype: str) -> list[str]:
    with open("/proc/mounts") as file:
        return [line.split()[1] for line in file if line.split()[2] == fstype]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of *size* on *path*, unmounted (lazily if busy) on the way out."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(path)], check=True, capture_output=True)
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


def read_frame(sock: socket.socket) -> dict | None:  # type: ignore[type-arg]
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


def start_serve_foreground(store: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``axonfs serve --foreground`` as a child; returns once the socket answers."""
    with open(log, "ab") as log_file:
        process = subprocess.Popen([*AXONFS, "serve", "--store", str(store), "--foreground",
                                    *extra], stdout=log_file, stderr=log_file,
                                   stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    path = control_socket(store)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited with {process.returncode}; see {log}")
        try:
            raw_connect(path, 1.0).close()
            return process
        except (OSError, AssertionError):
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise TimeoutError(f"no daemon on {path}")


def stop_process(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


__all__ = ["AXONFS", "Daemon", "tmpfs", "fsck", "assert_fsck_clean", "spools",
           "fd_count", "write_file", "file_sha", "sha_hex", "wait_until", "pid_alive",
           "is_mounted", "raw_connect", "read_frame", "start_serve_foreground", "stop_process",
           "DEAD_MOUNT_ERRNOS", "mounts_of_type", "log_problems", "tmpfs_supported"]
