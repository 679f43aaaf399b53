"""The floor under Telepath calls: Synapse's client against a server that does nothing.

A ``has()`` round trip through Synapse's own client costs the client's work
(pool link, message packing, a future per call, asyncio's wake-ups), two
cross-process wake-ups, and the server's work. This serves the handshake and
then answers every ``t2:init`` with a ready-made ``t2:fini`` from a plain
blocking socket per connection (a thread each, no event loop, no decoding
beyond splitting messages), which is as little as any server can do. The
client's rate against it is the most any Telepath server can reach with that
client; dividing it by the reference Axon's rate gives the highest ratio any
server could show. The same for a whole ``get()``: the server sends ready-made
``t2:yield`` messages of 16 MiB (the piece size of both axonfs and the
reference) and the client only counts the bytes. For ``upload()``: the server
hands out a share and acknowledges each ``write`` without looking at its bytes
(``save`` answers a made-up size and digest). And for ``hashes(0)``: the
do-nothing server sends ``--rows`` ready-made rows, one ``t2:yield`` each, as
one write; a real server streams the rows its store has (measure those with
``bench_telepath.py``, which fills the stores alike).

A second do-nothing server gives the same answers from one trio event loop:
the most a server built on trio (as axonfs is) can reach, whatever it does
per call.

Usage (from the repository, with ``.venv-synapse`` built)::

    python bench/experiments/telepath_floor.py --calls 10000 --get-mib 256 --runs 3 \
        [--url unix://STORE/run/telepath.sock --url cell://SYNAPSE_AXON_DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from telepath_nothing import NothingServer  # noqa: E402

SYNAPSE_PYTHON = ROOT / ".venv-synapse" / "bin" / "python"
CLIENT = """
import asyncio, hashlib, os, sys, time, json
import synapse.telepath as s_telepath
async def main(url, calls, mib):
    async with await s_telepath.openurl(url) as axon:
        await axon.has(b"\\0" * 32)
        sha = os.urandom(32)
        start = time.perf_counter()
        for _ in range(calls):
            await axon.has(sha)
        has = calls / (time.perf_counter() - start)
        blob = hashlib.sha256(PIECE * (mib // 16)).digest()
        if not await axon.has(blob):  # the do-nothing server sends what was saved
            async with await axon.upload() as fd:
                for _ in range(mib // 16):
                    await fd.write(PIECE)
                await fd.save()
        start, size = time.perf_counter(), 0
        async for piece in axon.get(blob):
            size += len(piece)
        get = size / (time.perf_counter() - start) / 1e6
        start = time.perf_counter()
        async with await axon.upload() as fd:
            for index in range(mib // 8):
                await fd.write(index.to_bytes(8, "big") + PIECE[8 : 8 << 20])
            await fd.save()
        upload = (mib << 20) / (time.perf_counter() - start) / 1e6
        start, rows = time.perf_counter(), 0
        async for _row in axon.hashes(0):
            rows += 1
        print(json.dumps([has, get, rows / (time.perf_counter() - start), upload]))
PIECE = bytes(range(256)) * (1 << 16)
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def client_rates(url: str, calls: int, get_mib: int) -> tuple[float, float, float, float]:
    """has() calls per second, get() MB/s, hashes(0) rows per second and
    upload() MB/s, as Synapse's client sees them."""
    done = subprocess.run(
        [str(SYNAPSE_PYTHON), "-c", CLIENT, url, str(calls), str(get_mib)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    has, get, rows, upload = json.loads(done.stdout.strip().splitlines()[-1])
    return float(has), float(get), float(rows), float(upload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--get-mib", type=int, default=256, help="a multiple of 16")
    parser.add_argument("--rows", type=int, default=30_000, help="hashes rows of the floor")
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        help="also measure this server (e.g. an axonfs or Synapse Axon URL)",
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        nothing = NothingServer(Path(tmp) / "nothing.sock", opts.rows)
        on_trio = NothingServer(Path(tmp) / "trio.sock", opts.rows, event_loop=True)
        urls = {
            "do-nothing server": nothing.url,
            "do-nothing trio server": on_trio.url,
            **{url: url for url in opts.url},
        }
        rates: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in urls}
        for _ in range(opts.runs):
            for name, url in urls.items():
                rates[name].append(client_rates(url, opts.calls, opts.get_mib))
        nothing.close()
        on_trio.close()
    for name, values in rates.items():
        has = sorted(value[0] for value in values)[len(values) // 2]
        get = sorted(value[1] for value in values)[len(values) // 2]
        rows = sorted(value[2] for value in values)[len(values) // 2]
        upload = sorted(value[3] for value in values)[len(values) // 2]
        print(
            f"{name}: has {has:,.0f}/s, get {get:,.0f} MB/s, hashes {rows:,.0f} rows/s, "
            f"upload {upload:,.0f} MB/s (medians of {len(values)})"
        )


if __name__ == "__main__":
    main()
