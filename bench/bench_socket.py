#!/usr/bin/env python3
"""Control-socket benchmark: axonfs through its socket vs Synapse over Telepath.

Each run starts ``axonfs serve --foreground`` on a fresh temporary store and,
through the Python client (``axonfs.client.connect``, under asyncio by
default: what Synapse users run), measures the same set as
``../shared/bench/synapse_axon_bench.py``:

==================  ================================================================
figure              what is timed
==================  ================================================================
put 4 KiB seq       ``await axon.put(b)`` x ``--small-count`` new 4 KiB blobs
puts batched        ``axon.puts(batch)`` of ``--batch`` blobs, same count, new blobs
put existing        re-``put`` of ``--reput-count`` blobs already stored (dedup)
upload              ``upload()`` of ``--big-mib`` MiB in ``--chunk-mib`` MiB writes +
                    ``save()``; the chunks are generated inside the timed loop, one
                    bytes copy each, exactly as the reference does
get                 ``get(sha)`` of that blob, whole
ranged get          random ``get(sha, offs, 4096)``
hashes(0)           every row (2 x small-count + 1, same as the reference)
has / size          half present, half absent
wants               ``--wants-count`` hashes, half present
CLI ``has``         ``axonfs ctl --socket S has SHA`` as a subprocess, per call
in-process          put / has / size with the client in the daemon's process and
                    trio loop (``--in-process``, on by default): how the reference's
                    Telepath figures are taken
==================  ================================================================

The reference is the Synapse Axon through Telepath (``cell://`` unix socket and
TCP loopback). ``--run-reference`` runs ``synapse_axon_bench.py --telepath all``
with matching sizes in each run, right before or after the axonfs run
(alternating), so both see the same machine state; ``--reference FILE``
(repeatable) adds JSON files of earlier reference runs instead. Figures are
medians over runs (axonfs) and over reference runs; ratios are
axonfs / reference. Targets: every figure >= the reference over
Telepath (judged against the unix socket, the like-for-like transport), ``get``
and ``upload`` >= 2x.

``--py-spy DIR`` attaches ``py-spy record --nonblocking`` to the daemon and to
this process for each phase of the last run and writes raw (collapsed) stacks
to DIR.

Usage::

    python bench/bench_socket.py --runs 2 --run-reference --json socket.json
    python bench/bench_socket.py --big-mib 128 --small-count 500     # quick
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import trio
from bench_store import fmt, log, machine_info, machine_load, print_columns, small_blobs

import axonfs.client
from axonfs.axon import Axon
from axonfs.ctlserver import serve_control

MiB = 1 << 20
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_REF_SCRIPT = REPO.parent / "shared" / "bench" / "synapse_axon_bench.py"
DEFAULT_REF_PYTHON = REPO / ".venv-synapse" / "bin" / "python"  # built by `make venv`


def gen_chunks(total: int, chunk: int, seed: int = 0) -> Iterator[bytes]:
    """The reference's genBigChunks: one random buffer, a counter stamped per piece."""
    rnd = random.Random(seed)
    base = bytearray(rnd.randbytes(chunk))
    sent = indx = 0
    while sent < total:
        size = min(chunk, total - sent)
        base[0:16] = indx.to_bytes(16, "big")
        yield bytes(base[:size])
        sent += size
        indx += 1


# -- the daemon -------------------------------------------------------------------------


class Daemon:
    """``axonfs serve --foreground`` on *store*, in a child process we own."""

    def __init__(self, store: Path, extra: list[str] | None = None) -> None:
        self.store = store
        self.socket = store / "run" / "ctl.sock"
        self.log = store.parent / f"{store.name}.log"
        self.extra = extra or []
        self.process: subprocess.Popen[bytes] | None = None
        self.command = [str(VENV_BIN / "axonfs")]

    def start(self, timeout: float = 60.0) -> None:
        cmd = [
            *self.command,
            "serve",
            "--store",
            str(self.store),
            "--foreground",
            "--log",
            str(self.log),
            *self.extra,
        ]
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"axonfs serve exited with {self.process.returncode}; see {self.log}"
                )
            if self.socket.exists():
                try:
                    anyio.run(self._ping)
                    return
                except Exception:  # noqa: BLE001 - not ready yet
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError("axonfs serve did not come up")
            time.sleep(0.05)

    async def _ping(self) -> None:
        async with axonfs.client.connect(self.socket) as axon:
            await axon.ping()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


