"""/history/YYYY-MM-DD/ symlinks and the growing /history.log."""

from __future__ import annotations

import datetime
import os
import select
import subprocess
import time

from helpers.daemon import MakeMount, MountDaemon
from helpers.hashes import sha_hex

from mount.storeapi import put_blobs


def today() -> str:
    return datetime.datetime.now(datetime.UTC).date().isoformat()


def test_history_days_hold_symlinks_in_added_order(make_mount: MakeMount) -> None:
    mounted = make_mount("--allow-delete", mount=False)
    blobs = [b"first", b"second", b"third"]
    shas = put_blobs(mounted, blobs[:2]) + put_blobs(mounted, blobs[2:])
    mounted.start()
    assert os.listdir(mounted.path("history")) == [today()]
    day = mounted.path("history", today())
    names = os.listdir(day)  # readdir order = added order
    assert [name[11:] for name in names] == [sha.hex() for sha in shas]
    for name, blob in zip(names, blobs, strict=True):
        link = day / name
        assert os.readlink(link) == f"../../by-sha256/{name[11:]}"
        assert link.read_bytes() == blob
        assert len(name) == 75 and name[6] == "." and name[10] == "-"
    assert sorted(names) == names or names[0][:10] <= names[-1][:10]
    assert (
        subprocess.run(
            ["find", "-L", str(mounted.path("history")), "-type", "f"],
            capture_output=True,
            text=True,
        ).stdout.count("\n")
        == 3
    )
    os.unlink(mounted.path("by-sha256", shas[1].hex()))
    assert [name[11:] for name in os.listdir(day)] == [shas[0].hex(), shas[2].hex()]
    assert not (day / names[1]).exists()
    assert not mounted.path("history", "2001-01-01").exists()
    assert not mounted.path("history", "notaday").exists()


def test_history_log_lines(make_mount: MakeMount) -> None:
    mounted = make_mount(mount=False)
    blobs = [b"\xff"] + [os.urandom(n) for n in (10, 100, 1000)]  # none equals a digit below
    blobs += [b"%d" % i for i in range(600)]  # past the first offset marks
    shas = put_blobs(mounted, blobs)
    mounted.start()
    text = mounted.path("history.log").read_text()
    lines = text.splitlines()
    assert len(lines) == len(blobs)
    for indx, (line, sha, blob) in enumerate(zip(lines, shas, blobs, strict=True)):
        fields = line.split("\t")
        assert fields[0] == str(indx) and fields[2] == sha.hex() and fields[3] == str(len(blob))
        assert datetime.datetime.fromisoformat(fields[1].replace("Z", "+00:00"))
    assert os.stat(mounted.path("history.log")).st_size == len(text.encode())
    awk = subprocess.run(
        ["awk", "-F", "\t", "{s += $4} END {print s}", str(mounted.path("history.log"))],
        capture_output=True,
        text=True,
    )
    assert int(awk.stdout) == sum(map(len, blobs))
    with open(mounted.path("history.log"), "rb") as file:  # reads at odd offsets
        file.seek(12345)
        assert file.read(777) == text.encode()[12345 : 12345 + 777]


def test_tail_f_follows_ingest(mounted: MountDaemon) -> None:
    mounted.path("incoming", "before").write_bytes(b"before")
    tail = subprocess.Popen(
        ["tail", "-n", "+1", "-f", str(mounted.path("history.log"))], stdout=subprocess.PIPE
    )
    try:
        assert tail.stdout is not None
        seen = b""
        deadline = time.monotonic() + 15
        written = 0
        while b"after2" not in seen and time.monotonic() < deadline:
            if written < 3:
                mounted.path("incoming", f"after{written}").write_bytes(b"after%d" % written)
                written += 1
            if select.select([tail.stdout], [], [], 0.5)[0]:
                seen += os.read(tail.stdout.fileno(), 65536)
            if all(hashed(b"after%d" % i) in seen for i in range(3)):
                break
        for content in (b"before", b"after0", b"after1", b"after2"):
            assert hashed(content) in seen
        assert seen.count(b"\n") == 4
    finally:
        tail.kill()
        tail.wait()
        if tail.stdout is not None:
            tail.stdout.close()


def hashed(content: bytes) -> bytes:
    return sha_hex(content).encode()
