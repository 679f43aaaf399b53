"""The Python client against a real ``axonfs serve`` daemon, under asyncio and under trio."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Any

import pytest
import trio
from helpers.daemon import ServeDaemon
from helpers.streams import closable

from axonfs import client
from axonfs.errors import BadArg, NoSuchFile

from .servers import FILE_BODY, LocalHTTPServer


async def exercise(daemon: ServeDaemon, http_server: LocalHTTPServer, tag: bytes) -> None:
    """Code as written against a Synapse Axon proxy; only the connect line differs."""
    async with client.connect(daemon.socket) as axon:
        data = b"loop test " + tag
        size, sha256 = await axon.put(data)
        assert (size, sha256) == (len(data), hashlib.sha256(data).digest())
        assert await axon.has(sha256)
        buf = b""
        async for byts in axon.get(sha256):
            buf += byts
        assert buf == data
        async with await axon.upload() as upfd:
            for piece in (b"x" * 100_000, b"y" * 5_000_000):
                await upfd.write(piece)
            size, big = await upfd.save()
            assert size == 5_100_000
        got = [byts async for byts in axon.get(big)]  # raw frames, read under this loop
        assert b"".join(got) == b"x" * 100_000 + b"y" * 5_000_000 and all(got)
        rows = [row async for row in axon.hashes(0)]
        assert sha256 in {row[1][0] for row in rows}
        _, csv_sha = await axon.put(b"a,b\n" * 100_000)
        async with aclosing(closable(axon.csvrows(csv_sha))) as csvrows:
            async for row in csvrows:
                assert row == ("a", "b")
                break
        assert (await axon.wget(f"{http_server.base}/file"))["size"] == len(FILE_BODY)
        with pytest.raises(NoSuchFile):
            await axon.hashset(b"\x07" * 32)
        with pytest.raises(BadArg):
            async for _ in axon.readlines(b"not hex"):  # type: ignore[arg-type]
                pass
        # concurrent calls share the pool
        results = await gather([axon.size(sha256) for _ in range(10)])
        assert results == [len(data)] * 10


async def gather(coroutines: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """asyncio.gather or a trio nursery, whichever loop runs us."""
    import sniffio

    if sniffio.current_async_library() == "asyncio":
        return list(await asyncio.gather(*coroutines))
    results: list[Any] = [None] * len(coroutines)

    async def run(index: int, coroutine: Coroutine[Any, Any, Any]) -> None:
        results[index] = await coroutine

    async with trio.open_nursery() as nursery:
        for index, coroutine in enumerate(coroutines):
            nursery.start_soon(run, index, coroutine)
    return results


@pytest.mark.parametrize("runner", [asyncio.run, trio.run], ids=["asyncio", "trio"])
def test_client_under_each_loop(
    daemon: ServeDaemon, http_server: LocalHTTPServer, runner: Callable[..., Any]
) -> None:
    name = runner.__module__.encode()
    if runner is trio.run:
        trio.run(exercise, daemon, http_server, name)
    else:
        asyncio.run(exercise(daemon, http_server, name))


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_big_download_and_upload_keep_daemon_memory_flat(
    daemon: ServeDaemon, http_server: LocalHTTPServer
) -> None:
    mib = 128

    async def main() -> None:
        async with client.connect(daemon.socket) as axon:
            await axon.wget(f"{http_server.base}/file")  # warm up every code path
            before = _peak_rss_kib(daemon.process.pid)
            result = await axon.wget(f"{http_server.base}/big?mib={mib}")
            assert result["ok"] and result["size"] == mib << 20
            async with axon.upload() as upload:
                chunk = b"z" * (4 << 20)
                for _ in range(mib // 4):
                    await upload.write(chunk)
                assert (await upload.save())[0] == mib << 20
            grown = _peak_rss_kib(daemon.process.pid) - before
            assert grown < 96 << 10, f"daemon peak memory grew by {grown} KiB"

    trio.run(main)
