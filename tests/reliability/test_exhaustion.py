"""Exhaustion: memory, descriptors, a full disk and hostile input against real daemons.

Every attack runs against ``axonfs serve`` or ``axonfs mount`` over real sockets
(loopback HTTP servers for wget, a real tmpfs for the full disk). Memory is
judged by the daemon's own high-water mark (``VmHWM``, reset through
``clear_refs`` before each attack), errors by errnos, reply codes and exit
codes, and every daemon's log must hold no ERROR line.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from helpers.cli import run_axonfs
from helpers.daemon import ServeDaemon
from helpers.fuse import wait_until

from axonfs import client
from axonfs.axon import Axon
from axonfs.budget import BUDGET_WAIT, REQUEST_BUDGET
from axonfs.config import control_socket
from axonfs.ctlserver import MAX_REQUESTS, serve_control
from axonfs.protocol import MAX_REQUEST_FRAME

from .conftest import Figures, MakeDaemon
from .tools import assert_fsck_clean, raw_connect, read_frame, tmpfs, write_file

MiB = 1 << 20
REPLY_TIMEOUT = 30.0


def peak_rss(pid: int) -> int:
    """The process's RSS high-water mark in bytes (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def reset_peak(pid: int) -> int:
    """Reset VmHWM to the current RSS and return it."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")
    return peak_rss(pid)


def frame(message: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb({"v": 1, **message}, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def call(served: ServeDaemon, name: str, *args: Any, rid: int = 1) -> dict[str, Any]:
    """One call over a raw connection to the daemon; its reply frame."""
    with raw_connect(served.socket, REPLY_TIMEOUT) as sock:
        sock.sendall(frame({"id": rid, "call": name, "args": list(args)}))
        reply = read_frame(sock)
    assert reply is not None
    return reply


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServeDaemon]:
    daemon = ServeDaemon.start(tmp_path / "store", log=tmp_path / "serve.log")
    try:
        yield daemon
    finally:
        assert daemon.stop() == 0, "the daemon did not stop cleanly"
    assert not daemon.problems(), "\n".join(daemon.problems()[:20])


async def put_blob_async(served: ServeDaemon, data: bytes) -> bytes:
    async with client.connect(served.socket) as axon, await axon.upload() as upload:
        for start in range(0, len(data), 4 * MiB):
            await upload.write(data[start : start + 4 * MiB])
        _, sha256 = await upload.save()
    return sha256


def put_blob(served: ServeDaemon, data: bytes) -> bytes:
    return trio.run(put_blob_async, served, data)


# -- request buffering and decoding ------------------------------------------------------


def test_unfinished_frames_share_one_budget(served: ServeDaemon, figures: Figures) -> None:
    """40 connections each part way through a 32 MiB frame: the daemon holds at
    most the budget of them; the others wait, unread, and are refused with
    HitLimit once BUDGET_WAIT has passed."""
    body_part = b"\xc0" * (MAX_REQUEST_FRAME - MiB)
    header = struct.pack(">I", MAX_REQUEST_FRAME)
    base = reset_peak(served.pid)
    held: list[socket.socket] = []
    accepted: list[socket.socket] = []
    lock = threading.Lock()

    def hold() -> None:
        sock = raw_connect(served.socket, REPLY_TIMEOUT)
        with lock:
            held.append(sock)
        try:
            sock.sendall(header + body_part)
        except (BrokenPipeError, ConnectionResetError):
            return  # refused: the daemon closed the connection
        with lock:
            accepted.append(sock)

    threads = [threading.Thread(target=hold) for _ in range(40)]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(REPLY_TIMEOUT + BUDGET_WAIT)
        waited = time.monotonic() - started
        peak = peak_rss(served.pid) - base
        control = call(served, "stats")["result"]["control"]  # small frames still served
        refusals = [read_frame(sock) for sock in held if sock not in accepted]
    finally:
        for sock in held:
            sock.close()
    assert all(reply is not None and reply["error"]["code"] == "HitLimit" for reply in refusals), (
        refusals[:3]
    )
    assert len(accepted) == REQUEST_BUDGET // MAX_REQUEST_FRAME, len(accepted)
    assert control["request_bytes"] == len(accepted) * MAX_REQUEST_FRAME
    assert peak < REQUEST_BUDGET + 96 * MiB, f"daemon grew by {peak >> 20} MiB"
    assert wait_until(lambda: call(served, "stats")["result"]["control"]["request_bytes"] == 0)
    figures.setdefault("exhaustion", {}).update(
        {
            "request budget": f"{REQUEST_BUDGET >> 20} MiB, {BUDGET_WAIT:g} s wait for room",
            "40 unfinished 32 MiB frames: RSS growth": (
                f"{peak >> 20} MiB ({len(accepted)} held, {len(refusals)} refused "
                f"after {waited:.1f} s)"
            ),
        }
    )


def test_busy_uploads_wait_for_the_budget_not_refused(served: ServeDaemon) -> None:
    """Twelve clients stream uploads in 4 MiB writes while unfinished frames
    hold most of the budget: the writes are paced, and every upload completes."""
    data = [os.urandom(MiB) * 40 for _ in range(12)]

    async def upload(payload: bytes, results: list[bytes]) -> None:
        results.append(await put_blob_async(served, payload))

    async def run() -> list[bytes]:
        results: list[bytes] = []
        async with trio.open_nursery() as nursery:
            for payload in data:
                nursery.start_soon(upload, payload, results)
        return results

    # Unfinished frames hold three quarters of the budget meanwhile.
    hogs = [raw_connect(served.socket, REPLY_TIMEOUT) for _ in range(6)]
    try:
        for sock in hogs:
            sock.sendall(struct.pack(">I", MAX_REQUEST_FRAME) + bytes(MAX_REQUEST_FRAME - MiB))
        digests = trio.run(run)
    finally:
        for sock in hogs:
            sock.close()
    assert sorted(digests) == sorted(hashlib.sha256(payload).digest() for payload in data)
    control = call(served, "stats")["result"]["control"]
    assert control["request_bytes_peak"] <= REQUEST_BUDGET, control


def test_a_frame_that_decodes_huge_is_refused(served: ServeDaemon, figures: Figures) -> None:
    """A 32 MiB frame of nils in arrays of a million: counted while it decodes."""
    nils = b"\xdd" + struct.pack(">I", 1 << 20) + b"\xc0" * (1 << 20)
    arrays = (MAX_REQUEST_FRAME - 64) // len(nils)
    # {"v":1,"id":1,"call":"hashset","args":[array x N]} built by hand: a fixmap of 4
    body = (
        b"\x84"
        + msgpack.packb("v")
        + b"\x01"
        + msgpack.packb("id")
        + b"\x01"
        + msgpack.packb("call")
        + msgpack.packb("hashset")
        + msgpack.packb("args")
        + b"\xdc"
        + struct.pack(">H", arrays)
        + nils * arrays
    )
    base = reset_peak(served.pid)
    with raw_connect(served.socket, REPLY_TIMEOUT) as sock:
        sock.sendall(struct.pack(">I", len(body)) + body)
        reply = read_frame(sock)
    peak = peak_rss(served.pid) - base
    assert reply is not None and reply["error"]["code"] == "HitLimit", reply
    # Before the budget the same frame cost +545 MiB while decoded.
    assert peak < 160 * MiB, f"daemon grew by {peak >> 20} MiB"
    assert call(served, "ping")["t"] == "ok"
    figures.setdefault("exhaustion", {})[
        f"{len(body) >> 20} MiB frame of {arrays} x 1M nils: RSS growth"
    ] = f"{peak >> 20} MiB"


def test_a_pipelined_burst_gets_the_allowed_requests_answered(served: ServeDaemon) -> None:
    sha256 = put_blob(served, b"burst")
    burst = b"".join(
        frame({"id": rid, "call": "hashset", "args": [sha256]}) for rid in range(1, 101)
    )
    codes: dict[int, str] = {}
    with raw_connect(served.socket, REPLY_TIMEOUT) as sock:
        sock.sendall(burst)
        while len(codes) < 100:
            reply = read_frame(sock)
            assert reply is not None
            codes[reply["id"]] = reply["t"] if reply["t"] == "ok" else reply["error"]["code"]
    assert all(codes[rid] == "ok" for rid in range(1, MAX_REQUESTS + 1)), codes
    assert set(codes.values()) <= {"ok", "BadArg"}


# -- parsers ---------------------------------------------------------------------------


def test_csvrows_memory_is_bounded_by_the_line_cap(served: ServeDaemon, figures: Figures) -> None:
    size = 384 * MiB  # one unquoted field, no newline
    sha256 = put_blob(served, b"a" * size)
    base = reset_peak(served.pid)
    reply = call(served, "csvrows", sha256)
    peak = peak_rss(served.pid) - base
    assert reply["t"] == "err" and reply["error"]["code"] == "BadDataValu", reply
    # Before the cap, the whole line was read first: twice its size and more.
    assert peak < 300 * MiB, f"daemon grew by {peak >> 20} MiB"
    figures.setdefault("exhaustion", {})[
        "csvrows of a 384 MiB field without newline: RSS growth"
    ] = f"{peak >> 20} MiB"


def test_deeply_nested_json_is_bad_json(served: ServeDaemon) -> None:
    sha256 = put_blob(served, b"[" * 100_000 + b"\n")
    reply = call(served, "jsonlines", sha256.hex())
    assert reply["t"] == "err" and reply["error"]["code"] == "BadJsonText", reply
    text = served.log.read_text()
    assert "RecursionError" not in text.replace("bad json line", "")
    assert not [
        line for line in text.splitlines() if " WARNING " in line and "json" in line.lower()
    ]


# -- a full disk -----------------------------------------------------------------------


def fill(path: Path) -> None:
    """Write zeros to *path* until the disk refuses."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, bytes(64 << 10))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_deletes_work_on_a_full_disk(tmp_path: Path, figures: Figures) -> None:
    with tmpfs(tmp_path / "disk", "32m") as disk:
        store = disk / "store"
        served = ServeDaemon.start(store, log=tmp_path / "full.log")
        try:
            big = [put_blob(served, os.urandom(MiB)) for _ in range(4)]
            small = [put_blob(served, os.urandom(4096)) for _ in range(4)]  # journaled
            fill(disk / "ballast")
            deleted = 0
            for sha256 in (big[0], small[0], small[1], big[1]):
                fill(disk / "ballast")
                result = served.ctl("del", sha256.hex())
                assert result.returncode == 0, result.stderr
                assert call(served, "has", sha256)["result"] is False
                deleted += 1
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            assert call(served, "has", big[2])["result"] is True
        finally:
            assert served.stop() == 0
        (disk / "ballast").unlink()
        assert_fsck_clean(store)
    assert not served.problems(), served.problems()
    figures.setdefault("exhaustion", {}).update(
        {
            "deletes on a full 32 MiB tmpfs": f"{deleted} of {deleted} committed",
            "free after deletes": f"{free >> 10} KiB",
        }
    )


