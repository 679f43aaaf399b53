"""The Telepath listeners: Synapse's own client talks to the daemon's Axon.

Telepath 3 as Synapse 2.x's client speaks it (``docs/ARCHITECTURE.md`` has
the prose). A client's first connection (the *main link*) sends ``tele:syn``
with a share name (``*`` or ``axon``) and, on a network listener, a user and
password; the reply carries a session id, the object's method table (which
methods are generators) and the cell's features. Calls then arrive as
``t2:init`` ``{todo: (method, args, kwargs), name, sess}``, mostly on further
connections the client opens (*pool links*), whose only credential is the
session id. Replies: ``t2:fini`` with ``(True, value)`` or ``(False,
(ClassName, info))``; a generator sends ``t2:genr``, one ``t2:yield`` per
item and ``t2:yield`` with ``None`` at the end (or an error); ``upload()``
answers ``t2:share`` with a new object's id, whose ``write``/``save`` are
``t2:init`` calls naming it, and which ``share:fini`` releases.

Admission: the unix socket ``<store>/run/telepath.sock`` admits by
``SO_PEERCRED`` exactly as ``ctl.sock`` does, and its clients are the root
user. Network listeners (``tcp://``, ``ssl://``) need a user of
:mod:`axonfs.telepath.users`. A session id is 128 random bits, valid only on
the listener that issued it (and, on the unix socket, only for the same
uid), and ends with its main link: its pool links are closed and its uploads
discarded.

Bounds: a message is at most :data:`~axonfs.telepath.wire.MAX_MESSAGE`
bytes; a connection that has not yet shown a valid session (or finished its
handshake) gets :data:`HANDSHAKE_TIMEOUT` seconds for its first message, and
all such connections together may buffer :data:`UNPROVEN_BUDGET` bytes. A
malformed message closes its connection only.

Concurrency: a task per connection reads messages into an unbuffered
channel and a second one answers them one at a time, as Synapse's daemon
does, so a connection holds at most one decoded message besides the one
being answered. The reader notices the client leaving at once: every call
of that connection is then cancelled, so an abandoned generator stops
where it is. Replies are written straight to the socket, so a client that
stops reading stops its generator (back-pressure). Password checks run in a
worker thread under the ``auth_cpu`` limiter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio

from axonfs import api
from axonfs.axon import Axon
from axonfs.ctlserver import (
    PeerCredentials,
    _listen,
    _remove_socket,
    admits,
    peer_credentials,
)
from axonfs.errors import AxonError, BadArg
from axonfs.sockio import SocketWire
from axonfs.telepath import users
from axonfs.telepath.config import ListenAddress, TelepathConfig, unix_url_problem
from axonfs.telepath.service import FEATURES, AxonApi, CellIdentity, Kind, Method, Shared
from axonfs.telepath.wire import (
    BadMessage,
    Message,
    MessageDecoder,
    TelepathError,
    encode,
    error_retn,
    yielded_bytes,
    yielded_rows,
)

log = logging.getLogger(__name__)

TELEVERS = (3, 0)
INLINE_CALLS = frozenset(
    call.name
    for call in api.CALLS.values()
    if call.inline and call.telepath and call.owner is api.Owner.AXON
)
"""The Axon's point lookups, which a link's reader may answer itself."""
SHARE_NAMES = frozenset({"*", "axon"})
HANDSHAKE_TIMEOUT = 10.0
"""Seconds a new connection has to send its first complete message."""
UNPROVEN_BUDGET = 256 << 20
"""Bytes all connections without a session may buffer together: a pool
link's first message may be a large ``put``, but nobody unauthenticated may
make the daemon hold more than this."""
RECEIVE_SIZE = 1 << 20
LISTEN_BACKLOG = 4096
"""Connections the kernel queues for accept() (capped by net.core.somaxconn)."""
CLOSE_GRACE = 1.0
SEND_BUFFER = 4 << 20
WRITEV_MIN = 64 << 10
"""Byte items at least this large go out as a header and the bytes, uncopied."""
"""SO_SNDBUF of a connection: a 16 MiB ``get`` piece crosses in few wake-ups."""

UNIX, TCP, SSL = "unix", "tcp", "ssl"


@dataclass(eq=False)
class Listener:
    kind: str
    url: str
    sessions: dict[str, Session] = field(default_factory=dict)


@dataclass(eq=False)
class Session:
    iden: str
    user: str
    listener: Listener
    uid: int | None
    """The peer uid that opened it (unix socket); pool links must match."""
    items: dict[str | None, Shared]
    scopes: set[trio.CancelScope] = field(default_factory=set)
    """Cancel scopes of the session's pool links."""
    ended: bool = False


