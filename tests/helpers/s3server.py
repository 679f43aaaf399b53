"""Real S3-protocol servers on loopback for the tests: moto and Ceph's RGW.

:class:`MotoServer` runs ``python -m moto.server`` as a child process on a
free 127.0.0.1 port (a separate process, so its memory does not count as the
tests' and it can be killed). :class:`RgwServer` is one endpoint (HTTP or
HTTPS) of a one-node Ceph cluster (:mod:`helpers.rgw`): a server people run,
with its own differences from AWS. :class:`TcpProxy` sits between a backend
and the server and can be stopped and started again on the same port, or cut
after a number of uploaded bytes: an S3 outage in the middle of an upload,
while the server keeps its state so a test can inspect it afterwards.

Fixtures (import them into a conftest to use them):

* ``moto`` (session): the running :class:`MotoServer`; credentials for boto3's
  chain are set in the environment for the session.
* ``moto_server`` (session): its endpoint URL.
* ``rgw_cluster`` (session): the running :class:`~helpers.rgw.RgwCluster`,
  started on first use; skips with the reason when the packages are missing.
* ``s3_server``: the server a test runs against, one of :data:`SERVERS`.
  :func:`pytest_generate_tests` runs every test that asks for it once per
  server: all of them unless the test is marked ``s3_servers("moto", ...)``,
  and only those named in ``$AXONFS_S3_SERVERS`` (comma-separated) when set.
  For the test's duration boto3's chain (in this process and in the daemons
  it starts) finds that server's credentials and, over HTTPS, its CA.

:func:`s3_backend_factory` is the ``"s3"`` entry of the storage core's
backend conformance matrix (``tests/store/conftest.py``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from helpers.daemon import stop_process
from helpers.rgw import RgwCluster, unavailable_reason

from axonfs.backends.base import BlobBackend
from axonfs.backends.retry import RetryPolicy
from axonfs.backends.s3 import S3Backend, S3Config

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.02, max_delay=0.1)
"""Tests give up on a dead server in well under a second."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


SERVERS = ("moto", "rgw", "rgw-tls")
"""Every server a test may run against (the ids of the ``s3_server`` parameter)."""
CLIENT_CONFIG = {
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
    "s3": {"addressing_style": "path"},
    "retries": {"total_max_attempts": 1},
}
"""Test clients ask for checksums only where S3 requires them, like the backend:
boto3's default streams a trailing checksum over HTTPS, which RGW 16.2 refuses."""


class MotoServer:
    """``moto.server`` in a child process on 127.0.0.1."""

    name = "moto"
    scheme = "http"
    env: dict[str, str] = TEST_ENV

    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path or os.devnull, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=log,
                env={**os.environ, **TEST_ENV},
            )
        wait_for_port(self.port)
        # The port opens before moto has imported everything; wait for an answer.
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=5).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is not None:
            stop_process(self.process, 10)
            self.process = None

    def client(self) -> Any:
        """A plain boto3 client, for tests to look at buckets directly.

        Built once (building one takes a few hundred ms) and shared; don't close it.
        """
        if self._client is None:
            self._client = boto3.session.Session(region_name="us-east-1").client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=botocore.config.Config(**CLIENT_CONFIG),
            )
        return self._client


