"""Operational statistics of a running daemon: ``axonfs ctl stats`` and ``/metrics``.

:class:`Stats` gathers what an operator watches: uptime, FUSE requests and
their latencies, bytes read and written through the mount, commits, dedup
hits, the backend's counters (S3 requests, errors, cache hits and misses, when
the backend keeps them), open handles, spool usage, the
control socket's connections, and on a shared bucket this host's published
and queued changes and how far behind it is on the other hosts'.
:meth:`Stats.snapshot` returns one plain dict (msgpack- and JSON-ready) that
both front ends render:
:func:`format_text` for people and :func:`axonfs.metrics_http.prometheus_text`
for Prometheus.

FUSE requests are timed by :func:`instrument`, applied once to the
``Operations`` instance the daemon mounts: it replaces each async request
handler on the instance with a wrapper, so no handler is edited and unit
tests that drive ``Operations`` directly see the plain class.

Concurrency: everything runs on the trio thread, so counters are plain
integers updated without locks. A request costs two ``perf_counter_ns()``
calls, one ``int.bit_length()`` and a few integer additions; nothing is
logged. Latencies go into power-of-two nanosecond buckets (bucket *i* holds
durations in ``[2**(i-1), 2**i)`` ns), from which the p50 and p99 are
estimated as the upper edge of the bucket that holds them (so at most 2x
pessimistic) and which Prometheus receives as a histogram. Expected "no"
answers (:data:`EXPECTED_MISSES`) are counted as misses, not errors.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import inspect
import math
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import trio

from axonfs import __version__

if TYPE_CHECKING:
    from axonfs.axon import Axon
    from axonfs.hostsync import HostSync
    from axonfs.ops import Operations


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    connections: int
    requests: int
    refused: int
    protocol_errors: int
    items_sent: int
    stream_bytes: int
    """Bytes produced for streams and not yet sent (held in memory)."""
    request_bytes: int
    """Request-budget bytes held now (large frames, buffered or decoded)."""
    request_bytes_peak: int
    over_budget: int
    """Frames refused because the request budget could not hold them."""
    over_in_flight: int
    """Calls refused because their connection had MAX_REQUESTS in flight."""


class ControlServerView(Protocol):
    """What the stats read of the control server."""

    def statistics(self) -> ServerStatistics: ...


BUCKETS = 48
"""Latency buckets: up to 2**47 ns (39 hours); longer requests land in the last."""

FUSE_HANDLERS = (
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "link",
    "rename",
    "open",
    "create",
    "read",
    "write",
    "flush",
    "fsync",
    "release",
    "opendir",
    "readdir",
    "releasedir",
    "fsyncdir",
    "statfs",
    "getxattr",
    "listxattr",
    "setxattr",
    "removexattr",
    "access",
)
"""The pyfuse3 request handlers :func:`instrument` times (those the class defines)."""


EXPECTED_MISSES: dict[str, frozenset[int]] = {
    "lookup": frozenset({errno.ENOENT}),
    # ENODATA is ENOATTR on Linux; ENOTSUP answers the namespaces the mount does
    # not have (security.capability, asked before every write; ACLs; labels).
    "getxattr": frozenset({errno.ENODATA, errno.ENOTSUP}),
}
"""Answers that are a normal "no" rather than a failure: a shell, ``ls`` or
``cp`` looks up names that do not exist and asks for attributes files do not
have (ACLs, SELinux labels, capabilities) all the time. They are counted as
misses, apart from errors."""


class OpStats:
    """Counters of one kind of FUSE request.

    ``count`` is every request (misses and errors included), and the latency
    figures cover them all.
    """

    __slots__ = ("count", "errors", "misses", "total_ns", "max_ns", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.misses = 0
        self.total_ns = 0
        self.max_ns = 0
        self.buckets = [0] * BUCKETS

    def record(self, elapsed_ns: int) -> None:
        self.count += 1
        self.total_ns += elapsed_ns
        if elapsed_ns > self.max_ns:
            self.max_ns = elapsed_ns
        self.buckets[min(elapsed_ns.bit_length(), BUCKETS - 1)] += 1

    def quantile_ns(self, fraction: float) -> int:
        """The *fraction* quantile, rounded up to its bucket's upper edge (0 if empty).

        The quantile is the nearest-rank one: the smallest duration that at
        least ``ceil(fraction * count)`` requests did not exceed. The answer
        is never below it and at most twice it (capped at the maximum).

        It may well be below the mean: when fewer than 1% of the requests
        take most of the time (a cold cache, one slow commit), the mean
        follows them and the p99 does not.
        """
        if not self.count:
            return 0
        rank = max(1, math.ceil(fraction * self.count - 1e-9))  # no float rounding up
        seen = 0
        for index, count in enumerate(self.buckets):
            seen += count
            if seen >= rank:
                return min(1 << index, self.max_ns)
        return self.max_ns

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": self.errors,
            "misses": self.misses,
            "total_ns": self.total_ns,
            "mean_ns": self.total_ns // self.count if self.count else 0,
            "p50_ns": self.quantile_ns(0.5),
            "p99_ns": self.quantile_ns(0.99),
            "max_ns": self.max_ns,
            "buckets": _trim(self.buckets),
        }


def _trim(buckets: list[int]) -> list[int]:
    """*buckets* without trailing zeros (they are implied)."""
    end = len(buckets)
    while end and not buckets[end - 1]:
        end -= 1
    return buckets[:end]


class FuseStats:
    """Request counters and byte totals of one mount."""

    def __init__(self) -> None:
        self.ops: dict[str, OpStats] = {}
        self.bytes_read = 0
        self.bytes_written = 0

    def op(self, name: str) -> OpStats:
        return self.ops.setdefault(name, OpStats())


Handler = Callable[..., Coroutine[Any, Any, Any]]


Handlers = TypeVar("Handlers")
"""The request handlers :func:`instrument` wraps: the mount's ``Operations``."""