# -- descriptors and backend errnos on the mount ------------------------------------------


def lowest_free_fd(pid: int) -> int:
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return next(fd for fd in range(len(used) + 1) if fd not in used)


def test_out_of_descriptors_is_emfile_not_a_broken_blob(
    daemons: MakeDaemon, figures: Figures
) -> None:
    daemon = daemons()
    ours = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, ours[1]), ours[1]))
    try:
        daemon.start()  # inherits the low soft limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, ours)
    assert daemon.pid is not None and daemon.mnt is not None
    soft, hard = resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE)
    assert soft == hard, "the daemon did not raise its soft descriptor limit"
    data = os.urandom(MiB)  # a file blob: small ones are read from the index
    write_file(daemon.mnt / "incoming" / "blob", data)
    path = daemon.mnt / "by-sha256" / hashlib.sha256(data).hexdigest()
    limit = lowest_free_fd(daemon.pid)
    resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (limit, hard))
    try:
        with pytest.raises(OSError) as caught, open(path, "rb") as file:
            file.read()
    finally:
        resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert caught.value.errno in (errno.EMFILE, errno.ENFILE), caught.value
    with open(path, "rb") as file:
        assert file.read() == data
    stats = json.loads(
        run_axonfs("ctl", "--socket", daemon.socket, "stats", "--json", check=True).stdout
    )
    assert stats["fuse"]["broken"] == [], stats["fuse"]
    assert "Too many open files" in daemon.log_file.read_text()
    figures.setdefault("exhaustion", {})["read at the descriptor limit"] = (
        f"{errno.errorcode[caught.value.errno]}, blob not marked broken; soft limit {soft}"
    )


