"""The daemon side of the control socket: accept, authorise, dispatch to the Axon.

:func:`serve_control` listens on ``<store>/run/ctl.sock`` inside the daemon's
root nursery. Each connection is checked with ``SO_PEERCRED`` (the socket's
owner, root and members of ``--ctl-group`` are admitted), greeted with a
``hello`` frame, then serves any number of requests, concurrently, each in its
own task. The wire format is :mod:`axonfs.protocol`; ``docs/PROTOCOL.md`` has
the prose.

Concurrency: one task per connection reads frames and starts one task per
request in the connection's nursery; replies go out under a per-connection send
lock. Streamed results pass through a small memory channel between the task
that pulls the Axon's generator and the task that writes ``items`` frames, so a
client that stops reading stops the generator (back-pressure), and a client
that disconnects cancels every request of its connection: an abandoned
``csvrows`` stops parsing within one batch.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket as stdsocket
import stat
import struct
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from axonfs import __version__, api
from axonfs import log as logsetup
from axonfs.axon import Axon
from axonfs.budget import MemoryBudget, request_budget
from axonfs.errors import AxonError, BadArg, HitLimit
from axonfs.protocol import (
    CANCEL,
    CANCELLED,
    CLIENT_KINDS,
    END,
    HELLO,
    ITEMS,
    MAX_REQUEST_FRAME,
    OK,
    RAW,
    RAW_MIN,
    RECEIVE_SIZE,
    SAVE,
    SAVED,
    VERSION,
    WRITE,
    AccessDenied,
    FrameDecoder,
    ProtocolError,
    bindable_path,
    encode_parts,
    error_message,
)
from axonfs.sockio import SocketWire
from axonfs.stats import ServerStatistics, Stats

log = logging.getLogger(__name__)

CALLS = api.CALLS
"""Every call the socket serves (see :mod:`axonfs.api`)."""
SERVER_CALLS = {
    "recoverIndices": "_recover_indices",
    "recover_progress": "_recover_progress",
    "wget_progress": "_wget_progress",
    "ping": "_ping",
    "stats": "_stats",
    "log_level": "_log_level",
}
"""The ``_Connection`` method answering each call the server answers itself."""

MAX_REQUESTS = 64
"""Requests one connection may have in flight at once."""
STREAM_BUFFER = 64
"""Items a streamed call may run ahead of the socket."""
STREAM_WINDOW = 16 << 20
"""Bytes of items a streamed call may run ahead of the socket: a client that
reads a big ``get`` slowly holds at most this (plus the piece being read) in
the daemon, not STREAM_BUFFER pieces of 4 MiB."""
BATCH_ITEMS = 512
BATCH_BYTES = 4 << 20
WIRE_PIECE = 4 << 20
"""Larger byte items (a local ``get`` yields 16 MiB pieces) go out in slices of
this size: measured, 16 MiB frames made a socket ``get`` ~40% slower than 4 MiB
ones (the client assembles each frame in a growing buffer)."""
UPLOAD_INBOX = 8
"""Upload frames (up to 4 MiB each) queued between the socket and the spool."""
PROGRESS_EVERY = 0.1
"""Seconds between the progress items of a streamed wget."""
CLOSE_GRACE = 1.0
"""Seconds to try delivering a final error before closing a connection."""


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> PeerCredentials:
    """The pid, uid and gid of the process at the other end of a unix socket."""
    raw = sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_PEERCRED, struct.calcsize("3i"))
    return PeerCredentials(*struct.unpack("3i", raw))


def _process_groups(pid: int) -> set[int]:
    """Supplementary groups of *pid* (from /proc; empty if unreadable)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return {int(gid) for gid in line.split()[1:]}
    except OSError:
        pass
    return set()


def admits(peer: PeerCredentials, owner_uid: int, group: int | None) -> bool:
    """Whether *peer* is *owner_uid*, root, or a member of *group* (also used by Telepath)."""
    if peer.uid in (0, owner_uid):
        return True
    if group is None:
        return False
    return peer.gid == group or group in _process_groups(peer.pid)