class TelepathServer:
    """Serves one :class:`Axon` over Telepath; see the module docstring."""

    def __init__(
        self, axon: Axon, store: Path, identity: CellIdentity, *, ctl_group: int | None = None
    ) -> None:
        self.axon = axon
        self.store = store
        self.identity = identity
        self.ctl_group = ctl_group
        self.owner_uid = os.geteuid()
        self.auth_cpu = trio.CapacityLimiter(2)
        self.urls: list[str] = []
        self._unproven = 0

    # -- listening ------------------------------------------------------------------

    async def serve_unix(
        self, path: Path, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        sock, inode = await _listen(path, self.ctl_group)
        # A client opens a pool connection per concurrent call. A unix socket whose
        # backlog is full fails a non-blocking connect with EAGAIN, which asyncio
        # takes for "in progress" and then reports as a lost connection.
        sock.listen(LISTEN_BACKLOG)
        listener = Listener(UNIX, f"unix://{path}")
        log.info("Telepath listening on %s", listener.url)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    trio.serve_listeners, self._handler(listener), [trio.SocketListener(sock)]
                )
                task_status.started(listener.url)
        finally:
            _remove_socket(path, inode)

    async def serve_network(
        self,
        address: ListenAddress,
        context: ssl.SSLContext | None,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        tcp = await trio.open_tcp_listeners(address.port, host=address.host)
        port = tcp[0].socket.getsockname()[1]
        host = f"[{address.host}]" if ":" in address.host else address.host
        listener = Listener(address.scheme, f"{address.scheme}://{host}:{port}/")
        listeners: list[trio.abc.Listener[Any]] = list(tcp)
        if context is not None:
            listeners = [trio.SSLListener(each, context) for each in tcp]
        log.info("Telepath listening on %s", listener.url)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handler(listener), listeners)
            task_status.started(listener.url)

    def _handler(self, listener: Listener) -> Callable[[trio.abc.Stream], Awaitable[None]]:
        async def handle(stream: trio.abc.Stream) -> None:
            await self._handle(stream, listener)

        return handle

    # -- one connection ---------------------------------------------------------------

    async def _handle(self, stream: trio.abc.Stream, listener: Listener) -> None:
        peer = None
        try:
            if listener.kind == UNIX:
                assert isinstance(stream, trio.SocketStream)
                peer = peer_credentials(stream.socket)
                if not admits(peer, self.owner_uid, self.ctl_group):
                    log.warning(
                        "refused Telepath connection from pid %d uid %d gid %d",
                        peer.pid,
                        peer.uid,
                        peer.gid,
                    )
                    return
            if isinstance(stream, trio.SocketStream):
                _widen_send_buffer(stream)
            link = _Link(self, stream, listener, peer)
            await link.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        except OSError as exc:
            log.info("Telepath connection on %s ended: %s", listener.url, exc)
        except Exception:  # one connection's failure must never stop the daemon
            log.exception("Telepath connection on %s failed", listener.url)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                await stream.aclose()

    def charge_unproven(self, delta: int) -> bool:
        """Account bytes buffered by connections without a session; False if over budget."""
        self._unproven += delta
        return delta <= 0 or self._unproven <= UNPROVEN_BUDGET

    async def authenticate(self, listener: Listener, auth: Any) -> str:
        """The user a handshake's ``auth`` names, or raise ``AuthDeny``."""
        if listener.kind == UNIX:
            return "root"  # admitted by SO_PEERCRED, as the reference does for cell://
        if not (
            isinstance(auth, tuple)
            and len(auth) == 2
            and isinstance(auth[0], str)
            and isinstance(auth[1], dict)
        ):
            log.warning("refused Telepath login on %s: no user given", listener.url)
            raise TelepathError("AuthDeny", "Unable to find cell user")
        name: str = auth[0]
        info: dict[str, Any] = auth[1]
        try:
            ok = await trio.to_thread.run_sync(
                users.verify, self.store, name, info.get("passwd"), limiter=self.auth_cpu
            )
        except users.UsersFileError as exc:
            log.error("Telepath login of %r refused: %s", name, exc)
            ok = False
        if not ok:
            log.warning(
                "refused Telepath login of user %r on %s: no such user or wrong password",
                name,
                listener.url,
            )
            raise TelepathError("AuthDeny", "Invalid user name or password.", username=name)
        return name

    async def end_session(self, session: Session) -> None:
        session.ended = True
        session.listener.sessions.pop(session.iden, None)
        for scope in session.scopes:
            scope.cancel()
        items, session.items = list(session.items.values()), {}
        with trio.CancelScope(shield=True):
            for item in items:
                await item.close()
        log.debug("Telepath session of %s ended", session.user)


