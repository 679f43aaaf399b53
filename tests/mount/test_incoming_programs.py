"""/incoming under real programs: what you close is what is stored.

Shells that fork and redirect, Python that spawns while a file is open,
two writers, O_TRUNC, re-copies and appends, through the kernel. Each test
counts the blobs the store holds afterwards (``/history.log`` has one line
per blob added), so a partial or empty blob nobody wrote fails it.
In-process twins of these tests: ``tests/tree/test_incoming_states.py``.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import run_axonfs
from helpers.daemon import MakeMount, MountDaemon
from helpers.hashes import sha_hex

pytestmark = pytest.mark.fuse


def sh(command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, check=check, timeout=60
    )


def added(mounted: MountDaemon) -> list[str]:
    """The sha256 of every blob added, in order (from /history.log)."""
    lines = mounted.path("history.log").read_text().splitlines()
    return [line.split()[2] for line in lines]


def python(mounted: MountDaemon, script: str, *args: str) -> None:
    subprocess.run([sys.executable, "-c", script, str(mounted.mnt), *args], check=True, timeout=60)


@pytest.fixture
def local(make_mount: MakeMount) -> MountDaemon:
    return make_mount()


@pytest.fixture(params=["local"])
def backend_options(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Which close commits does not depend on the backend: local files only."""
    return ()


# -- forks, spawns and redirections -------------------------------------------------


def test_a_subshell_that_forks_stores_one_blob(local: MountDaemon) -> None:
    sh(f"( echo start; /bin/true; echo end ) > {local.mnt}/incoming/out")
    assert added(local) == [sha_hex(b"start\nend\n")]
    assert local.path("incoming", "out").read_bytes() == b"start\nend\n"


@pytest.mark.parametrize(
    "command",
    ["echo x > {f}", "/bin/echo x > {f}", "{{ echo x; }} > {f} 2>&1", "exec 3>{f}; echo x >&3"],
)
def test_a_redirection_stores_only_the_content(local: MountDaemon, command: str) -> None:
    sh(command.format(f=local.mnt / "incoming" / "f"))
    assert added(local) == [sha_hex(b"x\n")]  # no empty blob first


def test_a_descriptor_shared_with_a_subshell_stores_the_final_content(local: MountDaemon) -> None:
    path = local.path("incoming", "f")
    sh(f"exec 3>{path}; (echo a >&3); echo b >&3; exec 3>&-")
    assert path.read_bytes() == b"a\nb\n"
    assert added(local) == [sha_hex(b"a\nb\n")]


SPAWN = """
import os, subprocess, sys
with open(os.path.join(sys.argv[1], "incoming", "spawned"), "wb") as f:
    f.write(b"before ")
    f.flush()
    subprocess.run(["/bin/true"], check=True)
    subprocess.run(["/bin/true"], check=True, close_fds=False)
    f.write(b"after")
"""

FORK = """
import os, sys
fd = os.open(os.path.join(sys.argv[1], "incoming", "forked"), os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"parent ")
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
os.write(fd, b"done")
os.close(fd)
"""


def test_python_spawning_while_a_file_is_open_stores_one_blob(local: MountDaemon) -> None:
    python(local, SPAWN)
    assert added(local) == [sha_hex(b"before after")]


def test_python_forking_while_a_file_is_open_stores_one_blob(local: MountDaemon) -> None:
    python(local, FORK)
    assert added(local) == [sha_hex(b"parent done")]


# -- two writers and O_TRUNC ------------------------------------------------------

TRUNC = """
import os, sys
path = os.path.join(sys.argv[1], "incoming", "t")
a = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
os.write(a, b"0123456789abcdef")
b = os.open(path, os.O_WRONLY | os.O_TRUNC)
os.write(b, b"XY")
os.close(b)
os.close(a)
"""


def test_o_trunc_on_a_second_open_truncates(local: MountDaemon) -> None:
    python(local, TRUNC)
    assert local.path("incoming", "t").read_bytes() == b"XY"
    assert added(local) == [sha_hex(b"XY")]