def test_a_backend_enospc_reaches_the_writer_as_enospc(tmp_path: Path, daemons: MakeDaemon) -> None:
    """Inodes run out between the spool file and the blob's directory: the
    backend's ENOSPC (a BackendError) must reach close() as ENOSPC, not EIO."""
    with tmpfs(tmp_path / "disk", "64m,nr_inodes=400") as disk:
        daemon = daemons(store=disk / "store")
        daemon.start()
        assert daemon.mnt is not None
        dummies = disk / "dummies"
        dummies.mkdir()
        count = 0
        try:
            while True:
                (dummies / str(count)).touch()
                count += 1
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        for n in range(count - 2, count):  # the spool file and commit.intent
            (dummies / str(n)).unlink()
        with pytest.raises(OSError) as caught:
            write_file(daemon.mnt / "incoming" / "big", os.urandom(MiB))
        assert caught.value.errno == errno.ENOSPC, caught.value
        daemon.stop()
        for path in dummies.iterdir():
            path.unlink()


# -- wget ------------------------------------------------------------------------------


def _bomb() -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing
    zeros = bytes(MiB)
    return b"".join([*(compressor.compress(zeros) for _ in range(128)), compressor.flush()])


_RAW_DEFLATE = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
_FINE = {
    "/fine": ("gzip", gzip.compress(b"fine\n" * 1000)),
    "/fine-zlib": ("deflate", zlib.compress(b"fine\n" * 1000)),
    "/fine-raw": ("deflate", _RAW_DEFLATE.compress(b"fine\n" * 1000) + _RAW_DEFLATE.flush()),
}


