#!/usr/bin/env python3
"""Storage-core benchmark: axonfs's Axon API against native ceilings.

In one process and on the same data, each run measures the native ceiling
right before the matching axonfs operation (the machine is noisy: only ratios
taken in the same run mean anything):

=================  ==========================================  ===================================
figure             axonfs                                      native ceiling
=================  ==========================================  ===================================
upload             ``Upload.write`` of the big stream in       ``hashlib.sha256`` over the same
                   ``--chunk-mib`` pieces + ``save()``         pieces on one core
                                                               (also: write + sha256 + fsync)
put small          10,000 x 4 KiB: sequential ``put``,         create + write + sha256 per file,
                   ``--concurrency`` tasks of ``put``,         one ``syncfs`` at the end
                   ``puts()`` in ``--batch`` batches
get                ``get(sha)`` of the big blob, whole, its    plain file of the same bytes, read
                   file in the page cache                      from the page cache in 1 MiB reads
get cold           the same, its file evicted from the cache   the same plain file, evicted
ranged get         random ``get(sha, offs, 4096)``             ``os.pread`` of 4 KiB at the same
                                                               offsets on an open fd
hashes             ``hashes(0)`` over every row                raw LMDB cursor over ``seqn``
has                ``has()``, half present, half absent        raw LMDB ``txn.get`` per key
=================  ==========================================  ===================================

Each put mode gets its own distinct blobs (so nothing dedups); they all go into
one store, so ``hashes(0)`` covers 3 x ``--small-count`` + ``--sustained-count``
+ 1 rows. Small blobs are durable once their index commit returns and their
files are written later in batches (see axonfs.store.store): every put mode
starts with none pending (an untimed ``spill_journal()``), and the sustained
figure times ``--sustained-count`` blobs, far past the journal's burst capacity,
until the last one's file is written and synced.

``--runs N`` repeats the whole suite on fresh stores and reports the median of
each figure. ``--reference synapse.json`` (the JSON printed by
``../shared/bench/synapse_axon_bench.py``; repeat the flag for several runs, the
median is used) adds the reference's local figures and the issue's targets. Rates use MiB
(2**20 bytes), like the reference script.

Usage::

    python bench/bench_store.py                         # 1 GiB, 10,000 small blobs, 1 run
    python bench/bench_store.py --big-mib 64 --small-count 1000   # quick
    python bench/bench_store.py --runs 3 --json out.json --reference synapse.json
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from axonfs.axon import Axon
from axonfs.backends.local import LocalBackend
from axonfs.hashing import Sha256

MiB = 1 << 20
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

ALL_PARTS = ("upload", "get", "range", "put", "hashes", "has")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _libc.syncfs(fd)
    finally:
        os.close(fd)


def mibps(nbytes: int, secs: float) -> float:
    return nbytes / MiB / secs


# -- data ------------------------------------------------------------------------


def big_chunks(total: int, chunk: int, seed: int) -> list[bytes]:
    """The big stream as a list of pieces, generated before any timing.

    One random buffer with a counter stamped into each piece's first 16 bytes
    (as the reference script does), so pieces differ. Held in memory so that
    generating data costs neither the ceiling nor axonfs anything.
    """
    rnd = random.Random(seed)
    base = bytearray(rnd.randbytes(chunk))
    out = []
    sent = indx = 0
    while sent < total:
        size = min(chunk, total - sent)
        base[0:16] = indx.to_bytes(16, "big")
        out.append(bytes(base[:size]))
        sent += size
        indx += 1
    return out


def small_blobs(count: int, size: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(size) for _ in range(count)]


# -- native ceilings (synchronous, on the trio thread: nothing else runs) -----------


def native_sha256(chunks: list[bytes]) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    hasher = hashlib.sha256()
    for piece in chunks:
        hasher.update(piece)
    digest = hasher.digest()
    return time.perf_counter() - t0, digest


def native_write_hash_fsync(chunks: list[bytes], path: Path) -> float:
    t0 = time.perf_counter()
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for piece in chunks:
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]
            hasher.update(piece)
        os.fsync(fd)
    finally:
        os.close(fd)
    hasher.digest()
    return time.perf_counter() - t0


def evict(path: Path) -> None:
    """Drop *path*'s pages from the page cache (written back first: only clean
    pages can be dropped)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def native_read(path: Path, chunk: int = MiB) -> tuple[float, int]:
    """Read a page-cached file in *chunk* ``read()`` calls (a new bytes each)."""
    got = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while piece := f.read(chunk):
            got += len(piece)
    return time.perf_counter() - t0, got


