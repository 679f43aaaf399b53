"""wget, wput and postfiles: HTTP between the store and the network, with httpx.

They behave as the Synapse Axon's: ``wget`` stores the response
body whatever the status code and returns the reference's result dictionary;
failures come back as ``{"ok": False, ...}`` rather than raised, except a
``proxy`` argument of the wrong type, which raises :class:`BadArg`. Bodies
stream in both directions: a download goes chunk by chunk into
:meth:`Axon.upload` (hashed on the way), an upload is the :meth:`Axon.get`
stream, so memory stays flat whatever the size. A download is also refused
(``HitLimit``) when its body decodes to far more than was received, which
stops a compression bomb after tens of MiB instead of at the byte cap; URLs
reach the log without their userinfo and query values.

Differences from the reference, all deliberate: exception names in ``err`` and
``mesg`` are httpx's (``ConnectError``, ``ProxyError``...), except timeouts,
which read ``TimeoutError`` as in the reference; ``ssl_opts`` may also carry
``ca_cert`` (PEM text of extra trusted CAs); SOCKS proxies need ``socksio``.

Concurrency: runs on the daemon's trio thread; SSL contexts are built and
digests computed in worker threads.
"""

from __future__ import annotations

import contextlib
import http
import json as jsonlib
import logging
import os
import re
import secrets
import ssl as sslib
import tempfile
import traceback
import urllib.parse
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx
import trio

from axonfs.config import FetchOptions
from axonfs.errors import AxonError, BadArg, HitLimit
from axonfs.hashing import HashSet
from axonfs.store.index import BlobRow


class BlobWriter(Protocol):
    """An upload: bytes written, then saved as one blob."""

    async def __aenter__(self) -> BlobWriter: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def write(self, byts: bytes) -> None: ...

    async def save(self) -> tuple[int, bytes]: ...


class HashLimiters(Protocol):
    @property
    def hash_cpu(self) -> trio.CapacityLimiter: ...


class FetchStore(Protocol):
    """What wget, wput and postfiles need of the Axon."""

    @property
    def fetch_options(self) -> FetchOptions: ...

    @property
    def limiters(self) -> HashLimiters: ...

    async def upload(self) -> BlobWriter: ...

    def require(self, sha256: bytes) -> BlobRow: ...

    def get(
        self, sha256: bytes, offs: int | None = None, size: int | None = None
    ) -> AsyncGenerator[bytes, None]: ...


Progress = Callable[[int, int | None], Awaitable[None]]
"""Told ``(bytes received, bytes announced or None)`` as a download arrives."""

log = logging.getLogger(__name__)

WGET_MAX_RATIO = 200
"""Most bytes a wget body may decode to per byte received, once past
:data:`WGET_RATIO_SLACK`: a few MB of gzip inflate to gigabytes (gzip
reaches about 1000:1), and the byte cap alone let them fill the spool up to
it first. Text compresses 5-20:1; the slack lets small, very regular bodies
through whatever their ratio."""
WGET_RATIO_SLACK = 64 << 20
COALESCE = 1 << 20
"""Download chunks are gathered to this size before hashing and spooling."""
MAX_REDIRECTS = 10
SSL_CACHE_SIZE = 16
_ssl_cache: dict[tuple[Any, ...], sslib.SSLContext] = {}


def http_reason(code: int) -> str:
    """The standard reason phrase of *code* (the reference's httpcodereason)."""
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return f"Unknown HTTP status code {code}"


def proxy_for(axon: FetchStore, proxy: Any) -> str | None:
    """The proxy URL to use: True/None → the daemon's ``--http-proxy``, False → none,
    a string → itself; anything else raises BadArg (not returned as a result)."""
    if proxy is None or proxy is True:
        return axon.fetch_options.http_proxy or None
    if proxy is False:
        return None
    if isinstance(proxy, str):
        return proxy
    raise BadArg("HTTP proxy argument must be a string or bool.", proxy=repr(proxy))


