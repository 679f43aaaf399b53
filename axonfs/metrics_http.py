"""The optional Prometheus endpoint: ``GET /metrics`` on a loopback TCP address.

``--metrics-listen 127.0.0.1:9567`` starts :func:`serve_metrics` in the
daemon's root nursery. It is a deliberately small HTTP/1.0-style responder on
trio: it reads one request head (at most :data:`MAX_HEAD` bytes, within
:data:`REQUEST_TIMEOUT` seconds), answers ``/metrics`` with the counters of
:meth:`axonfs.stats.Stats.snapshot` in the Prometheus text exposition format
(version 0.0.4), anything else with 404, and closes the connection.

The endpoint has no authentication, so :func:`parse_listen` refuses
addresses other than loopback unless the operator explicitly allows them
(``--metrics-allow-remote``), e.g. for a scraper in another network namespace
behind a firewall.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from axonfs.stats import Stats

log = logging.getLogger(__name__)

MAX_HEAD = 8192
"""Largest request head read; a longer one gets 431 and the connection is closed."""
REQUEST_TIMEOUT = 10.0
"""Seconds a client has to send its request head."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = tuple(range(10, 36, 2))
"""Histogram edges exported, as powers of two nanoseconds: 1 us ... 34 s."""


def parse_listen(text: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0: any free one) into an address.

    Raises:
        ValueError: malformed, or not a loopback address without *allow_remote*.
    """
    host, separator, port_text = text.rpartition(":")
    if not separator or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"expected HOST:PORT, e.g. 127.0.0.1:9567, not {text!r}")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not allow_remote and not _is_loopback(host):
        raise ValueError(
            f"{host} is not a loopback address; the metrics endpoint has no "
            "authentication (allow it with --metrics-allow-remote)"
        )
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve_metrics(
    stats: Stats,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` on *host*:*port* until cancelled.

    ``nursery.start``-compatible: returns the bound port (useful with port 0)
    once listening, so a bind failure fails the daemon's start-up.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", bound)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, lambda stream: _respond(stream, stats), listeners)
        task_status.started(bound)


async def _respond(stream: trio.SocketStream, stats: Stats) -> None:
    async with stream:
        try:
            with trio.move_on_after(REQUEST_TIMEOUT) as scope:
                head = await _read_head(stream)
            if scope.cancelled_caught:
                return
            status, body = await _answer(head, stats)
            await stream.send_all(_response(status, body))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the scraper went away
        except Exception:  # a bad scrape must not stop the daemon
            log.exception("metrics request failed")


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """The request head, or None if it exceeds :data:`MAX_HEAD`."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


async def _answer(head: bytes | None, stats: Stats) -> tuple[str, bytes]:
    if head is None:
        return "431 Request Header Fields Too Large", b"request head too large\n"
    method, _, rest = head.partition(b" ")
    target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return "405 Method Not Allowed", b"only GET\n"
    if target != b"/metrics":
        return "404 Not Found", b"see /metrics\n"
    body = prometheus_text(await stats.snapshot()).encode()
    return "200 OK", b"" if method == b"HEAD" else body


def _response(status: str, body: bytes) -> bytes:
    content_type = CONTENT_TYPE if status.startswith("200") else "text/plain; charset=utf-8"
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


# -- the exposition format --------------------------------------------------------------


