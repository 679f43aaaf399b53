"""The file worker: the process that writes spilled small blobs' files.

It runs the real worker process (this interpreter, the module run as a
script), checks each request's per-file results, and what happens when the
worker dies or the daemon does.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.hashes import sha_digest

from axonfs.backends.fileworker import STORED, FileWorker, FileWorkerError
from axonfs.backends.local import LocalBackend
from axonfs.errors import BackendError
from axonfs.hashing import Sha256


@pytest.fixture
def worker() -> Iterator[FileWorker]:
    worker = FileWorker()
    yield worker
    worker.close()


def test_writes_renames_checks_and_removes(tmp_path: Path, worker: FileWorker) -> None:
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "there").write_bytes(b"old")
    items = [
        (str(tmp_path / "t1"), str(tmp_path / "ab" / "one"), b"first"),
        (str(tmp_path / "t2"), str(tmp_path / "ab" / "there"), b"not written"),
        (str(tmp_path / "t3"), str(tmp_path / "cd" / "three"), b""),
    ]
    assert worker.write(items) == [0, STORED, 0]
    assert (tmp_path / "t1").read_bytes() == b"first"
    assert (tmp_path / "t1").stat().st_mode & 0o777 == 0o444
    assert not (tmp_path / "t2").exists()
    # The target's directory is created when missing.
    pairs = [(str(tmp_path / "t1"), items[0][1]), (str(tmp_path / "t3"), items[2][1])]
    assert worker.rename(pairs) == [0, 0]
    assert (tmp_path / "cd" / "three").read_bytes() == b""
    assert worker.exists([items[0][1], str(tmp_path / "t1"), items[1][1]]) == [True, False, True]
    worker.unlink([items[0][1], str(tmp_path / "never")])
    assert not (tmp_path / "ab" / "one").exists()


def test_reports_each_file_that_fails(tmp_path: Path, worker: FileWorker) -> None:
    items = [
        (str(tmp_path / "ok"), str(tmp_path / "final-ok"), b"x"),
        (str(tmp_path / "no-such-dir" / "t"), str(tmp_path / "final"), b"y"),
    ]
    assert worker.write(items) == [0, errno.ENOENT]
    assert worker.rename([(str(tmp_path / "gone"), str(tmp_path / "z"))]) == [errno.ENOENT]


def test_a_dead_worker_fails_one_call_and_is_replaced(tmp_path: Path, worker: FileWorker) -> None:
    assert worker.exists([str(tmp_path)]) == [True]
    process = worker._process
    assert process is not None
    process.kill()
    process.wait()
    with pytest.raises(FileWorkerError):
        worker.exists([str(tmp_path)])
    assert worker.exists([str(tmp_path)]) == [True]
    assert worker._process is not None and worker._process.pid != process.pid


def test_the_worker_exits_with_the_daemon(tmp_path: Path) -> None:
    """Killed with -9, the daemon closes nothing; the worker sees its pipe end."""
    script = textwrap.dedent("""
        import os, sys
        from axonfs.backends.fileworker import FileWorker
        worker = FileWorker()
        worker.exists(["/"])
        print(worker._process.pid, flush=True)
        sys.stdin.read()
    """)
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as daemon:
        assert daemon.stdout is not None
        # The worker is not our child: a pidfd says when it exits.
        fd = os.pidfd_open(int(daemon.stdout.readline()))
        try:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=10)
            assert select.select([fd], [], [], 10)[0], "the worker outlived the daemon"
        finally:
            os.close(fd)


def test_a_failed_stage_leaves_no_file(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "blobs")
    try:
        blobs = [(Sha256(sha_digest(data)), data) for data in (b"one", b"two")]
        (tmp_path / "tmp").mkdir()
        staged = backend.stage(blobs[:1], f"{tmp_path}/tmp/spill-")
        with pytest.raises(BackendError) as caught:
            backend.stage(blobs, f"{tmp_path}/missing/spill-")
        assert caught.value.fields["errno"] == errno.ENOENT
        staged.place([])  # none kept: the staged file goes
        assert os.listdir(tmp_path / "tmp") == []
        assert list(backend.list()) == []
        staged = backend.stage(blobs, f"{tmp_path}/tmp/spill-")
        staged.place([blobs[1][0]])
        assert os.listdir(tmp_path / "tmp") == []
        assert backend.stored([sha for sha, _ in blobs]) == {blobs[1][0]}
        assert backend.path_of(blobs[1][0]).read_bytes() == b"two"
    finally:
        backend.close()
