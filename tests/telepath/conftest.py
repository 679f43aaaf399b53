"""Fixtures for the Telepath tests: a real daemon, and Synapse's own client.

Synapse is never imported here: it lives in a virtualenv of its own
(``make venv`` builds ``.venv-synapse``; ``$AXONFS_SYNAPSE_PYTHON`` may name
another interpreter), and the tests run its client, tools and cells as
subprocesses of that interpreter. The scripts they run are in ``clients/``;
each prints one JSON document on stdout.

* ``synapse_python``: the interpreter (tests skip, saying why, without it);
* ``tele``: one ``axonfs serve`` per module with a tcp listener on a free
  loopback port and a user ``alice``, plus its URLs.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import run_axonfs_bytes
from helpers.daemon import ServeDaemon

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).resolve().parent / "clients"
PASSWORD = "s3cret pass"
SYNAPSE_TIMEOUT = 60.0


def find_synapse_python() -> Path | None:
    named = os.environ.get("AXONFS_SYNAPSE_PYTHON")
    candidate = Path(named) if named else ROOT / ".venv-synapse" / "bin" / "python"
    return candidate if candidate.exists() else None


@pytest.fixture(scope="session")
def synapse_python() -> Path:
    found = find_synapse_python()
    if found is None:
        pytest.skip(
            "Synapse 2.256.0 is not installed: run 'make venv-synapse' (or set "
            "AXONFS_SYNAPSE_PYTHON to a python with synapse)"
        )
    return found


@dataclass
class Tele:
    daemon: ServeDaemon
    unix: str
    tcp: str
    """tcp://HOST:PORT/ without credentials."""

    def tcp_as(self, user: str = "alice", password: str = PASSWORD) -> str:
        return self.tcp.replace("tcp://", f"tcp://{user}:{password}@", 1)

    @property
    def log(self) -> Path:
        return self.daemon.log


def ping(store: Path) -> dict[str, Any]:
    done = run_axonfs_bytes("ctl", "--store", str(store), "ping", "--json", check=True)
    reply: dict[str, Any] = json.loads(done.stdout)
    return reply


def start_tele(store: Path, *extra: str) -> Tele:
    store.mkdir(parents=True)
    run_axonfs_bytes(
        "passwd", "--store", str(store), "alice", stdin=f"{PASSWORD}\n".encode(), check=True
    )
    daemon = ServeDaemon.start(
        store, "--telepath-listen", "tcp://127.0.0.1:0", *extra, wait_telepath=True
    )
    try:
        urls = ping(store)["telepath"]
        unix = next(url for url in urls if url.startswith("unix://"))
        tcp = next(url for url in urls if url.startswith("tcp://"))
    except BaseException:
        daemon.stop()
        raise
    return Tele(daemon, unix, tcp)


@pytest.fixture(scope="module")
def tele(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tele]:
    running = start_tele(tmp_path_factory.mktemp("tele") / "store")
    yield running
    running.daemon.stop()
    log = running.log.read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]


def run_client(
    python: Path, script: str, *args: str, timeout: float = SYNAPSE_TIMEOUT, cwd: Path | None = None
) -> Any:
    """Run ``clients/<script>`` with Synapse's python; return the JSON it prints."""
    done = subprocess.run(
        [str(python), str(CLIENTS / script), *args], capture_output=True, timeout=timeout, cwd=cwd
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{script} failed ({done.returncode}):\n{done.stderr.decode(errors='replace')[-4000:]}"
        )
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def run_module(
    python: Path, module: str, *args: str, cwd: Path | None = None, timeout: float = SYNAPSE_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m MODULE ARGS`` with Synapse's python (its tools)."""
    return subprocess.run(
        [str(python), "-m", module, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
