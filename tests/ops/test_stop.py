"""`axonfs stop`: stop whichever daemon holds a store, and wait for it."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers.cli import run_axonfs
from helpers.fuse import is_mounted
from helpers.users import as_user

from axonfs.cliutil import QuietError
from axonfs.mount import _run_stop

from .conftest import MakeOpsMount, StartServe, needs_fuse

NOBODY = 65534


def test_stop_a_serve_daemon_then_find_nothing_to_stop(start_serve: StartServe) -> None:
    served = start_serve()
    assert served.ctl("metrics").returncode == 0  # it answers
    stopped = run_axonfs("stop", "--store", served.store)
    assert stopped.returncode == 0, stopped.stderr
    assert served.process.poll() == 0  # it had exited, cleanly, when stop returned
    assert not served.socket.exists()
    again = run_axonfs("stop", "--store", served.store)
    assert again.returncode == 1 and "no daemon has the store" in again.stderr


def test_stop_without_a_store_or_a_daemon(tmp_path: Path) -> None:
    missing = run_axonfs("stop", "--store", tmp_path / "never-made")
    assert missing.returncode == 1 and "no daemon" in missing.stderr
    assert not (tmp_path / "never-made").exists()  # stop creates nothing


@needs_fuse
def test_stop_unmounts_a_mount(make_mount: MakeOpsMount) -> None:
    mounted = make_mount()
    (mounted.mnt / "incoming" / "kept").write_bytes(b"committed before the stop")
    stopped = run_axonfs("stop", "--store", mounted.store)
    assert stopped.returncode == 0, stopped.stderr
    assert not is_mounted(mounted.mnt)
    served_again = run_axonfs("fsck", "--store", mounted.store)  # the lock is free
    assert served_again.returncode == 0, served_again.stdout + served_again.stderr


def _stop_as(uid: int, store: Path) -> str:
    """``axonfs stop`` from a child running as *uid*: its message or "ok"."""

    def stop() -> str:
        try:
            _run_stop(argparse.Namespace(store=store, timeout=5.0))
        except QuietError as exc:
            return f"{exc.exitcode} {exc}"
        return "ok"

    return as_user(uid, uid, stop)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch uid")
def test_another_user_cannot_stop_the_daemon(start_serve: StartServe) -> None:
    reachable = Path(tempfile.mkdtemp(prefix="axonfs-stop-"))  # pytest's tmp dirs are 0700
    try:
        served = start_serve(store=reachable / "store")
        assert _stop_as(NOBODY, served.store).startswith("4 cannot read the lock")
        for directory in (reachable, served.store):  # let nobody reach and read the lock
            directory.chmod(0o755)
        (served.store / "axonfs.lock").chmod(0o644)
        assert _stop_as(NOBODY, served.store).startswith("4 not allowed to stop the daemon")
        assert served.process.poll() is None  # still running
        assert served.stop() == 0
    finally:
        shutil.rmtree(reachable, ignore_errors=True)