async def best_get_rates(
    axon: Axon,
    sha: bytes,
    plain: Path,
    total: int,
    reps: int,
    evicting: tuple[Path, Path] | None = None,
) -> tuple[float, float]:
    """The best MiB/s of *reps* plain reads of *plain* and whole gets of *sha*,
    interleaved; with *evicting* (the plain file, the blob's), each is read
    after its file's pages were dropped from the page cache."""
    best_native = best_axon = 0.0
    for _ in range(reps):
        if evicting:
            evict(evicting[0])
        secs, got = native_read(plain)
        assert got == total
        best_native = max(best_native, mibps(total, secs))
        if evicting:
            evict(evicting[1])
        best_axon = max(best_axon, mibps(total, await timed_get(axon, sha, total)))
    return best_native, best_axon


async def timed_get(axon: Axon, sha: bytes, total: int) -> float:
    """Seconds for a whole ``get`` of *sha*, checked to yield *total* bytes."""
    got = 0
    t0 = time.perf_counter()
    async for piece in axon.get(sha):
        got += len(piece)
    secs = time.perf_counter() - t0
    assert got == total
    return secs


def native_pread(path: Path, offsets: list[int], size: int) -> float:
    fd = os.open(path, os.O_RDONLY)
    try:
        t0 = time.perf_counter()
        for offs in offsets:
            os.pread(fd, size, offs)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def native_open_pread(path: Path, offsets: list[int], size: int) -> float:
    """Per read: open, pread, close (what a get() that opens the blob pays at least)."""
    t0 = time.perf_counter()
    for offs in offsets:
        fd = os.open(path, os.O_RDONLY)
        os.pread(fd, size, offs)
        os.close(fd)
    return time.perf_counter() - t0


def native_small_files(blobs: list[bytes], directory: Path) -> float:
    """create + write + close + sha256 per file (named by hash), one syncfs at the end."""
    directory.mkdir()
    t0 = time.perf_counter()
    for data in blobs:
        name = hashlib.sha256(data).hexdigest()
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, data)
        os.close(fd)
    syncfs(directory)
    return time.perf_counter() - t0


# -- the suite -----------------------------------------------------------------------