def instrument(operations: Handlers, fuse: FuseStats) -> Handlers:
    """Time every async request handler of *operations*; return *operations*.

    Wraps the bound methods on the instance (pyfuse3 looks handlers up on the
    instance for each request), so the class stays untouched.
    """
    for name in FUSE_HANDLERS:
        method = getattr(operations, name, None)
        if method is None or not inspect.iscoroutinefunction(method):
            continue
        setattr(
            operations,
            name,
            _timed(
                method,
                fuse.op(name),
                _byte_counter(name, fuse),
                EXPECTED_MISSES.get(name, frozenset()),
            ),
        )
    return operations


def _byte_counter(name: str, fuse: FuseStats) -> Callable[[Any], None] | None:
    if name == "read":

        def count_read(result: Any) -> None:
            fuse.bytes_read += len(result)

        return count_read
    if name == "write":

        def count_written(result: Any) -> None:
            fuse.bytes_written += result

        return count_written
    return None


def _timed(
    method: Handler,
    record: OpStats,
    on_result: Callable[[Any], None] | None,
    misses: frozenset[int] = frozenset(),
) -> Handler:
    clock = time.perf_counter_ns
    buckets = record.buckets
    last = BUCKETS - 1

    # OpStats.record inlined: this runs for every FUSE request.
    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            result = await method(*args, **kwargs)
        except BaseException as exc:
            # The handlers answer with pyfuse3.FUSEError, which carries the errno.
            if getattr(exc, "errno", None) in misses:
                record.misses += 1
            else:
                record.errors += 1
            raise
        finally:
            elapsed = clock() - start
            record.count += 1
            record.total_ns += elapsed
            if elapsed > record.max_ns:
                record.max_ns = elapsed
            index = elapsed.bit_length()
            buckets[index if index < last else last] += 1
        if on_result is not None:
            on_result(result)
        return result

    return timed


def spool_usage(directory: Path) -> tuple[int, int]:
    """``(files, bytes)`` of the spool files in *directory* (blocking: run in a thread)."""
    files = size = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    status = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # committed or discarded meanwhile
                files += 1
                size += status.st_blocks * 512
    except FileNotFoundError:
        pass
    return files, size