class _Writer:
    """Collects metric families: ``# HELP``/``# TYPE`` once, then samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, text: str) -> None:
        self.lines.append(f"# HELP axonfs_{name} {text}")
        self.lines.append(f"# TYPE axonfs_{name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        label_text = ",".join(f'{key}="{_escape(item)}"' for key, item in labels.items())
        self.lines.append(
            f"axonfs_{name}{{{label_text}}} {_number(value)}"
            if labels
            else f"axonfs_{name} {_number(value)}"
        )

    def one(self, name: str, kind: str, text: str, value: float) -> None:
        self.family(name, kind, text)
        self.sample(name, value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def prometheus_text(snapshot: dict[str, Any]) -> str:
    """*snapshot* (from :meth:`Stats.snapshot`) in the Prometheus text format."""
    out = _Writer()
    out.family("build_info", "gauge", "Always 1; the version is a label.")
    out.sample("build_info", 1, version=str(snapshot["version"]))
    out.one("uptime_seconds", "gauge", "Seconds since the daemon started.", snapshot["uptime_s"])
    out.one("start_time_seconds", "gauge", "Unix time the daemon started.", snapshot["started_at"])
    store = snapshot["store"]
    out.one("store_blobs", "gauge", "Blobs in the store.", store["blobs"])
    out.one("store_bytes", "gauge", "Bytes of the blobs in the store.", store["bytes"])
    out.one(
        "commit_batches_total",
        "counter",
        "Index commits (each may hold many blobs).",
        snapshot["commits"]["batches"],
    )
    out.one(
        "commit_ops_total",
        "counter",
        "Operations committed to the index.",
        snapshot["commits"]["ops"],
    )
    out.one(
        "dedup_hits_total",
        "counter",
        "Writes of a blob the store already held.",
        snapshot["dedup_hits"],
    )
    out.one(
        "spool_files", "gauge", "Spool files of uploads in progress.", snapshot["spool"]["files"]
    )
    out.one("spool_bytes", "gauge", "Disk space used by spool files.", snapshot["spool"]["bytes"])
    out.one(
        "journal_blobs",
        "gauge",
        "Small blobs durable in the index whose files are not written yet.",
        snapshot["journal"]["blobs"],
    )
    _control(out, snapshot.get("control"))
    _backend(out, snapshot["backend"])
    _fuse(out, snapshot.get("fuse"))
    return "\n".join(out.lines) + "\n"


def _control(out: _Writer, control: dict[str, int] | None) -> None:
    if not control:
        return
    out.one(
        "control_connections", "gauge", "Open control socket connections.", control["connections"]
    )
    out.one(
        "control_requests_in_flight", "gauge", "Control requests being served.", control["requests"]
    )
    out.one("control_refused_total", "counter", "Control connections refused.", control["refused"])
    out.one(
        "control_stream_bytes",
        "gauge",
        "Bytes streams produced and the socket has not yet taken.",
        control["stream_bytes"],
    )


def _backend(out: _Writer, backend: dict[str, Any]) -> None:
    requests = backend.get("requests")
    if isinstance(requests, dict):
        out.family("backend_requests_total", "counter", "Backend requests by operation.")
        for kind, count in sorted(requests.items()):
            out.sample("backend_requests_total", count, operation=kind)
    for name, text in (
        ("retries", "Backend requests retried."),
        ("failures", "Backend requests that failed for good."),
        ("bytes_sent", "Bytes sent to the backend."),
        ("bytes_received", "Bytes received from the backend."),
    ):
        if isinstance(backend.get(name), int):
            out.one(f"backend_{name}_total", "counter", text, backend[name])
    cache = backend.get("cache")
    if isinstance(cache, dict):
        for name, kind, text in (
            ("hits", "counter", "Read cache hits."),
            ("misses", "counter", "Read cache misses."),
            ("evictions", "counter", "Read cache evictions."),
            ("bytes", "gauge", "Bytes in the read cache."),
            ("capacity", "gauge", "Capacity of the read cache."),
        ):
            suffix = "_total" if kind == "counter" else ""
            out.one(f"cache_{name}{suffix}", kind, text, cache.get(name, 0))


def _fuse(out: _Writer, fuse: dict[str, Any] | None) -> None:
    if fuse is None:
        return
    out.one("fuse_read_bytes_total", "counter", "Bytes returned by FUSE reads.", fuse["bytes_read"])
    out.one(
        "fuse_written_bytes_total",
        "counter",
        "Bytes accepted by FUSE writes.",
        fuse["bytes_written"],
    )
    out.one("fuse_open_files", "gauge", "Open file handles on the mount.", fuse["open_files"])
    out.one("fuse_open_dirs", "gauge", "Open directory handles on the mount.", fuse["open_dirs"])
    out.one(
        "fuse_failsafe", "gauge", "1 after an unexpected error in a handler.", int(fuse["failsafe"])
    )
    ops = fuse["ops"]
    out.family(
        "fuse_request_errors_total",
        "counter",
        "FUSE requests answered with an errno other than an expected miss.",
    )
    for name, op in ops.items():
        out.sample("fuse_request_errors_total", op["errors"], op=name)
    out.family(
        "fuse_request_misses_total",
        "counter",
        "FUSE requests answered with an expected no (a missing name or xattr).",
    )
    for name, op in ops.items():
        out.sample("fuse_request_misses_total", op.get("misses", 0), op=name)
    out.family("fuse_request_duration_seconds", "histogram", "FUSE request latency.")
    for name, op in ops.items():
        for edge, cumulative in _cumulative(op["buckets"]):
            out.sample("fuse_request_duration_seconds_bucket", cumulative, op=name, le=edge)
        out.sample("fuse_request_duration_seconds_sum", op["total_ns"] / 1e9, op=name)
        out.sample("fuse_request_duration_seconds_count", op["count"], op=name)


def _cumulative(buckets: list[int]) -> Iterator[tuple[str, int]]:
    """``(le, cumulative count)`` at each exported edge, then ``+Inf``."""
    total = 0
    index = 0
    for power in LATENCY_BUCKETS:
        while index < len(buckets) and index <= power:
            total += buckets[index]
            index += 1
        yield repr((1 << power) / 1e9), total
    yield "+Inf", sum(buckets)
