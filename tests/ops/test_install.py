"""``make install``, staged with DESTDIR, then used as installed.

The staged tree is overlaid on /opt, /usr/local, /etc/systemd and /usr/sbin in a
private mount namespace (read-only overlays: nothing of this machine changes,
and everything mounted there goes with the namespace). There the installed
``axonfs`` runs from /usr/local/bin, both units pass ``systemd-analyze verify``
by name exactly as installed, ``man axonfs`` and bash completion work, and
``mount -t fuse.axonfs`` runs the installed helper.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.fuse import cleanup, fuse_available, pid_alive
from helpers.namespace import overlays_available, run_overlaid

ROOT = Path(__file__).resolve().parents[2]
OVERLAID = {
    "/opt": "opt",
    "/usr/local": "usr/local",
    "/etc/systemd": "etc/systemd",
    "/usr/sbin": "sbin",
}
"""Where each part of the staged tree is laid over the machine's (/sbin is /usr/sbin)."""
TEST_ONLY = {"pytest", "hypothesis", "moto", "flask", "pytest-trio", "cryptography"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not overlays_available(), reason="needs root, unshare(1) and overlayfs for the namespace"
    ),
]


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``make install DESTDIR=...``, once for the module."""
    stage = tmp_path_factory.mktemp("stage")
    result = subprocess.run(
        ["make", "-C", str(ROOT), "install", f"DESTDIR={stage}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield stage


def as_installed(stage: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run *script* (sh) where *stage* is overlaid on the machine, in a private namespace."""
    # Short: the user manager's socket units (gpg-agent's...) must fit in sun_path.
    with tempfile.TemporaryDirectory(prefix="axrt") as runtime:
        env = dict(
            os.environ,
            XDG_RUNTIME_DIR=runtime,
            MANPATH="/usr/local/share/man",
            PATH="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        )
        return run_overlaid(
            {target: stage / part for target, part in OVERLAID.items()}, f"cd /\n{script}", env=env
        )


def test_only_runtime_dependencies(stage: Path) -> None:
    listing = subprocess.run(
        [stage / "opt/axonfs/bin/python", "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {entry["name"].lower() for entry in json.loads(listing.stdout)}
    assert {"axonfs", "pyfuse3", "trio", "lmdb", "shtab"} <= installed
    assert not installed & TEST_ONLY


def test_paths_name_the_final_prefix(stage: Path) -> None:
    assert os.readlink(stage / "usr/local/bin/axonfs") == "/opt/axonfs/bin/axonfs"
    assert os.readlink(stage / "sbin/mount.fuse.axonfs") == "/opt/axonfs/bin/mount.fuse.axonfs"
    assert (stage / "opt/axonfs/bin/axonfs").read_text().startswith("#!/opt/axonfs/bin/python")
    staged = subprocess.run(
        ["grep", "-rlI", "-F", str(stage), stage], capture_output=True, text=True
    )
    assert staged.stdout == "", "files naming the staging directory"
    system = (stage / "etc/systemd/system/axonfs@.service").read_text()
    user = (stage / "etc/systemd/user/axonfs.service").read_text()
    assert "\nExecStart=/usr/local/bin/axonfs mount --foreground" in system
    assert "\nExecStart=/usr/local/bin/axonfs mount --foreground" in user


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_verify_as_installed(stage: Path) -> None:
    result = as_installed(
        stage,
        """
axonfs --version || exit 1
systemd-analyze verify axonfs@samples.service || exit 2
systemd-analyze --user verify axonfs.service || exit 3
""",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "axonfs 0.1.0"
    assert result.stderr.strip() == ""


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_page_and_completion(stage: Path) -> None:
    result = as_installed(
        stage,
        """
man -w axonfs || exit 1
MANWIDTH=80 man --warnings axonfs 2>&1 >/dev/null | head -5 >&2
page=$(MANWIDTH=300 man axonfs 2>/dev/null)
echo "$page" | grep -Eq '^ +axonfs +mount +[[]-h]' && echo "$page" | grep -Eq '^ +-o OPTIONS$' \
    && echo "$page" | grep -Eq '^ +axonfs +ctl +get +[[]-h]' \
    && echo "$page" | grep -q '^ *--max-bytes BYTES' && echo sections
bash -c '. /usr/local/share/bash-completion/completions/axonfs
COMP_WORDS=(axonfs ctl g); COMP_CWORD=2; _shtab_axonfs axonfs g ctl; echo "${COMPREPLY[*]}"
COMP_WORDS=(axonfs mount --max-); COMP_CWORD=2; _shtab_axonfs axonfs --max- mount
echo "${COMPREPLY[*]}"'
head -1 /usr/local/share/zsh/site-functions/_axonfs
""",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # man's warnings about the roff
    page, sections, ctl, mount, zsh = result.stdout.splitlines()
    assert page == "/usr/local/share/man/man1/axonfs.1"
    assert sections == "sections"
    assert ctl == "get"
    assert mount.split() == ["--max-bytes", "--max-count"]
    assert zsh == "#compdef axonfs"


@pytest.mark.skipif(not fuse_available(), reason="needs /dev/fuse")
def test_mount_t_fuse_axonfs_runs_the_installed_helper(stage: Path, tmp_path: Path) -> None:
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    try:
        result = as_installed(
            stage,
            f"""
trap 'fusermount3 -u -z {mnt} 2>/dev/null' EXIT
mount -t fuse.axonfs {store} {mnt} -o allow_other,max-bytes=64M || exit 1
echo hello > {mnt}/incoming/hello || exit 2
df -B1 --output=size {mnt} | tail -1
tr '\\0' ' ' < /proc/$(getfattr --only-values -n user.axonfs.pid {mnt})/cmdline; echo
axonfs umount {mnt} || exit 3
""",
        )
    finally:
        lock = store / "axonfs.lock"
        pid = lock.read_text().strip() if lock.exists() else ""
        if pid.isdigit() and pid_alive(int(pid)):
            cleanup(mnt, int(pid))
    assert result.returncode == 0, result.stderr
    size, daemon = result.stdout.splitlines()
    assert int(size) == 64 << 20
    assert daemon.startswith("/opt/axonfs/bin/python3 -P -m axonfs mount ")


def user_verify(home: Path, unit: Path) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="axrt") as runtime:
        env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=runtime)
        return subprocess.run(
            ["systemd-analyze", "--user", "verify", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd="/",
        )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_install_user(tmp_path: Path) -> None:
    """Into a home directory; the user unit keeps ExecStart=%h/.local/bin/axonfs and verifies."""
    home = tmp_path / "home"
    home.mkdir()
    cache = Path(os.environ.get("PIP_CACHE_DIR", Path.home() / ".cache" / "pip"))
    result = subprocess.run(
        ["make", "-C", str(ROOT), "install-user", f"HOME={home}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PIP_CACHE_DIR=str(cache)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    command = home / ".local/bin/axonfs"
    version = subprocess.run([command, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout == "axonfs 0.1.0\n"
    unit = home / ".config/systemd/user/axonfs.service"
    assert "\nExecStart=%h/.local/bin/axonfs mount --foreground" in unit.read_text()
    assert (home / ".local/share/man/man1/axonfs.1").is_file()
    assert (home / ".local/share/bash-completion/completions/axonfs").is_file()
    verified = user_verify(home, unit)
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
    # The check can fail: in a home without the command, %h/.local/bin/axonfs is missing.
    other = tmp_path / "other"
    other.mkdir()
    missing = user_verify(other, unit)
    assert missing.returncode != 0 and "axonfs" in missing.stderr


def test_make_run_uses_a_runtime_only_venv() -> None:
    """``make run`` builds its own venv without the test extras (``make test`` keeps .venv)."""
    dry = subprocess.run(
        ["make", "-C", str(ROOT), "-n", "run", "RUN_VENV=/nonexistent/run", "MNT=/nonexistent/mnt"],
        capture_output=True,
        text=True,
        check=True,
    )
    commands = " ".join(dry.stdout.replace("\\\n", " ").split())
    assert "/nonexistent/run/bin/pip install -q -e . " in commands + " "
    assert "[test]" not in commands
    assert "/nonexistent/run/bin/axonfs mount --foreground" in commands
    test = subprocess.run(
        ["make", "-C", str(ROOT), "-n", "test", "VENV=/nonexistent/t"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "/nonexistent/t/bin/pip install -q -e '.[test]'" in test.stdout
