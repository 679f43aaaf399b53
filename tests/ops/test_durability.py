"""The durability setting end to end: ``--sync-interval``, ``ctl sync``,
``fsync`` on the mount, the stats, and a daemon killed with commits that are
visible but not durable yet.

A sync interval long enough that no test outlives it (ten minutes) keeps
every sync in the tests' hands.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from helpers.cli import run_axonfs
from helpers.daemon import MountDaemon, ServeDaemon
from helpers.hashes import sha_hex

from axonfs.store.commitlog import LOG_NAME

from .conftest import MakeOpsMount, StartServe

LONG = "600000"


def durability(daemon: ServeDaemon | MountDaemon) -> dict[str, int]:
    result = run_axonfs("ctl", "--socket", daemon.socket, "stats", "--json")
    assert result.returncode == 0, result.stderr
    found: dict[str, int] = json.loads(result.stdout)["durability"]
    return found


def put(daemon: ServeDaemon, data: bytes, tmp_path: Path) -> str:
    source = tmp_path / f"blob-{sha_hex(data)[:12]}"
    source.write_bytes(data)
    result = daemon.ctl("put", str(source))
    assert result.returncode == 0, result.stderr
    return sha_hex(data)


def test_ctl_sync_makes_the_commits_durable(start_serve: StartServe, tmp_path: Path) -> None:
    daemon = start_serve("--sync-interval", LONG)
    assert durability(daemon) == {"sync_interval_ms": 600_000, "not_durable": 0, "syncs": 0}
    for n in range(3):
        put(daemon, b"small %d" % n, tmp_path)
    assert durability(daemon)["not_durable"] == 3
    synced = daemon.ctl("sync")
    assert synced.returncode == 0 and synced.stdout.strip() == "3 commits made durable"
    assert durability(daemon) == {"sync_interval_ms": 600_000, "not_durable": 0, "syncs": 1}
    again = daemon.ctl("sync", "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == 0


def test_without_an_interval_every_call_is_durable(start_serve: StartServe, tmp_path: Path) -> None:
    daemon = start_serve()
    put(daemon, b"small", tmp_path)
    assert durability(daemon) == {"sync_interval_ms": 0, "not_durable": 0, "syncs": 0}
    assert daemon.ctl("sync").stdout.strip() == "everything was durable"
    stats = daemon.ctl("stats")
    assert "durability every call durable when it returns" in stats.stdout


def test_a_killed_daemon_loses_no_commit(start_serve: StartServe, tmp_path: Path) -> None:
    """kill -9 with commits visible but not durable: the commit log brings
    them back at the next start, byte-exact."""
    daemon = start_serve("--sync-interval", LONG)
    blobs = [os.urandom(n) for n in (1, 500, 4096, 100_000)]
    shas = [put(daemon, data, tmp_path) for data in blobs]
    assert durability(daemon)["not_durable"] == len(blobs)
    assert (daemon.store / LOG_NAME).stat().st_size > sum(map(len, blobs))
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(30)
    again = start_serve(store=daemon.store)
    for data, sha in zip(blobs, shas, strict=True):
        out = tmp_path / f"got-{sha[:12]}"
        got = again.ctl("get", sha, "-o", str(out))
        assert got.returncode == 0, got.stderr
        assert out.read_bytes() == data
    assert "replayed 4 commits from the commit log" in again.log_text()
    assert durability(again)["not_durable"] == 0  # replayed durably at open


def test_fsync_on_the_mount_makes_everything_durable(make_mount: MakeOpsMount) -> None:
    daemon = make_mount("--sync-interval", LONG)
    for n in range(4):
        (daemon.path("incoming") / f"f{n}").write_bytes(b"file %d" % n)
    assert durability(daemon)["not_durable"] >= 1
    fd = os.open(daemon.path("incoming", "f0"), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    stats = durability(daemon)
    assert stats["not_durable"] == 0 and stats["syncs"] >= 1
