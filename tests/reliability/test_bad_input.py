"""Bad input: generated control frames, invalid names on the mount, hostile wget targets.

Each input must get a clear error (an ``err`` frame with a known code, an errno,
``ok: false`` with a message), the daemon must stay up (a ``ping`` / ``has`` /
``metrics`` after every batch) and the store consistent (``fsck`` clean at the
end). Scale the generated frames with ``AXONFS_FUZZ_EXAMPLES`` (per strategy).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from helpers.daemon import ServeDaemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axonfs import client
from axonfs.ctlserver import CALLS
from axonfs.errors import _all_classes
from axonfs.protocol import MAX_REQUEST_FRAME

from .conftest import Figures, MakeDaemon
from .tools import assert_fsck_clean, raw_connect, read_frame, write_file

EXAMPLES = int(os.environ.get("AXONFS_FUZZ_EXAMPLES", "500"))
REPLY_TIMEOUT = 10.0
KNOWN_CODES = set(_all_classes()) | {"ProtocolError", "AccessDenied"}
TERMINAL = {"ok", "err", "end", "cancelled"}
NETWORK_CALLS = {"wget", "wput", "postfiles"}  # fuzzed only with loopback URLs, below
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

# -- strategies ---------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 64) - 1),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=64),
    st.binary(min_size=32, max_size=32),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=12,
)
call_names = st.one_of(
    st.sampled_from(sorted(set(CALLS) - NETWORK_CALLS - {"upload"})), st.text(max_size=20)
)
kwarg_names = st.one_of(
    st.sampled_from(
        [
            "offs",
            "size",
            "wait",
            "timeout",
            "tick",
            "tock",
            "errors",
            "dialect",
            "verify",
            "sha256",
            "byts",
            "delimiter",
            "files",
            "sha256s",
        ]
    ),
    st.text(max_size=12),
)


def frame(body: bytes, size: int | None = None) -> bytes:
    return struct.pack(">I", len(body) if size is None else size) + body


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


# -- talking to the daemon -----------------------------------------------------------------


class Session:
    """Counts the inputs and checks each exchange's replies."""

    def __init__(self, socket_path: Path, process: subprocess.Popen[bytes]) -> None:
        self.socket_path = socket_path
        self.process = process
        self.inputs = 0
        self.codes: dict[str, int] = {}
        self.oks = 0

    def _note(self, message: dict[str, Any]) -> None:
        assert message.get("t") in {"ok", "err", "items", "end", "saved", "cancelled"}, message
        if message["t"] == "err":
            code = message["error"]["code"]
            assert code in KNOWN_CODES, message
            assert (
                isinstance(message["error"].get("message"), str) and message["error"]["message"]
            ), message
            self.codes[code] = self.codes.get(code, 0) + 1
        elif message["t"] == "ok":
            self.oks += 1

    def send_garbage(self, data: bytes, expect: str | None = None) -> None:
        """Send bytes, end our side, read every reply until the daemon closes.

        With *expect*, an ``err`` frame of that code must be among the replies.
        """
        self.inputs += 1
        codes = []
        with raw_connect(self.socket_path) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused part way (an oversized header): the reply tells
            while (message := read_frame(sock)) is not None:
                self._note(message)
                if message["t"] == "err":
                    codes.append(message["error"]["code"])
        assert expect is None or expect in codes, (expect, codes, data[:200])
        self.check_alive()

    def call(self, message_bytes: bytes, rid: int, patience: float = REPLY_TIMEOUT) -> None:
        """Send one call frame; read until its terminal reply (or a protocol error)."""
        self.inputs += 1
        with raw_connect(self.socket_path) as sock:
            sock.sendall(message_bytes)
            sock.settimeout(patience)
            try:
                while (message := read_frame(sock)) is not None:
                    self._note(message)
                    if message["t"] == "err" and message["error"]["code"] == "ProtocolError":
                        assert read_frame(sock) is None  # then the daemon hangs up
                        break
                    if message.get("id") == rid and message["t"] in TERMINAL:
                        break
            except TimeoutError:
                # A call that waits on purpose (hashes(wait=True)): cancel it.
                sock.settimeout(REPLY_TIMEOUT)
                sock.sendall(frame(pack({"v": 1, "id": rid, "t": "cancel"})))
                while (message := read_frame(sock)) is not None:
                    self._note(message)
                    if message.get("id") == rid and message["t"] in TERMINAL:
                        break
        self.check_alive()

    def check_alive(self) -> None:
        assert self.process.poll() is None, "the daemon died"

    def ping(self) -> None:
        with raw_connect(self.socket_path) as sock:
            sock.sendall(frame(pack({"v": 1, "id": 1, "call": "ping", "args": []})))
            reply = read_frame(sock)
        assert reply is not None and reply["t"] == "ok", reply
        assert reply["result"]["pid"] == self.process.pid


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Session]:
    store, log = tmp_path / "fuzz-store", tmp_path / "fuzz.log"
    daemon = ServeDaemon.start(store, "--wget-max-bytes", str(4 << 20), log=log)
    try:
        yield Session(daemon.socket, daemon.process)
    finally:
        assert daemon.stop() == 0, "the daemon did not stop cleanly"
    # Bad arguments may be logged with their traceback (an unexpected exception inside a
    # call); nothing else may be: no connection or daemon failure.
    worse = [
        line
        for line in daemon.problems()
        if " ERROR " in line and "axonfs.ctlserver: request " not in line
    ]
    assert not worse, "\n".join(worse[:20])
    assert_fsck_clean(store)


