"""A real S3 server for the tests: a one-node Ceph cluster with the RADOS Gateway.

:class:`RgwCluster` starts a monitor, one OSD whose objects live in its RAM
(memstore) and ``radosgw`` from Debian's Ceph packages, all on 127.0.0.1 and
all under one directory, as children of the test process (each daemon runs in
the foreground, so the cluster is stopped by the handles of the processes it
started and nothing else). It serves S3 over HTTP and, with ``tls=True``, over
HTTPS too with a self-signed certificate for 127.0.0.1. From nothing to S3
answering takes about 3 to 5 seconds on two cores.

The packages are installed by ``make deps-rgw`` (``make test`` runs it);
:func:`missing_packages` says what is still absent so the fixtures can skip
with that reason instead of failing.

Run by hand::

    python tests/helpers/rgw.py DIR    # starts a cluster, prints the endpoints, Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common", "openssl")
"""Debian packages the cluster needs (the Makefile's ``RGW_DEBS`` names the same)."""
STEP_TIMEOUT = 60.0
"""Seconds each start-up step may take before the start fails."""
STORE_BYTES = 2 << 30
"""Capacity of the OSD's in-memory store; writes past it are refused."""


def missing_packages() -> list[str]:
    """The packages of :data:`PACKAGES` that dpkg does not list as installed."""
    if shutil.which("dpkg-query") is None:
        return list(PACKAGES)
    missing = []
    for package in PACKAGES:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if "install ok installed" not in result.stdout:
            missing.append(package)
    return missing


def unavailable_reason() -> str | None:
    """Why no cluster can be started here, or None when one can."""
    if os.geteuid() != 0:
        return "the Ceph RGW tier needs root (its daemons run as root here)"
    missing = missing_packages()
    if missing:
        return f"Debian packages missing: {' '.join(missing)} (run 'make deps-rgw')"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _random_key(length: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class RgwStartError(RuntimeError):
    """A daemon died or a step timed out while the cluster started."""


class RgwCluster:
    """Monitor + memstore OSD + radosgw in *root*, stopped by :meth:`stop`."""

    def __init__(self, root: Path, *, tls: bool = True, store_bytes: int = STORE_BYTES) -> None:
        self.root = root.absolute()
        self.tls = tls
        self.store_bytes = store_bytes
        self.conf = self.root / "ceph.conf"
        self.access_key = _random_key(20, string.ascii_uppercase + string.digits)
        self.secret_key = _random_key(40, string.ascii_letters + string.digits)
        self.port = _free_port()
        self.tls_port = _free_port() if tls else None
        self._mon_port = _free_port()
        self._daemons: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._last_ceph = ""
        self.startup_seconds = 0.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_endpoint(self) -> str:
        if self.tls_port is None:
            raise ValueError("this cluster serves no HTTPS")
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def ca_bundle(self) -> Path:
        """The self-signed certificate, which is its own CA."""
        return self.root / "tls" / "cert.pem"

    # -- start -----------------------------------------------------------------------

    def start(self) -> None:
        """Start every daemon and return once S3 answers; on failure stop what started."""
        started = time.monotonic()
        try:
            self._prepare()
            self._start_monitor()
            self._start_osd()
            self._create_user()
            self._start_gateway()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _prepare(self) -> None:
        for sub in ("run", "log", "mon.a", "osd.0", "rgw", "crash"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        frontends = f"beast endpoint=127.0.0.1:{self.port}"
        if self.tls:
            self._make_certificate()
            frontends += (
                f" ssl_endpoint=127.0.0.1:{self.tls_port}"
                f" ssl_certificate={self.ca_bundle}"
                f" ssl_private_key={self.root / 'tls' / 'key.pem'}"
            )
        self.conf.write_text(
            _CONF.format(
                root=self.root,
                fsid=uuid.uuid4(),
                mon_port=self._mon_port,
                frontends=frontends,
                store_bytes=self.store_bytes,
            )
        )
        keyring = self.root / "keyring"
        for args in _KEYS:
            self._run("ceph-authtool", str(keyring), *args)
        keyring.chmod(0o600)

    def _make_certificate(self) -> None:
        tls = self.root / "tls"
        tls.mkdir(exist_ok=True)
        self._run(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "7",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(tls / "key.pem"),
            "-out",
            str(self.ca_bundle),
        )

    def _start_monitor(self) -> None:
        monmap = self.root / "monmap"
        fsid = next(
            line.split("=", 1)[1].strip()
            for line in self.conf.read_text().splitlines()
            if line.startswith("fsid")
        )
        self._run(
            "monmaptool",
            "--create",
            "--fsid",
            fsid,
            "--addv",
            "a",
            f"[v2:127.0.0.1:{self._mon_port}]",
            str(monmap),
        )
        self._run(
            "ceph-mon",
            "-c",
            str(self.conf),
            "--mkfs",
            "-i",
            "a",
            "--monmap",
            str(monmap),
            "--keyring",
            str(self.root / "keyring"),
        )
        self._launch("mon.a", "ceph-mon", "-i", "a")
        self._wait("the monitor", lambda: self._ceph_ok("mon", "stat"))

    def _start_osd(self) -> None:
        osd_uuid = str(uuid.uuid4())
        osd_id = self._run("ceph", "-c", str(self.conf), "osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise RgwStartError(f"expected OSD id 0, the monitor gave {osd_id!r}")
        self._run("ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        # A fixed mmap threshold hands freed buffers back to the OS: memstore's RSS
        # then follows the data kept rather than the data ever written.
        self._launch(
            "osd.0",
            "ceph-osd",
            "-i",
            "0",
            env={"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "262144"},
        )
        self._wait("osd.0 to be up", self._osd_up)

    def _create_user(self) -> None:
        # This also creates the zone and the gateway's first pools.
        self._run(
            "radosgw-admin",
            "-c",
            str(self.conf),
            "user",
            "create",
            "--uid=test",
            "--display-name=axonfs tests",
            f"--access-key={self.access_key}",
            f"--secret-key={self.secret_key}",
        )

    def _start_gateway(self) -> None:
        self._launch("client.rgw", "radosgw", "-n", "client.rgw")
        self._wait(f"S3 on 127.0.0.1:{self.port}", self._s3_answers)
        if self.tls:
            self._wait(f"HTTPS on 127.0.0.1:{self.tls_port}", self._s3_answers_tls)

    # -- helpers ---------------------------------------------------------------------

    def _run(self, *argv: str) -> str:
        """Run a one-shot tool; its output, or RgwStartError with its stderr."""
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                check=False,
                timeout=STEP_TIMEOUT,
                env={**os.environ, "CEPH_CONF": str(self.conf)},
            )
        except subprocess.TimeoutExpired:
            raise RgwStartError(f"{argv[0]} did not finish in {STEP_TIMEOUT:.0f}s") from None
        if result.returncode != 0:
            raise RgwStartError(f"{' '.join(argv[:3])} failed: {result.stderr[-2000:]}")
        return result.stdout

    def _launch(self, name: str, *argv: str, env: dict[str, str] | None = None) -> None:
        """Start a daemon in the foreground as our child; its chatter goes to log/."""
        with open(self.root / "log" / f"{name}.out", "ab") as out:
            process = subprocess.Popen(
                [*argv, "-f", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, **(env or {})},
            )
        self._daemons.append((name, process))

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        """Poll *ready* until true; fail early if a daemon died, late on timeout."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while not ready():
            for name, process in self._daemons:
                if process.poll() is not None:
                    raise RgwStartError(
                        f"{name} exited ({process.returncode}) while waiting "
                        f"for {what}:\n{self._log_tail(name)}"
                    )
            if time.monotonic() > deadline:
                raise RgwStartError(f"timed out waiting for {what}; logs in {self.root}/log")
            time.sleep(0.1)

    def _log_tail(self, name: str) -> str:
        lines: list[str] = []
        for path in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            with contextlib.suppress(OSError):
                lines += path.read_text(errors="replace").splitlines()[-15:]
        return "\n".join(lines)

    def _ceph_ok(self, *args: str) -> bool:
        try:
            result = subprocess.run(
                ["ceph", "-c", str(self.conf), "--connect-timeout", "5", *args],
                capture_output=True,
                text=True,
                timeout=15,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        self._last_ceph = result.stdout
        return result.returncode == 0

    def _osd_up(self) -> bool:
        return self._ceph_ok("osd", "dump") and any(
            line.startswith("osd.0 up") for line in self._last_ceph.splitlines()
        )

    def _s3_answers(self) -> bool:
        return _http_answers(self.endpoint + "/", None)

    def _s3_answers_tls(self) -> bool:
        return _http_answers(
            self.tls_endpoint + "/", ssl.create_default_context(cafile=str(self.ca_bundle))
        )

    # -- stop ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the daemons this object started (gateway first), then delete *root*."""
        for _, process in reversed(self._daemons):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._daemons.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def alive(self) -> bool:
        return bool(self._daemons) and all(p.poll() is None for _, p in self._daemons)


def _http_answers(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2, context=context).close()
    except urllib.error.HTTPError:
        return True  # any HTTP status (403 for an anonymous request) means it serves
    except OSError:
        return False
    return True


_KEYS = (
    ("--create-keyring", "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"),
    (
        "--gen-key",
        "-n",
        "client.admin",
        "--cap",
        "mon",
        "allow *",
        "--cap",
        "osd",
        "allow *",
        "--cap",
        "mgr",
        "allow *",
    ),
    (
        "--gen-key",
        "-n",
        "osd.0",
        "--cap",
        "mon",
        "allow profile osd",
        "--cap",
        "mgr",
        "allow profile osd",
        "--cap",
        "osd",
        "allow *",
    ),
    (
        "--gen-key",
        "-n",
        "client.rgw",
        "--cap",
        "mon",
        "allow rw",
        "--cap",
        "osd",
        "allow rwx",
        "--cap",
        "mgr",
        "allow rw",
    ),
)
"""One keyring holds every entity; ``ceph-mon --mkfs`` imports it, so no ``ceph auth``."""

_CONF = """\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {root}/keyring
run dir = {root}/run
admin socket = {root}/run/$name.asok
log file = {root}/log/$name.log
log to stderr = false
err to stderr = true
mon cluster log file = {root}/log/cluster.log
crash dir = {root}/crash
# One OSD: pools of one replica, few placement groups, no autoscaling.
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
# The test machine's disk may be nearly full; the data is in RAM anyway.
mon data avail warn = 2
mon data avail crit = 1
mon osd full ratio = .99
mon osd backfillfull ratio = .99
mon osd nearfull ratio = .99
osd failsafe full ratio = .999
auth allow insecure global id reclaim = false

[mon]
mon data = {root}/mon.$id
# The gateway creates about six pools one after another at start; committing map
# changes every 0.1 s instead of every second makes start-up take seconds, not 15.
paxos propose interval = 0.1

[osd]
osd data = {root}/osd.$id
osd objectstore = memstore
memstore device bytes = {store_bytes}
osd op num shards = 2
osd op num threads per shard = 2
osd max object name len = 460
osd max object namespace len = 64

[client]
admin socket =

[client.rgw]
admin socket = {root}/run/$name.asok
rgw frontends = {frontends}
rgw thread pool size = 64
rgw data = {root}/rgw
rgw enable usage log = false
# Free the data of deleted objects after ~30 s rather than hours, so memstore's RAM
# is given back during a long test session.
rgw gc obj min wait = 30
rgw gc processor period = 30
rgw gc processor max time = 30
"""


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python tests/helpers/rgw.py DIR\n")
        return 2
    reason = unavailable_reason()
    if reason:
        sys.stderr.write(reason + "\n")
        return 1
    cluster = RgwCluster(Path(argv[1]))
    cluster.start()
    try:
        sys.stdout.write(
            f"S3_ENDPOINT={cluster.endpoint}\nS3_ENDPOINT_TLS="
            f"{cluster.tls_endpoint}\nAWS_CA_BUNDLE={cluster.ca_bundle}\n"
            f"AWS_ACCESS_KEY_ID={cluster.access_key}\n"
            f"AWS_SECRET_ACCESS_KEY={cluster.secret_key}\n"
        )
        sys.stdout.flush()
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main(sys.argv[1:]))