async def run_once(
    args: argparse.Namespace, run_no: int, workdir: Path, chunks: list[bytes], expected_sha: bytes
) -> dict[str, Any]:
    parts = set(args.only)
    res: dict[str, Any] = {"load_at_start": machine_load()}
    total = sum(len(c) for c in chunks)
    store_dir = workdir / f"store-{run_no}"
    plain = workdir / f"plain-{run_no}.bin"
    n = args.small_count

    async with Axon.open(store_dir, sync_interval=args.sync_interval / 1000) as axon:
        # ---------------------------------------------------------------- upload
        big_sha = None
        if parts & {"upload", "get", "range"}:
            log(f"[run {run_no}] upload {total // MiB} MiB in {args.chunk_mib} MiB writes")
            secs, _ = native_sha256(chunks)
            res["native_sha256_MiBps"] = mibps(total, secs)
            secs = native_write_hash_fsync(chunks, plain)
            res["native_write_sha256_fsync_MiBps"] = mibps(total, secs)
            gc.collect()
            t0 = time.perf_counter()
            async with await axon.upload() as up:
                for piece in chunks:
                    await up.write(piece)
                t1 = time.perf_counter()
                size, big_sha = await up.save()
            t2 = time.perf_counter()
            assert size == total and big_sha == expected_sha, (size, big_sha.hex())
            res["upload_MiBps"] = mibps(total, t2 - t0)
            res["upload_write_phase_s"] = t1 - t0
            res["upload_save_phase_s"] = t2 - t1
            res["upload_ratio_sha256"] = res["upload_MiBps"] / res["native_sha256_MiBps"]
            res["upload_ratio_write_sha256_fsync"] = (
                res["upload_MiBps"] / res["native_write_sha256_fsync_MiBps"]
            )

        # ---------------------------------------------------------------- get whole
        if big_sha is not None and "get" in parts:
            assert isinstance(axon.backend, LocalBackend)
            blob_file = axon.backend.path_of(Sha256(big_sha))
            log(f"[run {run_no}] get whole, cold")
            native, ours = await best_get_rates(
                axon, big_sha, plain, total, args.get_reps, evicting=(plain, blob_file)
            )
            res["native_read_cold_MiBps"] = native
            res["get_cold_MiBps"] = ours
            res["get_cold_ratio_plain_read"] = ours / native
            log(f"[run {run_no}] get whole, cached")
            # Both files in the page cache. A get reads a cold blob round the
            # cache, so the blob's file is read into it directly.
            native_read(plain)
            native_read(blob_file)
            native, ours = await best_get_rates(axon, big_sha, plain, total, args.get_reps)
            res["native_read_1MiB_MiBps"] = native
            res["get_MiBps"] = ours
            res["get_ratio_plain_read"] = ours / native

        # ---------------------------------------------------------------- ranged gets
        if big_sha is not None and "range" in parts:
            k = args.range_reads
            size = args.range_size
            log(f"[run {run_no}] {k} random get(sha, offs, {size})")
            rr = random.Random(7 + run_no)
            offsets = [rr.randrange(0, max(1, total - size)) for _ in range(k)]
            res["native_pread_ops"] = k / native_pread(plain, offsets, size)
            res["native_open_pread_close_ops"] = k / native_open_pread(plain, offsets, size)
            got = 0
            t0 = time.perf_counter()
            for offs in offsets:
                async for piece in axon.get(big_sha, offs, size):
                    got += len(piece)
            secs = time.perf_counter() - t0
            assert got == k * size
            res["range_get_ops"] = k / secs
            res["range_ratio_pread"] = res["range_get_ops"] / res["native_pread_ops"]
            res["range_ratio_open_pread_close"] = (
                res["range_get_ops"] / res["native_open_pread_close_ops"]
            )
        plain.unlink(missing_ok=True)

        # ---------------------------------------------------------------- small puts
        shas: list[bytes] = []
        if "put" in parts:
            ssize = args.small_size
            seq_blobs = small_blobs(n, ssize, 1000 + run_no)
            con_blobs = small_blobs(n, ssize, 2000 + run_no)
            bat_blobs = small_blobs(n, ssize, 3000 + run_no)
            nat_blobs = small_blobs(n, ssize, 4000 + run_no)

            log(f"[run {run_no}] native: {n} small files")
            secs = native_small_files(nat_blobs, workdir / f"native-small-{run_no}")
            res["native_small_files_per_s"] = n / secs

            log(f"[run {run_no}] put() x {n} sequential")
            gc.collect()
            await axon.spill_journal()  # each mode starts with no small-blob files pending
            t0 = time.perf_counter()
            for data in seq_blobs:
                _, sha = await axon.put(data)
                shas.append(sha)
            res["put_seq_files_per_s"] = n / (time.perf_counter() - t0)

            log(f"[run {run_no}] put() x {n}, {args.concurrency} tasks")
            it = iter(con_blobs)

            async def worker() -> None:
                for data in it:
                    await axon.put(data)

            batches0 = axon.statistics().commit_batches
            await axon.spill_journal()
            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(args.concurrency):
                    nursery.start_soon(worker)
            res["put_concurrent_files_per_s"] = n / (time.perf_counter() - t0)
            res["put_concurrent_commits"] = axon.statistics().commit_batches - batches0

            log(f"[run {run_no}] puts() x {n} in batches of {args.batch}")
            await axon.spill_journal()
            t0 = time.perf_counter()
            for i in range(0, n, args.batch):
                await axon.puts(bat_blobs[i : i + args.batch])
            res["puts_batched_files_per_s"] = n / (time.perf_counter() - t0)

            if args.sustained_count:
                # Past the journal's burst capacity, and until every blob's file
                # is written and synced: what long small-blob ingest sustains.
                total = args.sustained_count
                log(
                    f"[run {run_no}] puts() x {total} in batches of {args.batch}, "
                    "then every file written"
                )
                many = small_blobs(total, ssize, 5000 + run_no)
                await axon.spill_journal()
                t0 = time.perf_counter()
                for i in range(0, total, args.batch):
                    await axon.puts(many[i : i + args.batch])
                await axon.spill_journal()
                res["puts_sustained_files_per_s"] = total / (time.perf_counter() - t0)

            m = min(n, args.reput_count)
            t0 = time.perf_counter()
            for data in seq_blobs[:m]:
                await axon.put(data)
            res["put_existing_files_per_s"] = m / (time.perf_counter() - t0)

            for key in ("put_seq", "put_concurrent", "puts_batched", "puts_sustained"):
                if f"{key}_files_per_s" not in res:
                    continue
                res[f"{key}_ratio_native"] = (
                    res[f"{key}_files_per_s"] / res["native_small_files_per_s"]
                )

        # ---------------------------------------------------------------- hashes(0)
        if "hashes" in parts:
            log(f"[run {run_no}] hashes(0)")
            env, seqn = axon.index.env, axon.index.seqn
            t0 = time.perf_counter()
            raw_rows = 0
            with env.begin(db=seqn) as txn:
                for _ in txn.cursor():
                    raw_rows += 1
            res["native_lmdb_cursor_rows_per_s"] = raw_rows / (time.perf_counter() - t0)
            rows = 0
            t0 = time.perf_counter()
            async for _indx, (_sha, _size) in axon.hashes(0):
                rows += 1
            secs = time.perf_counter() - t0
            res["hashes_rows"] = rows
            res["hashes_rows_per_s"] = rows / secs if rows else None
            if rows:
                res["hashes_ratio_lmdb_cursor"] = (
                    res["hashes_rows_per_s"] / res["native_lmdb_cursor_rows_per_s"]
                )

        # ---------------------------------------------------------------- has()
        if "has" in parts:
            k = args.has_ops
            log(f"[run {run_no}] has() x {k}")
            present = shas or [hashlib.sha256(b"p%d" % i).digest() for i in range(1000)]
            probe = [
                present[i % len(present)]
                if i % 2 == 0
                else hashlib.sha256(b"absent-%d" % i).digest()
                for i in range(k)
            ]
            env, blobs_db = axon.index.env, axon.index.blobs
            t0 = time.perf_counter()
            for sha in probe:
                with env.begin(db=blobs_db, buffers=True) as view:
                    view.get(sha)
            res["native_lmdb_get_ops"] = k / (time.perf_counter() - t0)
            hits = 0
            t0 = time.perf_counter()
            for sha in probe:
                if await axon.has(sha):
                    hits += 1
            res["has_ops"] = k / (time.perf_counter() - t0)
            res["has_ratio_lmdb_get"] = res["has_ops"] / res["native_lmdb_get_ops"]
            if shas:
                assert hits == (k + 1) // 2, hits
            w = min(k, 10_000)
            t0 = time.perf_counter()
            await axon.wants(probe[:w])
            res["wants_hashes_per_s"] = w / (time.perf_counter() - t0)

        res["metrics"] = await axon.metrics()
    res["load_at_end"] = machine_load()
    return res


