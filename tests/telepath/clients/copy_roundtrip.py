"""Blobs from a real Synapse Axon into axonfs and back, with synapse.tools.axon.copy.

Usage: copy_roundtrip.py AXONFS_URL WORKDIR COUNT. Starts two Synapse Axon
cells in WORKDIR (so everything stays under ``__main__``: cells spawn helper
processes), fills the first with COUNT random blobs, copies them into
axonfs, then from axonfs into the second cell, and reports what each holds.
"""

import asyncio
import hashlib
import json
import os
import sys

import synapse.axon as s_axon
import synapse.lib.output as s_output
import synapse.telepath as s_telepath
import synapse.tools.axon.copy as s_copy


async def contents(url: str) -> dict[str, bool]:
    """sha256 hex -> whether its bytes hash to it, for every blob of the Axon at url."""
    found: dict[str, bool] = {}
    async with await s_telepath.openurl(url) as axon:
        async for _, (sha, size) in axon.hashes(0):
            data = b"".join([piece async for piece in axon.get(sha)])
            found[sha.hex()] = hashlib.sha256(data).digest() == sha and len(data) == size
    return found


async def copy(src: str, dst: str) -> None:
    outp = s_output.OutPutStr()
    code = await s_copy.main([src, dst], outp=outp)
    assert code == 0, str(outp)


async def main(axonfs_url: str, workdir: str, count: int) -> None:
    conf = {"health:sysctl:checks": False}
    src = await s_axon.Axon.anit(os.path.join(workdir, "src"), conf=conf)
    dst = await s_axon.Axon.anit(os.path.join(workdir, "dst"), conf=conf)
    async with src, dst:
        src_url = f"cell://{src.dirn}"
        dst_url = f"cell://{dst.dirn}"
        blobs = [os.urandom(100 + i * 37 % 5000) for i in range(count)]
        blobs.append(os.urandom(20 << 20))  # more than one 16 MiB chunk
        await src.puts(blobs)
        expected = sorted(hashlib.sha256(blob).hexdigest() for blob in blobs)
        await copy(src_url, axonfs_url)
        in_axonfs = await contents(axonfs_url)
        await copy(axonfs_url, dst_url)
        in_dst = await contents(dst_url)
    print(
        json.dumps(
            {
                "expected": len(expected),
                "axonfs_has_all": all(in_axonfs.get(sha) for sha in expected),
                "dst_has_all": all(in_dst.get(sha) for sha in expected),
                "dst_count": len(in_dst),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