class ControlServer:
    """Serves one :class:`Axon` on a control socket; see the module docstring."""

    def __init__(
        self, axon: Axon, *, ctl_group: int | None = None, stats: Stats | None = None
    ) -> None:
        self.axon = axon
        self.ctl_group = ctl_group
        self.stats = stats if stats is not None else Stats(axon)
        self.stats.control = self
        self.budget: MemoryBudget = request_budget(axon)
        """Shared with every front end of the same Axon."""
        self.owner_uid = os.geteuid()
        self.telepath_urls: tuple[str, ...] = ()
        """The daemon's Telepath URLs, which ``ping`` reports (set once they listen)."""
        self._connections = 0
        self._requests = 0
        self._refused = 0
        self._protocol_errors = 0
        self._items_sent = 0
        self._stream_bytes = 0
        self._requests_refused = 0

    def statistics(self) -> ServerStatistics:
        budget = self.budget.statistics()
        return ServerStatistics(
            self._connections,
            self._requests,
            self._refused,
            self._protocol_errors,
            self._items_sent,
            self._stream_bytes,
            budget.used,
            budget.peak,
            budget.refused,
            self._requests_refused,
        )

    def admits(self, peer: PeerCredentials) -> bool:
        """The socket's owner, root, and members of the control group get in."""
        return admits(peer, self.owner_uid, self.ctl_group)

    async def serve(
        self,
        socket_path: Path,
        *,
        task_status: trio.TaskStatus[ControlServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on *socket_path* until cancelled; remove the socket on the way out."""
        sock, inode = await _listen(socket_path, self.ctl_group)
        listener = trio.SocketListener(sock)
        log.info("control socket listening on %s", socket_path)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle, [listener])
                task_status.started(self)
        finally:
            _remove_socket(socket_path, inode)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            peer = peer_credentials(stream.socket)
        except OSError as exc:
            log.warning("control connection without peer credentials: %s", exc)
            await stream.aclose()
            return
        if not self.admits(peer):
            self._refused += 1
            log.warning(
                "refused control connection from pid %d uid %d gid %d", peer.pid, peer.uid, peer.gid
            )
            await _send_last(
                stream,
                error_message(
                    None,
                    AccessDenied(
                        f"uid {peer.uid} may not use this daemon (owner uid {self.owner_uid})",
                        uid=peer.uid,
                    ),
                ),
            )
            return
        self._connections += 1
        log.debug("control connection from pid %d uid %d", peer.pid, peer.uid)
        _widen_send_buffer(stream)
        try:
            await _Connection(self, stream).run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        except Exception:  # one connection's failure must never stop the daemon
            log.exception("control connection from pid %d failed", peer.pid)
        finally:
            self._connections -= 1
            await stream.aclose()


class _Request:
    def __init__(self, rid: int, call: str, raw: bool = False) -> None:
        self.rid = rid
        self.call = call
        self.raw = raw  # the client reads big bytes items as raw frames
        self.scope = trio.CancelScope()
        self.charge = 0  # request-budget bytes its frame took, released when it ends
        # Upload frames travel with the budget bytes each took.
        self.inbox: trio.MemorySendChannel[tuple[dict[str, Any], int]] | None = None
        self.inbox_receiver: trio.MemoryReceiveChannel[tuple[dict[str, Any], int]] | None = None
        declared = CALLS.get(call)
        if declared is not None and declared.shape is api.Shape.UPLOAD:
            # Made here, not in the task, so write frames that follow at once find it.
            self.inbox, self.inbox_receiver = trio.open_memory_channel(UPLOAD_INBOX)


class _Connection:
    """One client connection: a reader loop plus a task per request."""

    def __init__(self, server: ControlServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.axon = server.axon
        self.stream = stream
        self.wire = SocketWire(
            stream.socket.fileno(),
            wait_readable=trio.lowlevel.wait_readable,
            wait_writable=trio.lowlevel.wait_writable,
            checkpoint=trio.lowlevel.checkpoint,
        )
        self.send_lock = trio.Lock()
        self.requests: dict[int, _Request] = {}
        self.nursery: trio.Nursery | None = None

    async def run(self) -> None:
        await self.send(
            {
                "id": None,
                "t": HELLO,
                "version": VERSION,
                "server": f"axonfs {__version__}",
                "calls": sorted(CALLS),
                "max_frame": MAX_REQUEST_FRAME,
            }
        )
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            try:
                await self._read_loop()
            except (ProtocolError, HitLimit) as exc:
                # HitLimit: a frame the request budget cannot hold; the rest of
                # it is not read, so the stream cannot be resynchronised either.
                self.server._protocol_errors += 1
                log.warning("closing control connection: %s", exc)
                with trio.move_on_after(CLOSE_GRACE):
                    await self.send(error_message(exc.fields.get("id"), exc))
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
                pass
            # The client went away (or broke the protocol): stop its work.
            nursery.cancel_scope.cancel()

    async def _read_loop(self) -> None:
        decoder = FrameDecoder(MAX_REQUEST_FRAME, self.server.budget)
        try:
            while True:
                data = await self.wire.receive_some(RECEIVE_SIZE)
                if not data:
                    return
                decoder.feed(data)
                while (message := await self._next_message(decoder)) is not None:
                    charge = decoder.take_charge()
                    kept = False
                    try:
                        kept = await self._dispatch(message, charge)
                    finally:
                        if not kept:
                            self.server.budget.release(charge)
        finally:
            decoder.close()

    async def _next_message(self, decoder: FrameDecoder) -> dict[str, Any] | None:
        """The next whole message, its large frame first taken from the budget."""
        if size := decoder.frame_to_charge():
            # Waiting here leaves the rest of the frame unread in the socket.
            await self.server.budget.take(size)
            decoder.charged(size)
        return decoder.next_message()

    async def _dispatch(self, message: dict[str, Any], charge: int) -> bool:
        """Act on one message; True if a request now holds its *charge*."""
        rid = message.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise ProtocolError(f"message id must be an integer, not {rid!r}")
        if "call" in message:
            call = message.get("call")
            declared = CALLS.get(call) if isinstance(call, str) else None  # a map is unhashable
            if declared is not None and declared.inline and not self.requests:
                await self._answer_inline(rid, message)
                return False
            return await self._start(rid, message, charge)
        kind = message.get("t")
        if not isinstance(kind, str) or kind not in CLIENT_KINDS:  # a map is unhashable
            raise ProtocolError(f"message has neither a call nor a known kind: {kind!r}", id=rid)
        request = self.requests.get(rid)
        if request is None:
            return False  # the request already ended; its late frames are harmless
        if kind == CANCEL:
            request.scope.cancel()
            return False
        if request.inbox is None:
            raise ProtocolError(f"{kind!r} sent to request {rid}, which is not an upload", id=rid)
        try:
            await request.inbox.send((message, charge))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False  # the upload ended with an error already sent
        return True

    async def _answer_inline(self, rid: int, message: dict[str, Any]) -> None:
        """Answer a point call in the reading task, without a task of its own.

        These calls are short (an index lookup, one commit); a task, a cancel
        scope and a signature check per request cost as much as the work.
        """
        call, args, kwargs = message["call"], message.get("args", ()), message.get("kwargs")
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs or {}, dict):
            raise ProtocolError("a call needs 'call' (str), 'args' (array), 'kwargs' (map)", id=rid)
        if rid in self.requests:
            raise ProtocolError(f"request id {rid} is already in use", id=rid)
        self.server._requests += 1
        log.debug("request %d: %s answered inline", rid, call)
        try:
            result = await self._function(call)(*args, **(kwargs or {}))
        except Exception as exc:  # the same policy as calls in tasks
            await self.send(_failure_reply(rid, call, exc))
        else:
            await self.send({"id": rid, "t": OK, "result": result})
        finally:
            self.server._requests -= 1

    async def _start(self, rid: int, message: dict[str, Any], charge: int) -> bool:
        """Start a task for a call; True if it holds *charge* now."""
        call, args, kwargs = message.get("call"), message.get("args", ()), message.get("kwargs")
        if (
            not isinstance(call, str)
            or not isinstance(args, (list, tuple))
            or not isinstance(kwargs if kwargs is not None else {}, dict)
        ):
            raise ProtocolError("a call needs 'call' (str), 'args' (array), 'kwargs' (map)", id=rid)
        if rid in self.requests:
            raise ProtocolError(f"request id {rid} is already in use", id=rid)
        if len(self.requests) >= MAX_REQUESTS:
            # Counted here, as the frame arrives: a pipelined burst has its
            # first MAX_REQUESTS started before any task runs.
            self.server._requests_refused += 1
            await self.send(
                error_message(
                    rid,
                    BadArg(
                        f"more than {MAX_REQUESTS} requests in flight on one connection",
                        limit=MAX_REQUESTS,
                    ),
                )
            )
            return False
        request = _Request(rid, call, raw=message.get("raw") is True)
        request.charge = charge
        self.requests[rid] = request
        assert self.nursery is not None
        self.nursery.start_soon(self._run_request, request, tuple(args), dict(kwargs or {}))
        return True

    async def _run_request(
        self, request: _Request, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        rid = request.rid
        self.server._requests += 1
        log.debug("request %d: %s started", rid, request.call)
        try:
            with request.scope:
                try:
                    await self._execute(request, args, kwargs)
                except Exception as exc:
                    await self.send(_failure_reply(rid, request.call, exc))
            if request.scope.cancelled_caught:
                log.debug("request %d: %s cancelled by the client", rid, request.call)
                await self.send({"id": rid, "t": CANCELLED})
        finally:
            self.server._requests -= 1
            del self.requests[rid]
            self.server.budget.release(request.charge)

    async def _execute(
        self, request: _Request, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        declared = CALLS.get(request.call)
        if declared is None:
            raise BadArg(f"unknown call {request.call!r}", call=request.call)
        if declared.shape is api.Shape.UPLOAD:
            await self._upload(request)
            return
        function = self._function(request.call)
        try:
            api.wire_signature(declared, function).bind(*args, **kwargs)
        except TypeError as exc:
            raise BadArg(f"{request.call}: {exc}", call=request.call) from None
        if declared.request_id:  # it sends its own items
            await function(request.rid, *args, **kwargs)
            await self.send({"id": request.rid, "t": END})
        elif declared.shape is api.Shape.VALUE:
            result = await function(*args, **kwargs)
            await self.send({"id": request.rid, "t": OK, "result": result})
        elif declared.batched is not None:
            batches = getattr(self.axon, declared.batched)(*args, **kwargs)
            await self._stream(request.rid, batches, batched=True)
            await self.send({"id": request.rid, "t": END})
        else:
            await self._stream(request.rid, function(*args, **kwargs), raw=request.raw)
            await self.send({"id": request.rid, "t": END})

    def _function(self, call: str) -> Callable[..., Any]:
        """What answers *call*: the Axon's method, or the server's own (``SERVER_CALLS``)."""
        own = SERVER_CALLS.get(call)
        function: Callable[..., Any] = (
            getattr(self, own) if own is not None else getattr(self.axon, call)
        )
        return function

    async def _recover_indices(self, verify: bool | None = None) -> dict[str, Any]:
        return await self._recover_report(verify)

    async def _recover_report(
        self,
        verify: bool | None = None,
        progress: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        report = await self.axon.recover(
            verify=None if verify is None else bool(verify), progress=progress
        )
        return {
            "listed": report.listed,
            "added": report.added,
            "skipped": report.skipped,
            "ignored": report.ignored,
            "corrupt": list(report.corrupt),
        }

    async def _stats(self) -> dict[str, Any]:
        return await self.server.stats.snapshot()

    async def _recover_progress(self, rid: int, verify: bool | None = None) -> None:
        """recoverIndices as a stream: ``{"listed", "added"}`` items as it goes,
        then the report with ``"done": True``."""

        async def progress(listed: int, added: int) -> None:
            await self.send({"id": rid, "t": ITEMS, "items": [{"listed": listed, "added": added}]})

        report = await self._recover_report(verify, progress)
        await self.send({"id": rid, "t": ITEMS, "items": [{"done": True, **report}]})

    async def _wget_progress(
        self,
        rid: int,
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
    ) -> None:
        """wget as a stream: ``{"received", "total"}`` items at most every
        :data:`PROGRESS_EVERY` seconds as the body arrives, then ``{"done": True,
        "result": ...}`` with wget's result dictionary."""
        last = 0.0

        async def progress(received: int, total: int | None) -> None:
            nonlocal last
            if trio.current_time() - last >= PROGRESS_EVERY:
                last = trio.current_time()
                await self.send(
                    {"id": rid, "t": ITEMS, "items": [{"received": received, "total": total}]}
                )

        result = await self.axon.wget(
            url,
            params,
            headers,
            json,
            body,
            method,
            ssl,
            timeout,
            proxy,
            ssl_opts,
            progress=progress,
        )
        await self.send({"id": rid, "t": ITEMS, "items": [{"done": True, "result": result}]})

    async def _log_level(self, level: str | None = None, logger: str = "") -> dict[str, Any]:
        """Set (or with no *level*, only report) the daemon's log levels."""
        if not isinstance(logger, str) or not (level is None or isinstance(level, str)):
            raise BadArg("log_level takes a level name and a logger name (strings)")
        if level is not None:
            try:
                logsetup.set_level(level, logger)
            except ValueError as exc:
                raise BadArg(str(exc), level=level) from None
        return {"levels": logsetup.levels()}

    async def _ping(self) -> dict[str, Any]:
        return {
            "server": f"axonfs {__version__}",
            "version": VERSION,
            "pid": os.getpid(),
            "telepath": list(self.server.telepath_urls),
        }

    async def _stream(
        self, rid: int, items: AsyncGenerator[Any, None], batched: bool = False, raw: bool = False
    ) -> None:
        """Send *items* in batched ``items`` frames; re-raise the generator's error last.

        With *batched*, the generator yields lists of items, each sent as it is.
        With *raw*, bytes items of :data:`RAW_MIN` or more go as ``raw`` frames.
        """
        failure: list[Exception] = []
        window = _Window(STREAM_WINDOW, self.server)
        with window:
            await self._send_stream(rid, items, batched, raw, window, failure)
        if failure:
            raise failure[0]

    async def _send_stream(
        self,
        rid: int,
        items: AsyncGenerator[Any, None],
        batched: bool,
        raw: bool,
        window: _Window,
        failure: list[Exception],
    ) -> None:
        send_channel, receive_channel = trio.open_memory_channel[Any](STREAM_BUFFER)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_produce, items, send_channel, window, failure)
            async with receive_channel:
                async for first in receive_channel:
                    if batched:
                        await self.send({"id": rid, "t": ITEMS, "items": first})
                        window.release(_cost(first))
                        self.server._items_sent += len(first)
                        continue
                    pending = first
                    while pending is not None:
                        if raw and _is_raw(pending):
                            await self.send(
                                {"id": rid, "t": RAW, "size": len(pending)}, payload=pending
                            )
                            window.release(_cost(pending))
                            self.server._items_sent += 1
                            pending = None
                            continue
                        batch, size, pending = [pending], _cost(pending), None
                        while len(batch) < BATCH_ITEMS and size < BATCH_BYTES:
                            try:
                                item = receive_channel.receive_nowait()
                            except (trio.WouldBlock, trio.EndOfChannel):
                                break
                            if raw and _is_raw(item):
                                pending = item  # ends the batch; sent right after it
                                break
                            batch.append(item)
                            size += _cost(item)
                        await self.send({"id": rid, "t": ITEMS, "items": batch})
                        window.release(size)
                        self.server._items_sent += len(batch)

    async def _upload(self, request: _Request) -> None:
        """Serve an upload session: ``write`` frames, ``save`` → ``saved``, ``close``."""
        inbox = request.inbox_receiver
        assert inbox is not None
        async with inbox:
            try:
                await self._upload_frames(request, inbox)
            finally:
                # Frames still queued die with the inbox: give back their budget.
                with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                    while True:
                        self.server.budget.release(inbox.receive_nowait()[1])
        await self.send({"id": request.rid, "t": END})

    async def _upload_frames(
        self, request: _Request, inbox: trio.MemoryReceiveChannel[tuple[dict[str, Any], int]]
    ) -> None:
        async with await self.axon.upload() as upload:
            async for message, charge in inbox:
                try:
                    kind = message["t"]
                    if kind == WRITE:
                        data = message.get("data")
                        if not isinstance(data, bytes):
                            raise BadArg("upload write needs 'data' as bytes")
                        await upload.write(data)
                    elif kind == SAVE:
                        size, sha256 = await upload.save()
                        await self.send({"id": request.rid, "t": SAVED, "result": (size, sha256)})
                    else:  # close: unsaved bytes are discarded
                        break
                finally:
                    self.server.budget.release(charge)

    async def send(self, message: dict[str, Any], payload: bytes | memoryview = b"") -> None:
        """Send one frame, and *payload* right after it (a ``raw`` frame's bytes).

        A vanished client cancels the whole connection, and so does a send
        cancelled part way through a frame (a ``cancel`` from the client, say):
        whatever followed on the stream would be garbage to the client.
        """
        header, body = encode_parts(message)
        try:
            # An uncontended lock is taken without the scheduler pass of `async with`.
            try:
                self.send_lock.acquire_nowait()
            except trio.WouldBlock:
                await self.send_lock.acquire()
            try:
                await self.wire.send_all(header, body, payload)
            except trio.Cancelled:
                if self.wire.mid_send and self.nursery is not None:
                    self.nursery.cancel_scope.cancel()
                raise
            finally:
                self.send_lock.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            if self.nursery is not None:
                self.nursery.cancel_scope.cancel()
            await trio.lowlevel.checkpoint()  # raises Cancelled now
            raise


def _failure_reply(rid: int, call: str, exc: Exception) -> dict[str, Any]:
    """The ``err`` reply for a call that raised *exc*, logged as its kind deserves.

    The one error policy of both ways a call runs (inline and in a task).
    """
    if isinstance(exc, AxonError):
        return error_message(rid, exc)
    if isinstance(exc, OSError):  # the environment (a full disk...), not a daemon bug
        log.warning("request %d: %s failed: %s", rid, call, exc)
        return error_message(
            rid,
            AxonError(
                f"{type(exc).__name__}: {exc}", exception=type(exc).__name__, errno=exc.errno
            ),
        )
    if isinstance(exc, (TypeError, ValueError)):
        # Arguments arrive as untyped msgpack: a wrong type (or arity) surfaces
        # as one of these from inside the call. The caller's mistake, so a
        # BadArg reply and a warning, not a daemon error.
        log.warning("request %d: %s with bad arguments: %s", rid, call, exc)
        return error_message(rid, BadArg(f"{call}: {type(exc).__name__}: {exc}", call=call))
    log.exception("request %d: %s failed", rid, call)
    return error_message(
        rid, AxonError(f"{type(exc).__name__}: {exc}", exception=type(exc).__name__)
    )


async def _produce(
    items: AsyncGenerator[Any, None],
    channel: trio.MemorySendChannel[Any],
    window: _Window,
    failure: list[Exception],
) -> None:
    async with channel, aclosing(items):
        try:
            async for item in items:
                if isinstance(item, bytes) and len(item) > WIRE_PIECE:
                    view = memoryview(item)  # slices share the bytes: no copy
                    for start in range(0, len(item), WIRE_PIECE):
                        piece = view[start : start + WIRE_PIECE]
                        await window.reserve(_cost(piece))
                        await channel.send(piece)
                else:
                    await window.reserve(_cost(item))
                    await channel.send(item)
        except Exception as exc:
            failure.append(exc)


class _Window:
    """Bytes a stream's producer may have handed on and the socket not yet taken.

    ``reserve`` waits while the window is full (one item always fits, whatever
    its size); the consumer releases what it sent. The server's
    ``stream_bytes`` statistic is the sum over every open stream.
    """

    def __init__(self, limit: int, server: ControlServer) -> None:
        self.limit = limit
        self.used = 0
        self._server = server
        self._room = trio.lowlevel.ParkingLot()

    async def reserve(self, size: int) -> None:
        while self.used and self.used + size > self.limit:
            await self._room.park()
        self.used += size
        self._server._stream_bytes += size

    def release(self, size: int) -> None:
        self.used -= size
        self._server._stream_bytes -= size
        self._room.unpark_all()

    def __enter__(self) -> _Window:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release(self.used)  # a stream that ended early leaves items unsent


def _is_raw(item: Any) -> bool:
    return isinstance(item, (bytes, memoryview)) and len(item) >= RAW_MIN


def _cost(item: Any) -> int:
    return len(item) if isinstance(item, (bytes, str, memoryview)) else 64


SEND_BUFFER = 4 << 20
"""SO_SNDBUF of a control connection. A unix stream socket queues at most the
sender's send buffer (208 KiB by default): with 4 MiB, a 4 MiB ``get`` piece
crosses in one go instead of a wake-up of each side per 208 KiB."""


def _widen_send_buffer(stream: trio.SocketStream) -> None:
    try:
        stream.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, SEND_BUFFER)
    except OSError as exc:  # only a speed-up; the kernel caps it at wmem_max anyway
        log.debug("cannot widen a control connection's send buffer: %s", exc)