# -- reporting -----------------------------------------------------------------------

# (label, axonfs key, unit, ceiling key, ratio key, reference key, target)
# target: (kind, value) where kind is "ceiling" (ratio to ceiling >= value)
# or "reference" (ratio to reference >= value).
ROWS: list[tuple[str, str, str, str | None, str | None, str | None, tuple[str, float] | None]] = [
    (
        "upload (Upload.write + save)",
        "upload_MiBps",
        "MiB/s",
        "native_sha256_MiBps",
        "upload_ratio_sha256",
        "upload_MiBps",
        ("ceiling", 0.8),
    ),
    (
        "  ceiling 2: write+sha256+fsync",
        "native_write_sha256_fsync_MiBps",
        "MiB/s",
        None,
        None,
        None,
        None,
    ),
    (
        "put 4 KiB, sequential",
        "put_seq_files_per_s",
        "files/s",
        "native_small_files_per_s",
        "put_seq_ratio_native",
        "put_files_per_s",
        ("reference", 2.0),
    ),
    (
        "put 4 KiB, concurrent tasks",
        "put_concurrent_files_per_s",
        "files/s",
        "native_small_files_per_s",
        "put_concurrent_ratio_native",
        "put_files_per_s",
        ("reference", 2.0),
    ),
    (
        "puts() 4 KiB, batched",
        "puts_batched_files_per_s",
        "files/s",
        "native_small_files_per_s",
        "puts_batched_ratio_native",
        "puts_files_per_s",
        ("reference", 2.0),
    ),
    (
        "puts() 4 KiB, sustained (until files synced)",
        "puts_sustained_files_per_s",
        "files/s",
        "native_small_files_per_s",
        "puts_sustained_ratio_native",
        "puts_files_per_s",
        None,
    ),
    (
        "put of existing (dedup)",
        "put_existing_files_per_s",
        "files/s",
        None,
        None,
        "put_existing_files_per_s",
        None,
    ),
    (
        "get whole",
        "get_MiBps",
        "MiB/s",
        "native_read_1MiB_MiBps",
        "get_ratio_plain_read",
        "get_MiBps",
        ("ceiling", 0.7),
    ),
    (
        "get whole, cold",
        "get_cold_MiBps",
        "MiB/s",
        "native_read_cold_MiBps",
        "get_cold_ratio_plain_read",
        None,
        None,
    ),
    (
        "ranged get 4 KiB",
        "range_get_ops",
        "ops/s",
        "native_pread_ops",
        "range_ratio_pread",
        "range_get_ops",
        ("reference", 20.0),
    ),
    (
        "  ceiling 2: open+pread+close",
        "native_open_pread_close_ops",
        "ops/s",
        None,
        None,
        None,
        None,
    ),
    (
        "hashes(0)",
        "hashes_rows_per_s",
        "rows/s",
        "native_lmdb_cursor_rows_per_s",
        "hashes_ratio_lmdb_cursor",
        "hashes_rows_per_s",
        None,
    ),
    ("has()", "has_ops", "ops/s", "native_lmdb_get_ops", "has_ratio_lmdb_get", "has_ops", None),
    (
        "wants() (10,000 hashes)",
        "wants_hashes_per_s",
        "hashes/s",
        None,
        None,
        "wants_hashes_per_s",
        None,
    ),
]


