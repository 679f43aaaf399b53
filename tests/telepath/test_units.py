"""In-process parts of the Telepath work: unpack, users, the errors' SynErr face."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from helpers.cli import run_axonfs_bytes

from axonfs.axon import Axon
from axonfs.errors import BadArg, BadDataValu, NoSuchFile, from_wire
from axonfs.telepath import users
from axonfs.telepath.config import parse_listen, unix_url_problem
from axonfs.telepath.wire import (
    BadMessage,
    MessageDecoder,
    encode,
    error_retn,
    yielded_bytes,
    yielded_rows,
)


async def test_unpack_reads_what_the_format_needs(axon: Axon) -> None:
    data = struct.pack(">IH", 7, 9) + b"xyz"
    _, sha256 = await axon.put(data)
    assert await axon.unpack(sha256, ">IH") == (7, 9)
    assert await axon.unpack(sha256, "3s", offs=6) == (b"xyz",)
    with pytest.raises(BadDataValu, match="Expected 4 bytes but got 3 bytes"):
        await axon.unpack(sha256, ">I", offs=6)
    with pytest.raises(BadDataValu, match="but got 0 bytes"):
        await axon.unpack(sha256, ">I", offs=100)
    with pytest.raises(BadArg, match="Format string must be a string"):
        await axon.unpack(sha256, b">I")  # type: ignore[arg-type]
    with pytest.raises(BadArg, match="Failed to unpack bytes with format"):
        await axon.unpack(sha256, "Z")
    with pytest.raises(BadArg, match="would read too much data"):
        await axon.unpack(sha256, f"{(1 << 20) + 1}s")
    with pytest.raises(BadArg):
        await axon.unpack(sha256, ">I", offs=-1)
    with pytest.raises(NoSuchFile):
        await axon.unpack(hashlib.sha256(b"absent").digest(), ">I")


def test_errors_answer_like_a_synerr() -> None:
    exc = from_wire({"code": "NoSuchFile", "message": "gone", "sha256": "ab"})
    assert isinstance(exc, NoSuchFile)
    assert exc.get("mesg") == "gone" and exc.get("sha256") == "ab"
    assert exc.get("missing", 5) == 5
    assert exc.errinfo == {"sha256": "ab", "mesg": "gone"}
    assert error_retn(exc) == (False, ("NoSuchFile", {"sha256": "ab", "mesg": "gone"}))


def test_users_file(tmp_path: Path) -> None:
    users.set_password(tmp_path, "alice", "pw")
    assert users.verify(tmp_path, "alice", "pw")
    assert not users.verify(tmp_path, "alice", "pw\n")
    assert not users.verify(tmp_path, "bob", "pw")
    assert not users.verify(tmp_path, "alice", None)
    assert (users.users_path(tmp_path).stat().st_mode & 0o777) == 0o600
    assert "pw" not in users.users_path(tmp_path).read_text().replace("passwd", "")
    assert users.delete_user(tmp_path, "alice") and not users.delete_user(tmp_path, "alice")
    with pytest.raises(ValueError):
        users.validate_name("a:b")


def test_passwd_command_strips_the_newline_echo_adds(tmp_path: Path) -> None:
    store = str(tmp_path)
    run_axonfs_bytes("passwd", "--store", store, "carol", stdin=b"p w\n", check=True)
    assert users.verify(tmp_path, "carol", "p w")
    assert (
        run_axonfs_bytes("passwd", "--store", store, "x:y", stdin=b"a\n", check=False).returncode
        == 2
    )
    assert (
        run_axonfs_bytes("passwd", "--store", store, "dan", stdin=b"\n", check=False).returncode
        == 2
    )
    assert (
        run_axonfs_bytes("passwd", "--store", store, "--delete", "carol", check=True).returncode
        == 0
    )
    assert (
        run_axonfs_bytes("passwd", "--store", store, "--delete", "carol", check=False).returncode
        == 1
    )


def test_listen_addresses() -> None:
    assert parse_listen("tcp://127.0.0.1:0").port == 0
    assert parse_listen("ssl://[::1]:4443/").host == "::1"
    assert parse_listen("tcp://localhost").port == 27492
    with pytest.raises(ValueError, match="loopback"):
        parse_listen("tcp://0.0.0.0:1")
    assert parse_listen("tcp://0.0.0.0:1", allow_remote=True).host == "0.0.0.0"
    with pytest.raises(ValueError):
        parse_listen("http://127.0.0.1:1")
    assert unix_url_problem(Path("/srv/a:b/run/telepath.sock")) is not None
    assert unix_url_problem(Path("/srv/a?b/run/telepath.sock")) is not None
    assert unix_url_problem(Path("/srv/ab/run/telepath.sock")) is None


def test_decoder_bounds_what_it_buffers() -> None:
    decoder = MessageDecoder(limit=1000)
    message = encode("t2:init", {"todo": ("has", (b"x" * 10,), {})})
    assert decoder.feed(message[:5]) == []
    assert decoder.feed(message[5:]) == [("t2:init", {"todo": ("has", (b"x" * 10,), {})})]
    assert decoder.pending == 0
    with pytest.raises(BadMessage):
        decoder.feed(encode("put", {"b": b"x" * 2000})[:1001])
    assert MessageDecoder().feed(encode("x", {})[:-1]) == []  # incomplete: wait for more
    with pytest.raises(BadMessage, match="must be"):
        MessageDecoder().feed(b"\x93\x01\x02\x03")  # an array, not (name, map)
    big = 1 << 70
    assert MessageDecoder().feed(encode("n", {"v": big, "w": -big})) == [
        ("n", {"v": big, "w": -big})
    ]


def test_listeners_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "axonfs.toml"
    config.write_text(
        f'store = "{tmp_path / "store"}"\n'
        'telepath-listen = ["tcp://127.0.0.1:0", "ssl://127.0.0.1:0"]\n'
        'tls-cert = "cert.pem"\n'
    )
    done = run_axonfs_bytes("serve", "--config", str(config), "--print-config", check=True)
    assert 'telepath-listen = ["tcp://127.0.0.1:0", "ssl://127.0.0.1:0"]' in done.stdout.decode()


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 1 << 24])
def test_a_yielded_piece_in_two_parts_is_the_packed_message(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert b"".join(yielded_bytes(data)) == encode("t2:yield", {"retn": (True, data)})


def test_yielded_rows_decode_as_the_rows() -> None:
    """Rows packed by the struct read back exactly as msgpack's own packing does;
    anything else goes to the fallback encoder."""
    sha = hashlib.sha256(b"row").digest()
    rows = [
        (0, (sha, 0)),
        (1, (sha, 4096)),
        ((1 << 64) - 1, (sha, (1 << 64) - 1)),
        (-1, (sha, 1)),  # a negative number: not a uint64
        (True, (sha, 1)),  # a bool is not a row's number
        (2, (b"short", 1)),  # not a digest
        (3, (sha, 1, 2)),  # another shape
        "not a row",
    ]
    fell_back: list[object] = []

    def other(row: object) -> bytes:
        fell_back.append(row)
        return encode("t2:yield", {"retn": (True, row)})

    packed = yielded_rows(rows, other)
    decoder = MessageDecoder()
    assert decoder.feed(packed) == [("t2:yield", {"retn": (True, row)}) for row in rows]
    assert fell_back == rows[3:]
