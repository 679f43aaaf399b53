"""`axonfs stop`: stop whichever daemon holds a store, and wait for it."""

from __future__ import annotations

from pathlib import Path

from helpers.fuse import is_mounted

from .conftest import needs_fuse, run_axonfs


def test_stop_a_serve_daemon_then_find_nothing_to_stop(start_serve) -> None:  # type: ignore[no-untyped-def]
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
def test_stop_unmounts_a_mount(make_mount) -> None:  # type: ignore[no-untyped-def]
    mounted = make_mount()
    (mounted.mnt / "incoming" / "kept").write_bytes(b"committed before the stop")
    stopped = run_axonfs("stop", "--store", mounted.store)
    assert stopped.returncode == 0, stopped.stderr
    assert not is_mounted(mounted.mnt)
    served_again = run_axonfs("fsck", "--store", mounted.store)  # the lock is free
    assert served_again.returncode == 0, served_again.stdout + served_again.stderr