class RgwServer:
    """One endpoint of a running Ceph cluster: its HTTP one, or HTTPS with *tls*."""

    def __init__(self, cluster: RgwCluster, tls: bool) -> None:
        self.cluster = cluster
        self.tls = tls
        self.name = "rgw-tls" if tls else "rgw"
        self.scheme = "https" if tls else "http"
        port = cluster.tls_port if tls else cluster.port
        if port is None:
            raise ValueError("this cluster serves no HTTPS endpoint")
        self.port = port
        self.env = {
            "AWS_ACCESS_KEY_ID": cluster.access_key,
            "AWS_SECRET_ACCESS_KEY": cluster.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if tls:
            self.env["AWS_CA_BUNDLE"] = str(cluster.ca_bundle)
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return self.cluster.tls_endpoint if self.tls else self.cluster.endpoint

    def client(self) -> Any:
        """A plain boto3 client on this endpoint, built once; don't close it."""
        if self._client is None:
            self._client = boto3.session.Session(region_name="us-east-1").client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=self.cluster.access_key,
                aws_secret_access_key=self.cluster.secret_key,
                verify=str(self.cluster.ca_bundle) if self.tls else None,
                config=botocore.config.Config(**CLIENT_CONFIG),
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


S3Server = MotoServer | RgwServer


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port; can fail on demand.

    :meth:`stop` closes the listener and every connection (clients then get
    "connection refused"); :meth:`start` listens on the same port again.
    :meth:`cut_after` stops the proxy once that many more bytes have gone
    from clients to the server.
    """

    def __init__(self, target_port: int, scheme: str = "http") -> None:
        self.target_port = target_port
        self.scheme = scheme
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._budget: int | None = None
        self.cut = threading.Event()

    @property
    def endpoint(self) -> str:
        """The server's URL through the proxy (TLS passes through untouched)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
            self._budget = None
            self.cut.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def cut_after(self, nbytes: int) -> None:
        with self._lock:
            self._budget = nbytes

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._connections |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
                if upstream and self._spend(len(data)):
                    self.cut.set()
                    self.stop()
                    return
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _spend(self, nbytes: int) -> bool:
        with self._lock:
            if self._budget is None:
                return False
            self._budget -= nbytes
            return self._budget <= 0


def test_config(endpoint: str, bucket: str, **overrides: Any) -> S3Config:
    """An S3Config for tests: fast retries and short timeouts."""
    settings: dict[str, Any] = {"retry": FAST_RETRY, "connect_timeout": 2.0, "read_timeout": 20.0}
    settings.update(overrides)
    return S3Config(bucket=bucket, endpoint_url=endpoint, **settings)


test_config.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name


def new_bucket_name() -> str:
    return f"axonfs-test-{uuid.uuid4().hex[:20]}"


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto S3 server for the whole session; boto3's chain finds test credentials."""
    saved = {name: os.environ.get(name) for name in TEST_ENV}
    os.environ.update(TEST_ENV)
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def moto_server(moto: MotoServer) -> str:
    """The endpoint URL of the session's moto server."""
    return moto.endpoint


@pytest.fixture(scope="session")
def rgw_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RgwCluster]:
    """A Ceph cluster serving S3 over HTTP and HTTPS, for the whole session."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = RgwCluster(tmp_path_factory.mktemp("rgw", numbered=True) / "c")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def _rgw_servers(rgw_cluster: RgwCluster) -> Iterator[dict[str, RgwServer]]:
    servers = {"rgw": RgwServer(rgw_cluster, tls=False), "rgw-tls": RgwServer(rgw_cluster, True)}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture
def s3_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The server named by this test's parameter, its credentials in the environment."""
    name: str = request.param
    server: S3Server
    if name == "moto":
        server = request.getfixturevalue("moto")
    else:
        server = request.getfixturevalue("_rgw_servers")[name]
    # moto's session token would make RGW look for an STS session that does not exist.
    for variable in ("AWS_SESSION_TOKEN", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in server.env.items():
        monkeypatch.setenv(variable, value)
    return server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``s3_server`` once per server it is marked for."""
    if "s3_server" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("s3_servers")
    names = list(marker.args) if marker else list(SERVERS)
    if only := os.environ.get("AXONFS_S3_SERVERS"):
        names = [name for name in names if name in only.split(",")]
    unknown = set(names) - set(SERVERS)
    if unknown:
        raise ValueError(f"unknown S3 servers {sorted(unknown)}; known: {SERVERS}")
    metafunc.parametrize("s3_server", names, indirect=True, ids=names)


def s3_backend_factory(
    request: pytest.FixtureRequest, store_dir: Path
) -> Callable[[], BlobBackend]:
    """The conformance matrix's ``"s3"`` entry: a fresh bucket per test.

    The read cache is kept small (4 MiB) so tests exercise eviction too.
    """
    endpoint = request.getfixturevalue("moto_server")
    config = test_config(endpoint, new_bucket_name(), part_size=5 << 20, cache_size=4 << 20)
    # Created up front so that the first put of a timing-sensitive test is not slower.
    request.getfixturevalue("moto").client().create_bucket(Bucket=config.bucket)
    return lambda: S3Backend(config, cache_dir=store_dir / "cache")
