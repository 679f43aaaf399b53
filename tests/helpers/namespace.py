"""Run a shell script in a private mount namespace with directories laid over the machine's.

mount(8) runs its helpers from /sbin only, and an installed tree lives in /opt,
/usr/local, /etc/systemd: to use them as installed without touching this
machine, the tests lay read-only overlays (a staged directory over the real
one) in a namespace of their own. Nothing there propagates to the host, and
every mount made in it goes with it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


@functools.cache
def overlays_available() -> bool:
    """Whether this process may make a mount namespace and an overlay in it (root, a
    kernel with overlayfs, no container forbidding it)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as upper, tempfile.TemporaryDirectory() as lower:
        probe = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={upper}:{lower}",
                lower,
            ],
            capture_output=True,
            timeout=30,
        )
    return probe.returncode == 0


def run_overlaid(
    overlays: dict[str, Path],
    script: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run *script* (sh) where each ``target: staged`` directory of *overlays* lies over
    *target*; exit status 99 if an overlay could not be made."""
    mounts = "\n".join(
        f"mount -t overlay overlay -o lowerdir={staged}:{target} {target} || exit 99"
        for target, staged in overlays.items()
    )
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"set -u\n{mounts}\n{script}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
