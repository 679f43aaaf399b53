"""One process at a time: a second opener is refused with StoreLocked."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from helpers.cli import run_axonfs

from axonfs.axon import Axon
from axonfs.errors import StoreLocked
from axonfs.store.store import Store
from store.storetools import PYTHON, REPO

HOLDER = """
import sys, trio
from pathlib import Path
from axonfs.axon import Axon

async def main():
    async with Axon.open(Path(sys.argv[1])) as axon:
        await axon.put(b"held")
        print("open", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)

trio.run(main)
"""


@contextmanager
def holder(store_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A separate process with the store open, until the block ends."""
    with subprocess.Popen(
        [PYTHON, "-c", HOLDER, str(store_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "open\n"
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


async def test_second_process_is_refused(store_dir: Path) -> None:
    with holder(store_dir) as proc:
        with pytest.raises(StoreLocked) as caught:
            async with Axon.open(store_dir):
                pass
        assert "already open by another process" in caught.value.message
        assert caught.value.fields["pid"] == str(proc.pid)
        with pytest.raises(StoreLocked):
            Store(store_dir)
        # fsck refuses too, with its own exit status and a one-line message.
        result = run_axonfs("fsck", "--store", store_dir)
        assert result.returncode == 3, result
        assert f"is open by a running daemon (pid {proc.pid})" in result.stderr
        assert f"'axonfs stop --store {store_dir}'" in result.stderr  # ctl has no fsck
        assert len(result.stderr.splitlines()) == 1
        recover = run_axonfs("recover", "--store", store_dir)
        assert recover.returncode == 3
        assert recover.stderr.strip().endswith(
            f"recover through it with 'axonfs ctl --store {store_dir} recover'"
        )
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
    async with Axon.open(store_dir) as axon:  # free again once the holder is gone
        assert await axon.metrics() == {"size:bytes": 4, "file:count": 1}


async def test_a_killed_holder_leaves_no_stale_lock(store_dir: Path) -> None:
    with holder(store_dir) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    async with Axon.open(store_dir) as axon:
        assert await axon.metrics() == {"size:bytes": 4, "file:count": 1}


async def test_another_process_is_refused_while_we_hold_it(store_dir: Path) -> None:
    async with Axon.open(store_dir):
        with trio.fail_after(30):
            result = await trio.run_process(
                [PYTHON, "-c", HOLDER, str(store_dir)],
                cwd=REPO,
                stdin=b"",
                capture_stderr=True,
                check=False,
            )
        assert result.returncode != 0
        assert b"StoreLocked" in result.stderr
        assert f"pid {os.getpid()}".encode() in result.stderr