HOLDER = """
import os, sys, time
fd = os.open(sys.argv[2], os.O_WRONLY)
print("open", flush=True)
sys.stdin.readline()
os.pwrite(fd, b"never stored", 0)
print("wrote", flush=True)
time.sleep(60)
"""


def test_a_close_that_returned_keeps_its_content_when_another_writer_is_killed(
    local: MountDaemon,
) -> None:
    path = local.path("incoming", "f")
    path.write_bytes(b"")  # the name exists for the holder to open
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(local.mnt), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "open\n"
        with open(path, "wb") as writer:  # a second writer: writes and closes (0)
            writer.write(b"kept")
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "wrote\n"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()
    assert path.read_bytes() == b"kept"
    assert os.getxattr(path, "user.axonfs.sha256").decode() == sha_hex(b"kept")
    assert sha_hex(b"never stored") not in added(local)


# -- writing a committed name again -----------------------------------------------


def test_a_re_copy_and_an_append_store_new_blobs(local: MountDaemon, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"first version")
    second.write_bytes(b"second version")
    entry = local.path("incoming", "x")
    sh(f"cp {first} {entry} && cp {second} {entry}")
    assert os.getxattr(entry, "user.axonfs.sha256").decode() == sha_hex(b"second version")
    sh(f"echo a > {local.mnt}/incoming/app.txt && echo b >> {local.mnt}/incoming/app.txt")
    assert local.path("incoming", "app.txt").read_bytes() == b"a\nb\n"
    assert added(local) == [
        sha_hex(b"first version"),
        sha_hex(b"second version"),
        sha_hex(b"a\n"),
        sha_hex(b"a\nb\n"),
    ]
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "f").write_bytes(b"in a tree")
    sh(f"cp -r {source} {local.mnt}/incoming/ && cp -r {source}/. {local.mnt}/incoming/tree/")
    assert local.path("incoming", "tree", "sub", "f").read_bytes() == b"in a tree"


def test_chmod_of_a_committed_entry_takes_effect(local: MountDaemon) -> None:
    entry = local.path("incoming", "f")
    entry.write_bytes(b"mode")
    os.chmod(entry, 0o777)
    assert entry.stat().st_mode & 0o777 == 0o777
    assert local.path("by-sha256", sha_hex(b"mode")).stat().st_mode & 0o777 == 0o444


def test_o_trunc_on_a_blob_is_refused(local: MountDaemon) -> None:
    local.path("incoming", "f").write_bytes(b"blob")
    blob = local.path("by-sha256", sha_hex(b"blob"))
    with pytest.raises(OSError) as info:
        os.close(os.open(blob, os.O_RDONLY | os.O_TRUNC))
    assert info.value.errno == errno.EROFS
    assert blob.read_bytes() == b"blob"


# -- names the kernel caches ------------------------------------------------------


def test_a_deleted_then_re_added_blob_is_readable_without_a_listing(local: MountDaemon) -> None:
    data = b"deleted, then back"
    name = sha_hex(data)
    local.path("incoming", "a").write_bytes(data)
    blob = local.path("by-sha256", name)
    assert blob.stat().st_size == len(data)  # the kernel now caches the name
    run_axonfs("ctl", "-m", local.mnt, "del", name, check=True)
    with pytest.raises(FileNotFoundError):
        blob.stat()
    assert not local.path("incoming", "a").exists()  # the entry showing it went too
    local.path("incoming", "b").write_bytes(data)
    assert blob.read_bytes() == data


def test_du_counts_committed_entries_once(local: MountDaemon, tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.write_bytes(os.urandom(4 << 20))
    sh(f"cp {source} {local.mnt}/incoming/")
    total = int(sh(f"du -s --block-size=1 {local.mnt}").stdout.split()[0])
    assert (4 << 20) <= total < (5 << 20)
    entry, blob = (
        local.path("incoming", "big"),
        local.path("by-sha256", sha_hex(source.read_bytes())),
    )
    assert entry.stat().st_ino == blob.stat().st_ino
