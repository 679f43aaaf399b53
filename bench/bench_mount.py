#!/usr/bin/env python3
"""Mount benchmark: axonfs through the kernel against native ceilings.

One run mounts a fresh store (``axonfs mount`` as a subprocess, always
unmounted in a ``finally``) and measures, on the same data and right next to
each axonfs figure, its native ceiling (the machine is noisy: only ratios
taken in the same run mean anything):

* read, first: ``dd bs=1M`` and ``cat`` of a 1 GiB blob through the mount with
  the mount's page cache emptied (``posix_fadvise(DONTNEED)``) before each run,
  against ``dd bs=1M`` of the blob's own file in the store from the page cache;
* read, second: the same straight again (``keep_cache``), same ceiling;
* large ingest: ``cp`` of a 1 GiB file into ``/incoming/`` (returns after the
  commit), against Python reading the same bytes and writing them to a plain
  file with sha256 and fsync;
* small ingest: ``cp -r`` of 10,000 files of 4 KiB into ``/incoming/``,
  against a Python copy into a plain directory with an fsync per file (the
  durable ceiling) and ``cp -r`` into a plain directory (no fsync);
* ``ls -f`` / ``ls -l`` of ``/by-sha256/`` holding 100,000 blobs (stored with
  ``puts()`` batches before mounting, not through FUSE) against a plain
  directory of 100,000 files; "cold" is after ``drop_caches=2`` (dentries and
  inodes, both sides), "warm" a repeat;
* daemon RSS: VmHWM of the daemon over a 4 GiB ``cp`` into ``/incoming/`` (the
  peak is reset first with ``clear_refs``); target < 150 MiB.

Before measuring, memory is warmed by writing and deleting a file of
``--warm-mib`` (the first large write after idle is slow on a fresh VM).
Figures are medians of ``--runs`` runs. Rates are MB/s (10**6 bytes).

Usage::

    python bench/bench_mount.py            # full: 1 GiB, 10,000 files, 100,000 blobs
    python bench/bench_mount.py --quick    # ~1 minute: 256 MiB, 2,000 files, 20,000 blobs
    python bench/bench_mount.py --json out.json --runs 5
    python bench/bench_mount.py --mount-arg=--no-readahead   # extra 'axonfs mount' arguments
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import mmap
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from axonfs.axon import Axon  # noqa: E402

MIB = 1 << 20
AXONFS = [sys.executable, "-m", "axonfs"]
FUSE_FLOOR = Path(__file__).with_name("fuse_floor.py")
ENV = {**os.environ, "LC_ALL": "C"}

TARGETS = {
    "read_first": (">=", 0.25),
    "read_second": (">=", 0.5),
    "ingest_large": (">=", 0.7),
    "ingest_small": (">=", 0.7),
    "ls_f": ("<=", 3.0),
    "ls_l": ("<=", 2.0),
    "rss_mib": ("<", 150.0),
}


# -- helpers -------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def run(*argv: str | Path, stdout: Any = subprocess.DEVNULL) -> None:
    subprocess.run([str(a) for a in argv], check=True, stdout=stdout, env=ENV)


def median(values: list[float]) -> float:
    return statistics.median(values)


def drop_dentries() -> bool:
    """Drop the kernel's dentry and inode caches (root only); False if not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("2\n")
    except OSError:
        return False
    return True


def evict(path: Path) -> None:
    """Drop *path*'s clean pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def aligned_buffer(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size)


def write_random_file(path: Path, size: int, seed: bytes) -> None:
    """*size* bytes of pseudo-random content (a 64 MiB random block, each MiB tagged)."""
    block = bytearray(os.urandom(min(size, 64 * MIB)))
    with open(path, "wb", buffering=0) as file:
        written = 0
        while written < size:
            piece = min(len(block), size - written)
            for mib in range(0, piece, MIB):  # every MiB distinct across the file
                tag = seed + (written + mib).to_bytes(8, "little")
                block[mib : mib + len(tag)] = tag
            file.write(memoryview(block)[:piece])
            written += piece


def tag_file(path: Path, tag: bytes) -> None:
    """Make *path*'s content unique (no dedup between runs)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, tag.ljust(32, b"\0"), 0)
    finally:
        os.close(fd)


