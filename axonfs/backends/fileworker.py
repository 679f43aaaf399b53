"""A helper process that creates, renames, checks and removes files in batches.

Spilling the small-blob journal writes thousands of 4 KiB files. Each file
costs a handful of system calls, and a thread of the daemon must take the
interpreter lock back after every one of them. While the event loop commits
puts at full speed it rarely lets go of that lock, so measured under
sequential puts each file took ~540 us in a spill thread against ~50 us
alone: the spill fell behind and ingest stopped at the journal's bound.

A process of its own has its own interpreter lock. The daemon sends it a
whole batch in one pipe write and waits for one reply, so a batch of
thousands of files costs the daemon two system calls, and the files are
written on the other core while the event loop keeps committing.

The worker is this file run as a script by the same interpreter
(``python -I fileworker.py``): it imports nothing but the standard library,
so it starts in a few tens of milliseconds. It serves one request at a
time and exits when its pipe closes, so it never outlives the daemon by
more than the batch in hand. Requests and replies are pickles behind an
8-byte length: both ends are this file, so nothing foreign is unpickled.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

_LENGTH = struct.Struct("<Q")
_PIPE_SIZE = 1 << 20
"""Pipe capacity asked for: a batch of 8 MiB then crosses in 8 wake-ups, not 128."""
FILE_MODE = 0o444
"""Blob files are read-only (the local backend's put_file gives them this mode too)."""

WriteItem = tuple[str, str, bytes]
"""(temporary name, final name, bytes): write the bytes to the temporary
name, unless the final name exists already."""
STORED = -1
"""A write's result when its final name existed already (nothing written)."""


class FileWorkerError(OSError):
    """The worker process failed as a whole (it died, or its pipe broke)."""


class FileWorker:
    """The daemon's side: starts the worker on first use, one request at a time.

    Thread-safe. Each method returns per-item results as errno numbers (0:
    done), so the caller decides what a failure of one file means; a failure
    of the worker itself raises :class:`FileWorkerError`, and the next call
    starts a new worker.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def write(self, items: Sequence[WriteItem]) -> list[int]:
        """Create each temporary file (mode 0444) with its bytes, unsynced;
        :data:`STORED` for an item whose final name exists."""
        return self._call("write", list(items)) if items else []

    def rename(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        """Rename each source to its target, creating the target's directory if needed."""
        return self._call("rename", list(pairs)) if pairs else []

    def unlink(self, names: Sequence[str]) -> None:
        """Remove these files; those already gone are no error."""
        if names:
            self._call("unlink", list(names))

    def exists(self, names: Sequence[str]) -> list[bool]:
        return self._call("exists", list(names)) if names else []

    def close(self) -> None:
        """Let the worker go (it exits when its pipe closes)."""
        with self._lock:
            self._stop()

    def _call(self, op: str, args: list[Any]) -> Any:
        with self._lock:
            try:
                process = self._process or self._start()
                assert process.stdin is not None and process.stdout is not None
                _send(process.stdin.fileno(), (op, args))
                return _receive(process.stdout.fileno())
            except EOFError:
                self._stop()
                raise FileWorkerError(errno.EPIPE, "the file worker exited") from None
            except OSError as exc:
                self._stop()
                number, reason = exc.errno or errno.EPIPE, exc.strerror or "its pipe failed"
                raise FileWorkerError(number, f"the file worker: {reason}") from exc

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-I", __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            bufsize=0,
        )
        assert process.stdin is not None
        _grow_pipe(process.stdin.fileno())
        self._process = process
        return process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _grow_pipe(fd: int) -> None:
    # Over the user's pipe limit the default size only costs wake-ups.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


def _send(fd: int, message: object) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LENGTH.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int) -> Any:
    """The next message; EOFError at the end of the pipe."""
    (length,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
    return pickle.loads(_read_exactly(fd, length))


def _read_exactly(fd: int, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError
        got += n
    return buffer


# -- the worker process ---------------------------------------------------------


def _write(items: list[WriteItem]) -> list[int]:
    results = []
    for temporary, final, data in items:
        if os.path.exists(final):
            results.append(STORED)
            continue
        results.append(_write_file(temporary, data))
    return results


def _write_file(name: str, data: bytes) -> int:
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        return exc.errno or errno.EIO
    try:
        os.fchmod(fd, FILE_MODE)  # what the umask took off (the daemon may run with 077)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        os.close(fd)
        _remove(name)
        return exc.errno or errno.EIO
    os.close(fd)
    return 0


def _rename(pairs: list[tuple[str, str]]) -> list[int]:
    results = []
    for source, target in pairs:
        try:
            try:
                os.rename(source, target)
            except FileNotFoundError:
                if not os.path.exists(source):
                    raise
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.rename(source, target)
        except OSError as exc:
            results.append(exc.errno or errno.EIO)
        else:
            results.append(0)
    return results


def _remove(name: str) -> None:
    # A temporary file left behind is removed when the store opens next.
    with contextlib.suppress(OSError):
        os.unlink(name)


def _unlink(names: list[str]) -> None:
    for name in names:
        _remove(name)


def _serve(inbound: int, outbound: int) -> None:
    handlers: dict[str, Callable[[Any], object]] = {
        "write": _write,
        "rename": _rename,
        "unlink": _unlink,
        "exists": lambda names: [os.path.exists(name) for name in names],
    }
    while True:
        try:
            op, args = _receive(inbound)
        except EOFError:
            return
        _send(outbound, handlers[op](args))


if __name__ == "__main__":
    # Ctrl-C in the daemon's terminal reaches its whole process group: the
    # daemon decides when the worker goes, by closing its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(sys.stdin.fileno(), sys.stdout.fileno())