class Stats:
    """The daemon's counters and the sources it reads at snapshot time.

    The daemon creates one, hands it to the control server and the metrics
    listener, and attaches the mount's ``Operations`` once it exists.
    """

    def __init__(self, axon: Axon, *, store: Path | None = None) -> None:
        self.axon = axon
        self.store = store
        self.fuse: FuseStats | None = None
        self.operations: Operations | None = None
        self.control: ControlServerView | None = None
        """The :class:`~axonfs.ctlserver.ControlServer`, once listening."""
        self.hosts: HostSync | None = None
        """The :class:`~axonfs.hostsync.HostSync` of a daemon on a shared bucket."""
        self.started_ns = time.monotonic_ns()
        self.started_at = time.time()

    def attach_operations(self, operations: Operations) -> Operations:
        """Instrument the mount's request handlers; return *operations*."""
        self.fuse = FuseStats()
        self.operations = operations
        return instrument(operations, self.fuse)

    async def snapshot(self) -> dict[str, Any]:
        """Every counter now, as one plain dict (see the module docstring)."""
        files, size = await trio.to_thread.run_sync(spool_usage, self.axon.spool_dir)
        metrics = await self.axon.metrics()
        counters = self.axon.statistics()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "uptime_s": (time.monotonic_ns() - self.started_ns) / 1e9,
            "store": {
                "path": str(self.store if self.store is not None else self.axon.root),
                "blobs": metrics.get("file:count", 0),
                "bytes": metrics.get("size:bytes", 0),
            },
            "commits": {"batches": counters.commit_batches, "ops": counters.commit_ops},
            "dedup_hits": counters.dedup_hits,
            "spool": {"files": files, "bytes": size},
            "journal": {"blobs": counters.journaled},
            "durability": {
                "sync_interval_ms": round(counters.sync_interval * 1000),
                "not_durable": counters.not_durable,
                "syncs": counters.syncs,
            },
            "fuse": self._fuse(),
            "backend": self._backend(),
            "control": self._control(),
            "hosts": self._hosts(),
        }

    def _fuse(self) -> dict[str, Any] | None:
        if self.fuse is None:
            return None
        handles = self.operations.statistics() if self.operations is not None else {}
        return {
            "bytes_read": self.fuse.bytes_read,
            "bytes_written": self.fuse.bytes_written,
            "open_files": handles.get("open_files", 0),
            "open_dirs": handles.get("open_dirs", 0),
            "failsafe": bool(handles.get("failsafe", False)),
            "broken": list(handles.get("broken", [])),
            "ops": {name: op.as_dict() for name, op in sorted(self.fuse.ops.items()) if op.count},
        }

    def _backend(self) -> dict[str, Any]:
        backend = self.axon.backend
        found: dict[str, Any] = {"name": backend.name}
        counters = backend.stats()
        if dataclasses.is_dataclass(counters) and not isinstance(counters, type):
            found.update(dataclasses.asdict(counters))
        return found

    def _hosts(self) -> dict[str, Any] | None:
        """This host's id, its changes not yet published, and how far behind it
        is on each other host's records (as of its last pull)."""
        if self.hosts is None:
            return None
        peers = []
        for peer in self.hosts.peers():
            latest = peer.latest if peer.latest is not None else peer.applied
            peers.append(
                {
                    "host": peer.host,
                    "applied": peer.applied,
                    "latest": latest,
                    "behind": max(0, latest - peer.applied),
                }
            )
        return {
            "this": self.hosts.host,
            "queued": self.hosts.queued(),
            "published": self.hosts.published(),
            "peers": peers,
        }

    def _control(self) -> dict[str, int] | None:
        if self.control is None:
            return None
        return dataclasses.asdict(self.control.statistics())


# -- human output -------------------------------------------------------------------


