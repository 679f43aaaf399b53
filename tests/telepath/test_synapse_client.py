"""Synapse's own client, tools and cells against a real ``axonfs serve``.

Every test here runs Synapse 2.256 (from its own virtualenv) in a
subprocess; nothing of Synapse is imported or imitated in this process.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctl.servers import FILE_BODY, LocalHTTPServer
from helpers.cli import run_axonfs_bytes
from helpers.hashes import sha_hex

from .conftest import PASSWORD, Tele, run_client, run_module, start_tele


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = LocalHTTPServer().start()
    yield server.base
    server.stop()


@pytest.mark.parametrize("listener", ["unix", "tcp"])
def test_every_call(synapse_python: Path, tele: Tele, http_base: str, listener: str) -> None:
    url = tele.unix if listener == "unix" else tele.tcp_as()
    out = run_client(synapse_python, "every_call.py", url, http_base)
    text = b"alpha\n\nbeta\n"
    assert out["cellinfo"]["type"] == out["celltype"] == "axon"
    assert out["cellinfo"]["iden"] == out["iden"] and len(out["iden"]) == 32
    assert tuple(out["cellinfo"]["version"]) >= (2, 192, 0)
    assert out["cellinfo"]["features"] == out["features"] == {"byterange": 1, "unpack": 1}
    assert out["put"] == [12, sha_hex(text)]
    assert out["puts"] == [[3, sha_hex(b"one")], [3, sha_hex(b"two")], [3, sha_hex(b"one")]]
    assert out["has"] == [True, False]
    assert out["size"] == [12, None]
    assert out["wants"] == [sha_hex(b"nope")]
    assert out["hashset"]["md5"] == hashlib.md5(text).hexdigest()
    assert bytes.fromhex(out["get"]) == text
    assert bytes.fromhex(out["get_range"]) == text[1:5]
    assert [row[1][0] for row in out["hashes"]][:1] == [sha_hex(text)] or out["hashes"]
    assert out["history"] >= 3
    assert set(out["metrics"]) == {"size:bytes", "file:count"}
    assert out["readlines"] == ["alpha", "", "beta"]
    assert out["jsonlines"] == [{"a": 1}, [2, 3]]
    assert out["csvrows"] == [["a", "b"], ["c,d", "e"]]
    assert out["csvrows_pipe"] == [["a,b"], ["c,d,e"]]
    assert out["iterMpkFile"] == ["foo", ["bar", 1]]
    assert out["unpack"] == [0x01020304]
    assert out["unpack_offs"] == [b"tail".hex()]
    assert out["upload"] == [[6, sha_hex(b"upload")], [6, sha_hex(b"second")]]
    assert bytes.fromhex(out["upload_get"]) == b"upload"
    assert out["wget"] == {
        "ok": True,
        "code": 200,
        "size": len(FILE_BODY),
        "sha256": sha_hex(FILE_BODY),
    }
    assert out["wput"] == {"ok": True, "code": 201}
    assert out["postfiles"] == {"ok": True, "code": 201}
    assert out["del_"][1] is False
    assert out["dels"][1] is False
    assert out["recoverIndices"] == ["added", "corrupt", "ignored", "listed", "skipped"]
    assert out["health"] == "nominal"
    # Errors are synapse.exc classes with the reference's messages.
    assert out["err_get"] == ["synapse.exc.NoSuchFile", "Axon does not contain the requested file."]
    assert out["err_unpack_fmt"][0] == "synapse.exc.BadArg"
    assert out["err_unpack_fmt"][1].startswith("Failed to unpack bytes with format Q!")
    assert out["err_unpack_type"] == ["synapse.exc.BadArg", "Format string must be a string"]
    assert out["err_unpack_short"] == [
        "synapse.exc.BadDataValu",
        "Expected 8 bytes but got 4 bytes",
    ]
    assert out["err_unpack_missing"][0] == "synapse.exc.NoSuchFile"
    assert out["err_range"] == ["synapse.exc.BadArg", "Offs must be >= 0"]
    assert out["err_meth"] == ["synapse.exc.NoSuchMeth", "AxonApi has no method: noSuchMethod."]
    assert out["err_private"][0] == "synapse.exc.NoSuchMeth"
    assert out["err_args"][0] == "synapse.exc.BadArg"
    assert out["err_csv"][0] == "synapse.exc.BadArg"


def wait_for_log(path: Path, needle: str, timeout: float = 10.0) -> str:
    """The first log line containing *needle* (the daemon writes it as it happens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not logged within {timeout} s")


def test_pool_links_and_abandoned_generators(synapse_python: Path, tele: Tele) -> None:
    run_axonfs_bytes(
        "ctl",
        "--store",
        str(tele.daemon.store),
        "log-level",
        "debug",
        "--logger",
        "axonfs.telepath",
        check=True,
    )
    try:
        out = run_client(synapse_python, "pool.py", tele.unix)
        # The daemon saw both clients leave mid-generator and stopped them.
        wait_for_log(tele.log, "went away during get")
        wait_for_log(tele.log, "went away during hashes")
    finally:
        run_axonfs_bytes(
            "ctl",
            "--store",
            str(tele.daemon.store),
            "log-level",
            "info",
            "--logger",
            "axonfs.telepath",
            check=True,
        )
    assert out["puts_ok"] and out["gets_ok"]
    assert out["links"] > 1  # the 20 concurrent calls went over several pool links
    assert out["many"] == 300
    assert out["first_piece"] == 16 << 20
    assert out["after"] == [True, 5]
    assert out["big_ok"]


def test_wrong_password_is_auth_deny(synapse_python: Path, tele: Tele) -> None:
    wrong = "not-the-password"
    assert run_client(synapse_python, "connect.py", tele.tcp_as(password=wrong)) == {
        "ok": False,
        "error": ["AuthDeny", "Invalid user name or password."],
    }
    assert (
        run_client(synapse_python, "connect.py", tele.tcp_as(user="mallory"))["error"][0]
        == "AuthDeny"
    )
    assert run_client(synapse_python, "connect.py", tele.tcp)["error"][0] == "AuthDeny"
    line = wait_for_log(tele.log, "refused Telepath login of user 'alice'")
    assert "WARNING" in line
    log = tele.log.read_text()
    assert wrong not in log and PASSWORD not in log
    assert run_client(synapse_python, "connect.py", tele.tcp_as()) == {"ok": True, "error": None}


def test_passwd_applies_to_new_connections(synapse_python: Path, tele: Tele) -> None:
    store = str(tele.daemon.store)
    run_axonfs_bytes("passwd", "--store", store, "bob", stdin=b"pw-of-bob\n", check=True)
    bob = tele.tcp.replace("tcp://", "tcp://bob:pw-of-bob@")
    assert run_client(synapse_python, "connect.py", bob)["ok"]
    run_axonfs_bytes("passwd", "--store", store, "--delete", "bob", check=True)
    assert run_client(synapse_python, "connect.py", bob)["error"][0] == "AuthDeny"


def test_axon_tools_put_and_get(synapse_python: Path, tele: Tele, tmp_path: Path) -> None:
    data = b"uploaded by synapse.tools.axon.put\n" * 1000
    (tmp_path / "a.bin").write_bytes(data)
    done = run_module(
        synapse_python, "synapse.tools.axon.put", "-a", tele.unix, str(tmp_path / "a.bin")
    )
    assert done.returncode == 0, done.stderr
    assert "Uploaded [a.bin] to axon" in done.stdout
    done = run_module(
        synapse_python, "synapse.tools.axon.put", "-a", tele.tcp_as(), str(tmp_path / "a.bin")
    )
    assert "Axon already had [a.bin]" in done.stdout, done.stderr
    out = tmp_path / "out"
    done = run_module(
        synapse_python,
        "synapse.tools.axon.get",
        "-a",
        tele.tcp_as(),
        "-o",
        str(out),
        "-l",
        sha_hex(data),
        "-l",
        sha_hex(b"absent"),
    )
    assert done.returncode == 0, done.stderr
    assert (out / sha_hex(data)).read_bytes() == data
    assert f"{sha_hex(b'absent')} not in axon store" in done.stdout


def test_copy_from_a_synapse_axon_and_back(
    synapse_python: Path, tele: Tele, tmp_path: Path
) -> None:
    out = run_client(
        synapse_python, "copy_roundtrip.py", tele.unix, str(tmp_path), "200", timeout=120
    )
    assert out["expected"] == 201
    assert out["axonfs_has_all"] and out["dst_has_all"]


@pytest.mark.parametrize("listener", ["unix", "tcp"])
def test_synapse_own_axon_test_passes(synapse_python: Path, tmp_path: Path, listener: str) -> None:
    """Synapse's ``runAxonTestBase``, as its ``test_axon_proxy`` runs it, with the Axon
    replaced by axonfs (it counts blobs, bytes and indexes: a store of its own)."""
    tele = start_tele(tmp_path / "store")
    try:
        url = tele.unix if listener == "unix" else tele.tcp_as()
        out = run_client(synapse_python, "synapse_axon_suite.py", url, timeout=180)
    finally:
        tele.daemon.stop()
    assert out["ok"], out["error"]
    assert out["removed"] == ["evt = asyncio.Event() ... # CSV with alternative delimiter"]


@pytest.mark.parametrize("limit", [("--max-count", "10"), ("--max-bytes", "320")])
def test_synapse_own_limits_test_passes(
    synapse_python: Path, tmp_path: Path, limit: tuple[str, str]
) -> None:
    tele = start_tele(tmp_path / "store", *limit)
    try:
        out = run_client(synapse_python, "synapse_axon_suite.py", tele.unix, "limits")
    finally:
        tele.daemon.stop()
    assert out["ok"], out["error"]


def test_ssl_listener(synapse_python: Path, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from ctl.servers import make_certificates

    from .conftest import ping, start_tele

    certs = make_certificates(tmp_path)
    running = start_tele(
        tmp_path / "store",
        "--telepath-listen",
        "ssl://127.0.0.1:0",
        "--tls-cert",
        str(certs.cert_file),
        "--tls-key",
        str(certs.key_file),
    )
    try:
        ssl_url = next(
            url for url in ping(running.daemon.store)["telepath"] if url.startswith("ssl://")
        )
        cert = x509.load_pem_x509_certificate(certs.cert_file.read_bytes())
        pin = cert.fingerprint(hashes.SHA256()).hex()
        url = ssl_url.replace("ssl://", f"ssl://alice:{PASSWORD}@") + f"?certhash={pin}"
        out = run_client(synapse_python, "pool.py", url)
        assert out["puts_ok"] and out["gets_ok"] and out["big_ok"] and out["links"] > 1
        wrong = ssl_url.replace("ssl://", "ssl://alice:nope@") + f"?certhash={pin}"
        assert run_client(synapse_python, "connect.py", wrong)["error"][0] == "AuthDeny"
    finally:
        running.daemon.stop()


def test_axon_tools_dump_and_load(synapse_python: Path, tele: Tele, tmp_path: Path) -> None:

    from .conftest import start_tele

    blob = b"dumped and loaded\n" * 100
    (tmp_path / "b.bin").write_bytes(blob)
    assert (
        run_module(
            synapse_python, "synapse.tools.axon.put", "-a", tele.unix, str(tmp_path / "b.bin")
        ).returncode
        == 0
    )
    done = run_module(
        synapse_python, "synapse.tools.axon.dump", "--url", tele.unix, str(tmp_path / "dump")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    archives = sorted(str(path) for path in (tmp_path / "dump").glob("*.tar.gz"))
    assert archives, done.stdout
    other = start_tele(tmp_path / "other")
    try:
        done = run_module(synapse_python, "synapse.tools.axon.load", "--url", other.unix, *archives)
        assert done.returncode == 0, done.stdout + done.stderr
        out = tmp_path / "out"
        done = run_module(
            synapse_python,
            "synapse.tools.axon.get",
            "-a",
            other.unix,
            "-o",
            str(out),
            "-l",
            sha_hex(blob),
        )
        assert (out / sha_hex(blob)).read_bytes() == blob, done.stdout + done.stderr
    finally:
        other.daemon.stop()


def test_a_cortex_uses_axonfs_as_its_axon(
    synapse_python: Path, tele: Tele, http_base: str, tmp_path: Path
) -> None:
    out = run_client(
        synapse_python, "cortex_wget.py", tele.unix, str(tmp_path), f"{http_base}/file", timeout=120
    )
    assert out["ok"] and out["code"] == 200
    assert out["sha256"] == sha_hex(FILE_BODY)
    assert out["lines"] == [FILE_BODY.decode().strip()]
    assert out["unpack"] == [FILE_BODY[:5].hex()]
    assert out["size"] == len(FILE_BODY)
    assert out["put"] == [4, sha_hex(bytes([1, 2, 3, 4]))]
    assert out["node"] == f"sha256:{sha_hex(FILE_BODY)}"
    store = str(tele.daemon.store)
    assert (
        run_axonfs_bytes("ctl", "--store", store, "has", sha_hex(FILE_BODY), check=True).returncode
        == 0
    )