class Targets(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bomb = b""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        try:
            if self.path.startswith("/bomb"):
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(self.bomb)))
                self.end_headers()
                self.wfile.write(self.bomb)
            elif self.path.startswith("/fine"):
                self.send_response(200)
                encoding, body = _FINE.get(self.path.split("?")[0], _FINE["/fine"])
                self.send_header("Content-Encoding", encoding)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def http_base() -> Iterator[str]:
    Targets.bomb = Targets.bomb or _bomb()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Targets)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_gzip_bomb_stops_early(served: ServeDaemon, http_base: str, figures: Figures) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        async with client.connect(served.socket) as axon:
            for path in ("/fine-zlib", "/fine-raw"):
                result = await axon.wget(http_base + path, timeout=60)
                assert result["ok"] and result["size"] == 5000, result
            return (
                await axon.wget(http_base + "/bomb", timeout=60),
                await axon.wget(http_base + "/fine", timeout=60),
            )

    base = reset_peak(served.pid)
    started = time.monotonic()
    bomb, fine = trio.run(run)
    seconds = time.monotonic() - started
    assert bomb["ok"] is False and bomb["err"][0] == "HitLimit", bomb
    assert fine["ok"] is True and fine["size"] == 5000, fine
    decoded = int(bomb["err"][1].get("decoded", 0)) if isinstance(bomb["err"][1], dict) else 0
    assert decoded < 128 * MiB, bomb
    growth = peak_rss(served.pid) - base
    assert growth < 64 * MiB, f"daemon grew by {growth >> 20} MiB"
    figures.setdefault("exhaustion", {})[f"gzip bomb ({len(Targets.bomb) >> 10} KiB → 128 MiB)"] = (
        f"HitLimit after {decoded >> 20} MiB decoded, {seconds:.1f} s, "
        f"RSS growth {growth >> 20} MiB"
    )


