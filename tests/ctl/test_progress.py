"""Progress bars on a terminal, nothing elsewhere: ``ctl put``/``get -o``/``wget``, ``fsck``,
``recover``.

The commands run under a pseudo-terminal (both stdout and stderr on it, as in
a shell); what the user finally sees is rebuilt from the bytes written
(carriage returns overwrite, ANSI sequences dropped), so a result line
written into a bar shows up as a garbled line.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from helpers.cli import AXONFS, run_axonfs
from helpers.daemon import ServeDaemon

from ctl.servers import LocalHTTPServer

MiB = 1 << 20


def on_tty(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str]:
    """Run ``axonfs ARGS`` with stdout and stderr on a new pty; its status and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        [*AXONFS, *map(str, args)], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([master], [], [], left)[0]:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every descriptor of the slave side is closed
                break
            if not data:
                break
            chunks.append(data)
        status = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return status, b"".join(chunks).decode(errors="replace")


def screen(raw: str) -> list[str]:
    """The non-empty lines a terminal shows after *raw* (``\\r`` overwrites in place)."""
    raw = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    lines: list[str] = []
    line: list[str] = []
    column = 0
    for char in raw:
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append("".join(line))
            line, column = [], 0
        else:
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    lines.append("".join(line))
    return [text.rstrip() for text in lines if text.strip()]


def test_put_of_several_files_shows_a_bar_and_clean_result_lines(
    daemon: ServeDaemon, tmp_path: Path
) -> None:
    files = [tmp_path / f"f{i}" for i in range(3)]
    for number, path in enumerate(files):
        path.write_bytes(os.urandom(MiB + number))
    status, raw = on_tty("ctl", "put", *files, env=daemon.env())
    assert status == 0, raw
    assert "put:" in raw  # a bar was drawn
    expected = [
        f"{MiB + n} {hashlib.sha256(p.read_bytes()).hexdigest()} {p}" for n, p in enumerate(files)
    ]
    assert screen(raw) == expected  # each result on a line of its own, the bar gone


def test_get_to_a_file_shows_a_bar(daemon: ServeDaemon, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    (tmp_path / "blob").write_bytes(data)
    sha = run_axonfs("ctl", "put", tmp_path / "blob", env=daemon.env()).stdout.split()[1]
    status, raw = on_tty("ctl", "get", sha, "-o", tmp_path / "copy", env=daemon.env())
    assert status == 0, raw
    assert "get:" in raw and "3.00M" in raw  # the total is known from the start
    assert screen(raw) == []
    assert (tmp_path / "copy").read_bytes() == data


def test_wget_shows_a_bar_with_the_announced_size(daemon: ServeDaemon) -> None:
    server = LocalHTTPServer().start()
    try:
        url = f"{server.base}/big?mib=64"
        status, raw = on_tty("ctl", "wget", url, env=daemon.env())
        plain = run_axonfs("ctl", "wget", url, env=daemon.env())
    finally:
        server.stop()
    assert status == 0, raw
    assert "wget:" in raw and "64.0M" in raw  # the daemon told the size as the body came
    sha = hashlib.sha256((bytes(range(256)) * 4096) * 64).hexdigest()
    assert screen(raw) == [f"200 OK {64 * MiB} {sha} {url}"]
    assert plain.returncode == 0 and plain.stderr == ""
    assert plain.stdout.strip() == f"200 OK {64 * MiB} {sha} {url}"


def test_nothing_but_results_without_a_terminal(daemon: ServeDaemon, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(os.urandom(MiB))
    (tmp_path / "b").write_bytes(os.urandom(MiB))
    put = run_axonfs("ctl", "put", tmp_path / "a", tmp_path / "b", env=daemon.env())
    assert put.returncode == 0 and put.stderr == ""
    assert len(put.stdout.splitlines()) == 2
    get = run_axonfs("ctl", "get", put.stdout.split()[1], "-o", tmp_path / "c", env=daemon.env())
    assert get.returncode == 0 and (get.stdout, get.stderr) == ("", "")


@pytest.fixture(scope="module")
def offline_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a few blobs and no daemon."""
    root = tmp_path_factory.mktemp("offline")
    store = root / "store"
    for i in range(4):
        (root / f"f{i}").write_bytes(os.urandom(MiB))
    assert run_axonfs("serve", "--store", store).returncode == 0
    try:
        put = run_axonfs("ctl", "--store", store, "put", *(root / f"f{i}" for i in range(4)))
        assert put.returncode == 0, put.stderr
    finally:
        assert run_axonfs("stop", "--store", store).returncode == 0
    return store


def test_fsck_shows_progress_on_a_terminal_only(offline_store: Path) -> None:
    status, raw = on_tty("fsck", "--store", offline_store)
    assert status == 0, raw
    assert "checking blobs" in raw
    assert screen(raw)[-1] == "no problems found"
    plain = run_axonfs("fsck", "--store", offline_store)
    assert plain.returncode == 0 and plain.stderr == ""


def test_offline_recover_shows_progress_on_a_terminal_only(
    offline_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(offline_store, store)
    shutil.rmtree(store / "index.lmdb")
    status, raw = on_tty("recover", "--store", store)
    assert status == 0, raw
    assert "recovering" in raw
    assert screen(raw)[-1].startswith("listed 4, added 4,")
    shutil.rmtree(store / "index.lmdb")
    plain = run_axonfs("recover", "--store", store)
    assert plain.returncode == 0 and plain.stderr == ""
    assert plain.stdout.startswith("listed 4, added 4,")