def format_text(snapshot: dict[str, Any]) -> str:
    """*snapshot* as aligned lines for a terminal."""
    lines = [
        f"axonfs {snapshot['version']}, pid {snapshot['pid']}, up {_duration(snapshot['uptime_s'])}"
    ]
    store = snapshot["store"]
    lines.append(f"store      {store['path']}: {store['blobs']} blobs, {_bytes(store['bytes'])}")
    commits = snapshot["commits"]
    lines.append(
        f"commits    {commits['batches']} batches, {commits['ops']} blobs committed, "
        f"{snapshot['dedup_hits']} dedup hits"
    )
    spool = snapshot["spool"]
    lines.append(f"spool      {spool['files']} files, {_bytes(spool['bytes'])}")
    lines.append(
        f"journal    {snapshot['journal']['blobs']} small blobs durable in the index, "
        "their files not written yet"
    )
    durability = snapshot.get("durability") or {}
    if durability.get("sync_interval_ms"):
        lines.append(
            f"durability sync interval {durability['sync_interval_ms']} ms: "
            f"{durability['not_durable']} commits not durable yet, "
            f"{durability['syncs']} syncs"
        )
    else:
        lines.append("durability every call durable when it returns")
    lines += _backend_lines(snapshot["backend"])
    control = snapshot.get("control")
    if control:
        lines.append(
            f"control    {control['connections']} connections, {control['requests']} "
            f"requests in flight, {control['refused']} refused, "
            f"{_bytes(control['stream_bytes'])} waiting to be sent"
        )
    lines += _host_lines(snapshot.get("hosts"))
    lines += _fuse_lines(snapshot.get("fuse"))
    return "\n".join(lines)


def _host_lines(hosts: dict[str, Any] | None) -> list[str]:
    if hosts is None:
        return []
    lines = [
        f"hosts      this host {hosts['this']}: {hosts['published']} changes published, "
        f"{hosts['queued']} queued"
    ]
    lines += [
        f"  {peer['host']}: applied up to change {peer['applied']} of {peer['latest']} "
        f"({peer['behind']} behind)"
        for peer in hosts["peers"]
    ]
    return lines


def _backend_lines(backend: dict[str, Any]) -> list[str]:
    lines = [f"backend    {backend.get('name')}"]
    requests = backend.get("requests")
    if isinstance(requests, dict):
        total = sum(requests.values())
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(requests.items()))
        lines[0] += (
            f": {total} requests ({detail or 'none'}), {backend.get('retries', 0)} "
            f"retries, {backend.get('failures', 0)} errors, "
            f"{_bytes(backend.get('bytes_sent', 0))} sent, "
            f"{_bytes(backend.get('bytes_received', 0))} received"
        )
    cache = backend.get("cache")
    if isinstance(cache, dict):
        lines.append(
            f"cache      {cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses, "
            f"{cache.get('evictions', 0)} evictions, {_bytes(cache.get('bytes', 0))} "
            f"of {_bytes(cache.get('capacity', 0))}"
        )
    return lines


def _fuse_lines(fuse: dict[str, Any] | None) -> list[str]:
    if fuse is None:
        return ["fuse       not mounted"]
    lines = [
        f"fuse       {_bytes(fuse['bytes_read'])} read, {_bytes(fuse['bytes_written'])} "
        f"written, {fuse['open_files']} open files, {fuse['open_dirs']} open dirs"
        + (", FAILSAFE (unexpected errors: see the log)" if fuse["failsafe"] else "")
    ]
    if fuse["ops"]:
        lines.append(
            f"  {'operation':<12} {'count':>10} {'misses':>8} {'errors':>8} "
            f"{'mean':>10} {'p50':>10} {'p99':>10} {'max':>10}"
        )
    skewed = False
    for name, op in fuse["ops"].items():
        lines.append(
            f"  {name:<12} {op['count']:>10} {op.get('misses', 0):>8} "
            f"{op['errors']:>8} {_latency(op['mean_ns']):>10} "
            f"{_latency(op.get('p50_ns', 0)):>10} {_latency(op['p99_ns']):>10} "
            f"{_latency(op['max_ns']):>10}"
        )
        skewed = skewed or op["mean_ns"] > op["p99_ns"]
    if fuse["ops"]:
        lines.append(
            "  misses: names and attributes that do not exist (a normal answer); "
            "p50/p99: bucket upper bounds"
        )
    if skewed:
        lines.append(
            "  a mean above the p99: fewer than 1% of those requests took most "
            "of the time (see max)"
        )
    return lines


def _latency(ns: int) -> str:
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def _bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns


def _duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{seconds:.1f}s"
