"""Test servers for the control-socket tests: HTTP(S) on 127.0.0.1 and certificates.

The HTTP server runs in a thread of the test process (``ThreadingHTTPServer``),
so handlers can sleep (``/slow``) without blocking others. Every request it
receives is appended to ``server.received`` for the tests to inspect.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FILE_BODY = b"hello world\n"
MISSING_BODY = b"no such thing"
SLOW_SECONDS = 3.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Test", "yes")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.server.received.append(("GET", self.path, dict(self.headers), b""))
        if url.path == "/file":
            self._reply(200, FILE_BODY, {"Content-Type": "text/plain"})
        elif url.path == "/missing":
            self._reply(404, MISSING_BODY)
        elif url.path == "/redir":
            self._reply(302, b"", {"Location": "/redir2"})
        elif url.path == "/redir2":
            self._reply(301, b"", {"Location": "/file"})
        elif url.path == "/slow":
            time.sleep(SLOW_SECONDS)
            self._reply(200, b"finally")
        elif url.path == "/headers":
            self._reply(
                200, json.dumps({"headers": dict(self.headers), "query": url.query}).encode()
            )
        elif url.path == "/big":
            self._big(int(query.get("mib", ["1"])[0]))
        else:
            self._reply(404, b"unknown route")

    def _big(self, mib: int) -> None:
        chunk = bytes(range(256)) * 4096  # 1 MiB
        self.send_response(200)
        self.send_header("Content-Length", str(mib * len(chunk)))
        self.end_headers()
        for _ in range(mib):
            self.wfile.write(chunk)

    def do_PUT(self) -> None:  # noqa: N802
        body = self._body()
        self.server.received.append((self.command, self.path, dict(self.headers), body))
        self._reply(201 if self.command == "PUT" else 200, body)

    do_POST = do_PUT  # noqa: N815


class LocalHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []

    @property
    def base(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def start(self) -> LocalHTTPServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass(frozen=True)
class Certificates:
    ca_pem: str
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path) -> Certificates:
    """A CA and a server certificate for 127.0.0.1 signed by it (not trusted by default)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "axonfs test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificates(ca.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file)


def start_https(certs: Certificates) -> LocalHTTPServer:
    server = LocalHTTPServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server.start()
