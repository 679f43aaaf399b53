#!/usr/bin/env python3
"""Telepath benchmark: axonfs over Telepath against a Synapse 2.256 Axon, same client.

Both servers run in processes of their own, on fresh directories: ``axonfs
serve`` (its ``telepath.sock``) and ``python -m synapse.servers.axon`` (its
``cell://`` unix socket), from ``.venv-synapse``. The same client script
(``bench/telepath_client.py``, Synapse's own client) measures each in turn:
sequential and concurrent ``put`` of 4 KiB blobs, ``puts`` of 100 of them at a
time, ``has`` and ``size`` (half present), ``upload`` of ``--big-mib`` MiB in
``--chunk-mib`` MiB writes, the whole ``get`` of that blob (twice: right after the
upload, then again from memory), ``hashes(0)`` and ``history(0)``. Runs alternate between the two
servers; figures are medians, ratios axonfs / reference.

A third server that does nothing (``bench/telepath_nothing.py``: every answer
made in advance, no event loop) runs the same client in every run: its figures
are the most Synapse's client reaches on this machine, and divided by the
reference's they are the highest ratio any server could show (the "ceiling"
column).

With ``--sync-interval MS`` axonfs serves with that durability setting, and the
benchmark also times sequential ``put`` of 4 KiB through axonfs's own socket
and client (``axonfs.client`` over ``ctl.sock``, from this process), against
the same Telepath figure of the reference: both from a process other than the
server's.

Usage::

    python bench/bench_telepath.py --runs 2 --big-mib 256 --json telepath.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from telepath_nothing import NothingServer

import axonfs.client

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "bench" / "telepath_client.py"
START_TIMEOUT = 60.0


def synapse_python() -> Path:
    named = os.environ.get("AXONFS_SYNAPSE_PYTHON")
    path = Path(named) if named else ROOT / ".venv-synapse" / "bin" / "python"
    if not path.exists():
        sys.exit("no Synapse: run 'make venv-synapse' (or set AXONFS_SYNAPSE_PYTHON)")
    return path


def wait_for_unix(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(path))
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {path}")


CTL_PUT = "put 4 KiB seq, axonfs.client over ctl.sock, files/s"


@contextmanager
def server(kind: str, workdir: Path, sync_interval: int = 0) -> Iterator[str]:
    """Start one server; yield its Telepath URL; stop it."""
    if kind == "nothing":
        nothing = NothingServer(workdir / "nothing.sock")
        try:
            yield nothing.url
        finally:
            nothing.close()
        return
    log = (workdir / f"{kind}.log").open("wb")
    if kind == "axonfs":
        store = workdir / "store"
        command = [sys.executable, "-m", "axonfs", "serve", "--store", str(store), "--foreground"]
        command += ["--sync-interval", str(sync_interval)]
        path, url = store / "run" / "telepath.sock", f"unix://{store}/run/telepath.sock"
    else:
        dirn = workdir / "axon"
        command = [
            str(synapse_python()),
            "-m",
            "synapse.servers.axon",
            "--https",
            "0",
            "--telepath",
            "tcp://127.0.0.1:0",
            "--health-sysctl-checks",
            "false",
            str(dirn),
        ]
        path, url = dirn / "sock", f"cell://{dirn}"
    process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_for_unix(path, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    done = subprocess.run(
        [
            str(synapse_python()),
            str(CLIENT),
            url,
            "--small-count",
            str(args.small_count),
            "--big-mib",
            str(args.big_mib),
            "--chunk-mib",
            str(args.chunk_mib),
            "--has-ops",
            str(args.has_ops),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"client failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def ctl_puts(socket_path: Path, count: int) -> float:
    """Sequential 4 KiB puts through axonfs's own client, in files/s."""
    blobs = [os.urandom(4096) for _ in range(count)]
    async with axonfs.client.connect(socket_path) as axon:
        await axon.has(b"\0" * 32)  # the pool's first connection
        start = time.perf_counter()
        for blob in blobs:
            await axon.put(blob)
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--small-count", type=int, default=1000)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--has-ops", type=int, default=5000)
    parser.add_argument(
        "--sync-interval",
        type=int,
        default=0,
        metavar="MS",
        help="axonfs serve's --sync-interval; above 0 also times puts over ctl.sock",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures: dict[str, list[dict[str, float]]] = {"axonfs": [], "reference": [], "nothing": []}
    # Every store is removed at the end, not after its run: on ext4 without a
    # journal, creating files runs ~10x slower for minutes after tens of
    # thousands were deleted, which would slow the next run's small puts.
    workdirs: list[Path] = []
    try:
        for run in range(args.runs):
            order = ["axonfs", "reference"] if run % 2 == 0 else ["reference", "axonfs"]
            for kind in [*order, "nothing"]:
                workdir = Path(tempfile.mkdtemp(prefix=f"bench-telepath-{kind}-", dir="/var/tmp"))
                workdirs.append(workdir)
                with server(kind, workdir, args.sync_interval) as url:
                    figures[kind].append(measure(url, args))
                    if kind == "axonfs" and args.sync_interval:
                        ctl = workdir / "store" / "run" / "ctl.sock"
                        figures[kind][-1][CTL_PUT] = asyncio.run(ctl_puts(ctl, args.small_count))
                    print(f"run {run + 1} {kind}: {figures[kind][-1]}", file=sys.stderr)
    finally:
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
    medians = {
        kind: {name: statistics.median(run[name] for run in runs) for name in runs[0]}
        for kind, runs in figures.items()
    }
    print("| figure | axonfs | Synapse Axon | ratio | do-nothing server | ceiling |")
    print("|---|---|---|---|---|---|")
    for name, value in medians["axonfs"].items():
        # The reference has no ctl.sock: its own socket's figure is Telepath's.
        reference = medians["reference"][name if name != CTL_PUT else "put 4 KiB seq, files/s"]
        nothing = medians["nothing"].get(name)
        ceiling = (
            f"| {nothing:,.0f} | {nothing / reference:.2f}x |" if nothing is not None else "| | |"
        )
        print(f"| {name} | {value:,.0f} | {reference:,.0f} | {value / reference:.2f}x {ceiling}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "runs": figures,
                    "medians": medians,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