def test_generated_control_frames(served: Session, figures: Figures) -> None:
    started = time.monotonic()

    @FUZZ_SETTINGS
    @given(st.binary(max_size=4096))
    def garbage(data: bytes) -> None:
        served.send_garbage(data)

    @FUZZ_SETTINGS
    @given(st.integers(MAX_REQUEST_FRAME + 1, (1 << 32) - 1), st.binary(max_size=256))
    def oversized(size: int, tail: bytes) -> None:
        served.send_garbage(struct.pack(">I", size) + tail, expect="ProtocolError")

    @FUZZ_SETTINGS
    @given(values, st.data())
    def malformed(value: Any, data: st.DataObject) -> None:
        body = pack(value)
        cut = data.draw(st.integers(0, len(body) + 4))
        served.send_garbage(frame(body)[:cut] if cut < len(body) + 4 else frame(body))

    @FUZZ_SETTINGS
    @given(
        st.dictionaries(
            st.sampled_from(["v", "id", "call", "args", "kwargs", "t", "data"]), values, max_size=6
        ),
        st.booleans(),
    )
    def near_miss(message: dict[str, Any], versioned: bool) -> None:
        if versioned:
            message["v"] = 1
        # Not a call and not a control frame of a known kind: a protocol error, said so.
        invalid = "call" not in message and message.get("t") not in (
            "cancel",
            "write",
            "save",
            "close",
        )
        served.send_garbage(frame(pack(message)), expect="ProtocolError" if invalid else None)

    @FUZZ_SETTINGS
    @given(
        call_names,
        st.lists(values, max_size=4),
        st.dictionaries(kwarg_names, values, max_size=3),
        st.integers(0, 1 << 62),
    )
    def calls(call: str, args: list[Any], kwargs: dict[str, Any], rid: int) -> None:
        message = {"v": 1, "id": rid, "call": call, "args": args, "kwargs": kwargs}
        served.call(frame(pack(message)), rid, patience=0.5 if call == "hashes" else REPLY_TIMEOUT)

    @FUZZ_SETTINGS
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["write", "save", "close", "cancel", "bogus"]),
                st.one_of(st.binary(max_size=2048), values),
            ),
            max_size=6,
        )
    )
    def uploads(steps: list[tuple[str, Any]]) -> None:
        parts = [frame(pack({"v": 1, "id": 7, "call": "upload", "args": []}))]
        parts += [frame(pack({"v": 1, "id": 7, "t": kind, "data": data})) for kind, data in steps]
        served.send_garbage(b"".join(parts))

    strategies = (garbage, oversized, malformed, near_miss, calls, uploads)
    for strategy in strategies:
        strategy()
        served.ping()
    elapsed = time.monotonic() - started

    async def afterwards() -> dict[str, int]:
        async with client.connect(served.socket_path) as axon:
            size, sha = await axon.put(b"still here")
            assert await axon.has(sha)
            return await axon.metrics()

    metrics = trio.run(afterwards)
    assert metrics["file:count"] >= 1
    figures.setdefault("bad_input", {}).update(
        {
            "control_frames_and_calls_tried": served.inputs,
            "strategies": "garbage bytes, oversized headers, truncated/malformed msgpack, "
            "near-miss messages, calls with random argument types, upload sessions",
            "error_replies_by_code": ", ".join(
                f"{code} {count}" for code, count in sorted(served.codes.items())
            ),
            "ok_replies": served.oks,
            "daemon_deaths": 0,
            "frames_seconds": round(elapsed, 1),
        }
    )


