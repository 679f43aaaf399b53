"""Fixtures for the control-socket tests.

* ``in_process``: an Axon plus :func:`serve_control` in this test's trio run
  (:class:`~helpers.daemon.InProcessDaemon`, for tests that look at the
  server's state).
* ``daemon``: a real ``axonfs serve --foreground`` process per test module
  (:class:`~helpers.daemon.ServeDaemon`), for the CLI and the asyncio/trio
  client tests.
* ``http_server`` / ``https_server``: test servers on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
from helpers.daemon import InProcessDaemon, ServeDaemon, in_process_daemon

from .servers import Certificates, LocalHTTPServer, make_certificates, start_https


@pytest.fixture
async def in_process(store_dir: Path, nursery: trio.Nursery) -> AsyncIterator[InProcessDaemon]:
    async with in_process_daemon(store_dir, nursery) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeDaemon]:
    running = ServeDaemon.start(tmp_path_factory.mktemp("daemon") / "store", wait_telepath=True)
    yield running
    running.stop()


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
