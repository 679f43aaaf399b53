"""Fixtures for the control-socket tests.

* ``served``: an Axon plus :func:`serve_control` in this test's trio run
  (in-process, for tests that look at the server's state).
* ``daemon``: a real ``axonfs serve --foreground`` process per test module,
  for the CLI and the asyncio/trio client tests.
* ``http_server`` / ``https_server``: test servers on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from axonfs.axon import Axon
from axonfs.config import control_socket
from axonfs.ctlserver import ControlServer, serve_control

from .servers import Certificates, LocalHTTPServer, make_certificates, start_https

DAEMON_START_TIMEOUT = 20.0


@dataclass
class Served:
    axon: Axon
    server: ControlServer
    socket: Path


@pytest.fixture
async def served(store_dir: Path, nursery: trio.Nursery) -> AsyncIterator[Served]:
    async with Axon.open(store_dir) as axon:
        path = control_socket(store_dir)
        server = await nursery.start(serve_control, axon, path)
        yield Served(axon, server, path)
        nursery.cancel_scope.cancel()


@dataclass
class Daemon:
    store: Path
    socket: Path
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """Environment for an ``axonfs ctl`` subprocess that finds this daemon by default."""
        env = dict(os.environ)
        env.pop("AXONFS_SOCKET", None)
        env["AXONFS_STORE"] = str(self.store)
        return env


def wait_for_file(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path}")
        time.sleep(0.02)


def wait_for_socket(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited with {process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(path))
                if probe.recv(4):
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"no daemon on {path}")


def start_daemon(store: Path, *extra: str) -> Daemon:
    log = open(store.parent / f"{store.name}.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "axonfs", "serve", "--store", str(store), "--foreground",
         *extra], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    path = control_socket(store)
    try:
        wait_for_socket(path, process)
        # The Telepath listener comes up after the control socket and sets the
        # run directory's mode: tests that change that mode must wait for it.
        wait_for_file(path.parent / "telepath.sock", process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Daemon(store, path, process)


def stop_daemon(daemon: Daemon) -> None:
    daemon.process.terminate()
    try:
        daemon.process.wait(10)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        daemon.process.wait()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(tmp_path_factory.mktemp("daemon") / "store")
    yield running
    stop_daemon(running)


@pytest.fixture(scope="session")
def http_server() -> Iterator[LocalHTTPServer]:
    server = LocalHTTPServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def https_server(certificates: Certificates) -> Iterator[LocalHTTPServer]:
    server = start_https(certificates)
    yield server
    server.stop()