def load_reference(paths: list[str] | None) -> dict[str, Any]:
    """The local figures of synapse_axon_bench.py's JSON (median over several files)."""
    if not paths:
        return {}
    each = [_load_reference_one(p) for p in paths]
    ref: dict[str, Any] = {
        "synapse_version": each[0]["synapse_version"],
        "params": each[0]["params"],
        "files": paths,
    }
    for key in each[0]:
        values = [r[key] for r in each if isinstance(r.get(key), (int, float))]
        if values and key not in ref:
            ref[key] = statistics.median(values)
            ref[f"{key}_runs"] = values
    return ref


def _load_reference_one(path: str) -> dict[str, Any]:
    with open(path) as f:
        doc = json.load(f)
    local = doc["results"]["local"]
    ref: dict[str, Any] = {
        "synapse_version": doc.get("synapse_version"),
        "params": doc.get("params"),
    }
    pick: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("put_files_per_s", lambda r: r["a_put_small"]["files_per_s"]),
        ("put_existing_files_per_s", lambda r: r["a2_put_existing"]["files_per_s"]),
        ("puts_files_per_s", lambda r: r["a3_puts_batched"]["files_per_s"]),
        ("upload_MiBps", lambda r: r["b_upload_big"]["MB_per_s"]),
        ("get_MiBps", lambda r: r["c_get_big"]["MB_per_s"]),
        ("range_get_ops", lambda r: r["g_get_range"]["ops_per_s"]),
        ("hashes_rows_per_s", lambda r: r["d_hashes"]["rows_per_s"]),
        ("has_ops", lambda r: r["e_has"]["ops_per_s"]),
        ("wants_hashes_per_s", lambda r: r["f_wants"]["hashes_per_s"]),
    ]
    for key, fn in pick:
        with contextlib.suppress(KeyError, TypeError):
            ref[key] = fn(local)
    return ref