class _Wire(Protocol):
    """What a link reads and writes: a socket's fd directly, or a (TLS) stream."""

    async def receive_some(self, max_bytes: int) -> bytes | bytearray: ...

    async def send_all(self, *parts: bytes) -> None: ...


class _StreamWire:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def receive_some(self, max_bytes: int) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, *parts: bytes) -> None:
        await self.stream.send_all(parts[0] if len(parts) == 1 else b"".join(parts))


@dataclass(frozen=True, slots=True)
class _Failed:
    """A generator's exception, carried to the task that reports it."""

    exc: Exception


class _Link:
    """One connection: a reader task and the task answering its messages."""

    def __init__(
        self,
        server: TelepathServer,
        stream: trio.abc.Stream,
        listener: Listener,
        peer: PeerCredentials | None,
    ) -> None:
        self.server = server
        self.stream = stream
        self.wire: _Wire = _StreamWire(stream)
        if isinstance(stream, trio.SocketStream):
            # Syscalls first, the event loop only when the kernel is not ready: a
            # stream's own send and receive end with a scheduler pass each, which
            # is most of the server's time in a has() round trip.
            self.wire = SocketWire(
                stream.socket.fileno(),
                wait_readable=trio.lowlevel.wait_readable,
                wait_writable=trio.lowlevel.wait_writable,
                checkpoint=trio.lowlevel.checkpoint,
            )
        self.listener = listener
        self.peer = peer
        self.decoder = MessageDecoder()
        self.proven = False
        self._charged = 0
        self.running: str | None = None
        """The method being answered, for the log."""
        self.nursery: trio.Nursery | None = None
        self.session: Session | None = None
        """The session this link's calls belong to, once known."""
        self.idle = False
        """The answering task waits for a message, with nothing of this link in progress:
        the reader may answer a point lookup itself (see :meth:`_answers_inline`)."""

    async def run(self) -> None:
        send, receive = trio.open_memory_channel[Message](0)
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._read, send, nursery.cancel_scope)
                with contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError
                ):  # the client left: see _call
                    await self._answer(receive)
                nursery.cancel_scope.cancel()
        finally:
            self._prove()  # returns whatever this link still had charged

    async def _read(
        self, channel: trio.MemorySendChannel[Message], scope: trio.CancelScope
    ) -> None:
        async with channel:
            while True:
                try:
                    data = await self.wire.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, ConnectionError):
                    data = b""
                if not data:
                    if self.running is not None:
                        log.debug(
                            "Telepath client on %s went away during %s: stopping it",
                            self.listener.url,
                            self.running,
                        )
                    scope.cancel()  # the client left: stop whatever it asked for
                    return
                try:
                    messages = self.decoder.feed(data)
                    self._charge()
                except BadMessage as exc:
                    log.warning("closing Telepath connection on %s: %s", self.listener.url, exc)
                    scope.cancel()
                    return
                for message in messages:
                    if self._answers_inline(message):
                        assert self.session is not None
                        try:
                            await self._call(self.session, message[1])
                        except (
                            trio.BrokenResourceError,
                            trio.ClosedResourceError,
                            ConnectionError,
                        ):
                            scope.cancel()  # the client left
                            return
                    else:
                        await channel.send(message)

    def _answers_inline(self, message: Message) -> bool:
        """Whether to answer *message* in the reading task: a call of the Axon's point
        lookups (microseconds, nothing blocks) while the answering task is idle, so
        replies keep their order. It saves the hand-over between the two tasks, a
        scheduler pass per call, which is much of a ``has()`` round trip's time here."""
        name, info = message
        if name != "t2:init" or not self.idle or self.session is None or self.session.ended:
            return False
        todo = info.get("todo")
        return (
            isinstance(todo, tuple)
            and len(todo) == 3
            and todo[0] in INLINE_CALLS
            and info.get("name") is None
            and info.get("sess") == self.session.iden
        )

    def _charge(self) -> None:
        if self.proven:
            return
        pending = self.decoder.pending
        ok = self.server.charge_unproven(pending - self._charged)
        self._charged = pending
        if not ok:
            raise BadMessage("too many bytes from connections without a session")

    def _prove(self) -> None:
        self.proven = True
        self.server.charge_unproven(-self._charged)
        self._charged = 0

    async def _answer(self, messages: trio.MemoryReceiveChannel[Message]) -> None:
        with trio.move_on_after(HANDSHAKE_TIMEOUT) as first_wait:
            try:
                name, info = await messages.receive()
            except trio.EndOfChannel:
                return
        if first_wait.cancelled_caught:
            log.info(
                "closing Telepath connection on %s: nothing sent for %.0f s",
                self.listener.url,
                HANDSHAKE_TIMEOUT,
            )
            return
        if name == "tele:syn":
            session = await self._handshake(info)
            if session is not None:
                self._prove()
                try:
                    await self._serve_main(session, messages)
                finally:
                    await self.server.end_session(session)
        elif name == "t2:init":
            await self._serve_pool(info, messages)
        else:
            log.warning(
                "closing Telepath connection on %s: it began with %r, not tele:syn or t2:init",
                self.listener.url,
                name[:40],
            )

    # -- the main link ----------------------------------------------------------------

    async def _handshake(self, info: dict[str, Any]) -> Session | None:
        reply: dict[str, Any] = {"vers": TELEVERS, "retn": (True, None)}
        try:
            vers = info.get("vers")
            if not (isinstance(vers, tuple) and vers and vers[0] == TELEVERS[0]):
                raise TelepathError(
                    "BadMesgVers",
                    f"Telepath version {vers!r} is not {TELEVERS[0]}.x",
                    vers=repr(vers),
                    myvers=TELEVERS,
                )
            share = info.get("name") or "*"
            if not isinstance(share, str) or share.split("/", 1)[0] not in SHARE_NAMES:
                raise TelepathError(
                    "NoSuchName",
                    f"No shared object named {share!r} (this daemon shares '*' and 'axon')",
                    name=repr(share),
                )
            user = await self.server.authenticate(self.listener, info.get("auth"))
        except AxonError as exc:
            reply["retn"] = error_retn(exc)
            await self.send("tele:syn", reply)
            return None
        api = AxonApi(self.server.axon, self.server.identity)
        session = Session(
            secrets.token_hex(16),
            user,
            self.listener,
            self.peer.uid if self.peer is not None else None,
            {None: api},
        )
        self.listener.sessions[session.iden] = session
        reply.update(sess=session.iden, features=dict(FEATURES), sharinfo=api.share_info())
        await self.send("tele:syn", reply)
        log.debug("Telepath session of %s on %s", user, self.listener.url)
        return session

    async def _next(self, messages: trio.MemoryReceiveChannel[Message]) -> Message | None:
        """The next message for the answering task (None at the end); while it
        waits, the reader may answer point lookups itself."""
        self.idle = True
        try:
            return await messages.receive()
        except trio.EndOfChannel:
            return None
        finally:
            self.idle = False

    async def _serve_main(
        self, session: Session, messages: trio.MemoryReceiveChannel[Message]
    ) -> None:
        self.session = session
        while (message := await self._next(messages)) is not None:
            name, info = message
            if name == "t2:init":
                await self._call(session, info)
            elif name == "share:fini":
                iden = info.get("share")
                if isinstance(iden, str) and (item := session.items.pop(iden, None)):
                    await item.close()
            else:
                log.warning(
                    "closing Telepath connection on %s: unexpected %r", self.listener.url, name[:40]
                )
                return

    # -- pool links ------------------------------------------------------------------

    async def _serve_pool(
        self, first: dict[str, Any], messages: trio.MemoryReceiveChannel[Message]
    ) -> None:
        key = first.get("sess")
        session = self.listener.sessions.get(key) if isinstance(key, str) else None
        if (
            session is None
            or session.ended
            or (self.peer is not None and self.peer.uid != session.uid)
        ):
            log.warning(
                "closing Telepath connection on %s: t2:init names no session of this listener",
                self.listener.url,
            )
            await self.send(
                "t2:fini",
                {
                    "retn": error_retn(
                        TelepathError(
                            "NoSuchObj", "No such session", share=_text(first.get("name"))
                        )
                    )
                },
            )
            return
        self._prove()
        with trio.CancelScope() as scope:
            session.scopes.add(scope)
            try:
                await self._call(session, first)
                self.session = session
                while (message := await self._next(messages)) is not None:
                    name, info = message
                    if name != "t2:init" or info.get("sess") != session.iden:
                        log.warning(
                            "closing Telepath connection on %s: unexpected %r",
                            self.listener.url,
                            name[:40],
                        )
                        return
                    await self._call(session, info)
            finally:
                session.scopes.discard(scope)

    # -- calls -----------------------------------------------------------------------

    async def _call(self, session: Session, info: dict[str, Any]) -> None:
        """Answer one ``t2:init``: a value, a generator or a new share."""
        todo = info.get("todo")
        try:
            if info.get("sess") != session.iden:
                raise TelepathError("NoSuchObj", "No such session")
            if not (
                isinstance(todo, tuple)
                and len(todo) == 3
                and isinstance(todo[0], str)
                and isinstance(todo[1], tuple)
                and isinstance(todo[2], dict)
            ):
                raise TelepathError("BadMesgFormat", "todo must be (name, args, kwargs)")
            methname, args, kwargs = todo
            item = session.items.get(info.get("name"))
            if item is None:
                raise TelepathError(
                    "NoSuchObj",
                    f"No such object: {_text(info.get('name'))}",
                    share=_text(info.get("name")),
                )
            method = item.methods().get(methname) if not methname.startswith("_") else None
            if method is None:
                raise TelepathError(
                    "NoSuchMeth", f"{type(item).__name__} has no method: {methname}.", name=methname
                )
            try:
                method.binds(args, kwargs)
            except TypeError as exc:
                raise BadArg(f"{methname}: {exc}", name=methname) from None
        except AxonError as exc:
            await self.send("t2:fini", {"retn": error_retn(exc)})
            return
        log.debug("Telepath call %s by %s", methname, session.user)
        self.running = methname
        try:
            await self._run(session, methname, method, args, kwargs)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            log.debug(
                "Telepath client on %s went away during %s: stopping it",
                self.listener.url,
                methname,
            )
            raise
        finally:
            self.running = None

    async def _run(
        self,
        session: Session,
        methname: str,
        method: Method,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        if method.kind is Kind.GENERATOR:
            await self._stream(
                methname,
                method.batches or method.function,
                args,
                kwargs,
                batched=method.batches is not None,
            )
            return
        try:
            result = await method.function(*args, **kwargs)
        except Exception as exc:
            message = _encoded("t2:fini", {"retn": error_retn(_domain(methname, exc))})
        else:
            if method.kind is Kind.SHARE:
                iden = secrets.token_hex(16)
                session.items[iden] = result
                message = encode("t2:share", {"iden": iden, "sharinfo": result.share_info()})
            else:
                message = _encoded("t2:fini", {"retn": (True, result)})
        await self.wire.send_all(message)

    async def _stream(
        self,
        methname: str,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        batched: bool,
    ) -> None:
        """A generator's items, a ``t2:yield`` each; with *batched*, *function* yields
        lists of items, and each list goes out in one write."""
        await self.send("t2:genr", {})
        try:
            async with aclosing(function(*args, **kwargs)) as items:
                if batched:
                    async for batch in items:
                        await self.wire.send_all(yielded_rows(batch, _yielded_item))
                else:
                    async with self._read_ahead(items) as ahead:
                        async for item in ahead:
                            if isinstance(item, _Failed):
                                raise item.exc
                            await self.wire.send_all(*_yielded(item))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise
        except Exception as exc:
            await self.send("t2:yield", {"retn": error_retn(_domain(methname, exc))})
            return
        await self.send("t2:yield", {"retn": None})

    @contextlib.asynccontextmanager
    async def _read_ahead(
        self, items: AsyncIterator[Any]
    ) -> AsyncGenerator[trio.MemoryReceiveChannel[Any], None]:
        """*items*, with the next one produced while the current one is sent: a ``get``
        reads its next piece while the socket takes this one. At most one item waits
        (a 16 MiB piece), and leaving the block stops the producer before *items* can
        be closed. The producer runs in the link's nursery and never raises into it:
        the generator's exception arrives as a :class:`_Failed` item."""
        assert self.nursery is not None
        send, receive = trio.open_memory_channel[Any](0)
        scope, stopped = trio.CancelScope(), trio.Event()

        async def produce() -> None:
            try:
                with scope, contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    async with send:
                        try:
                            async for item in items:
                                await send.send(item)
                        except Exception as exc:
                            await send.send(_Failed(exc))
            finally:
                stopped.set()

        self.nursery.start_soon(produce)
        try:
            async with receive:
                yield receive
        finally:
            scope.cancel()
            with trio.CancelScope(shield=True):
                await stopped.wait()

    async def send(self, name: str, info: dict[str, Any]) -> None:
        await self.wire.send_all(encode(name, info))


def _yielded(item: Any) -> tuple[bytes, ...]:
    if isinstance(item, bytes) and len(item) >= WRITEV_MIN:
        return yielded_bytes(item)
    return (_yielded_item(item),)


def _yielded_item(item: Any) -> bytes:
    return _encoded("t2:yield", {"retn": (True, item)})


def _encoded(name: str, info: dict[str, Any]) -> bytes:
    """The message, or a ``NotMsgpackSafe`` error in its place (a result msgpack cannot
    carry is a daemon bug, but the client must still get an answer)."""
    try:
        return encode(name, info)
    except (TypeError, ValueError, OverflowError) as exc:
        log.error("cannot send a Telepath result: %s", exc)
        error = TelepathError("NotMsgpackSafe", f"cannot serialize the result: {exc}")
        return encode(name, {"retn": error_retn(error)})


def _domain(methname: str, exc: Exception) -> AxonError:
    """Any exception of a call as the AxonError the client will see."""
    if isinstance(exc, AxonError):
        return exc
    if isinstance(exc, OSError):  # the environment (a full disk...), not a daemon bug
        log.warning("Telepath call %s failed: %s", methname, exc)
        return AxonError(
            f"{type(exc).__name__}: {exc}", exception=type(exc).__name__, errno=exc.errno
        )
    log.error("Telepath call %s failed", methname, exc_info=exc)
    return AxonError(f"{type(exc).__name__}: {exc}", exception=type(exc).__name__)


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else repr(value)[:80]


def _widen_send_buffer(stream: trio.SocketStream) -> None:
    with contextlib.suppress(OSError):  # only a speed-up
        stream.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, SEND_BUFFER)


