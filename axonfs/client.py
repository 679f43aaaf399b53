"""The Python client: the Synapse AxonApi over an axonfs control socket.

::

    async with axonfs.client.connect() as axon:
        size, sha256 = await axon.put(b"hello")
        async for chunk in axon.get(sha256):
            ...

The object :func:`connect` yields has the reference ``AxonApi``'s method names,
arguments and return shapes as a Telepath proxy returns them (lists arrive as
tuples, hashes as raw bytes), so code written against a Synapse Axon proxy runs
with only its connect line changed. Errors are re-raised as the matching
:mod:`axonfs.errors` class (``NoSuchFile``, ``BadArg``, ...).

Concurrency: built on anyio, so it runs under asyncio and under trio. The
client keeps a small pool of connections; each carries one request at a time.
A generator holds its connection until it is exhausted; abandoning it (break,
``aclose()``, cancellation) closes that connection, which makes the daemon
stop the work. ``upload()`` streams: ``write()`` sends the bytes as they come.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from axonfs.config import MOUNT_SOCKET_XATTR, control_socket, default_store
from axonfs.errors import AxonError, BadArg, from_wire
from axonfs.protocol import (
    CANCELLED,
    CLOSE,
    END,
    ERR,
    HELLO,
    ITEMS,
    MAX_REPLY_FRAME,
    OK,
    RAW,
    RECEIVE_SIZE,
    SAVE,
    SAVED,
    WRITE,
    WRITE_CHUNK,
    AccessDenied,
    DaemonUnreachable,
    FrameDecoder,
    ProtocolError,
    bindable_path,
    encode_parts,
)
from axonfs.sockio import SocketWire

log = logging.getLogger(__name__)

ENV_SOCKET = "AXONFS_SOCKET"
PUT_INLINE_MAX = 4 << 20
"""put()/puts() send bytes up to this size in the call itself; larger ones stream."""
POOL_SIZE = 4
"""Idle connections kept for reuse."""
RAW_RECEIVE = 4 << 20
"""Most bytes of a ``raw`` item asked of the socket per receive."""


def find_socket(
    socket: str | os.PathLike[str] | None = None,
    *,
    mount: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
) -> Path:
    """Where the daemon listens: *socket*, else *mount*'s xattr, else *store*'s
    socket, else ``$AXONFS_SOCKET``, else the default store's socket."""
    if socket is not None:
        return Path(socket)
    if mount is not None:
        return mount_socket(Path(mount))
    if store is not None:
        return control_socket(Path(store).expanduser().absolute())
    if env := os.environ.get(ENV_SOCKET):
        return Path(env)
    return control_socket(default_store().expanduser().absolute())


