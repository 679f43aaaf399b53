"""Load: 8 readers and 4 writers on the mount plus 4 clients on the socket, for a
bounded period (``AXONFS_LOAD_SECONDS``, default 20).

Every read is verified against the blob's content (whole reads by hash, ranged
reads byte by byte); no operation may fail; afterwards the daemon's open
descriptors are back to where they were, no spool file is left, and ``fsck`` is
clean.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
import time
from pathlib import Path

import trio
from helpers.fuse import wait_until
from helpers.hashes import file_sha
from helpers.streams import closable

from axonfs import client

from .conftest import Figures, MakeDaemon
from .tools import assert_fsck_clean, fd_count, spools, write_file

SECONDS = float(os.environ.get("AXONFS_LOAD_SECONDS", "20"))
READERS, WRITERS, CLIENTS = 8, 4, 4


class Load:
    def __init__(self, mnt: Path, socket: Path, blobs: dict[str, bytes], seed: int) -> None:
        self.mnt = mnt
        self.socket = socket
        self.blobs = blobs
        self.names = sorted(blobs)
        self.seed = seed
        self.deadline = time.monotonic() + SECONDS
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.counts = {
            "mount_reads": 0,
            "mount_ranged_reads": 0,
            "mount_writes": 0,
            "socket_ops": 0,
        }
        self.written: set[str] = set()
        self.read_bytes = 0

    def _count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def _fail(self, who: str, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(f"{who}: {exc!r}")

    def reader(self, index: int) -> None:
        rng = random.Random(self.seed + index)
        try:
            while time.monotonic() < self.deadline:
                name = rng.choice(self.names)
                path = self.mnt / "by-sha256" / name
                if rng.random() < 0.5:
                    assert file_sha(path) == name, f"{name} read wrong"
                    self._count("mount_reads")
                    continue
                data = self.blobs[name]
                with open(path, "rb", buffering=0) as file:
                    for _ in range(8):
                        offset = rng.randrange(max(1, len(data)))
                        size = rng.randrange(1, 256 << 10)
                        got = os.pread(file.fileno(), size, offset)
                        assert got == data[offset : offset + size], f"{name}@{offset} read wrong"
                self._count("mount_ranged_reads")
        except BaseException as exc:
            self._fail(f"reader {index}", exc)

    def writer(self, index: int) -> None:
        rng = random.Random(-self.seed - index)
        try:
            for n in range(1_000_000):
                if time.monotonic() >= self.deadline:
                    return
                data = rng.randbytes(
                    rng.choice([rng.randrange(0, 64 << 10), rng.randrange(256 << 10, 2 << 20)])
                )
                write_file(self.mnt / "incoming" / f"w{index}-{n}", data)
                sha = hashlib.sha256(data).hexdigest()
                assert file_sha(self.mnt / "by-sha256" / sha) == sha
                with self.lock:
                    self.written.add(sha)
                self._count("mount_writes")
        except BaseException as exc:
            self._fail(f"writer {index}", exc)

    def socket_client(self, index: int) -> None:
        try:
            trio.run(self._socket_client, index)
        except BaseException as exc:
            self._fail(f"client {index}", exc)

    async def _socket_client(self, index: int) -> None:
        rng = random.Random(self.seed * 7 + index)
        async with client.connect(self.socket) as axon:
            while time.monotonic() < self.deadline:
                data = rng.randbytes(rng.randrange(0, 256 << 10))
                size, sha = await axon.put(data)
                assert (size, sha) == (len(data), hashlib.sha256(data).digest())
                assert await axon.has(sha)
                assert await axon.size(sha) == len(data)
                name = rng.choice(self.names)
                got = b"".join([piece async for piece in axon.get(bytes.fromhex(name))])
                assert hashlib.sha256(got).hexdigest() == name
                async with await axon.upload() as upload:
                    first, second = rng.randbytes(100_000), rng.randbytes(50_000)
                    await upload.write(first)
                    await upload.write(second)
                    _, uploaded = await upload.save()
                assert uploaded == hashlib.sha256(first + second).digest()
                seen = 0
                async with contextlib.aclosing(closable(axon.hashes(rng.randrange(0, 20)))) as rows:
                    async for _indx, (_sha, _size) in rows:
                        seen += 1
                        if seen >= 50:
                            break  # abandoned: the client closes that connection
                assert (await axon.metrics())["file:count"] > 0
                with self.lock:
                    self.written.update({sha.hex(), uploaded.hex()})
                self._count("socket_ops", 8)


def test_load(daemons: MakeDaemon, figures: Figures) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    daemon = daemons(name="load")
    daemon.start()
    pid = daemon.pid
    assert pid is not None
    blobs = {}
    for i in range(32):
        size = rng.choice([4096, 100_000, 1 << 20, 4 << 20]) if i else 4096  # one small at least
        data = rng.randbytes(size + i)
        blobs[hashlib.sha256(data).hexdigest()] = data
        write_file(daemon.mnt / "incoming" / f"seed{i}", data)

    async def warm_up() -> None:
        """Let the daemon open what it opens lazily, before counting: the
        client's connection, and the pipes of the process that writes small
        blobs' files (started by the first spill, a second after the seeds)."""
        async with client.connect(daemon.socket) as axon:
            await axon.metrics()
            with trio.fail_after(30):
                while (await axon.stats())["journal"]["blobs"]:  # noqa: ASYNC110
                    await trio.sleep(0.05)

    trio.run(warm_up)
    file_sha(daemon.mnt / "by-sha256" / next(iter(blobs)))
    fds_before = fd_count(pid)

    load = Load(daemon.mnt, daemon.socket, blobs, seed)
    threads = [threading.Thread(target=load.reader, args=(i,)) for i in range(READERS)]
    threads += [threading.Thread(target=load.writer, args=(i,)) for i in range(WRITERS)]
    threads += [threading.Thread(target=load.socket_client, args=(i,)) for i in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 120)
        assert not thread.is_alive(), "a load thread hangs"
    elapsed = time.monotonic() - started
    assert not load.errors, "\n".join(load.errors[:20])

    assert wait_until(lambda: fd_count(pid) <= fds_before, timeout=15), (
        f"descriptors: {fds_before} before, {fd_count(pid)} after",
        sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")),
    )
    fds_after = fd_count(pid)
    assert wait_until(lambda: not spools(daemon.store), timeout=10), spools(daemon.store)
    visible = set(os.listdir(daemon.mnt / "by-sha256"))
    assert set(blobs) | load.written <= visible
    daemon.stop()
    assert_fsck_clean(daemon.store)
    operations = sum(load.counts.values())
    figures["load"] = {
        "seconds": round(elapsed, 1),
        "mount_readers": READERS,
        "mount_writers": WRITERS,
        "socket_clients": CLIENTS,
        **load.counts,
        "operations_total": operations,
        "operations_per_second": round(operations / elapsed),
        "errors": 0,
        "daemon_fds_before_after": f"{fds_before} / {fds_after}",
        "spool_files_left": 0,
        "lost": 0,
    }