def error_tuple(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """The reference's ``err`` tuple: ``(ExcName, {efile, eline, esrc, ename, mesg...})``."""
    info: dict[str, Any] = {}
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        info = {
            "efile": os.path.basename(last.filename),
            "eline": last.lineno,
            "esrc": last.line,
            "ename": last.name,
        }
    if isinstance(exc, AxonError):
        info.update({key: _plain(value) for key, value in exc.fields.items()})
        info["mesg"] = exc.message
    else:
        info["mesg"] = _message(exc).partition(": ")[2]
    return type(exc).__name__, info


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    return repr(value)


def _message(exc: BaseException) -> str:
    """``Name: text``, the text taken from the cause when httpx leaves it empty."""
    if isinstance(exc, TimeoutError):
        return "TimeoutError"  # as the reference words it, whatever the cancel scope said
    text = str(exc)
    cause_: BaseException | None = exc
    while not text and cause_ is not None:
        cause_ = cause_.__cause__ or cause_.__context__
        text = str(cause_) if cause_ is not None else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure(exc: Exception, url: str, what: str) -> tuple[str, tuple[str, dict[str, Any]]]:
    log.warning(
        "%s %s failed: %s",
        what,
        redact_url(url),
        redact_text(_message(exc)),
        exc_info=log.isEnabledFor(logging.DEBUG),
    )
    return _message(exc), error_tuple(exc)


def redact_url(url: str) -> str:
    """*url* fit for a log: no userinfo, and every query value replaced.

    Signed URLs, API keys and basic-auth credentials travel in exactly these
    parts, and a log is read by more people than the caller.
    """
    try:
        parts = urllib.parse.urlsplit(str(url))
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = (
        "&".join(
            f"{name}=***" if sep else name
            for name, sep, _ in (field.partition("=") for field in parts.query.split("&"))
        )
        if parts.query
        else ""
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """*text* with every URL in it passed through :func:`redact_url`."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)


class RedactUrls(logging.Filter):
    """Redacts the URLs in the records of a library's logger (httpx logs each
    request's URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "://" in record.msg:
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_text(str(arg))
                if isinstance(arg, (str, httpx.URL)) and "://" in str(arg)
                else arg
                for arg in record.args
            )
        return True


logging.getLogger("httpx").addFilter(RedactUrls())


def _headers(headers: httpx.Headers) -> dict[str, str]:
    """Headers as a dict with their original case (the last of a repeated name wins)."""
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in headers.raw}


def _flatten(response: httpx.Response) -> dict[str, Any]:
    """One response as the reference describes it (without size and hashes)."""
    request = response.request
    return {
        "ok": True,
        "url": str(response.url),
        "code": response.status_code,
        "headers": _headers(response.headers),
        "reason": http_reason(response.status_code),
        "request": {
            "url": str(request.url),
            "headers": _headers(request.headers),
            "method": request.method,
        },
    }


# -- TLS -------------------------------------------------------------------------


async def ssl_verify(axon: FetchStore, ssl_opts: Any, verify: Any) -> sslib.SSLContext | bool:
    """httpx's ``verify`` for the reference's ``ssl`` and ``ssl_opts`` arguments.

    ``ssl`` overrides ``ssl_opts['verify']``; without verification the client
    certificate is not used either (as in the reference).
    """
    if ssl_opts is not None and not isinstance(ssl_opts, dict):
        raise BadArg("ssl_opts must be a dictionary", ssl_opts=repr(ssl_opts))
    opts = dict(ssl_opts or {})
    if verify is not None:
        opts["verify"] = verify
    if not opts.get("verify", True):
        return False
    key = (opts.get("ca_cert"), opts.get("client_cert"), opts.get("client_key"))
    context = _ssl_cache.get(key)
    if context is None:
        context = await trio.to_thread.run_sync(_make_ssl_context, *key)
        if len(_ssl_cache) >= SSL_CACHE_SIZE:
            _ssl_cache.pop(next(iter(_ssl_cache)))
        _ssl_cache[key] = context
    return context