def warm_memory(directory: Path, mib: int) -> None:
    if mib <= 0:
        return
    path = directory / "warm"
    log(f"warming memory: writing and deleting {mib} MiB")
    buf = aligned_buffer(64 * MIB)
    buf.write(os.urandom(64 * MIB))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(max(1, mib // 64)):
            os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- the mount -----------------------------------------------------------------------


class Mount:
    """``axonfs mount`` of *store* on *mnt*; :meth:`stop` always leaves it unmounted."""

    def __init__(self, store: Path, mnt: Path, extra: list[str]) -> None:
        self.store, self.mnt, self.extra = store, mnt, extra
        self.pid: int | None = None

    def start(self) -> None:
        self.mnt.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*AXONFS, "mount", "--store", str(self.store), *self.extra, str(self.mnt)], check=True
        )
        self.pid = int(os.getxattr(self.mnt, "user.axonfs.pid"))
        log(f"mounted {self.store} on {self.mnt} (daemon pid {self.pid})")

    def path(self, *parts: str) -> Path:
        return self.mnt.joinpath(*parts)

    def mounted(self) -> bool:
        with open("/proc/self/mountinfo") as file:
            return any(line.split()[4] == str(self.mnt) for line in file)

    def stop(self) -> None:
        try:
            if self.mounted():
                subprocess.run([*AXONFS, "umount", str(self.mnt)], check=False, timeout=300)
        finally:
            if self.mounted():
                subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
            if self.pid is not None:
                deadline = time.monotonic() + 30
                while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)


# -- store population (through the API, not FUSE) --------------------------------------


def populate(store: Path, count: int, batch: int = 2000) -> None:
    """Store *count* small distinct blobs with ``puts()`` batches (not through FUSE)."""

    async def main() -> None:
        async with Axon.open(store) as axon:
            for start in range(0, count, batch):
                blobs = [
                    b"axonfs bench blob %09d\n" % i for i in range(start, min(count, start + batch))
                ]
                await axon.puts(blobs)

    trio.run(main)


