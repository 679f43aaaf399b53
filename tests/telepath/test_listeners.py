"""The Telepath listeners against bad input, and what ``axonfs ctl ping`` reports.

These speak the wire format with plain sockets (no Synapse needed): a
client that breaks the protocol loses its connection, never the daemon.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import msgpack
from helpers.cli import run_axonfs_bytes

from .conftest import Tele, ping, start_tele


def connect(tele: Tele, kind: str) -> socket.socket:
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(tele.unix.removeprefix("unix://"))
    else:
        host, port = tele.tcp.removeprefix("tcp://").rstrip("/").rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
    sock.settimeout(10)
    return sock


def send(sock: socket.socket, name: str, info: dict[str, object]) -> None:
    sock.sendall(msgpack.packb((name, info), use_bin_type=True))


def receive(sock: socket.socket) -> tuple[str, dict[str, object]] | None:
    """The next message, or None once the daemon closed the connection."""
    unpacker = msgpack.Unpacker(raw=False, use_list=False, strict_map_key=False)
    while True:
        for message in unpacker:
            return message  # type: ignore[no-any-return]
        data = sock.recv(1 << 16)
        if not data:
            return None
        unpacker.feed(data)


def closed(sock: socket.socket) -> bool:
    return receive(sock) is None


def handshake(sock: socket.socket, auth: object = None) -> str:
    send(sock, "tele:syn", {"vers": (3, 0), "name": "*", "auth": auth})
    reply = receive(sock)
    assert reply is not None and reply[0] == "tele:syn"
    assert reply[1]["retn"] == (True, None), reply
    return str(reply[1]["sess"])


def still_serving(tele: Tele) -> None:
    with connect(tele, "unix") as sock:
        sess = handshake(sock)
        send(sock, "t2:init", {"todo": ("has", (b"\0" * 32,), {}), "name": None, "sess": sess})
        assert receive(sock) == ("t2:fini", {"retn": (True, False)})


def test_handshake_describes_the_axon(tele: Tele) -> None:
    with connect(tele, "unix") as sock:
        send(sock, "tele:syn", {"vers": (3, 0), "name": "axon"})
        name, info = receive(sock)  # type: ignore[misc]
    assert name == "tele:syn" and len(str(info["sess"])) == 32
    meths = info["sharinfo"]["meths"]  # type: ignore[index]
    generators = {name for name, meth in meths.items() if meth.get("genr")}
    assert generators == {
        "get",
        "hashes",
        "history",
        "readlines",
        "csvrows",
        "jsonlines",
        "iterMpkFile",
    }
    assert {"put", "upload", "unpack", "wget", "getCellInfo"} <= set(meths)
    assert info["features"] == {"byterange": 1, "unpack": 1}


def test_unknown_share_name_and_version(tele: Tele) -> None:
    with connect(tele, "unix") as sock:
        send(sock, "tele:syn", {"vers": (3, 0), "name": "cortex"})
        reply = receive(sock)
        assert reply is not None and reply[1]["retn"][1][0] == "NoSuchName"  # type: ignore[index]
        assert closed(sock)
    with connect(tele, "unix") as sock:
        send(sock, "tele:syn", {"vers": (2, 0), "name": "*"})
        reply = receive(sock)
        assert reply is not None and reply[1]["retn"][1][0] == "BadMesgVers"  # type: ignore[index]


def test_garbage_closes_the_connection(tele: Tele) -> None:
    for kind in ("unix", "tcp"):
        with connect(tele, kind) as sock:
            sock.sendall(b"\xc1" * 16)  # 0xc1 is never valid msgpack
            assert closed(sock)
        with connect(tele, kind) as sock:
            send(sock, "hello", {})
            assert closed(sock)
        with connect(tele, kind) as sock:
            sock.sendall(msgpack.packb([1, 2, 3]))
            assert closed(sock)
    still_serving(tele)


def test_oversized_message_is_refused_before_it_is_buffered(tele: Tele) -> None:
    with connect(tele, "tcp") as sock:
        # A bin 32 header announcing 3 GiB, then bytes: refused, not buffered.
        sock.sendall(b"\x92\xa7t2:init\xc6" + struct.pack(">I", 3 << 30))
        try:
            for _ in range(400):
                sock.sendall(b"\0" * (1 << 20))
        except OSError:
            pass  # the daemon closed the connection part way
        else:
            assert closed(sock)
    still_serving(tele)


def test_pool_link_needs_a_session_of_this_listener(tele: Tele) -> None:
    todo: tuple[str, tuple[bytes], dict[str, object]] = ("has", (b"\0" * 32,), {})
    with connect(tele, "tcp") as sock:
        send(sock, "t2:init", {"todo": todo, "name": None, "sess": "0" * 32})
        reply = receive(sock)
        assert reply is not None and reply[1]["retn"][1][0] == "NoSuchObj"  # type: ignore[index]
        assert closed(sock)
    with connect(tele, "unix") as main:
        sess = handshake(main)
        with connect(tele, "tcp") as pool:  # a unix session is no credential on tcp
            send(pool, "t2:init", {"todo": todo, "name": None, "sess": sess})
            reply = receive(pool)
            assert reply is not None and reply[1]["retn"][1][0] == "NoSuchObj"  # type: ignore[index]
        with connect(tele, "unix") as pool:
            send(pool, "t2:init", {"todo": todo, "name": None, "sess": sess})
            assert receive(pool) == ("t2:fini", {"retn": (True, False)})
            main.close()  # the session ends with its first link, and its pool links too
            assert closed(pool)
    with connect(tele, "unix") as pool:
        send(pool, "t2:init", {"todo": todo, "name": None, "sess": sess})
        reply = receive(pool)
        assert reply is not None and reply[1]["retn"][1][0] == "NoSuchObj"  # type: ignore[index]


def test_bad_todo_is_an_error_reply(tele: Tele) -> None:
    with connect(tele, "unix") as sock:
        sess = handshake(sock)
        send(sock, "t2:init", {"todo": "nonsense", "name": None, "sess": sess})
        reply = receive(sock)
        assert reply is not None and reply[1]["retn"][1][0] == "BadMesgFormat"  # type: ignore[index]
        send(sock, "t2:init", {"todo": ("has", (b"\0" * 32,), {}), "name": None, "sess": sess})
        assert receive(sock) == ("t2:fini", {"retn": (True, False)})


def test_ping_lists_the_telepath_urls(tele: Tele) -> None:
    urls = ping(tele.daemon.store)["telepath"]
    assert urls == [tele.unix, tele.tcp]
    assert tele.unix == f"unix://{tele.daemon.store}/run/telepath.sock"
    text = run_axonfs_bytes(
        "ctl", "--store", str(tele.daemon.store), "ping", check=True
    ).stdout.decode()
    assert f"telepath {tele.unix}" in text


def test_ctl_unpack(tele: Tele, tmp_path: Path) -> None:
    store = str(tele.daemon.store)
    (tmp_path / "blob").write_bytes(b"\x00\x01\x02\x03rest")
    sha = run_axonfs_bytes(
        "ctl", "--store", store, "put", str(tmp_path / "blob"), check=True
    ).stdout.split()[1]
    done = run_axonfs_bytes(
        "ctl", "--store", store, "unpack", "--json", sha.decode(), ">HH", check=True
    )
    assert json.loads(done.stdout) == [1, 0x0203]
    done = run_axonfs_bytes(
        "ctl", "--store", store, "unpack", sha.decode(), "4s", "--offs", "4", check=True
    )
    assert done.stdout.decode().strip() == b"rest".hex()
    done = run_axonfs_bytes("ctl", "--store", store, "unpack", "00" * 32, ">H", check=False)
    assert done.returncode == 1


def test_a_store_path_synapse_cannot_reach_is_skipped(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 40) / "store"
    deep.parent.mkdir(parents=True)
    log_path = deep.parent / "store.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "axonfs", "serve", "--store", str(deep), "--foreground"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    try:
        # ctl.sock's path is too long for connect() too; axonfs ctl gets there anyway.
        deadline = time.monotonic() + 20
        while (
            done := run_axonfs_bytes("ctl", "--store", str(deep), "ping", "--json", check=False)
        ).returncode != 0:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        urls = json.loads(done.stdout)["telepath"]
    finally:
        process.terminate()
        process.wait(10)
    assert urls == []
    warnings = [line for line in log_path.read_text().splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "more than the 107" in warnings[0]
    assert "--telepath-listen tcp://127.0.0.1:PORT" in warnings[0]


def test_second_tele_fixture_helper_cleans_up(tmp_path: Path) -> None:
    running = start_tele(tmp_path / "store")
    try:
        still_serving(running)
    finally:
        running.daemon.stop()
    assert running.daemon.process.returncode is not None
