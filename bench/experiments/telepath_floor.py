"""The floor under a Telepath point call: Synapse's client against a server that does nothing.

A ``has()`` round trip through Synapse's own client costs the client's work
(pool link, message packing, a future per call, asyncio's wake-ups), two
cross-process wake-ups, and the server's work. This serves the handshake and
then answers every ``t2:init`` with a ready-made ``t2:fini`` from a plain
blocking socket per connection (a thread each, no event loop, no decoding
beyond splitting messages), which is as little as any server can do. The
client's rate against it is the most any Telepath server can reach with that
client; dividing it by the reference Axon's rate gives the highest ratio any
server could show.

Usage (from the repository, with ``.venv-synapse`` built)::

    python bench/experiments/telepath_floor.py --calls 10000 --runs 3 [--reference]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from axonfs.telepath.service import AxonApi  # noqa: E402
from axonfs.telepath.server import TELEVERS  # noqa: E402
from axonfs.telepath.wire import encode  # noqa: E402

SYNAPSE_PYTHON = ROOT / ".venv-synapse" / "bin" / "python"
CLIENT = """
import asyncio, os, sys, time, json
import synapse.telepath as s_telepath
async def main(url, calls):
    async with await s_telepath.openurl(url) as axon:
        await axon.has(b"\\0" * 32)
        sha = os.urandom(32)
        start = time.perf_counter()
        for _ in range(calls):
            await axon.has(sha)
        print(json.dumps(calls / (time.perf_counter() - start)))
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def share_info() -> dict[str, object]:
    api = AxonApi.__new__(AxonApi)
    api._methods = {}
    info = api.share_info()
    info["meths"] = {"has": {}}
    return info


def serve_connection(conn: socket.socket) -> None:
    unpacker = msgpack.Unpacker(raw=False, use_list=False, strict_map_key=False)
    answer = encode("t2:fini", {"retn": (True, False)})
    with conn:
        while data := conn.recv(65536):
            unpacker.feed(data)
            for name, info in unpacker:
                if name == "tele:syn":
                    conn.sendall(encode("tele:syn", {
                        "vers": TELEVERS, "retn": (True, None), "sess": "f" * 32,
                        "features": {}, "sharinfo": share_info()}))
                else:
                    conn.sendall(answer)


def serve(path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(64)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


def client_rate(url: str, calls: int) -> float:
    done = subprocess.run([str(SYNAPSE_PYTHON), "-c", CLIENT, url, str(calls)],
                          capture_output=True, text=True, check=True, timeout=600)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", action="append", default=[],
                        help="also measure this server (e.g. an axonfs or Synapse Axon URL)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "floor.sock"
        threading.Thread(target=serve, args=(path,), daemon=True).start()
        while not path.exists():
            threading.Event().wait(0.01)
        urls = {"do-nothing server": f"unix://{path}", **{url: url for url in opts.url}}
        rates: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(opts.runs):
            for name, url in urls.items():
                rates[name].append(client_rate(url, opts.calls))
    print(json.dumps({name: sorted(values)[len(values) // 2] for name, values in rates.items()},
                     indent=1))


if __name__ == "__main__":
    main()