def plain_listing_dir(directory: Path, count: int) -> None:
    directory.mkdir()
    for i in range(count):
        fd = os.open(directory / f"{i:064x}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, b"axonfs bench blob %09d\n" % i)
        os.close(fd)


# -- measurements --------------------------------------------------------------------


def bench_ls(mount: Mount, plain: Path, runs: int, cold: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_sha = mount.path("by-sha256")
    for flag in ("-f", "-l"):
        key = "ls_" + flag[1]
        for name, directory in (("native", plain), ("axonfs", by_sha)):
            cold_time = None
            if cold and drop_dentries():
                cold_time = timed(partial(run, "ls", flag, directory))
            warm = [timed(partial(run, "ls", flag, directory)) for _ in range(runs)]
            out[f"{key}_{name}_cold_s"] = cold_time
            out[f"{key}_{name}_warm_s"] = median(warm)
            log(
                f"ls {flag} {name}: cold {cold_time if cold_time is None else round(cold_time, 3)}"
                f" s, warm {median(warm):.3f} s"
            )
        if out[f"{key}_native_cold_s"]:
            out[f"{key}_cold_ratio"] = out[f"{key}_axonfs_cold_s"] / out[f"{key}_native_cold_s"]
        out[f"{key}_warm_ratio"] = out[f"{key}_axonfs_warm_s"] / out[f"{key}_native_warm_s"]
    return out


def native_ingest(src: Path, dst: Path) -> str:
    """Read *src*, write it to *dst* with sha256 and fsync: the large-ingest ceiling."""
    hasher = hashlib.sha256()
    buf = aligned_buffer(MIB)
    view = memoryview(buf)
    fin = os.open(src, os.O_RDONLY)
    fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while n := os.readv(fin, [buf]):
            piece = view[:n]
            hasher.update(piece)
            os.write(fout, piece)
        os.fsync(fout)
    finally:
        os.close(fin)
        os.close(fout)
        view.release()
    return hasher.hexdigest()


def bench_large(mount: Mount, work: Path, size: int, runs: int) -> dict[str, Any]:
    src = work / "large-src"
    write_random_file(src, size, b"large")
    native_times, axon_times = [], []
    for i in range(runs):
        tag_file(src, b"large run %d" % i)
        native = work / "large-native"
        native_times.append(timed(partial(native_ingest, src, native)))
        native.unlink()
        target = mount.path("incoming", f"large-{i}")
        axon_times.append(timed(partial(run, "cp", src, target)))
        log(
            f"large ingest run {i}: native {size / native_times[-1] / 1e6:.0f} MB/s, "
            f"axonfs cp {size / axon_times[-1] / 1e6:.0f} MB/s"
        )
    sha = os.getxattr(mount.path("incoming", f"large-{runs - 1}"), "user.axonfs.sha256").decode()
    native_rate = size / median(native_times) / 1e6
    axon_rate = size / median(axon_times) / 1e6
    return {
        "ingest_large_native_mbps": native_rate,
        "ingest_large_axonfs_mbps": axon_rate,
        "ingest_large_ratio": axon_rate / native_rate,
        "large_sha256": sha,
    }


def bench_reads(mount: Mount, store: Path, sha: str, size: int, runs: int) -> dict[str, Any]:
    blob_file = store / "blobs" / sha[:2] / sha
    through = mount.path("by-sha256", sha)

    def dd(path: Path) -> float:
        return timed(lambda: run("dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"))

    def cat(path: Path) -> float:
        return timed(lambda: run("cat", path))

    dd(blob_file)  # into the page cache
    out: dict[str, Any] = {}
    for tool, reader in (("dd", dd), ("cat", cat)):
        native, first, second = [], [], []
        for _ in range(runs):
            native.append(reader(blob_file))
            evict(through)
            first.append(reader(through))
            second.append(reader(through))
        n, f, s = (size / median(x) / 1e6 for x in (native, first, second))
        out.update(
            {
                f"read_{tool}_native_mbps": n,
                f"read_{tool}_first_mbps": f,
                f"read_{tool}_second_mbps": s,
                f"read_{tool}_first_ratio": f / n,
                f"read_{tool}_second_ratio": s / n,
            }
        )
        log(
            f"read {tool}: native {n:.0f} MB/s, first {f:.0f} ({f / n:.2f}), "
            f"second {s:.0f} ({s / n:.2f})"
        )
    out["read_first_ratio"] = out["read_dd_first_ratio"]
    out["read_second_ratio"] = out["read_dd_second_ratio"]
    return out


def make_small_tree(directory: Path, count: int, size: int) -> None:
    directory.mkdir()
    for i in range(count):
        with open(directory / f"f{i:06d}", "wb") as file:
            file.write(os.urandom(size))


def durable_copy(src: Path, dst: Path) -> None:
    """``cp -r`` with an fsync per file: the durable small-ingest ceiling."""
    dst.mkdir()
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        fin = os.open(entry.path, os.O_RDONLY)
        fout = os.open(dst / entry.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            while data := os.read(fin, 1 << 17):
                os.write(fout, data)
            os.fsync(fout)
        finally:
            os.close(fin)
            os.close(fout)


class FloorMount:
    """``bench/fuse_floor.py`` (a FUSE file system that stores nothing) on *mnt*."""

    def __init__(self, mnt: Path) -> None:
        self.mnt = mnt
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Path:
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([sys.executable, str(FUSE_FLOOR), str(self.mnt)])
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.mnt):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the do-nothing FUSE file system did not mount")
            time.sleep(0.05)
        return self.mnt

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def bench_small(mount: Mount, work: Path, count: int, size: int, runs: int) -> dict[str, Any]:
    """``cp -r`` of *count* files into ``/incoming``, against a plain copy with an
    fsync per file (the durable ceiling), a plain ``cp -r`` and ``cp -r`` into a
    FUSE file system that stores nothing (the floor of the same requests)."""
    durable, plain, floor, axon = [], [], [], []
    for i in range(runs):
        src = work / f"small-src-{i}"
        make_small_tree(src, count, size)
        run("cat", *sorted(src.iterdir()))  # sources in the page cache for every contender
        durable.append(timed(partial(durable_copy, src, work / f"small-durable-{i}")))
        plain.append(timed(partial(run, "cp", "-r", src, work / f"small-plain-{i}")))
        with FloorMount(work / f"floor-{i}") as floor_mnt:
            floor.append(timed(partial(run, "cp", "-r", src, floor_mnt / "copy")))
        target = mount.path("incoming", f"small-{i}")
        axon.append(timed(partial(run, "cp", "-r", src, target)))
        log(
            f"small ingest run {i}: durable {count / durable[-1]:.0f} files/s, "
            f"plain cp -r {count / plain[-1]:.0f}, FUSE floor {count / floor[-1]:.0f}, "
            f"axonfs cp -r {count / axon[-1]:.0f}"
        )
    d, p, f, a = (count / median(x) for x in (durable, plain, floor, axon))
    return {
        "ingest_small_durable_fps": d,
        "ingest_small_plain_fps": p,
        "ingest_small_floor_fps": f,
        "ingest_small_axonfs_fps": a,
        "ingest_small_ratio": a / d,
        "ingest_small_plain_ratio": a / p,
        "ingest_small_floor_ratio": a / f,
    }


def bench_rss(mount: Mount, work: Path, size: int) -> dict[str, Any]:
    assert mount.pid is not None
    pid = mount.pid
    before_hwm = status_kib(pid, "VmHWM")
    src = work / "rss-src"
    write_random_file(src, size, b"rss")
    reset = True
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5\n")  # reset VmHWM
    except OSError:
        reset = False
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            samples.append(status_kib(pid, "VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    elapsed = timed(lambda: run("cp", src, mount.path("incoming", "rss")))
    done.set()
    sampler.join()
    src.unlink()
    hwm = status_kib(pid, "VmHWM")
    rss_peak = max(samples, default=0)
    anon, mapped = status_kib(pid, "RssAnon"), status_kib(pid, "RssFile")
    log(
        f"{size >> 20} MiB ingest: {size / elapsed / 1e6:.0f} MB/s, daemon peak RSS "
        f"{hwm / 1024:.0f} MiB (sampled max {rss_peak / 1024:.0f} MiB; "
        f"whole run so far {before_hwm / 1024:.0f} MiB; after: anonymous {anon / 1024:.0f} MiB, "
        f"file-backed maps (LMDB, blobs) {mapped / 1024:.0f} MiB)"
    )
    return {
        "rss_mib": (hwm if reset else rss_peak) / 1024,
        "rss_sampled_mib": rss_peak / 1024,
        "rss_run_hwm_before_mib": before_hwm / 1024,
        "rss_anon_after_mib": anon / 1024,
        "rss_file_after_mib": mapped / 1024,
        "rss_ingest_mbps": size / elapsed / 1e6,
    }


# -- report --------------------------------------------------------------------------


def verdict(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    op, bound = TARGETS[key]
    ok = value >= bound if op == ">=" else value <= bound if op == "<=" else value < bound
    return f"{'met' if ok else 'MISSED'} ({op} {bound:g})"


def report(r: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str, str, str]] = []

    def row(name: str, axon: str, native: str, ratio: float | None, key: str | None) -> None:
        rows.append(
            (
                name,
                axon,
                native,
                "" if ratio is None else f"{ratio:.2f}",
                verdict(key, ratio) if key else "",
            )
        )

    big = f"{r['args']['blob_mib']} MiB"
    if "read_dd_native_mbps" in r:
        for tool in ("dd", "cat"):
            n = r[f"read_{tool}_native_mbps"]
            for which in ("first", "second"):
                row(
                    f"{tool} {big} blob, {which} read",
                    f"{r[f'read_{tool}_{which}_mbps']:.0f} MB/s",
                    f"{n:.0f} MB/s",
                    r[f"read_{tool}_{which}_ratio"],
                    f"read_{which}" if tool == "dd" else None,
                )
    if "ingest_large_axonfs_mbps" in r:
        row(
            f"cp {big} into /incoming",
            f"{r['ingest_large_axonfs_mbps']:.0f} MB/s",
            f"{r['ingest_large_native_mbps']:.0f} MB/s",
            r["ingest_large_ratio"],
            "ingest_large",
        )
    if "ingest_small_axonfs_fps" in r:
        row(
            "cp -r small files (fsync/file)",
            f"{r['ingest_small_axonfs_fps']:.0f} files/s",
            f"{r['ingest_small_durable_fps']:.0f} files/s",
            r["ingest_small_ratio"],
            "ingest_small",
        )
        row(
            "cp -r small files (no fsync)",
            f"{r['ingest_small_axonfs_fps']:.0f} files/s",
            f"{r['ingest_small_plain_fps']:.0f} files/s",
            r["ingest_small_plain_ratio"],
            None,
        )
        if "ingest_small_floor_fps" in r:
            row(
                "cp -r small files (do-nothing FUSE)",
                f"{r['ingest_small_axonfs_fps']:.0f} files/s",
                f"{r['ingest_small_floor_fps']:.0f} files/s",
                r["ingest_small_floor_ratio"],
                None,
            )
    for flag in ("f", "l"):
        if f"ls_{flag}_warm_ratio" not in r:
            continue
        for state in ("cold", "warm"):
            if r.get(f"ls_{flag}_{state}_ratio") is None:
                continue
            row(
                f"ls -{flag} {r['args']['list_count']}, {state}",
                f"{r[f'ls_{flag}_axonfs_{state}_s']:.3f} s",
                f"{r[f'ls_{flag}_native_{state}_s']:.3f} s",
                r[f"ls_{flag}_{state}_ratio"],
                f"ls_{flag}",
            )
    if "rss_mib" in r:
        rows.append(
            (
                f"daemon RSS, {r['args']['rss_mib']} MiB ingest",
                f"{r['rss_mib']:.0f} MiB",
                f"{r['rss_ingest_mbps']:.0f} MB/s",
                "",
                verdict("rss_mib", r["rss_mib"]),
            )
        )
    widths = [
        max(len(x[i]) for x in rows + [("figure", "axonfs", "ceiling", "ratio", "target")])
        for i in range(5)
    ]
    header = ("figure", "axonfs", "ceiling", "ratio", "target")
    for line in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("  ".join(cells).rstrip())


# -- main ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blob-mib", type=int, default=1024, help="large file/blob size")
    parser.add_argument("--rss-mib", type=int, default=4096, help="RSS ingest size (0: skip)")
    parser.add_argument("--small-count", type=int, default=10_000)
    parser.add_argument("--small-kib", type=int, default=4)
    parser.add_argument("--list-count", type=int, default=100_000, help="blobs for ls (0: skip)")
    parser.add_argument("--warm-mib", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="256 MiB, 1 GiB RSS ingest, 2,000 files, 20,000 blobs, 1 GiB warm-up",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["ls", "large", "read", "small", "rss"],
        help="run only these parts (repeatable; 'read' implies 'large')",
    )
    parser.add_argument(
        "--no-drop-caches",
        action="store_true",
        help="skip the cold ls figures (they drop dentries machine-wide)",
    )
    parser.add_argument(
        "--mount-arg",
        action="append",
        default=[],
        help="extra argument for 'axonfs mount' (repeatable)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args()
    if args.quick:
        args.blob_mib, args.rss_mib, args.small_count = 256, 1024, 2000
        args.list_count, args.warm_mib = 20_000, 1024
    parts = set(args.only or ["ls", "large", "read", "small", "rss"])
    if "read" in parts:
        parts.add("large")

    work = Path(tempfile.mkdtemp(prefix="axonfs-bench-", dir=args.workdir))
    store, mnt = work / "store", work / "mnt"
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    mount = Mount(store, mnt, args.mount_arg)
    try:
        warm_memory(work, args.warm_mib)
        if "ls" in parts and args.list_count:
            log(f"storing {args.list_count} blobs with puts() and a plain directory as many")
            results["populate_s"] = timed(lambda: populate(store, args.list_count))
            plain_listing_dir(work / "plain-list", args.list_count)
        mount.start()
        if "ls" in parts and args.list_count:
            results.update(
                bench_ls(mount, work / "plain-list", args.runs, cold=not args.no_drop_caches)
            )
        if "large" in parts:
            results.update(bench_large(mount, work, args.blob_mib * MIB, args.runs))
        if "read" in parts:
            results.update(
                bench_reads(mount, store, results["large_sha256"], args.blob_mib * MIB, args.runs)
            )
        if "small" in parts and args.small_count:
            results.update(
                bench_small(mount, work, args.small_count, args.small_kib * 1024, args.runs)
            )
        if "rss" in parts and args.rss_mib:
            results.update(bench_rss(mount, work, args.rss_mib * MIB))
        assert mount.pid is not None
        results["daemon_hwm_mib"] = status_kib(mount.pid, "VmHWM") / 1024
    finally:
        mount.stop()
        problems = []
        daemon_log = store / "axonfs.log"
        if daemon_log.exists():
            problems = [
                line
                for line in daemon_log.read_text(errors="replace").splitlines()
                if " ERROR " in line or "Traceback" in line
            ]
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        if problems:
            log("the daemon logged errors:\n" + "\n".join(problems[:20]))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
