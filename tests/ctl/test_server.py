"""The control server with the Python client under trio: every call, streaming,
uploads, and work that stops when the client stops."""

from __future__ import annotations

import hashlib
import os
from contextlib import aclosing

import pytest
import trio
import trio.testing
from helpers.daemon import InProcessDaemon
from helpers.hashes import sha_digest
from helpers.streams import closable

from axonfs import client
from axonfs.ctlserver import STREAM_WINDOW
from axonfs.errors import BadArg, NoSuchFile
from axonfs.protocol import DaemonUnreachable

EMPTY = hashlib.sha256(b"").digest()


async def test_every_call_with_reference_shapes(in_process: InProcessDaemon) -> None:
    async with client.connect(in_process.socket) as axon:
        assert await axon.put(b"asdfqwer") == (8, sha_digest(b"asdfqwer"))
        assert await axon.puts([b"a", b"", b"asdfqwer"]) == (
            (1, sha_digest(b"a")),
            (0, EMPTY),
            (8, sha_digest(b"asdfqwer")),
        )
        assert await axon.has(sha_digest(b"a")) is True and await axon.has(b"\x00" * 32) is False
        assert await axon.size(sha_digest(b"a")) == 1 and await axon.size(b"\x00" * 32) is None
        absent = b"\x00" * 32
        assert await axon.wants([absent, sha_digest(b"a"), absent]) == (absent,) * 2
        assert await axon.metrics() == {"size:bytes": 9, "file:count": 3}
        assert (await axon.hashset(sha_digest(b"a")))["md5"] == hashlib.md5(b"a").hexdigest()
        assert [row async for row in axon.hashes(0)] == [
            (0, (sha_digest(b"asdfqwer"), 8)),
            (1, (sha_digest(b"a"), 1)),
            (2, (EMPTY, 0)),
        ]
        history = [row async for row in axon.history(0)]
        assert [row[1] for row in history] == [
            (sha_digest(b"asdfqwer"), 8),
            (sha_digest(b"a"), 1),
            (EMPTY, 0),
        ]
        assert [c async for c in axon.get(sha_digest(b"asdfqwer"), 2, 4)] == [b"dfqw"]
        assert [c async for c in axon.get(sha_digest(b"asdfqwer"), 8, 4)] == [b""]
        assert [c async for c in axon.get(EMPTY)] == []
        assert await axon.del_(sha_digest(b"a")) is True
        assert await axon.dels([sha_digest(b"a"), EMPTY]) == (False, True)
        assert (await axon.recoverIndices())["added"] == 0
        with pytest.raises(NoSuchFile):
            [c async for c in axon.get(sha_digest(b"a"))]
        with pytest.raises(BadArg):
            [c async for c in axon.hashes(-1)]


async def test_recover_progress_streams_then_reports(in_process: InProcessDaemon) -> None:
    async with client.connect(in_process.socket) as axon:
        await axon.puts([b"blob %d" % i for i in range(1500)])
        steps = [step async for step in axon.recover_progress()]
    *progress, report = steps
    assert progress and all(step["listed"] <= 1500 for step in progress)
    assert [step["listed"] for step in progress] == sorted(step["listed"] for step in progress)
    assert report["done"] is True
    assert (report["listed"], report["added"], report["skipped"]) == (1500, 0, 1500)


async def test_large_put_and_upload_stream(in_process: InProcessDaemon) -> None:
    big = os.urandom(9 << 20)  # larger than a frame's inline limit: sent as an upload
    async with client.connect(in_process.socket) as axon:
        assert await axon.put(big) == (len(big), sha_digest(big))
        results = await axon.puts([b"x", big, b"y"])
        assert results == (
            (1, sha_digest(b"x")),
            (len(big), sha_digest(big)),
            (1, sha_digest(b"y")),
        )
        async with await axon.upload() as upload:
            for start in range(0, len(big), 3 << 20):
                await upload.write(big[start : start + (3 << 20)])
            assert await upload.save() == (len(big), sha_digest(big))
            await upload.write(b"second")
            assert await upload.save() == (6, sha_digest(b"second"))
            assert await upload.save() == (0, EMPTY)
            await upload.write(b"discarded")
        async with axon.upload() as upload:  # without await, as the reference docs show
            await upload.write(b"third")
            assert await upload.save() == (5, sha_digest(b"third"))
        assert b"".join([c async for c in axon.get(sha_digest(big))]) == big
        assert not await axon.has(sha_digest(b"discarded"))


async def _wait_stalled(in_process: InProcessDaemon) -> int:
    """Wait until the server's work stops, and return how many items it sent.

    Stopped means: every task of this trio run (the server's included) stayed
    blocked for a while, twice in a row with no item sent in between. The
    parsers run in threads only between checkpoints, never while paused, so a
    paused stream leaves nothing to run. Fails if the work never stops.
    """
    sent = -1
    with trio.fail_after(20):
        while True:
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            now = in_process.server.statistics().items_sent
            if now == sent:
                return sent
            sent = now