def fmt(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "-"
    if ratio:
        return f"{value:.2f}x"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def summarise(runs: list[dict[str, Any]], ref: dict[str, Any]) -> dict[str, Any]:
    keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float))}
    med = {k: statistics.median([r[k] for r in runs if r.get(k) is not None]) for k in sorted(keys)}
    spread = {k: [r.get(k) for r in runs] for k in sorted(keys)}
    table = []
    for label, key, unit, ceil_key, ratio_key, ref_key, target in ROWS:
        if key not in med:
            continue
        row: dict[str, Any] = {
            "figure": label,
            "unit": unit,
            "axonfs": med[key],
            "runs": spread[key],
        }
        if ceil_key:
            row["ceiling"] = med.get(ceil_key)
            row["ratio_ceiling"] = med.get(ratio_key) if ratio_key else None
        if ref_key and ref.get(ref_key):
            row["reference"] = ref[ref_key]
            row["ratio_reference"] = med[key] / ref[ref_key]
        if target:
            kind, want = target
            got = row.get("ratio_ceiling") if kind == "ceiling" else row.get("ratio_reference")
            row["target"] = f">= {want:g}x {kind}"
            row["met"] = None if got is None else bool(got >= want)
        table.append(row)
    return {"median": med, "table": table}


def print_table(summary: dict[str, Any], nruns: int) -> None:
    head = ("figure", "unit", "axonfs", "ceiling", "x ceil", "reference", "x ref", "target", "met")
    lines = [head]
    for row in summary["table"]:
        met = row.get("met")
        lines.append(
            (
                row["figure"],
                row["unit"],
                fmt(row["axonfs"]),
                fmt(row.get("ceiling")),
                fmt(row.get("ratio_ceiling"), True),
                fmt(row.get("reference")),
                fmt(row.get("ratio_reference"), True),
                row.get("target", ""),
                "" if "target" not in row else ("?" if met is None else ("yes" if met else "NO")),
            )
        )
    interval = summary["params"].get("sync_interval") or 0
    mode = f"sync interval {interval} ms" if interval else "every call durable"
    print(f"axonfs storage core ({mode}), median of {nruns} run(s); rates in MiB/s or per second")
    print_columns(lines)
    med = summary["median"]
    if "upload_save_phase_s" in med:
        print(
            f"upload: write phase {med['upload_write_phase_s']:.2f} s, "
            f"save phase {med['upload_save_phase_s']:.2f} s"
        )
    if "put_concurrent_commits" in med:
        print(f"concurrent puts: {med['put_concurrent_commits']:.0f} group commits")


