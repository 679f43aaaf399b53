"""Memory stays flat: a 1 GiB upload does not grow the process by more than tens of MiB."""

from __future__ import annotations

import os
import random
from pathlib import Path

import trio

from axonfs.axon import Axon
from store.storetools import MiB, pieces

UPLOAD = 1 << 30
PIECE = 8 * MiB
ALLOWED_GROWTH = 40 * MiB


def status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


async def test_one_gib_upload_keeps_rss_flat(store_dir: Path) -> None:
    piece = bytearray(random.Random(10).randbytes(PIECE))
    async with Axon.open(store_dir) as axon:
        await axon.put(b"warm up the index and the threads")
        peak_resettable = reset_peak()
        baseline = status_kib("VmRSS") * 1024
        sampled = baseline

        async def sample() -> None:
            nonlocal sampled
            while True:
                sampled = max(sampled, status_kib("VmRSS") * 1024)
                await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            async with await axon.upload() as upload:
                for i in range(UPLOAD // PIECE):
                    piece[:8] = i.to_bytes(8, "big")  # every piece differs
                    await upload.write(bytes(piece))
                size, sha = await upload.save()
            nursery.cancel_scope.cancel()
        peak = max(sampled, status_kib("VmHWM") * 1024 if peak_resettable else 0)
        assert size == UPLOAD
        assert peak - baseline <= ALLOWED_GROWTH, (
            f"RSS grew by {(peak - baseline) / MiB:.1f} MiB during a 1 GiB upload"
        )
        piece[:8] = (5).to_bytes(8, "big")
        assert b"".join(await pieces(axon, sha, 5 * PIECE, PIECE)) == piece
        await axon.del_(sha)
    assert not any(os.scandir(store_dir / "tmp"))