# -- profiling --------------------------------------------------------------------------


class Profiler:
    """py-spy on the daemon and on this process, one pair of raw files per phase."""

    def __init__(self, outdir: Path | None, daemon_pid: int) -> None:
        self.outdir = outdir
        self.daemon_pid = daemon_pid

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.outdir is None:
            yield
            return
        self.outdir.mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy", path=str(VENV_BIN)) or "py-spy"
        procs = []
        for who, pid in (("daemon", self.daemon_pid), ("client", os.getpid())):
            out = self.outdir / f"{name}-{who}.txt"
            procs.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--format",
                        "raw",
                        "--threads",
                        "--nonblocking",
                        "-r",
                        "250",
                        "-o",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(1.0)  # let py-spy attach
        try:
            yield
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# -- the suite --------------------------------------------------------------------------


async def client_suite(
    args: argparse.Namespace, sock: Path, run_no: int, prof: Profiler
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    n, size = args.small_count, args.small_size
    async with axonfs.client.connect(sock) as axon:
        # ------------------------------------------------------------ small puts
        seq_blobs = small_blobs(n, size, 1000 + run_no)
        bat_blobs = small_blobs(n, size, 3000 + run_no)
        shas: list[bytes] = []
        log(f"[run {run_no}] put() x {n}")
        gc.collect()
        with prof.phase("put"):
            t0 = time.perf_counter()
            for data in seq_blobs:
                _, sha = await axon.put(data)
                shas.append(sha)
            res["put_files_per_s"] = n / (time.perf_counter() - t0)

        m = min(n, args.reput_count)
        t0 = time.perf_counter()
        for data in seq_blobs[:m]:
            await axon.put(data)
        res["put_existing_files_per_s"] = m / (time.perf_counter() - t0)

        log(f"[run {run_no}] puts() x {n} in batches of {args.batch}")
        with prof.phase("puts"):
            t0 = time.perf_counter()
            for i in range(0, n, args.batch):
                await axon.puts(bat_blobs[i : i + args.batch])
            res["puts_files_per_s"] = n / (time.perf_counter() - t0)

        # ------------------------------------------------------------ upload
        total = args.big_mib * MiB
        chunk = args.chunk_mib * MiB
        hasher = hashlib.sha256()
        for piece in gen_chunks(total, chunk):
            hasher.update(piece)
        log(f"[run {run_no}] upload() {args.big_mib} MiB in {args.chunk_mib} MiB writes")
        gc.collect()
        with prof.phase("upload"):
            t0 = time.perf_counter()
            async with await axon.upload() as up:
                for piece in gen_chunks(total, chunk):
                    await up.write(piece)
                t1 = time.perf_counter()
                bigsize, bigsha = await up.save()
            t2 = time.perf_counter()
        assert bigsize == total and bigsha == hasher.digest(), (bigsize, bigsha.hex())
        res["upload_MiBps"] = total / MiB / (t2 - t0)
        res["upload_write_phase_s"] = t1 - t0
        res["upload_save_phase_s"] = t2 - t1

        # ------------------------------------------------------------ get whole
        log(f"[run {run_no}] get() whole")
        with prof.phase("get"):
            got = nchunks = 0
            t0 = time.perf_counter()
            async for piece in axon.get(bigsha):
                got += len(piece)
                nchunks += 1
            secs = time.perf_counter() - t0
        assert got == total, (got, total)
        res["get_MiBps"] = total / MiB / secs
        res["get_chunks"] = nchunks
        # a second pass: the reference measures one; this shows the spread
        got = 0
        t0 = time.perf_counter()
        async for piece in axon.get(bigsha):
            got += len(piece)
        res["get_second_MiBps"] = total / MiB / (time.perf_counter() - t0)

        # ------------------------------------------------------------ ranged get
        if args.range_reads:
            k = args.range_reads
            rr = random.Random(7)
            offsets = [rr.randrange(0, max(1, total - args.range_size)) for _ in range(k)]
            log(f"[run {run_no}] {k} ranged get()s")
            got = 0
            t0 = time.perf_counter()
            for offs in offsets:
                async for piece in axon.get(bigsha, offs, args.range_size):
                    got += len(piece)
            res["range_get_ops"] = k / (time.perf_counter() - t0)
            assert got == k * args.range_size

        # ------------------------------------------------------------ hashes(0)
        log(f"[run {run_no}] hashes(0)")
        with prof.phase("hashes"):
            rows = 0
            t0 = time.perf_counter()
            async for _indx, (_sha, _size) in axon.hashes(0):
                rows += 1
            secs = time.perf_counter() - t0
        res["hashes_rows"] = rows
        res["hashes_rows_per_s"] = rows / secs
        rows = 0
        t0 = time.perf_counter()
        async for _tick, (_sha, _size) in axon.history(0):
            rows += 1
        res["history_rows_per_s"] = rows / (time.perf_counter() - t0)

        # ------------------------------------------------------------ has / size / wants
        k = args.has_ops
        log(f"[run {run_no}] has() x {k}")
        res["has_ops"], res["size_ops"] = await time_has_and_size(
            axon, half_present(shas, k), prof.phase("has")
        )

        w = args.wants_count
        present = [shas[i % len(shas)] for i in range(w // 2)]
        missing = [hashlib.sha256(b"wants-%d" % i).digest() for i in range(w - len(present))]
        query = present + missing
        random.Random(3).shuffle(query)
        t0 = time.perf_counter()
        wanted = await axon.wants(query)
        res["wants_hashes_per_s"] = w / (time.perf_counter() - t0)
        assert len(wanted) == len(missing)
        res["cli_sha"] = shas[0].hex()
    return res


def half_present(shas: list[bytes], k: int) -> list[bytes]:
    """*k* hashes to look up, alternately stored (from *shas*) and absent."""
    absent = [hashlib.sha256(b"absent-%d" % i).digest() for i in range(k // 2 + 1)]
    return [shas[i % len(shas)] if i % 2 == 0 else absent[i // 2] for i in range(k)]


async def time_has_and_size(
    axon: Any,
    probe: list[bytes],
    phase: contextlib.AbstractContextManager[Any] | None = None,
) -> tuple[float, float]:
    """``has()`` of every hash in *probe*, then ``size()`` of up to 5,000: calls per second."""
    hits = 0
    with phase or contextlib.nullcontext():
        t0 = time.perf_counter()
        for sha in probe:
            if await axon.has(sha):
                hits += 1
        has_ops = len(probe) / (time.perf_counter() - t0)
    assert hits == (len(probe) + 1) // 2, hits
    j = min(len(probe), 5000)
    t0 = time.perf_counter()
    for sha in probe[:j]:
        await axon.size(sha)
    return has_ops, j / (time.perf_counter() - t0)


async def inproc_suite(args: argparse.Namespace, store: Path, run_no: int) -> dict[str, Any]:
    """Point calls with the client in the daemon's own process and trio loop.

    The reference's Telepath figures are measured this way (the Axon cell and
    its proxy share one process and one event loop, talking over the unix
    socket), so this is the like-for-like figure; the main suite's, across
    two processes, adds a context switch each way per call.
    """
    res: dict[str, Any] = {}
    sock = store.parent / f"inproc-{run_no}.sock"
    async with (
        Axon.open(store, sync_interval=args.sync_interval / 1000) as axon,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(serve_control, axon, sock)
        async with axonfs.client.connect(sock) as client:
            n = max(1, args.small_count // 4)
            blobs = small_blobs(n, args.small_size, 5000 + run_no)
            log(f"[run {run_no}] in-process: put() x {n}, has() x {args.has_ops}")
            t0 = time.perf_counter()
            shas = [(await client.put(data))[1] for data in blobs]
            res["inproc_put_files_per_s"] = n / (time.perf_counter() - t0)
            res["inproc_has_ops"], res["inproc_size_ops"] = await time_has_and_size(
                client, half_present(shas, args.has_ops)
            )
        nursery.cancel_scope.cancel()
    return res


def cli_suite(args: argparse.Namespace, sock: Path, sha_hex: str) -> dict[str, Any]:
    """Process start cost: ``axonfs ctl has`` against a bare interpreter start."""
    res: dict[str, Any] = {}
    k = args.cli_calls
    exe = str(VENV_BIN / "axonfs")
    py = sys.executable

    def timed(cmd: list[str], expect: int = 0) -> list[float]:
        times = []
        for _ in range(k):
            t0 = time.perf_counter()
            rc = subprocess.run(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            ).returncode
            times.append(time.perf_counter() - t0)
            assert rc == expect, (cmd, rc)
        return times

    log(f"CLI: {k} x axonfs ctl has, {k} x python -c pass, {k} x import axonfs.ctl")
    timed([exe, "ctl", "--socket", str(sock), "has", sha_hex])  # warm the page cache
    has = timed([exe, "ctl", "--socket", str(sock), "has", sha_hex])
    bare = timed([py, "-c", "pass"])
    imp = timed([py, "-c", "import axonfs.ctl, axonfs.client"])
    res["cli_has_ms"] = statistics.median(has) * 1000
    res["cli_python_bare_ms"] = statistics.median(bare) * 1000
    res["cli_import_ctl_client_ms"] = statistics.median(imp) * 1000
    res["cli_has_calls_per_s"] = 1000 / res["cli_has_ms"]
    return res


def run_reference(args: argparse.Namespace, out: Path) -> Path:
    cmd = [
        str(args.ref_python),
        str(args.ref_script),
        "--telepath",
        "all",
        "--small-count",
        str(args.small_count),
        "--small-size",
        str(args.small_size),
        "--reput-count",
        str(args.reput_count),
        "--puts-batch",
        str(args.batch),
        "--big-mib",
        str(args.big_mib),
        "--chunk-mib",
        str(args.chunk_mib),
        "--has-ops",
        str(args.has_ops),
        "--wants-count",
        str(args.wants_count),
        "--range-reads",
        str(args.range_reads),
        "--range-size",
        str(args.range_size),
    ]
    if args.dir:
        cmd += ["--dirn", args.dir]
    log("reference: " + " ".join(cmd))
    with open(out, "wb") as f:
        subprocess.run(cmd, stdout=f, check=True)
    return out


def run_axonfs(
    args: argparse.Namespace, run_no: int, workdir: Path, profile: bool
) -> dict[str, Any]:
    res: dict[str, Any] = {"load_at_start": machine_load()}
    daemon = Daemon(
        workdir / f"store-{run_no}",
        ["--sync-interval", str(args.sync_interval)] if args.sync_interval else [],
    )
    t0 = time.perf_counter()
    daemon.start()
    res["daemon_start_s"] = time.perf_counter() - t0
    try:
        prof = Profiler(Path(args.py_spy) if (args.py_spy and profile) else None, daemon.pid)
        res.update(
            anyio.run(client_suite, args, daemon.socket, run_no, prof, backend=args.async_backend)
        )
        if args.cli_calls:
            res.update(cli_suite(args, daemon.socket, res.pop("cli_sha")))
    finally:
        daemon.stop()
    if args.in_process:
        res.update(trio.run(inproc_suite, args, workdir / f"inproc-store-{run_no}", run_no))
    res["load_at_end"] = machine_load()
    return res


# -- reporting --------------------------------------------------------------------------

REF_PICK = [
    ("put_files_per_s", "a_put_small", "files_per_s"),
    ("put_existing_files_per_s", "a2_put_existing", "files_per_s"),
    ("puts_files_per_s", "a3_puts_batched", "files_per_s"),
    ("upload_MiBps", "b_upload_big", "MB_per_s"),
    ("get_MiBps", "c_get_big", "MB_per_s"),
    ("range_get_ops", "g_get_range", "ops_per_s"),
    ("hashes_rows_per_s", "d_hashes", "rows_per_s"),
    ("history_rows_per_s", "d2_history", "rows_per_s"),
    ("has_ops", "e_has", "ops_per_s"),
    ("size_ops", "e2_size", "ops_per_s"),
    ("wants_hashes_per_s", "f_wants", "hashes_per_s"),
    ("inproc_put_files_per_s", "a_put_small", "files_per_s"),
    ("inproc_has_ops", "e_has", "ops_per_s"),
    ("inproc_size_ops", "e2_size", "ops_per_s"),
]
TRANSPORTS = ("telepath-unix", "telepath-tcp", "local")

# (label, key, unit, target ratio against telepath-unix or None)
ROWS = [
    ("put 4 KiB, sequential", "put_files_per_s", "files/s", 1.0),
    ("puts() 4 KiB, batched", "puts_files_per_s", "files/s", 1.0),
    ("put of existing (dedup)", "put_existing_files_per_s", "files/s", None),
    ("upload 8 MiB writes + save", "upload_MiBps", "MiB/s", 2.0),
    ("get whole", "get_MiBps", "MiB/s", 2.0),
    ("ranged get 4 KiB", "range_get_ops", "ops/s", None),
    ("hashes(0)", "hashes_rows_per_s", "rows/s", 1.0),
    ("history(0)", "history_rows_per_s", "rows/s", None),
    ("has()", "has_ops", "ops/s", 1.0),
    ("size()", "size_ops", "ops/s", None),
    ("put 4 KiB, client in the daemon's process", "inproc_put_files_per_s", "files/s", None),
    ("has(), client in the daemon's process", "inproc_has_ops", "ops/s", 1.0),
    ("size(), client in the daemon's process", "inproc_size_ops", "ops/s", None),
    ("wants() 10,000", "wants_hashes_per_s", "hashes/s", None),
]


def load_reference(paths: list[str]) -> dict[str, Any]:
    """{transport: {key: median, key_runs: [...]}} over the reference JSON files."""
    docs = []
    for path in paths:
        with open(path) as f:
            docs.append(json.load(f))
    ref: dict[str, Any] = {"files": paths}
    if docs:
        ref["synapse_version"] = docs[0].get("synapse_version")
        ref["params"] = docs[0].get("params")
    for tport in TRANSPORTS:
        out: dict[str, Any] = {}
        for key, section, field in REF_PICK:
            values = []
            for doc in docs:
                with contextlib.suppress(KeyError, TypeError):
                    values.append(doc["results"][tport][section][field])
            if values:
                out[key] = statistics.median(values)
                out[f"{key}_runs"] = values
        if out:
            ref[tport] = out
    return ref


def summarise(runs: list[dict[str, Any]], ref: dict[str, Any]) -> dict[str, Any]:
    keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float))}
    med = {k: statistics.median([r[k] for r in runs if r.get(k) is not None]) for k in sorted(keys)}
    table = []
    for label, key, unit, target in ROWS:
        if key not in med:
            continue
        row: dict[str, Any] = {
            "figure": label,
            "unit": unit,
            "axonfs": med[key],
            "runs": [r.get(key) for r in runs],
        }
        for tport in TRANSPORTS:
            value = ref.get(tport, {}).get(key)
            if value:
                row[tport] = value
                row[f"{tport}_runs"] = ref[tport].get(f"{key}_runs")
                row[f"x_{tport}"] = med[key] / value
        if target is not None:
            row["target"] = f">= {target:g}x telepath-unix"
            got = row.get("x_telepath-unix")
            row["met"] = None if got is None else bool(got >= target)
        table.append(row)
    return {"median": med, "table": table}


def print_table(summary: dict[str, Any], nruns: int, nref: int) -> None:
    head = (
        "figure",
        "unit",
        "axonfs",
        "tp-unix",
        "x unix",
        "tp-tcp",
        "x tcp",
        "ref local",
        "target",
        "met",
    )
    lines = [head]
    for row in summary["table"]:
        met = row.get("met")
        lines.append(
            (
                row["figure"],
                row["unit"],
                fmt(row["axonfs"]),
                fmt(row.get("telepath-unix")),
                fmt(row.get("x_telepath-unix"), True),
                fmt(row.get("telepath-tcp")),
                fmt(row.get("x_telepath-tcp"), True),
                fmt(row.get("local")),
                row.get("target", ""),
                "" if "target" not in row else ("?" if met is None else ("yes" if met else "NO")),
            )
        )
    print(
        f"axonfs control socket (Python client), median of {nruns} run(s); reference: "
        f"Synapse Axon, median of {nref} run(s); MiB/s or per second"
    )
    print_columns(lines)
    med = summary["median"]
    if "upload_save_phase_s" in med:
        print(
            f"upload: write phase {med['upload_write_phase_s']:.2f} s, "
            f"save phase {med['upload_save_phase_s']:.2f} s; "
            f"second get {med.get('get_second_MiBps', 0):,.0f} MiB/s"
        )
    if "cli_has_ms" in med:
        print(
            f"CLI: 'axonfs ctl has' {med['cli_has_ms']:.0f} ms per call "
            f"({med['cli_has_calls_per_s']:.1f}/s); bare 'python -c pass' "
            f"{med['cli_python_bare_ms']:.0f} ms; 'import axonfs.ctl, axonfs.client' "
            f"{med['cli_import_ctl_client_ms']:.0f} ms"
        )


def main() -> int:
    args = get_args()
    base = Path(args.dir) if args.dir else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="axonfs-bench-socket-", dir=base))
    refs = list(args.reference or [])
    runs = []
    loads = []
    try:
        for run_no in range(args.runs):
            ref_first = run_no % 2 == 0
            if args.run_reference and ref_first:
                loads.append(("reference", machine_load()))
                refs.append(str(run_reference(args, workdir / f"reference-{run_no}.json")))
            profile = run_no == args.runs - 1
            runs.append(run_axonfs(args, run_no, workdir, profile))
            loads.append(("axonfs", runs[-1]["load_at_start"]))
            if args.run_reference and not ref_first:
                loads.append(("reference", machine_load()))
                refs.append(str(run_reference(args, workdir / f"reference-{run_no}.json")))
        ref = load_reference(refs)
        summary = summarise(runs, ref)
        print_table(summary, len(runs), len(refs))
        for who, load in loads:
            print(
                f"load at start of {who}: {load.get('loadavg', '?')}; "
                f"{load.get('pressure_cpu', '')}"
            )
        if args.json:
            refdocs = []
            for path in refs:
                with open(path) as f:
                    refdocs.append(json.load(f))
            doc = {
                "machine": machine_info(),
                "params": vars(args),
                "runs": runs,
                "reference": ref,
                "reference_docs": refdocs,
                **summary,
            }
            Path(args.json).write_text(json.dumps(doc, indent=2, default=repr) + "\n")
            log(f"wrote {args.json}")
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--big-mib", type=int, default=1024, help="upload/get size (1024)")
    p.add_argument("--chunk-mib", type=int, default=8, help="upload write size (8)")
    p.add_argument(
        "--small-count",
        type=int,
        default=2000,
        help="small blobs per put mode (2000, the reference's default)",
    )
    p.add_argument("--small-size", type=int, default=4096, help="bytes per small blob")
    p.add_argument("--batch", type=int, default=100, help="blobs per puts() call (100)")
    p.add_argument("--reput-count", type=int, default=500, help="re-puts of stored blobs")
    p.add_argument("--has-ops", type=int, default=20_000, help="has() calls (20,000)")
    p.add_argument("--wants-count", type=int, default=10_000, help="hashes per wants()")
    p.add_argument("--range-reads", type=int, default=2000, help="random ranged gets (2000)")
    p.add_argument("--range-size", type=int, default=4096, help="bytes per ranged get")
    p.add_argument(
        "--cli-calls",
        type=int,
        default=20,
        help="'axonfs ctl has' subprocess calls to time (0: skip)",
    )
    p.add_argument(
        "--async-backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop the client runs under (asyncio)",
    )
    p.add_argument(
        "--in-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure put/has/size with the client in the daemon's process, "
        "as the reference measures Telepath (default on)",
    )
    p.add_argument(
        "--sync-interval",
        type=int,
        default=0,
        metavar="MS",
        help="run the daemon with this sync interval (0: every call durable when "
        "it returns, the default)",
    )
    p.add_argument("--runs", type=int, default=1, help="repeat; report medians")
    p.add_argument(
        "--run-reference",
        action="store_true",
        help="run synapse_axon_bench.py --telepath all in every run",
    )
    p.add_argument(
        "--reference",
        action="append",
        help="JSON of an earlier synapse_axon_bench.py --telepath all run "
        "(repeatable; medians are used)",
    )
    p.add_argument(
        "--ref-python",
        type=Path,
        default=DEFAULT_REF_PYTHON,
        help=f"the Synapse venv's python ({DEFAULT_REF_PYTHON})",
    )
    p.add_argument(
        "--ref-script", type=Path, default=DEFAULT_REF_SCRIPT, help="synapse_axon_bench.py"
    )
    p.add_argument(
        "--py-spy",
        metavar="DIR",
        help="profile the daemon and the client per phase (last run) into DIR",
    )
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--dir", help="parent of the temporary directory (default $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
