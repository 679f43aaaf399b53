"""The one declaration of the calls axonfs serves over its sockets.

A call's arguments are those of the function that answers it: a method of
:class:`~axonfs.axon.Axon` of the same name, or, for the few calls about the
daemon rather than the store (``ping``, ``stats``...), a method of the control
server. This table says the rest, once: how the result travels, whether
``ctl.sock`` answers it in its reading task, whether Telepath serves it, and
which ``axonfs ctl`` subcommand runs it. Both socket servers dispatch from it;
``tests/ctl/test_api.py`` checks :class:`~axonfs.client.AxonClient`, the CLI
and ``docs/PROTOCOL.md`` against it, so a signature that drifts fails a test.

Adding a call: a method on ``Axon``, a row here, a method on ``AxonClient``
with the same parameters, and its text in ``docs/PROTOCOL.md``.
"""

from __future__ import annotations

import enum
import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Shape(enum.Enum):
    VALUE = "value"
    """One result."""
    STREAM = "stream"
    """A sequence of items (a generator on the Axon, ``genr`` over Telepath)."""
    UPLOAD = "upload"
    """A writable object: ``write``\\ s then ``save``."""


class Owner(enum.Enum):
    AXON = "axon"
    """Answered by the ``Axon`` method of the same name."""
    SERVER = "server"
    """Answered by the socket server itself (about the daemon, not the store)."""


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    """The wire name, on ``ctl.sock`` and over Telepath alike."""
    shape: Shape
    owner: Owner = Owner.AXON
    inline: bool = False
    """Answered in the connection's reading task while nothing else of that
    connection is in progress: index lookups of microseconds and a ``put``
    (one commit), for which a task, a cancel scope and a signature check cost
    as much as the work. A client waits for such a reply anyway; one that
    pipelines others behind it gets them answered in tasks."""
    batched: str | None = None
    """The Axon's list-at-a-time twin of a stream, sent a list per frame."""
    telepath: bool = True
    """Served over Telepath (Synapse's ``AxonApi`` has it)."""
    cli: str | None = None
    """The ``axonfs ctl`` subcommand that makes this call, if one does."""
    local: tuple[str, ...] = ()
    """Keyword-only parameters of the answering function for in-process callers
    only (a callback): no socket client may pass them."""
    request_id: bool = False
    """The answering function takes the request's id first (it sends its own items)."""


VALUE, STREAM, UPLOAD, SERVER = Shape.VALUE, Shape.STREAM, Shape.UPLOAD, Owner.SERVER

CALLS: dict[str, Call] = {
    call.name: call
    for call in (
        # The reference Axon's API.
        Call("put", VALUE, inline=True, cli="put"),
        Call("puts", VALUE, cli="put"),
        Call("upload", UPLOAD, cli="put"),
        Call("has", VALUE, inline=True, cli="has"),
        Call("size", VALUE, inline=True, cli="size"),
        Call("wants", VALUE, inline=True, cli="wants"),
        Call("metrics", VALUE, inline=True, cli="metrics"),
        Call("sync", VALUE, telepath=False, cli="sync"),
        Call("hashset", VALUE, cli="hashset"),
        Call("del_", VALUE, cli="del"),
        Call("dels", VALUE, cli="del"),
        Call("unpack", VALUE, cli="unpack"),
        Call("wget", VALUE, cli="wget", local=("progress",)),
        Call("wput", VALUE, cli="wput"),
        Call("postfiles", VALUE, cli="postfiles"),
        Call("get", STREAM, cli="get"),
        Call("hashes", STREAM, batched="hashes_batches", cli="hashes"),
        Call("history", STREAM, batched="history_batches", cli="history"),
        Call("readlines", STREAM, cli="readlines"),
        Call("csvrows", STREAM, cli="csvrows"),
        Call("jsonlines", STREAM, cli="jsonlines"),
        Call("iterMpkFile", STREAM, cli="msgpack"),
        # The S3 Axon's recovery, and the daemon's own calls.
        Call("recoverIndices", VALUE, SERVER, cli="recover"),
        Call("recover_progress", STREAM, SERVER, telepath=False, cli="recover", request_id=True),
        Call("wget_progress", STREAM, SERVER, telepath=False, cli="wget", request_id=True),
        Call("ping", VALUE, SERVER, inline=True, telepath=False, cli="ping"),
        Call("stats", VALUE, SERVER, telepath=False, cli="stats"),
        Call("log_level", VALUE, SERVER, telepath=False, cli="log-level"),
    )
}


def wire_signature(call: Call, function: Callable[..., Any]) -> inspect.Signature:
    """The arguments a socket client may pass to *call*, answered by *function* (a
    bound method): its signature without the request's id or in-process parameters."""
    found = signature(function)
    if not call.request_id and not call.local:
        return found
    parameters = list(found.parameters.values())[1 if call.request_id else 0 :]
    return found.replace(parameters=[p for p in parameters if p.name not in call.local])


def signature(function: Callable[..., Any]) -> inspect.Signature:
    """*function*'s signature, which a server checks a call's arguments against.

    Building one costs tens of microseconds, as much as the rest of a ``has()``
    round trip: each is built once per underlying function (a bound method's
    object may live only as long as a connection).
    """
    return _signature(*_underlying(function))


def positional_range(function: Callable[..., Any]) -> tuple[int, int] | None:
    """How many positional arguments alone *function* takes, as (fewest, most), or
    None if it needs a keyword. A call inside the range, without keywords, binds:
    checking that is a comparison, where ``Signature.bind`` costs microseconds."""
    return _positional_range(*_underlying(function))


def _underlying(function: Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    """The function behind a bound method (whose ``self`` is then dropped), so the
    caches below hold one entry per function, not per bound object."""
    unbound = getattr(function, "__func__", None)
    return (function, False) if unbound is None else (unbound, True)


@functools.cache
def _positional_range(function: Callable[..., Any], drop_self: bool) -> tuple[int, int] | None:
    fewest = most = 0
    for parameter in _signature(function, drop_self).parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            most += 1
            fewest += parameter.default is parameter.empty
        elif parameter.kind is parameter.VAR_POSITIONAL:
            most = sys.maxsize
        elif parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            return None
    return fewest, most


@functools.cache
def _signature(function: Callable[..., Any], drop_self: bool) -> inspect.Signature:
    found = inspect.signature(function)
    if not drop_self:
        return found
    return found.replace(parameters=list(found.parameters.values())[1:])
