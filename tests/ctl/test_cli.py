"""``axonfs ctl`` driven as a subprocess against a real daemon."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers.cli import run_axonfs_bytes
from helpers.daemon import ServeDaemon

from .servers import FILE_BODY, LocalHTTPServer

ABSENT = "ab" * 32


def ctl(
    daemon: ServeDaemon, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``axonfs ctl ARGS`` as a user runs it: the daemon found through ``$AXONFS_STORE``."""
    return run_axonfs_bytes("ctl", *args, stdin=stdin, env=env or daemon.env())


def ok(daemon: ServeDaemon, *args: str, stdin: bytes = b"") -> str:
    result = ctl(daemon, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def stored(daemon: ServeDaemon, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("cli")
    files = {
        "lines.txt": b"one\ntwo\n",
        "table.csv": b"a|b\n1|2\n",
        "objs.jsonl": b'{"a": 1}\n[2]\n',
        "items.mpk": msgpack.packb("x") + msgpack.packb([1, b"\x01"]),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    out = ok(daemon, "put", *(str(directory / name) for name in files))
    lines = out.splitlines()
    assert lines == [
        f"{len(data)} {hashlib.sha256(data).hexdigest()} {directory / name}"
        for name, data in files.items()
    ]
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_put_from_stdin_and_get(daemon: ServeDaemon, tmp_path: Path) -> None:
    data = b"from stdin\n" * 1000
    out = ok(daemon, "--json", "put", "-", stdin=data)
    size, sha = json.loads(out)
    assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
    assert ctl(daemon, "get", sha).stdout == data
    assert ctl(daemon, "get", sha, "--offs", "5", "--size", "5").stdout == data[5:10]
    assert ctl(daemon, "get", sha, "--offs", "5").stdout == data[5:]
    ok(daemon, "get", sha, "-o", str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == data
    missing = ctl(daemon, "get", ABSENT, "-o", str(tmp_path / "missing"))
    assert missing.returncode == 1 and b"does not contain" in missing.stderr
    assert not (tmp_path / "missing").exists()


def test_has_size_wants_del(daemon: ServeDaemon, stored: dict[str, Any]) -> None:
    sha = stored["lines.txt"]
    assert ok(daemon, "has", sha) == f"{sha} present\n"
    result = ctl(daemon, "has", sha, ABSENT)
    assert result.returncode == 1 and result.stdout.decode().splitlines()[1] == f"{ABSENT} absent"
    assert json_lines(ctl(daemon, "--json", "has", sha, ABSENT).stdout.decode()) == [True, False]
    assert ok(daemon, "size", sha) == f"{sha} 8\n"
    assert ctl(daemon, "size", ABSENT).returncode == 1
    assert json_lines(ctl(daemon, "size", "--json", ABSENT).stdout.decode()) == [None]
    assert ok(daemon, "wants", sha, ABSENT) == f"{ABSENT}\n"
    assert ok(daemon, "wants", stdin=f"{sha}\n{ABSENT} {ABSENT}\n".encode()) == f"{ABSENT}\n" * 2
    _, doomed = json.loads(ok(daemon, "--json", "put", "-", stdin=b"delete me"))
    assert ok(daemon, "del", doomed) == f"{doomed} deleted\n"
    assert ctl(daemon, "del", doomed).returncode == 1


def test_hashes_history_hashset_metrics(daemon: ServeDaemon, stored: dict[str, Any]) -> None:
    rows = json_lines(ok(daemon, "--json", "hashes"))
    shas = [row[1][0] for row in rows]
    positions = [shas.index(sha) for sha in stored.values()]
    assert positions == sorted(positions)  # in added order
    indx = rows[positions[1]][0]
    assert ok(daemon, "hashes", "--offs", str(indx)).splitlines()[0] == (
        f"{indx} {stored['table.csv']} 8"
    )
    assert ok(daemon, "hashes", "--follow", "--timeout", "0.2", "--offs", str(indx)).startswith(
        f"{indx} "
    )
    history = json_lines(ok(daemon, "--json", "history", "0"))
    assert set(stored.values()) <= {row[1][0] for row in history}
    assert ok(daemon, "history", "2000-01-01T00:00:00", str(history[0][0])).startswith("20")
    assert ok(daemon, "history", "0", "1") == ""
    hashset = json.loads(ok(daemon, "hashset", "--json", stored["lines.txt"]))
    assert hashset["md5"] == hashlib.md5(b"one\ntwo\n").hexdigest()
    metrics = json.loads(ok(daemon, "metrics", "--json"))
    assert set(metrics) == {"size:bytes", "file:count"}
    assert ok(daemon, "metrics").startswith("size:bytes ")


def test_parsers(daemon: ServeDaemon, stored: dict[str, Any]) -> None:
    assert ok(daemon, "readlines", stored["lines.txt"]) == "one\ntwo\n"
    # Printed in the input's dialect, so that the output reads back as the blob did.
    assert ok(daemon, "csvrows", stored["table.csv"], "--delimiter", "|") == "a|b\n1|2\n"
    assert (
        ok(daemon, "csvrows", stored["table.csv"], "--delimiter", "|", "--quoting", "all")
        == '"a"|"b"\n"1"|"2"\n'
    )
    assert json_lines(ok(daemon, "csvrows", "--json", stored["table.csv"], "--delimiter", "|")) == [
        ["a", "b"],
        ["1", "2"],
    ]
    assert json_lines(ok(daemon, "jsonlines", stored["objs.jsonl"])) == [{"a": 1}, [2]]
    assert json_lines(ok(daemon, "msgpack", stored["items.mpk"])) == ["x", [1, "01"]]
    bad = ctl(daemon, "csvrows", stored["table.csv"], "--dialect", "nope")
    assert bad.returncode == 4 and b"BadArg: Invalid CSV dialect" in bad.stderr


def test_wget_wput_postfiles(
    daemon: ServeDaemon, http_server: LocalHTTPServer, stored: dict[str, Any]
) -> None:
    out = ok(daemon, "wget", f"{http_server.base}/file")
    code, reason, size, sha, url = out.split()
    assert (code, reason, int(size), url) == (
        "200",
        "OK",
        len(FILE_BODY),
        f"{http_server.base}/file",
    )
    assert sha == hashlib.sha256(FILE_BODY).hexdigest()
    result = json.loads(
        ok(
            daemon,
            "wget",
            "--json",
            f"{http_server.base}/missing",
            "--header",
            "X-A: b",
            "--param",
            "q=1",
        )
    )
    assert result["ok"] is True and result["code"] == 404
    assert result["request"]["headers"]["X-A"] == "b"
    assert ctl(daemon, "wget", "--fail", f"{http_server.base}/missing").returncode == 4
    failed = ctl(daemon, "wget", f"{http_server.base}/file", "--proxy", "http://127.0.0.1:1")
    assert failed.returncode == 4 and b"request failed" in failed.stderr
    assert ok(daemon, "wput", stored["lines.txt"], f"{http_server.base}/echo").startswith("201")
    assert http_server.received[-1][3] == b"one\ntwo\n"
    out = ok(
        daemon,
        "postfiles",
        f"{http_server.base}/echo",
        "--field",
        f"doc=@{stored['lines.txt']};filename=l.txt",
        "--field",
        "note=hello",
    )
    assert out.startswith("200 OK")
    body = http_server.received[-1][3]
    assert b'filename="l.txt"' in body and b"one\ntwo\n" in body and b"hello" in body


def test_exit_codes_and_help(daemon: ServeDaemon, tmp_path: Path) -> None:
    usage = ctl(daemon, "has", "not-a-hash")
    assert usage.returncode == 2
    assert ctl(daemon, "put", str(tmp_path / "nope")).returncode == 2
    unreachable = ctl(daemon, "--socket", str(tmp_path / "none.sock"), "metrics")
    assert unreachable.returncode == 3 and b"no axonfs daemon" in unreachable.stderr
    env = daemon.env()
    env["AXONFS_STORE"] = str(tmp_path / "elsewhere")
    env["AXONFS_SOCKET"] = str(daemon.socket)
    assert ctl(daemon, "metrics", env=env).returncode == 0  # $AXONFS_SOCKET
    assert ctl(daemon, "--store", str(daemon.store), "metrics", env=env).returncode == 0
    assert ctl(daemon, "-m", str(tmp_path), "metrics").returncode == 3  # not a mount
    help_text = ok(daemon, "--help")
    for line in (
        "0  done",
        "1  absent or false",
        "2  usage error",
        "3  the daemon is unreachable",
        "4  the call failed",
    ):
        assert line in help_text
    assert "exit status" in ok(daemon, "wget", "--help")


def test_put_names_what_it_reads(daemon: ServeDaemon, tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.write_bytes(b"only one")
    assert ok(daemon, "put", str(one)) == f"8 {hashlib.sha256(b'only one').hexdigest()}\n"
    piped = ok(daemon, "put", "/dev/stdin", stdin=b"from a pipe")
    assert piped == f"11 {hashlib.sha256(b'from a pipe').hexdigest()}\n"
    directory = ctl(daemon, "put", str(tmp_path))
    assert directory.returncode == 2
    assert directory.stderr.decode().splitlines() == [
        f"axonfs: {tmp_path} is a directory: put stores files (give the files, e.g. "
        f"{tmp_path}/*, or copy the tree into the mount's incoming/)"
    ]


def test_hex_is_read_in_either_case_and_printed_lower_case(daemon: ServeDaemon) -> None:
    sha = ok(daemon, "put", stdin=b"case").split()[1]
    assert ok(daemon, "has", sha.upper()) == f"{sha} present\n"
    assert ok(daemon, "size", sha.upper()) == f"{sha} 4\n"


def test_every_option_has_help() -> None:
    from axonfs.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.option_strings and action.help is None:
                missing.append(f"{path} {action.option_strings[0]}")

    walk(build_parser(), "axonfs")
    assert missing == []


def test_the_readme_python_example_runs_as_written(daemon: ServeDaemon, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    intro = "Code written against a Synapse Axon runs with only its connect line changed:"
    lines = []
    for line in readme.split(intro, 1)[1].splitlines()[1:]:  # the indented block after it
        if line and not line.startswith("    "):
            break
        lines.append(line)
    code = textwrap.dedent("\n".join(lines))
    assert 'mount="/mnt/axon"' in code and "asyncio.run(" in code
    script = tmp_path / "example.py"
    script.write_text(code.replace('mount="/mnt/axon"', f"socket={str(daemon.socket)!r}"))
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=daemon.env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "b'hello'\n"


def test_get_size_takes_units(daemon: ServeDaemon) -> None:
    data = bytes(range(256)) * 16
    sha = ctl(daemon, "put", "-", stdin=data).stdout.split()[1].decode()
    assert ctl(daemon, "get", sha, "--size", "1K").stdout == data[:1024]
    assert ctl(daemon, "get", sha, "--offs", "4000", "--size", "1k").stdout == data[4000:]
    refused = ctl(daemon, "get", sha, "--size", "lots")
    assert refused.returncode == 2
    assert b"not a byte count: 'lots'" in refused.stderr