def mount_socket(path: Path) -> Path:
    """The control socket of the axonfs mount that holds *path* (its root or below).

    The mount table, not the path, says which mount it is, so the diagnosis
    does not depend on what a dead or forbidden mount answers.

    Raises:
        DaemonUnreachable: *path* is in no axonfs mount, or its daemon is gone.
        AccessDenied: the mount is another user's private one.
    """
    from axonfs.mountinfo import containing_mount

    entry = containing_mount(path)
    root = entry.mountpoint
    if not entry.is_axonfs:
        raise DaemonUnreachable(
            f"{path} is not in an axonfs mount (it is on {root}, {entry.fstype})", mount=str(path)
        )
    try:
        value = os.getxattr(root, MOUNT_SOCKET_XATTR)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise DaemonUnreachable(
                f"the daemon of the axonfs mount {root} is gone; 'axonfs umount {root}' "
                "cleans the mount point up, then mount again",
                mount=str(root),
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise AccessDenied(
                f"access to the axonfs mount {root} is denied: a mount is private to the "
                "user who made it unless mounted with --allow-other",
                mount=str(root),
            ) from None
        raise DaemonUnreachable(
            f"cannot read {MOUNT_SOCKET_XATTR} of the axonfs mount {root}: {exc.strerror}",
            mount=str(root),
        ) from None
    return Path(os.fsdecode(value))


class _Connection:
    """One socket to the daemon, with its frame decoder and request ids."""

    def __init__(self, stream: anyio.abc.SocketStream, path: Path) -> None:
        self.stream = stream
        self.wire = SocketWire(
            stream.extra(anyio.abc.SocketAttribute.raw_socket).fileno(),
            wait_readable=anyio.wait_readable,
            wait_writable=anyio.wait_writable,
            checkpoint=anyio.lowlevel.checkpoint,
        )
        self.path = path
        self.decoder = FrameDecoder(MAX_REPLY_FRAME)
        self._next_id = 0
        self.server: dict[str, Any] = {}

    @classmethod
    async def open(cls, path: Path) -> _Connection:
        try:
            with bindable_path(path) as address:
                stream = await anyio.connect_unix(address)
        except OSError as exc:
            raise DaemonUnreachable(
                f"no axonfs daemon at {path}: {exc.strerror or exc}", socket=str(path)
            ) from None
        connection = cls(stream, path)
        try:
            hello = await connection.receive()
            if hello.get("t") == ERR:
                raise from_wire(hello["error"])
            if hello.get("t") != HELLO:
                raise ProtocolError(f"expected a hello frame, got {hello.get('t')!r}")
            connection.server = hello
        except BaseException:
            await connection.aclose()
            raise
        return connection

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def send(self, message: dict[str, Any]) -> None:
        header, body = encode_parts(message)
        try:
            await self.wire.send_all(header, body)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise self._closed() from None

    async def receive(self) -> dict[str, Any]:
        while True:
            message = self.decoder.next_message()
            if message is not None:
                return message
            self.decoder.feed(await self._receive_some(RECEIVE_SIZE))

    async def receive_raw(self, size: int) -> AsyncGenerator[bytes, None]:
        """The *size* bytes that follow a ``raw`` frame, as they arrive.

        Read straight from the socket into the bytes handed on: no frame
        buffer and no msgpack copy in between.
        """
        if self.decoder.pending:
            head = self.decoder.take(size)
            size -= len(head)
            yield head
        while size:
            data = await self._receive_some(min(size, RAW_RECEIVE))
            size -= len(data)
            yield data

    async def _receive_some(self, max_bytes: int) -> bytes:
        """At least one byte from the daemon, or DaemonUnreachable."""
        try:
            data = await self.wire.receive_some(max_bytes)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            data = b""
        if not data:
            raise self._closed()
        return data

    def _closed(self) -> DaemonUnreachable:
        return DaemonUnreachable(
            f"the daemon at {self.path} closed the connection", socket=str(self.path)
        )

    async def reply(self, rid: int) -> dict[str, Any]:
        """The next reply, which must be for request *rid*; ``err`` is raised."""
        message = await self.receive()
        if message.get("id") != rid:
            if message.get("t") == ERR and message.get("id") is None:
                raise from_wire(message["error"])
            raise ProtocolError(f"reply for request {message.get('id')!r}, expected {rid}")
        if message.get("t") == ERR:
            raise from_wire(message["error"])
        return message

    async def aclose(self) -> None:
        await self.stream.aclose()


class AxonClient:
    """The AxonApi methods over a control socket; create with :func:`connect`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False

    # -- connections ----------------------------------------------------------------

    async def _acquire(self) -> _Connection:
        if self._closed:
            raise AxonError("the client is closed")
        connection = self._idle.pop() if self._idle else await _Connection.open(self.path)
        self._busy.add(connection)
        return connection

    async def _release(self, connection: _Connection, reusable: bool) -> None:
        self._busy.discard(connection)
        if reusable and not self._closed and len(self._idle) < POOL_SIZE:
            self._idle.append(connection)
        else:
            with anyio.CancelScope(shield=True):
                await connection.aclose()

    async def aclose(self) -> None:
        """Close every connection (abandoning any running generator)."""
        self._closed = True
        connections = self._idle + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        with anyio.CancelScope(shield=True):
            for connection in connections:
                await connection.aclose()

    async def _call(self, call: str, *args: Any, **kwargs: Any) -> Any:
        connection = await self._acquire()
        reusable = False
        try:
            rid = connection.new_id()
            await connection.send({"id": rid, "call": call, "args": args, "kwargs": kwargs})
            try:
                reply = await connection.reply(rid)
            except (DaemonUnreachable, ProtocolError):
                raise
            except AxonError:
                reusable = True
                raise
            if reply.get("t") != OK:
                raise ProtocolError(f"unexpected reply {reply.get('t')!r} to {call}")
            reusable = True
            return reply.get("result")
        finally:
            await self._release(connection, reusable)

    async def _call_dict(self, call: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """:meth:`_call` for a call whose result is a map; anything else is a protocol error."""
        result = await self._call(call, *args, **kwargs)
        if not isinstance(result, dict):
            raise ProtocolError(f"{call} returned {type(result).__name__}, not a map")
        return result

    async def _call_int(self, call: str, *args: Any, **kwargs: Any) -> int | None:
        """:meth:`_call` for a call whose result is an integer or None."""
        result = await self._call(call, *args, **kwargs)
        if result is not None and (not isinstance(result, int) or isinstance(result, bool)):
            raise ProtocolError(f"{call} returned {type(result).__name__}, not an integer")
        return result

    async def _stream(self, call: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        connection = await self._acquire()
        reusable = False
        try:
            rid = connection.new_id()
            await connection.send(
                {"id": rid, "call": call, "args": args, "kwargs": kwargs, "raw": True}
            )
            while True:
                try:
                    reply = await connection.reply(rid)
                except (DaemonUnreachable, ProtocolError):
                    raise
                except AxonError:
                    reusable = True
                    raise
                kind = reply.get("t")
                if kind == ITEMS:
                    for item in reply["items"]:
                        yield item
                elif kind == RAW:
                    size = reply.get("size")
                    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                        raise ProtocolError(f"raw frame with a bad size {size!r}")
                    async with aclosing(connection.receive_raw(size)) as pieces:
                        async for piece in pieces:
                            yield piece
                elif kind in (END, CANCELLED):
                    reusable = True
                    return
                else:
                    raise ProtocolError(f"unexpected reply {kind!r} in the {call} stream")
        finally:
            # Abandoned mid-stream: closing the connection makes the daemon stop.
            await self._release(connection, reusable)

    async def ping(self) -> dict[str, Any]:
        """The daemon's version and pid (an axonfs extension)."""
        return await self._call_dict("ping")

    async def unpack(self, sha256: bytes, fmt: str, offs: int = 0) -> tuple[Any, ...]:
        """``struct.unpack(fmt, ...)`` of the blob's bytes at *offs*."""
        return tuple(await self._call("unpack", sha256, fmt, offs))

    async def stats(self) -> dict[str, Any]:
        """The daemon's operational counters (an axonfs extension; see axonfs.stats)."""
        return await self._call_dict("stats")

    async def log_level(self, level: str | None = None, logger: str = "") -> dict[str, Any]:
        """Set the daemon's log level (of *logger*, default the root); report the levels."""
        return await self._call_dict("log_level", level, logger)

    # -- the AxonApi ------------------------------------------------------------------

    async def put(self, byts: bytes) -> tuple[int, bytes]:
        """Store *byts*; return ``(size, sha256)``. Large buffers are streamed."""
        if len(byts) > PUT_INLINE_MAX:
            async with self.upload() as upload:
                await upload.write(byts)
                return await upload.save()
        size, sha256 = await self._call("put", byts)
        return size, sha256

    async def puts(self, files: Sequence[bytes]) -> tuple[tuple[int, bytes], ...]:
        """Store several byte strings; return ``(size, sha256)`` for each, in order."""
        results: list[tuple[int, bytes]] = []
        batch: list[bytes] = []
        batch_size = 0
        for data in files:
            if len(data) > PUT_INLINE_MAX:
                results.extend(await self._puts_batch(batch))
                batch, batch_size = [], 0
                results.append(await self.put(data))
                continue
            if batch and batch_size + len(data) > PUT_INLINE_MAX:
                results.extend(await self._puts_batch(batch))
                batch, batch_size = [], 0
            batch.append(data)
            batch_size += len(data)
        results.extend(await self._puts_batch(batch))
        return tuple(results)

    async def _puts_batch(self, batch: list[bytes]) -> tuple[tuple[int, bytes], ...]:
        if not batch:
            return ()
        return tuple(await self._call("puts", batch))

    def upload(self) -> ClientUpload:
        """A streaming upload: ``async with await axon.upload() as up`` (or without await),
        then ``await up.write(bytes)`` and ``await up.save()``, as often as needed."""
        return ClientUpload(self)

    def get(
        self, sha256: bytes, offs: int | None = None, size: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield the bytes of a blob (or of ``[offs, offs+size)``)."""
        return self._stream("get", sha256, offs, size)

    async def has(self, sha256: bytes) -> bool:
        return bool(await self._call("has", sha256))

    async def size(self, sha256: bytes) -> int | None:
        return await self._call_int("size", sha256)

    async def wants(self, sha256s: Iterable[bytes]) -> tuple[bytes, ...]:
        return tuple(await self._call("wants", list(sha256s)))

    async def hashset(self, sha256: bytes) -> dict[str, str]:
        return await self._call_dict("hashset", sha256)

    async def metrics(self) -> dict[str, int]:
        return await self._call_dict("metrics")

    async def sync(self) -> int:
        """Make every commit durable now (see ``--sync-interval``); return how
        many were not durable yet."""
        return await self._call_int("sync") or 0

    def hashes(
        self, offs: int, wait: bool = False, timeout: float | None = None
    ) -> AsyncIterator[tuple[int, tuple[bytes, int]]]:
        return self._stream("hashes", offs, wait, timeout)

    def history(
        self, tick: int, tock: int | None = None
    ) -> AsyncIterator[tuple[int, tuple[bytes, int]]]:
        return self._stream("history", tick, tock)

    async def del_(self, sha256: bytes) -> bool:
        return bool(await self._call("del_", sha256))

    async def dels(self, sha256s: Iterable[bytes]) -> tuple[bool, ...]:
        return tuple(await self._call("dels", list(sha256s)))

    async def wget(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        body: bytes | str | dict[str, Any] | None = None,
        method: str = "GET",
        ssl: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - reference API
        proxy: bool | str | None = True,
        ssl_opts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Download *url* into the store; the reference's result dictionary."""
        return await self._call_dict(
            "wget",
            url,
            params=params,
            headers=headers,
            json=json,
            body=body,
            method=method,
            ssl=ssl,
            timeout=timeout,
            proxy=proxy,
            ssl_opts=ssl_opts,
        )

    async def wput(
        self,
        sha256: bytes,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        method: str = "PUT",
        ssl: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        proxy: bool | str | None = True,
        ssl_opts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send a blob as the body of a request to *url*."""
        return await self._call_dict(
            "wput",
            sha256,
            url,
            params=params,
            headers=headers,
            method=method,
            ssl=ssl,
            timeout=timeout,
            proxy=proxy,
            ssl_opts=ssl_opts,
        )

    async def postfiles(
        self,
        fields: Sequence[dict[str, Any]],
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
        ssl: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        proxy: bool | str | None = True,
        ssl_opts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send a multipart form whose fields may be blobs (``sha256`` as hex)."""
        return await self._call_dict(
            "postfiles",
            list(fields),
            url,
            params=params,
            headers=headers,
            method=method,
            ssl=ssl,
            timeout=timeout,
            proxy=proxy,
            ssl_opts=ssl_opts,
        )

    def readlines(self, sha256: str, errors: str | None = "ignore") -> AsyncIterator[str]:
        """Yield the lines of a text blob (*sha256* as hex, like the reference)."""
        return self._stream("readlines", sha256, errors=errors)

    def csvrows(
        self, sha256: bytes, dialect: str = "excel", errors: str | None = "ignore", **fmtparams: Any
    ) -> AsyncIterator[tuple[str, ...]]:
        """Yield the rows of a CSV blob (*sha256* as raw bytes, like the reference)."""
        return self._stream("csvrows", sha256, dialect, errors=errors, **fmtparams)

    def jsonlines(self, sha256: str, errors: str | None = "ignore") -> AsyncIterator[Any]:
        """Yield the objects of a JSON-lines blob (*sha256* as hex)."""
        return self._stream("jsonlines", sha256, errors=errors)

    def iterMpkFile(self, sha256: str) -> AsyncIterator[Any]:  # noqa: N802 - reference name
        """Yield the items of a msgpack blob (*sha256* as hex)."""
        return self._stream("iterMpkFile", sha256)

    async def recoverIndices(self, verify: bool | None = None) -> dict[str, Any]:  # noqa: N802
        """Index every stored blob the index lacks; the recovery report.

        *verify* (re-hash before adopting) defaults to the daemon backend's
        choice: on for local files, off for S3 (it would download everything).
        """
        return await self._call_dict("recoverIndices", verify=verify)

    def wget_progress(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        body: bytes | str | dict[str, Any] | None = None,
        method: str = "GET",
        ssl: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - reference API
        proxy: bool | str | None = True,
        ssl_opts: dict[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """:meth:`wget` with progress: ``{"received", "total"}`` dicts as the body
        arrives (``total`` None when the server announced no length), then
        ``{"done": True, "result": <wget's result>}``."""
        return self._stream(
            "wget_progress",
            url,
            params=params,
            headers=headers,
            json=json,
            body=body,
            method=method,
            ssl=ssl,
            timeout=timeout,
            proxy=proxy,
            ssl_opts=ssl_opts,
        )

    def recover_progress(self, verify: bool | None = None) -> AsyncIterator[dict[str, Any]]:
        """:meth:`recoverIndices` with progress: ``{"listed", "added"}`` dicts as
        the listing goes, then the report with ``"done": True``."""
        return self._stream("recover_progress", verify=verify)


class ClientUpload:
    """A streaming upload over one connection (the reference's UpLoadShare).

    Usable as ``async with await axon.upload() as up`` or ``async with
    axon.upload() as up``. ``write()`` sends without waiting for the daemon;
    ``save()`` returns ``(size, sha256)`` (or raises the error of any failed
    write) and starts a new file. Leaving the block discards unsaved bytes.
    """

    def __init__(self, client: AxonClient) -> None:
        self._client = client
        self._connection: _Connection | None = None
        self._rid = 0
        self._failed = False

    def __await__(self) -> Generator[Any, None, ClientUpload]:
        async def ready() -> ClientUpload:
            return self

        return ready().__await__()

    async def __aenter__(self) -> ClientUpload:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _open(self) -> _Connection:
        if self._connection is None:
            connection = await self._client._acquire()
            self._connection = connection
            self._rid = connection.new_id()
            try:
                await connection.send({"id": self._rid, "call": "upload", "args": (), "kwargs": {}})
            except BaseException:
                self._failed = True
                raise
        return self._connection

    async def write(self, byts: bytes) -> None:
        """Send *byts* (split into frames of at most 4 MiB)."""
        connection = await self._open()
        view = memoryview(byts)
        try:
            for start in range(0, len(view), WRITE_CHUNK):
                await connection.send(
                    {"id": self._rid, "t": WRITE, "data": bytes(view[start : start + WRITE_CHUNK])}
                )
        except BaseException:
            self._failed = True
            raise

    async def save(self) -> tuple[int, bytes]:
        """Store what was written since the last save; return ``(size, sha256)``."""
        connection = await self._open()
        try:
            await connection.send({"id": self._rid, "t": SAVE})
            reply = await connection.reply(self._rid)
        except BaseException:
            self._failed = True
            raise
        if reply.get("t") != SAVED:
            self._failed = True
            raise ProtocolError(f"unexpected reply {reply.get('t')!r} to save")
        size, sha256 = reply["result"]
        return size, sha256

    async def close(self) -> None:
        """End the session; unsaved bytes are discarded."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        reusable = False
        if not self._failed:
            try:
                with anyio.move_on_after(10):
                    await connection.send({"id": self._rid, "t": CLOSE})
                    reusable = (await connection.reply(self._rid)).get("t") == END
            except AxonError:
                reusable = False
        await self._client._release(connection, reusable)


@asynccontextmanager
async def connect(
    socket: str | os.PathLike[str] | None = None,
    *,
    mount: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
) -> AsyncIterator[AxonClient]:
    """Connect to an axonfs daemon; yield an :class:`AxonClient`.

    Args:
        socket: the control socket's path.
        mount: a mount point; its daemon's socket is read from the
            ``user.axonfs.socket`` xattr of its root.
        store: a store directory; its daemon listens on ``<store>/run/ctl.sock``.

    With none of them, ``$AXONFS_SOCKET``, else the default store's socket.

    Raises:
        DaemonUnreachable: nothing listens there.
        AccessDenied: the daemon does not admit this uid.
    """
    if sum(value is not None for value in (socket, mount, store)) > 1:
        raise BadArg("give at most one of socket, mount and store")
    client = AxonClient(find_socket(socket, mount=mount, store=store))
    await client._release(await client._acquire(), True)  # fail fast, and warm the pool
    try:
        yield client
    finally:
        await client.aclose()