def _server_context(config: TelepathConfig) -> ssl.SSLContext | None:
    if not any(address.scheme == SSL for address in config.listen):
        return None
    assert config.tls_cert is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise AxonError(f"cannot load the TLS certificate {config.tls_cert}: {exc}") from None
    return context


async def serve_telepath(
    axon: Axon,
    store: Path,
    config: TelepathConfig,
    *,
    ctl_group: int | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *axon* over Telepath until cancelled.

    ``nursery.start``-compatible: returns the URLs served once every listener
    listens. The unix socket ``<store>/run/telepath.sock`` is always tried; a
    store path Synapse's client could not reach is skipped with a warning.
    """
    identity = await trio.to_thread.run_sync(CellIdentity.load, store)
    server = TelepathServer(axon, store, identity, ctl_group=ctl_group)
    context = _server_context(config)
    async with trio.open_nursery() as nursery:
        path = store / "run" / "telepath.sock"
        problem = unix_url_problem(path)
        if problem is None:
            server.urls.append(await nursery.start(server.serve_unix, path))
        else:
            log.warning("Telepath: not serving %s: %s", path, problem)
        for address in config.listen:
            server.urls.append(
                await nursery.start(
                    server.serve_network, address, context if address.scheme == SSL else None
                )
            )
        task_status.started(list(server.urls))
