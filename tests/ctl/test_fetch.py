"""wget, wput and postfiles through the control socket against servers on 127.0.0.1."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers.daemon import InProcessDaemon

from axonfs import client
from axonfs.client import AxonClient
from axonfs.config import FetchOptions
from axonfs.errors import BadArg

from .servers import FILE_BODY, MISSING_BODY, Certificates, LocalHTTPServer


@pytest.fixture
async def axon(in_process: InProcessDaemon) -> AsyncIterator[AxonClient]:
    async with client.connect(in_process.socket) as connected:
        yield connected


async def _blob(axon: AxonClient, sha256: bytes) -> bytes:
    return b"".join([chunk async for chunk in axon.get(sha256)])


async def test_wget_200(axon: AxonClient, http_server: LocalHTTPServer) -> None:
    result = await axon.wget(f"{http_server.base}/file")
    assert result["ok"] is True
    assert result["code"] == 200 and result["reason"] == "OK"
    assert result["url"] == f"{http_server.base}/file"
    assert result["size"] == len(FILE_BODY)
    assert result["hashes"] == {
        name: hashlib.new(name, FILE_BODY).hexdigest()
        for name in ("md5", "sha1", "sha256", "sha512")
    }
    assert result["headers"]["X-Test"] == "yes"
    assert result["request"]["method"] == "GET"
    assert result["request"]["url"] == f"{http_server.base}/file"
    assert "history" not in result and "mesg" not in result
    assert await _blob(axon, bytes.fromhex(result["hashes"]["sha256"])) == FILE_BODY


async def test_wget_404_is_stored_and_ok(axon: AxonClient, http_server: LocalHTTPServer) -> None:
    result = await axon.wget(f"{http_server.base}/missing")
    assert result["ok"] is True and result["code"] == 404 and result["reason"] == "Not Found"
    assert await _blob(axon, hashlib.sha256(MISSING_BODY).digest()) == MISSING_BODY


async def test_wget_follows_redirects_and_reports_history(
    axon: AxonClient, http_server: LocalHTTPServer
) -> None:
    result = await axon.wget(f"{http_server.base}/redir?a=1")
    assert result["ok"] and result["code"] == 200
    assert result["url"] == f"{http_server.base}/file"
    history = result["history"]
    assert [hop["code"] for hop in history] == [302, 301]
    assert [hop["reason"] for hop in history] == ["Found", "Moved Permanently"]
    assert history[0]["url"] == f"{http_server.base}/redir?a=1"
    assert all("size" not in hop and "hashes" not in hop for hop in history)
    assert result["hashes"]["sha256"] == hashlib.sha256(FILE_BODY).hexdigest()


async def test_wget_timeout(axon: AxonClient, http_server: LocalHTTPServer) -> None:
    result = await axon.wget(f"{http_server.base}/slow", timeout=0.5)
    assert result["ok"] is False and result["code"] == -1
    assert result["mesg"] == "TimeoutError"
    assert result["reason"] == "Exception occurred during request: TimeoutError"
    name, info = result["err"]
    assert name == "TimeoutError" and {"efile", "eline", "ename", "mesg"} <= set(info)


async def test_wget_params_headers_and_bodies(
    axon: AxonClient, http_server: LocalHTTPServer
) -> None:
    result = await axon.wget(
        f"{http_server.base}/headers", params={"a": "1"}, headers={"X-Foo": "bar"}
    )
    seen = json.loads(await _blob(axon, bytes.fromhex(result["hashes"]["sha256"])))
    assert seen["query"] == "a=1" and seen["headers"]["X-Foo"] == "bar"
    assert result["request"]["headers"]["X-Foo"] == "bar"
    result = await axon.wget(f"{http_server.base}/echo", method="POST", json={"a": [1]})
    assert json.loads(await _blob(axon, bytes.fromhex(result["hashes"]["sha256"]))) == {"a": [1]}
    result = await axon.wget(f"{http_server.base}/echo", method="PUT", body=b"raw body")
    assert result["code"] == 201 and result["size"] == 8


async def test_wget_https(
    axon: AxonClient, https_server: LocalHTTPServer, certificates: Certificates
) -> None:
    url = f"{https_server.base}/file"
    failed = await axon.wget(url)
    assert failed["ok"] is False and "CERTIFICATE_VERIFY_FAILED" in failed["mesg"]
    assert (await axon.wget(url, ssl=False))["code"] == 200
    assert (await axon.wget(url, ssl_opts={"ca_cert": certificates.ca_pem}))["code"] == 200
    # the ssl argument overrides ssl_opts["verify"], as in the reference
    assert (await axon.wget(url, ssl_opts={"verify": False}))["ok"] is False
    mtls = {
        "ca_cert": certificates.ca_pem,
        "client_cert": certificates.cert_file.read_text(),
        "client_key": certificates.key_file.read_text(),
    }
    assert (await axon.wget(url, ssl_opts=mtls))["code"] == 200


async def test_wget_proxies(
    in_process: InProcessDaemon, axon: AxonClient, http_server: LocalHTTPServer
) -> None:
    url = f"{http_server.base}/file"
    dead = await axon.wget(url, proxy="http://127.0.0.1:1")
    assert dead["ok"] is False and dead["code"] == -1
    assert dead["reason"].startswith("Exception occurred during request: ")
    with pytest.raises(BadArg, match="HTTP proxy argument must be a string or bool."):
        await axon.wget(url, proxy=1.1)  # type: ignore[arg-type]  # wrong on purpose
    in_process.axon.fetch_options = FetchOptions(http_proxy="http://127.0.0.1:1")
    try:
        assert (await axon.wget(url))["ok"] is False  # True: the daemon's proxy
        assert (await axon.wget(url, proxy=None))["ok"] is False  # None behaves like True
        assert (await axon.wget(url, proxy=False))["code"] == 200  # False: no proxy
    finally:
        in_process.axon.fetch_options = FetchOptions()


async def test_wget_unresolvable_host(axon: AxonClient) -> None:
    result = await axon.wget("http://no-such-host.invalid/x", timeout=20)
    assert result["ok"] is False and result["code"] == -1
    assert result["err"][0] in ("ConnectError", "TimeoutError")


async def test_wput(axon: AxonClient, http_server: LocalHTTPServer) -> None:
    data = bytes(range(256)) * 1000
    _, sha256 = await axon.put(data)
    result = await axon.wput(sha256, f"{http_server.base}/echo?x=1", headers={"X-A": "b"})
    assert result["ok"] is True and result["code"] == 201 and result["reason"] == "Created"
    assert set(result) == {"ok", "url", "code", "reason", "headers"}
    method, path, headers, body = http_server.received[-1]
    assert (method, path, body) == ("PUT", "/echo?x=1", data)
    assert headers["Content-Length"] == str(len(data)) and headers["X-A"] == "b"
    missing = await axon.wput(b"\x03" * 32, f"{http_server.base}/echo")
    assert missing["ok"] is False and missing["code"] == -1
    assert missing["mesg"] == "NoSuchFile: Axon does not contain the requested file."


def _form_parts(content_type: str, body: bytes) -> dict[str, email.message.MIMEPart]:
    message = email.parser.BytesParser(
        email.message.EmailMessage, policy=email.policy.HTTP
    ).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts: dict[str, email.message.MIMEPart] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str), name
        parts[name] = part
    return parts


async def test_postfiles(axon: AxonClient, http_server: LocalHTTPServer) -> None:
    blob = b"file contents\x00\xff"
    _, sha256 = await axon.put(blob)
    fields: list[dict[str, Any]] = [
        {"name": "file", "sha256": sha256.hex(), "filename": "a.bin"},
        {"name": "text", "value": "hi there"},
        {"name": "obj", "value": {"foo": "bar"}},
        {"name": "raw", "value": b"\x00\x01"},
    ]
    result = await axon.postfiles(fields, f"{http_server.base}/echo")
    assert result["ok"] is True and result["code"] == 200
    assert set(result) == {"ok", "url", "code", "body", "reason", "headers"}
    _, _, headers, body = http_server.received[-1]
    assert body == result["body"] and int(headers["Content-Length"]) == len(body)
    parts = _form_parts(headers["Content-Type"], body)
    assert parts["file"].get_payload(decode=True) == blob
    assert parts["file"].get_filename() == "a.bin"
    assert parts["text"].get_content() == "hi there"
    assert parts["obj"].get_content() == '{"foo":"bar"}'
    assert parts["raw"].get_filename() == "raw"  # bytes values are files, as in aiohttp
    assert parts["raw"].get_payload(decode=True) == b"\x00\x01"


async def test_postfiles_errors_are_results(axon: AxonClient, http_server: LocalHTTPServer) -> None:
    url = f"{http_server.base}/echo"
    missing = await axon.postfiles([{"name": "f", "sha256": "04" * 32}], url)
    assert missing["ok"] is False and "mesg" not in missing
    assert missing["reason"].startswith("Exception occurred during request: NoSuchFile")
    assert (missing["body"], missing["headers"], missing["code"]) == (b"", {}, -1)
    unnamed = await axon.postfiles([{"value": "x"}], url)
    assert unnamed["ok"] is False and "BadArg" in unnamed["reason"]
    with pytest.raises(BadArg):
        await axon.postfiles([], url, proxy=[])  # type: ignore[arg-type]  # wrong on purpose