# -- invalid names on the mount --------------------------------------------------------------

BAD_NAMES: list[bytes] = [
    b"x" * 256,  # longer than NAME_MAX: the kernel refuses
    b"x" * 255,  # the longest legal name
    b"\xff\xfe\xfd",  # not UTF-8
    b"a\nb",
    b"tab\there",
    b" ",
    b"-",
    b"...",
    b"\x01\x7f",
    b"A" * 64,  # upper-case "hex"
    b"0" * 63,
    b"0" * 65,
    b"g" * 64,  # wrong length / not hex
    b"2024-13-45",
    b"1969-12-31",
    b"9999-12-31",  # not days / days without rows
    b"000000.000-" + b"0" * 64,  # a link name of no blob
    b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # sha of b""
]
NEVER = {errno.EIO}
"""An errno no name may ever get: EIO means a handler failed unexpectedly."""


def _attempts(
    directory: Path, name: bytes, scratch: Path
) -> Iterator[tuple[str, Callable[[], Any]]]:
    path = os.path.join(os.fsencode(directory), name)
    yield "lookup", lambda: os.lstat(path)
    yield "open", lambda: os.close(os.open(path, os.O_RDONLY))
    yield "create", lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    yield "mkdir", lambda: os.mkdir(path)
    yield "rename-in", lambda: os.rename(os.fsencode(scratch), path)
    yield "symlink", lambda: os.symlink(b"target", path)
    yield "link", lambda: os.link(os.fsencode(scratch), path)
    yield "mknod", lambda: os.mkfifo(path)
    yield "setxattr", lambda: os.setxattr(os.fsencode(directory), b"user." + name[:200], name)
    yield "getxattr", lambda: os.getxattr(os.fsencode(directory), b"user.axonfs." + name[:200])


