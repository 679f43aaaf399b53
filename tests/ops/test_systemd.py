"""The systemd units: ``systemd-analyze verify`` and the FUSE-safe hardening rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_UNIT = ROOT / "systemd" / "axonfs@.service"
USER_UNIT = ROOT / "systemd" / "user" / "axonfs.service"
AXONFS = Path(sys.executable).with_name("axonfs")

MOUNT_NAMESPACE_DIRECTIVES = (
    "PrivateTmp",
    "ProtectSystem",
    "ProtectHome",
    "PrivateMounts",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectProc",
    "ProcSubset",
    "ProtectHostname",
    "ReadOnlyPaths",
    "ReadWritePaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "BindPaths",
    "BindReadOnlyPaths",
    "TemporaryFileSystem",
    "RootDirectory",
    "RootImage",
    "DynamicUser",
    "MountAPIVFS",
    "PrivateUsers",
)
"""Directives that give a service its own mount namespace: the mount would be invisible."""

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def directives(unit: Path) -> list[tuple[str, str]]:
    found = []
    for line in unit.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.append((key.strip(), value.strip()))
    return found


def installed_copy(unit: Path, directory: Path, exec_path: str) -> Path:
    """*unit* in *directory* with ExecStart= pointing at this venv's axonfs."""
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / unit.name
    copy.write_text(unit.read_text().replace(exec_path, str(AXONFS)))
    assert str(AXONFS) in copy.read_text()
    return copy


def verify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@needs_analyze
def test_system_unit_verifies(tmp_path: Path) -> None:
    installed_copy(SYSTEM_UNIT, tmp_path, "/usr/local/bin/axonfs")
    result = verify("verify", str(tmp_path / "axonfs@samples.service"))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_analyze
def test_user_unit_verifies(tmp_path: Path) -> None:
    copy = installed_copy(USER_UNIT, tmp_path / "units", "%h/.local/bin/axonfs")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    result = verify("--user", "verify", str(copy), env=env)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_analyze
def test_verify_notices_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a missing executable is reported."""
    broken = tmp_path / "axonfs@.service"
    broken.write_text(SYSTEM_UNIT.read_text())  # ExecStart=/usr/local/bin/axonfs: absent here
    if Path("/usr/local/bin/axonfs").exists():
        pytest.skip("axonfs is installed in /usr/local/bin")
    result = verify("verify", str(tmp_path / "axonfs@x.service"))
    assert result.returncode != 0 or result.stderr.strip()


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_no_private_mount_namespace(unit: Path) -> None:
    settings = dict(directives(unit))
    forbidden = [key for key in settings if key in MOUNT_NAMESPACE_DIRECTIVES]
    assert not forbidden, f"these would hide the mount from the host: {forbidden}"
    assert settings.get("PrivateDevices", "no") == "no"
    assert settings["Type"] == "notify"
    assert settings["Restart"] == "on-failure"
    assert "--foreground" in settings["ExecStart"] and "--config" in settings["ExecStart"]


def test_system_unit_specifics() -> None:
    settings = directives(SYSTEM_UNIT)
    keys = [key for key, _ in settings]
    values = dict(settings)
    assert "/etc/axonfs/%i.toml" in values["ExecStart"]
    for key in ("StateDirectory", "CacheDirectory"):
        assert values[key] == "axonfs/%i"
    assert values["PrivateDevices"] == "no"
    assert values["DeviceAllow"] == "/dev/fuse rw"
    assert "ExecStop" not in keys  # SIGTERM unmounts cleanly; see test_notify.py


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_every_directive_is_commented(unit: Path) -> None:
    previous = ""
    uncommented = []
    for line in unit.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "[")) and not previous.startswith("#"):
            uncommented.append(line)
        previous = line if line.strip() else ""
    assert not uncommented, f"directives without a comment above: {uncommented}"