def _make_ssl_context(
    ca_cert: str | None, client_cert: str | None, client_key: str | None
) -> sslib.SSLContext:
    context = sslib.create_default_context()
    if ca_cert:
        context.load_verify_locations(cadata=ca_cert)
    if client_cert:
        with _pem_file(client_cert) as cert_path, _pem_file(client_key) as key_path:
            assert cert_path is not None
            context.load_cert_chain(cert_path, key_path)
    return context


@contextlib.contextmanager
def _pem_file(pem: str | None) -> Iterator[str | None]:
    """load_cert_chain wants paths: write the PEM to a private temp file."""
    if pem is None:
        yield None
        return
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as handle:
        handle.write(pem)
        handle.flush()
        yield handle.name


@contextlib.asynccontextmanager
async def _client(
    axon: FetchStore,
    proxy: str | None,
    ssl: Any,
    ssl_opts: Any,
    timeout: float | None,  # noqa: ASYNC109
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client plus the reference's total-time limit around its use."""
    verify = await ssl_verify(axon, ssl_opts, ssl)
    async with httpx.AsyncClient(
        verify=verify,
        proxy=proxy,
        timeout=httpx.Timeout(None),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
    ) as client:
        with anyio.fail_after(timeout) if timeout is not None else contextlib.nullcontext():
            yield client


# -- wget ------------------------------------------------------------------------


async def wget(
    axon: FetchStore,
    url: str,
    params: Any = None,
    headers: Any = None,
    json: Any = None,
    body: Any = None,
    method: str = "GET",
    ssl: bool = True,
    timeout: float | None = None,
    proxy: Any = True,  # noqa: ASYNC109 - reference API
    ssl_opts: Any = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Download *url* into the store; the reference's result dictionary.

    *progress*, if given, is awaited with ``(bytes received, bytes announced or
    None)`` as the body arrives.
    """
    proxy_url = proxy_for(axon, proxy)
    try:
        async with _client(axon, proxy_url, ssl, ssl_opts, timeout) as client:
            request = client.build_request(
                method, url, params=params, headers=headers, json=json, **_body(body)
            )
            response = await client.send(request, stream=True)
            try:
                size, digests = await _store_body(axon, response, progress)
            finally:
                await response.aclose()
    except Exception as exc:
        mesg, err = _failure(exc, url, "wget")
        return {
            "ok": False,
            "mesg": mesg,
            "code": -1,
            "reason": f"Exception occurred during request: {mesg}",
            "err": err,
        }
    info = _flatten(response)
    if response.history:
        info["history"] = [_flatten(hop) for hop in response.history]
    info["size"] = size
    info["hashes"] = digests
    return info


def _body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if isinstance(body, dict):
        return {"data": body}  # a form, as aiohttp's data= takes it
    return {"content": body}


async def _store_body(
    axon: FetchStore, response: httpx.Response, progress: Progress | None = None
) -> tuple[int, dict[str, str]]:
    """Stream the body into an upload while hashing it; ``(size, hexdigests)``.

    Raises:
        HitLimit: the body is (or announces to be) larger than the daemon's
            ``--wget-max-bytes``; nothing is stored.
    """
    limit = axon.fetch_options.max_bytes or None
    announced = response.headers.get("content-length", "")
    if limit is not None and announced.isdigit() and int(announced) > limit:
        raise HitLimit(
            f"response body of {announced} bytes is larger than the wget limit of {limit} bytes",
            limit=limit,
        )
    hashset = HashSet()
    received = 0
    async with await axon.upload() as upload:
        async with contextlib.aclosing(_coalesce(_decoded(response))) as chunks:
            async for chunk in chunks:
                received += len(chunk)
                if limit is not None and received > limit:
                    raise HitLimit(
                        f"response body is larger than the wget limit of {limit} bytes", limit=limit
                    )
                _check_ratio(received, response.num_bytes_downloaded)
                await trio.to_thread.run_sync(hashset.update, chunk, limiter=axon.limiters.hash_cpu)
                await upload.write(chunk)
                if progress is not None:
                    await progress(received, int(announced) if announced.isdigit() else None)
        size, _ = await upload.save()
    return size, hashset.hexdigests()


DECODE_PIECE = 1 << 20
"""Most bytes one step of our own gzip/deflate decoding produces."""
_ZLIB_WBITS = {
    "gzip": zlib.MAX_WBITS | 16,
    "x-gzip": zlib.MAX_WBITS | 16,
    "deflate": zlib.MAX_WBITS,
}


async def _decoded(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The body's decoded bytes, gzip and deflate at most :data:`DECODE_PIECE` at a time.

    httpx inflates each network read whole: 64 KiB of a gzip bomb become 64 MB
    in one call, before any check can run. Other encodings are left to httpx.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in _ZLIB_WBITS:
        async for chunk in response.aiter_bytes():
            yield chunk
        return
    wbits = _ZLIB_WBITS[encoding]
    decompressor = zlib.decompressobj(wbits)
    first = True
    async for raw in response.aiter_raw():
        pending = raw
        while pending:
            try:
                piece = decompressor.decompress(pending, DECODE_PIECE)
            except zlib.error as exc:
                if not (first and encoding == "deflate"):
                    raise httpx.DecodingError(str(exc)) from exc
                # Servers send raw deflate as often as the zlib format: try it.
                decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                first = False
                continue
            first = False
            pending = decompressor.unconsumed_tail
            if piece:
                yield piece
    try:
        tail = decompressor.flush()
    except zlib.error as exc:
        raise httpx.DecodingError(str(exc)) from exc
    if tail:
        yield tail


def _check_ratio(decoded: int, downloaded: int) -> None:
    """Refuse a body that decodes to far more than was downloaded (a bomb)."""
    if decoded > WGET_RATIO_SLACK and decoded > WGET_MAX_RATIO * max(downloaded, 1):
        raise HitLimit(
            f"response body decodes to more than {WGET_MAX_RATIO} times the "
            f"{downloaded} bytes received (a decompression bomb?)",
            limit=WGET_MAX_RATIO,
            received=downloaded,
            decoded=decoded,
        )


async def _coalesce(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    pending = bytearray()
    async for chunk in chunks:
        if not pending and len(chunk) >= COALESCE:
            yield chunk  # big enough already: spare two copies
            continue
        pending += chunk
        if len(pending) >= COALESCE:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


# -- wput and postfiles ----------------------------------------------------------


async def wput(
    axon: FetchStore,
    sha256: bytes,
    url: str,
    params: Any = None,
    headers: Any = None,
    method: str = "PUT",
    ssl: bool = True,
    timeout: float | None = None,  # noqa: ASYNC109 - reference API
    proxy: Any = True,
    ssl_opts: Any = None,
) -> dict[str, Any]:
    """Send a stored blob as the body of a request to *url*."""
    proxy_url = proxy_for(axon, proxy)
    try:
        row = axon.require(sha256)
        send_headers = dict(headers or {})
        if not any(key.lower() == "content-length" for key in send_headers):
            send_headers["Content-Length"] = str(row.size)
        async with _client(axon, proxy_url, ssl, ssl_opts, timeout) as client:
            response = await client.request(
                method, url, params=params, headers=send_headers, content=axon.get(sha256)
            )
    except Exception as exc:
        mesg, err = _failure(exc, url, "wput")
        return {
            "ok": False,
            "mesg": mesg,
            "code": -1,
            "reason": f"Exception occurred during request: {mesg}",
            "err": err,
        }
    return {
        "ok": True,
        "url": str(response.url),
        "code": response.status_code,
        "headers": _headers(response.headers),
        "reason": http_reason(response.status_code),
    }


async def postfiles(
    axon: FetchStore,
    fields: Any,
    url: str,
    params: Any = None,
    headers: Any = None,
    method: str = "POST",
    ssl: bool = True,
    timeout: float | None = None,  # noqa: ASYNC109 - reference API
    proxy: Any = True,
    ssl_opts: Any = None,
) -> dict[str, Any]:
    """Send a multipart form; a field with ``sha256`` (hex) streams that blob."""
    proxy_url = proxy_for(axon, proxy)
    try:
        boundary = secrets.token_hex(16)
        parts = [_part(axon, field) for field in fields]
        length = sum(len(boundary) + 4 + len(part.head) + part.size + 2 for part in parts)
        length += len(boundary) + 6
        send_headers = dict(headers or {})
        send_headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        send_headers["Content-Length"] = str(length)
        async with _client(axon, proxy_url, ssl, ssl_opts, timeout) as client:
            response = await client.request(
                method,
                url,
                params=params,
                headers=send_headers,
                content=_form_body(axon, boundary, parts),
            )
    except Exception as exc:
        mesg, err = _failure(exc, url, "postfiles")
        return {
            "ok": False,
            "err": err,
            "url": url,
            "body": b"",
            "code": -1,
            "reason": f"Exception occurred during request: {mesg}",
            "headers": {},
        }
    return {
        "ok": True,
        "url": str(response.url),
        "code": response.status_code,
        "body": response.content,
        "reason": http_reason(response.status_code),
        "headers": _headers(response.headers),
    }


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@dataclass(frozen=True, slots=True)
class _Part:
    """One form field: its headers, its body size, and its bytes or the blob to stream."""

    head: bytes
    size: int
    data: bytes = b""
    sha256: bytes | None = None


def _part(axon: FetchStore, field: Any) -> _Part:
    """Check one reference field dictionary and describe its part (BadArg, NoSuchFile)."""
    if not isinstance(field, dict):
        raise BadArg("Each field must be a dictionary", field=repr(field))
    name = field.get("name")
    if not isinstance(name, str):
        raise BadArg(
            f'Each field requires a "name" key with a string value: {name!r}', name=repr(name)
        )
    filename, content_type = field.get("filename"), field.get("content_type")
    encoding = field.get("content_transfer_encoding")
    sha256: bytes | None = None
    source = b""
    if field.get("sha256"):
        sha256 = _unhex(field["sha256"])
        size = axon.require(sha256).size
        content_type = content_type or "application/octet-stream"
    else:
        value = field.get("value")
        if isinstance(value, bytes):
            source = value
            content_type = content_type or "application/octet-stream"
            if filename is None and encoding is None:
                filename = name
        else:
            text = value if isinstance(value, str) else jsonlib.dumps(value, separators=(",", ":"))
            source = text.encode("utf-8")
            content_type = content_type or "text/plain; charset=utf-8"
        size = len(source)
    disposition = f'form-data; name="{_quote(name)}"'
    if filename is not None:
        disposition += f'; filename="{_quote(str(filename))}"'
    lines = [f"Content-Disposition: {disposition}", f"Content-Type: {content_type}"]
    if encoding is not None:
        lines.append(f"Content-Transfer-Encoding: {encoding}")
    head = "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n"
    return _Part(head, size, source, sha256)


def _unhex(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise BadArg(f"sha256 is not hex: {value!r}", value=repr(value)) from None


async def _form_body(
    axon: FetchStore, boundary: str, parts: list[_Part]
) -> AsyncGenerator[bytes, None]:
    delimiter = f"--{boundary}\r\n".encode()
    for part in parts:
        yield delimiter + part.head
        if part.sha256 is not None:
            async with contextlib.aclosing(axon.get(part.sha256)) as chunks:
                async for chunk in chunks:
                    yield chunk
        else:
            yield part.data
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()