def print_columns(lines: Sequence[tuple[str, ...]]) -> None:
    """Print rows aligned in columns (the first two left, the rest right), the
    first row as a header underlined with dashes."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for i, line in enumerate(lines):
        print(
            "  ".join(
                cell.ljust(w) if j < 2 else cell.rjust(w)
                for j, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def machine_load() -> dict[str, str]:
    """Load average and CPU/IO pressure: other processes make the figures noisy."""
    out = {}
    with contextlib.suppress(OSError):
        out["loadavg"] = Path("/proc/loadavg").read_text().strip()
    for kind in ("cpu", "io"):
        with contextlib.suppress(OSError):
            out[f"pressure_{kind}"] = Path(f"/proc/pressure/{kind}").read_text().splitlines()[0]
    return out


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["mem_total"] = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    import lmdb

    info["lmdb"] = lmdb.__version__
    info["trio"] = trio.__version__
    return info


async def main(args: argparse.Namespace) -> int:
    total = args.big_mib * MiB
    log(f"generating {args.big_mib} MiB of data in {args.chunk_mib} MiB pieces")
    chunks = big_chunks(total, args.chunk_mib * MiB, seed=0)
    expected = hashlib.sha256()
    for piece in chunks:
        expected.update(piece)
    base = Path(args.dir) if args.dir else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="axonfs-bench-", dir=base))
    runs = []
    try:
        for run_no in range(args.runs):
            runs.append(await run_once(args, run_no, workdir, chunks, expected.digest()))
            # keep finished stores until the end: ext4 creates slow down for
            # minutes after deleting many files (perf-ceilings.md)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ref = load_reference(args.reference)
    summary = summarise(runs, ref)
    summary["params"] = {"sync_interval": args.sync_interval}
    print_table(summary, len(runs))
    if args.json:
        doc = {
            "machine": machine_info(),
            "params": vars(args),
            "runs": runs,
            "reference": ref,
            **summary,
        }
        await trio.Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--big-mib", type=int, default=1024, help="big upload/get size (1024)")
    p.add_argument("--chunk-mib", type=int, default=8, help="Upload.write piece size (8)")
    p.add_argument("--small-count", type=int, default=10_000, help="small blobs per put mode")
    p.add_argument("--small-size", type=int, default=4096, help="bytes per small blob (4096)")
    p.add_argument("--concurrency", type=int, default=16, help="tasks for concurrent put (16)")
    p.add_argument("--batch", type=int, default=100, help="blobs per puts() call (100)")
    p.add_argument(
        "--sustained-count",
        type=int,
        default=50_000,
        help="blobs for the sustained puts() figure, timed until every file is "
        "written (50,000; 0 skips it)",
    )
    p.add_argument("--reput-count", type=int, default=1000, help="re-puts of existing blobs")
    p.add_argument("--range-reads", type=int, default=20_000, help="random ranged gets")
    p.add_argument("--range-size", type=int, default=4096, help="bytes per ranged get")
    p.add_argument("--has-ops", type=int, default=100_000, help="has() calls")
    p.add_argument(
        "--get-reps",
        type=int,
        default=2,
        help="whole-get repetitions per run, interleaved with the plain read; best "
        "of each is kept (2)",
    )
    p.add_argument(
        "--sync-interval",
        type=int,
        default=0,
        metavar="MS",
        help="open the store with this sync interval (0: every call durable when "
        "it returns, the default)",
    )
    p.add_argument("--runs", type=int, default=1, help="repeat the suite; report medians")
    p.add_argument(
        "--only",
        default=",".join(ALL_PARTS),
        help=f"comma-separated subset of {','.join(ALL_PARTS)}",
    )
    p.add_argument(
        "--reference",
        action="append",
        help="JSON output of synapse_axon_bench.py, for ratios (repeat the flag "
        "for several runs: their median is used)",
    )
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--dir", help="parent of the temporary directory (default $TMPDIR or /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(ALL_PARTS)
    if unknown:
        p.error(f"unknown parts for --only: {', '.join(sorted(unknown))}")
    return args


if __name__ == "__main__":
    sys.exit(trio.run(main, get_args()))