async def _send_last(stream: trio.SocketStream, message: dict[str, Any]) -> None:
    header, body = encode_parts(message)
    with (
        trio.move_on_after(CLOSE_GRACE),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await stream.send_all(header + body)
    await stream.aclose()


async def _listen(path: Path, ctl_group: int | None) -> tuple[trio.socket.SocketType, int]:
    """Bind and listen on *path* (mode 0600, or 0660 for a control group)."""
    _prepare_directory(path.parent, ctl_group)
    await _clear_stale(path)
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        with bindable_path(path) as address:
            await sock.bind(address)
        # Nobody can connect before listen(), so setting the mode here is race-free.
        if ctl_group is None:
            os.chmod(path, 0o600)
        else:
            os.chown(path, -1, ctl_group)
            os.chmod(path, 0o660)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock, os.stat(path).st_ino


def _prepare_directory(directory: Path, ctl_group: int | None) -> None:
    """Create the socket's directory; a ``run`` directory is made owner-only."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.name != "run":
        return  # a directory the operator chose: leave its mode alone
    if ctl_group is None:
        os.chmod(directory, 0o700)
    else:
        os.chown(directory, -1, ctl_group)
        os.chmod(directory, 0o750)


async def _clear_stale(path: Path) -> None:
    """Remove a socket left by a dead daemon; refuse to steal a live one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AxonError(f"{path} exists and is not a socket", path=str(path))
    probe = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        with bindable_path(path) as address:
            await probe.connect(address)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        log.info("removing stale control socket %s", path)
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - a tiny local unlink
    else:
        raise AxonError(f"another daemon is serving {path}", path=str(path))
    finally:
        probe.close()


def _remove_socket(path: Path, inode: int) -> None:
    try:
        if os.stat(path).st_ino == inode:
            path.unlink()
    except OSError:
        pass


async def serve_control(
    axon: Axon,
    socket_path: Path,
    *,
    ctl_group: int | None = None,
    stats: Stats | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *axon* on the control socket *socket_path* until cancelled.

    ``nursery.start``-compatible: returns control (with the
    :class:`ControlServer`) once the socket is listening. Members of the group
    *ctl_group* are admitted besides the owner and root. *stats* is what the
    ``stats`` call reports (the daemon's, with the mount's counters); by
    default the server keeps its own, without FUSE figures.
    """
    server = ControlServer(axon, ctl_group=ctl_group, stats=stats)
    await server.serve(socket_path, task_status=task_status)