def test_invalid_names_under_every_directory(daemons: MakeDaemon, figures: Figures) -> None:
    daemon = daemons(name="names")
    daemon.start()
    assert daemon.mnt is not None
    mnt = daemon.mnt
    write_file(mnt / "incoming" / "seed", b"seed")
    (mnt / "incoming" / "sub").mkdir()
    day = os.listdir(mnt / "history")[0]
    directories = [
        mnt,
        mnt / "by-sha256",
        mnt / "history",
        mnt / "history" / day,
        mnt / "incoming",
        mnt / "incoming" / "sub",
    ]
    tried = succeeded = 0
    errnos: dict[str, int] = {}
    for directory in directories:
        writable = directory.is_relative_to(mnt / "incoming")
        for name in BAD_NAMES:
            scratch = mnt / "incoming" / "scratch"
            if not scratch.exists():
                scratch.write_bytes(b"")  # the rename source
            for label, attempt in _attempts(directory, name, scratch):
                tried += 1
                try:
                    attempt()
                except OSError as exc:
                    assert exc.errno is not None and exc.errno not in NEVER, (
                        directory,
                        name,
                        label,
                        exc,
                    )
                    errnos[errno.errorcode[exc.errno]] = (
                        errnos.get(errno.errorcode[exc.errno], 0) + 1
                    )
                    continue
                succeeded += 1
                # Only /incoming may gain entries, and only names the kernel lets through.
                assert writable or label in ("lookup", "open", "getxattr"), (directory, name, label)
                assert len(name) <= 255 or label.endswith("xattr"), (directory, label)
            if writable:
                for entry in os.listdir(os.fsencode(directory)):
                    if entry not in (b"seed", b"sub", b"scratch"):
                        target = os.path.join(os.fsencode(directory), entry)
                        if os.path.isdir(target):
                            os.rmdir(target)
                        else:
                            os.unlink(target)
    assert daemon.alive()
    assert sorted(os.listdir(mnt)) == ["by-sha256", "history", "history.log", "incoming"]
    daemon.stop()
    assert_fsck_clean(daemon.store)
    figures.setdefault("bad_input", {}).update(
        {
            "name_operations_tried": tried,
            "name_operations_allowed_in_incoming": succeeded,
            "name_errors_by_errno": ", ".join(f"{k} {v}" for k, v in sorted(errnos.items())),
            "EIO_answers": 0,
        }
    )


# -- hostile wget targets ---------------------------------------------------------------------


class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route()  # the daemon may hang up on us, as it should

    def _route(self) -> None:
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/endless":  # chunked, never ends
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = os.urandom(64 << 10)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        elif self.path == "/huge-length":  # announces 1 TiB, sends a little
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            self.wfile.write(b"x" * 4096)
        elif self.path == "/header-flood":
            self.send_response(200)
            for i in range(20_000):
                self.send_header(f"X-Flood-{i}", "y" * 64)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        elif self.path == "/long-header":
            self.send_response(200)
            self.send_header("X-Long", "z" * (4 << 20))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        elif self.path == "/garbage-status":
            self.wfile.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
        elif self.path == "/fine":
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"fine\n")
        else:
            self.send_error(404)


HOSTILE = {
    "/loop": "TooManyRedirects",
    "/endless": "HitLimit",
    "/huge-length": "HitLimit",
    "/header-flood": "RemoteProtocolError",
    "/long-header": "RemoteProtocolError",
    "/garbage-status": "RemoteProtocolError",
}


def test_hostile_wget_targets(served: Session, figures: Figures) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    outcomes: dict[str, str] = {}

    async def run() -> None:
        async with client.connect(served.socket_path) as axon:
            before = await axon.metrics()
            for path, expected in HOSTILE.items():
                started = time.monotonic()
                with trio.fail_after(60):
                    result = await axon.wget(base + path, timeout=30)
                assert result["ok"] is False, (path, result)
                assert result["mesg"] and result["err"][0] == expected, (path, result)
                outcomes[path] = f"{result['err'][0]} in {time.monotonic() - started:.1f} s"
                served.ping()
            assert await axon.metrics() == before, "a hostile download left a blob"
            fine = await axon.wget(base + "/fine")
            assert fine["ok"] and fine["code"] == 200 and fine["size"] == 5

    try:
        trio.run(run)
    finally:
        server.shutdown()
        server.server_close()
    assert not any(
        name.startswith("spool-") for name in os.listdir(served.socket_path.parent.parent / "tmp")
    )
    figures.setdefault("bad_input", {}).update(
        {
            "hostile_wget_targets": "; ".join(
                f"{path} → {outcome}" for path, outcome in outcomes.items()
            ),
            "wget_body_cap_in_test": "4 MiB (--wget-max-bytes; default 4 GiB)",
        }
    )