def test_wget_urls_are_redacted_in_logs(served: ServeDaemon, http_base: str) -> None:
    port = http_base.rsplit(":", 1)[1]
    secret_url = f"http://agent:hunter2@127.0.0.1:{port}/fine?token=s3cr3tvalue&x=1"
    failing = "http://agent:hunter2@127.0.0.1:1/nothing?token=s3cr3tvalue"

    async def run() -> None:
        async with client.connect(served.socket) as axon:
            assert (await axon.wget(secret_url, timeout=30))["ok"] is True
            assert (await axon.wget(failing, timeout=30))["ok"] is False

    trio.run(run)
    text = served.log.read_text()
    assert "token=***" in text  # the URLs are logged, redacted
    assert "s3cr3tvalue" not in text and "hunter2" not in text


def test_ctl_wget_has_a_default_timeout(served: ServeDaemon) -> None:
    """A server that accepts and never answers: ``axonfs ctl wget`` gives up by
    itself (the default is scaled down here, the code path is the default's)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    script = (
        "import sys, axonfs.ctl as ctl, axonfs.cli as cli; ctl.HTTP_TIMEOUT = 2.0; "
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    started = time.monotonic()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                "ctl",
                "--socket",
                str(served.socket),
                "wget",
                f"http://127.0.0.1:{port}/hang",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        listener.close()
        for sock in accepted:
            sock.close()
    assert result.returncode != 0, result
    assert time.monotonic() - started < 30
    assert "Timeout" in result.stdout + result.stderr, result


# -- one error policy for inline and task calls ------------------------------------------


class FailingAxon(Axon):
    """The store answers every lookup with an OSError (a disk gone bad)."""

    async def metrics(self) -> dict[str, int]:
        raise OSError(errno.EIO, "Input/output error")

    async def hashset(self, sha256: bytes) -> dict[str, str]:
        raise OSError(errno.EIO, "Input/output error")


def test_inline_and_task_calls_share_one_error_policy(tmp_path: Path) -> None:
    async def run() -> list[dict[str, Any]]:
        async with FailingAxon.open(tmp_path / "store") as axon, trio.open_nursery() as nursery:
            path = control_socket(tmp_path / "store")
            await nursery.start(serve_control, axon, path)
            replies = await trio.to_thread.run_sync(_ask, path)
            nursery.cancel_scope.cancel()
        return replies

    inline, task, ping = trio.run(run)
    assert inline["t"] == task["t"] == "err", (inline, task)
    assert {k: v for k, v in inline["error"].items()} == {k: v for k, v in task["error"].items()}
    assert inline["error"]["errno"] == errno.EIO
    assert ping["t"] == "ok"  # the connection survived both


def _ask(path: Path) -> list[dict[str, Any]]:
    with raw_connect(path, REPLY_TIMEOUT) as sock:
        replies = []
        for rid, call, args in ((1, "metrics", []), (2, "hashset", [bytes(32)]), (3, "ping", [])):
            sock.sendall(frame({"id": rid, "call": call, "args": args}))
            reply = read_frame(sock)
            assert reply is not None
            replies.append(reply)
    return replies