async def _wait_idle(in_process: InProcessDaemon) -> None:
    with trio.fail_after(10):
        while in_process.server.statistics().requests:
            await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def test_abandoned_csvrows_stops_parsing(in_process: InProcessDaemon) -> None:
    data = b"a,b\n" * 2_000_000  # 2 million rows
    _, digest = await in_process.axon.put(data)
    async with client.connect(in_process.socket) as axon:
        async with aclosing(closable(axon.csvrows(digest))) as rows:
            async for row in rows:
                assert row == ("a", "b")
                break
        await _wait_idle(in_process)
        sent = in_process.server.statistics().items_sent
        assert sent < 200_000, f"the server kept parsing after the client left: {sent}"
        # the connection of an abandoned stream is closed; the client still works
        assert await axon.has(digest)


async def test_a_client_that_stops_reading_pauses_the_work(in_process: InProcessDaemon) -> None:
    _, digest = await in_process.axon.put(b"x\n" * 3_000_000)
    async with client.connect(in_process.socket) as axon:
        lines = closable(axon.readlines(digest.hex()))
        assert await lines.__anext__() == "x"
        # Not reading: the socket buffers and the channel fill up, then the
        # work stops.
        sent = await _wait_stalled(in_process)
        assert sent < 500_000  # paused long before the 3,000,000 lines
        await lines.aclose()
        await _wait_idle(in_process)


async def test_a_slow_get_holds_only_a_window_of_its_bytes(in_process: InProcessDaemon) -> None:
    """A client that stops reading a big get pins at most STREAM_WINDOW in the daemon."""
    blob = os.urandom(1 << 20) * 96
    _, digest = await in_process.axon.put(blob)
    async with client.connect(in_process.socket) as axon:
        pieces = axon.get(digest)
        got = [await pieces.__anext__()]
        await _wait_stalled(in_process)  # not reading: the socket and the window fill up
        held = in_process.server.statistics().stream_bytes
        assert 0 < held <= STREAM_WINDOW <= 32 << 20, held
        got += [piece async for piece in pieces]
        assert b"".join(got) == blob
    await _wait_idle(in_process)
    assert in_process.server.statistics().stream_bytes == 0


async def test_an_abandoned_raw_get_frees_its_window_and_the_client_goes_on(
    in_process: InProcessDaemon,
) -> None:
    blob = os.urandom(1 << 20) * 40
    _, digest = await in_process.axon.put(blob)
    async with client.connect(in_process.socket) as axon:
        async with aclosing(closable(axon.get(digest))) as pieces:
            async for piece in pieces:
                assert piece == blob[: len(piece)]
                break  # mid raw payload: the connection cannot be reused
        await _wait_idle(in_process)
        assert in_process.server.statistics().stream_bytes == 0
        assert await axon.has(digest)
        assert b"".join([p async for p in axon.get(digest, 5, 10)]) == blob[5:15]


async def test_disconnect_cancels_a_follow(in_process: InProcessDaemon) -> None:
    async with client.connect(in_process.socket) as axon:
        follow = closable(axon.hashes(0, wait=True))
        with trio.move_on_after(0.2):
            async for _ in follow:
                pass
        assert in_process.server.statistics().requests == 1
        await follow.aclose()
        await _wait_idle(in_process)


async def test_follow_sees_new_puts(in_process: InProcessDaemon) -> None:
    async with client.connect(in_process.socket) as axon:
        seen: list[int] = []

        async def follow() -> None:
            async with aclosing(closable(axon.hashes(0, wait=True, timeout=2))) as rows:
                async for indx, _ in rows:
                    seen.append(indx)
                    if len(seen) == 2:
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await axon.put(b"one")
            await trio.sleep(0.05)
            await axon.put(b"two")
        assert seen == [0, 1]


async def test_unreachable_daemon(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(DaemonUnreachable):
        async with client.connect(os.path.join(tmp_path, "nothing.sock")):
            pass


async def test_long_socket_paths(store_dir: os.PathLike[str], nursery: trio.Nursery) -> None:
    from pathlib import Path

    from axonfs.axon import Axon
    from axonfs.ctlserver import serve_control

    deep = Path(store_dir) / ("d" * 60) / ("e" * 60) / "run" / "ctl.sock"
    assert len(str(deep)) > 108
    async with Axon.open(Path(store_dir) / "s") as opened:
        await nursery.start(serve_control, opened, deep)
        async with client.connect(deep) as axon:
            assert await axon.metrics() == {"size:bytes": 0, "file:count": 0}
        assert oct(deep.stat().st_mode & 0o777) == "0o600"
        assert oct(deep.parent.stat().st_mode & 0o777) == "0o700"
        nursery.cancel_scope.cancel()
