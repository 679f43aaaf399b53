"""What a Telepath client can call: Synapse's ``AxonApi`` over the one :class:`Axon`.

A Telepath object is a table of methods, each of one of three kinds: a
*value* (one reply), a *generator* (a stream of replies; Telepath tells the
client which methods these are at connect time) or a *share* (a new remote
object, here an upload). :class:`AxonApi` is the table of the object shared
as ``*`` and ``axon``: every ``AxonApi`` method of Synapse 2.256 (names,
arguments and result shapes are the :class:`Axon`'s, which already follow
the reference), the S3 Axon's ``recoverIndices``, and the few Cell calls
Synapse's tools and a Cortex make (``getCellInfo``, ``getCellIden``,
``getCellType``, ``getCellRunId``, ``getHealthCheck``). :class:`UploadShare`
is the object ``upload()`` returns (``write``, ``save``).

The cell's identity (``getCellIden``) is a random guid kept in
``<store>/telepath/cell.iden``, so a Cortex sees the same Axon across
restarts; the run id is new at every start.

Concurrency: runs on the daemon's trio thread; the methods are the Axon's
coroutines. An upload's writes are serialised by a lock, since a client
may issue them from several pool connections.
"""

from __future__ import annotations

import enum
import inspect
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from axonfs import __version__, api
from axonfs.axon import Axon, Upload
from axonfs.errors import BadArg

SYNAPSE_VERSION = (2, 256, 0)
"""The Synapse release whose Axon API this serves. A Cortex needs >= 2.192.0
to give ``wget`` a proxy argument and >= 2.162.0 for ``ssl_opts``."""
FEATURES = {"byterange": 1, "unpack": 1}
"""Cell features: ranged ``get`` (a Cortex then serves HTTP Range requests)
and ``unpack`` (Storm's ``$lib.axon.unpack`` refuses an Axon without it)."""
IDEN_FILE = Path("telepath") / "cell.iden"


class Kind(enum.Enum):
    VALUE = "value"
    GENERATOR = "genr"
    SHARE = "share"


KINDS = {
    api.Shape.VALUE: Kind.VALUE,
    api.Shape.STREAM: Kind.GENERATOR,
    api.Shape.UPLOAD: Kind.SHARE,
}


@dataclass(frozen=True, slots=True)
class Method:
    kind: Kind
    function: Callable[..., Any]
    batches: Callable[..., Any] | None = None
    """A generator's list-at-a-time twin (same arguments): its items are sent a
    list per write, not a write per item."""
    call: api.Call | None = None
    """The declaration, for the Axon's own calls."""

    def binds(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Check a call's arguments against :attr:`signature` (a TypeError if they
        do not bind); positional arguments in range pass without building a binding."""
        if not kwargs and (self.call is None or not (self.call.request_id or self.call.local)):
            accepted = api.positional_range(self.function)
            if accepted is not None and accepted[0] <= len(args) <= accepted[1]:
                return
        self.signature.bind(*args, **kwargs)

    @property
    def signature(self) -> inspect.Signature:
        """What the server checks a call's arguments against before running it."""
        if self.call is None:
            return api.signature(self.function)
        return api.wire_signature(self.call, self.function)


class Shared(Protocol):
    """A Telepath object: a method table, what the handshake says about it, a close."""

    def methods(self) -> dict[str, Method]: ...

    def share_info(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


def _share_info(classes: tuple[str, ...], methods: dict[str, Method]) -> dict[str, Any]:
    """The handshake's description of an object (what ``synapse.lib.reflect`` builds).

    ``genr`` marks the methods whose client-side call must be iterated.
    """
    return {
        "meths": {
            name: ({"genr": True} if method.kind is Kind.GENERATOR else {})
            for name, method in methods.items()
        },
        "syn:version": SYNAPSE_VERSION,
        "syn:commit": "",
        "classes": classes,
    }


@dataclass(frozen=True, slots=True)
class CellIdentity:
    iden: str
    run: str
    started_ms: int

    @classmethod
    def load(cls, store: Path) -> CellIdentity:
        """The store's cell iden (created on first use), a fresh run id, now."""
        path = store / IDEN_FILE
        try:
            iden = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            iden = ""
        if len(iden) != 32 or not all(c in "0123456789abcdef" for c in iden):
            iden = secrets.token_hex(16)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = path.with_suffix(".tmp")
            temp.write_text(iden + "\n", encoding="ascii")
            os.replace(temp, path)
        return cls(iden, secrets.token_hex(16), time.time_ns() // 1_000_000)


class AxonApi:
    """The shared Axon (``*`` and ``axon``); see the module docstring."""

    CLASSES = (
        "axonfs.telepath.service.AxonApi",
        "synapse.axon.AxonApi",
        "synapse.lib.cell.CellApi",
    )

    def __init__(self, axon: Axon, identity: CellIdentity) -> None:
        self.axon = axon
        self.identity = identity
        value = Kind.VALUE
        served = (
            call
            for call in api.CALLS.values()
            if call.telepath and call.owner is api.Owner.AXON and call.shape is not api.Shape.UPLOAD
        )
        self._methods: dict[str, Method] = {
            call.name: Method(
                KINDS[call.shape],
                getattr(axon, call.name),
                getattr(axon, call.batched) if call.batched else None,
                call,
            )
            for call in served
        }
        self._methods.update(
            {  # what Telepath wraps, and a Cell's own calls
                "upload": Method(Kind.SHARE, self.upload),
                "recoverIndices": Method(value, self.recoverIndices),
                "getCellInfo": Method(value, self.getCellInfo),
                "getCellIden": Method(value, self.getCellIden),
                "getCellType": Method(value, self.getCellType),
                "getCellRunId": Method(value, self.getCellRunId),
                "getHealthCheck": Method(value, self.getHealthCheck),
            }
        )

    def methods(self) -> dict[str, Method]:
        return self._methods

    def share_info(self) -> dict[str, Any]:
        return _share_info(self.CLASSES, self._methods)

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()

    # The Cell calls keep Synapse's names: they are the wire names.

    async def upload(self) -> UploadShare:
        return UploadShare(await self.axon.upload())

    async def recoverIndices(self, verify: bool | None = None) -> dict[str, Any]:  # noqa: N802
        report = await self.axon.recover(verify=None if verify is None else bool(verify))
        return {
            "listed": report.listed,
            "added": report.added,
            "skipped": report.skipped,
            "ignored": report.ignored,
            "corrupt": list(report.corrupt),
        }

    async def getCellIden(self) -> str:  # noqa: N802
        return self.identity.iden

    async def getCellType(self) -> str:  # noqa: N802
        return "axon"

    async def getCellRunId(self) -> str:  # noqa: N802
        return self.identity.run

    async def getHealthCheck(self) -> dict[str, Any]:  # noqa: N802
        metrics = await self.axon.metrics()
        return {
            "iden": self.identity.iden,
            "status": "nominal",
            "components": [{"status": "nominal", "name": "axon", "mesg": "", "data": metrics}],
        }

    async def getCellInfo(self) -> dict[str, Any]:  # noqa: N802
        """The parts of a Cell's info that clients read, with Synapse's keys."""
        major, minor, patch = SYNAPSE_VERSION
        ours = tuple(int(part) for part in __version__.split(".")[:3])
        return {
            "synapse": {
                "commit": "",
                "version": SYNAPSE_VERSION,
                "verstring": f"{major}.{minor}.{patch}",
            },
            "cell": {
                "run": self.identity.run,
                "type": "axon",
                "iden": self.identity.iden,
                "paused": False,
                "active": True,
                "safemode": False,
                "started": self.identity.started_ms,
                "ready": True,
                "commit": "",
                "version": ours,
                "verstring": __version__,
                "cellvers": {},
                "mirror": None,
                "aha": {"name": None, "leader": None, "network": None},
                "network": {"https": []},
                "server": f"axonfs {__version__}",
            },
            "features": dict(FEATURES),
        }


class UploadShare:
    """The object ``upload()`` hands out: ``write(bytes)``, ``save()``, as often as needed.

    Unsaved bytes are discarded when the client lets go of it (``share:fini``)
    or its session ends.
    """

    CLASSES = ("axonfs.telepath.service.UploadShare", "synapse.axon.UpLoadShare")

    def __init__(self, upload: Upload) -> None:
        self._upload = upload
        self._lock = trio.Lock()
        self._methods = {
            "write": Method(Kind.VALUE, self.write),
            "save": Method(Kind.VALUE, self.save),
        }

    def methods(self) -> dict[str, Method]:
        return self._methods

    def share_info(self) -> dict[str, Any]:
        return _share_info(self.CLASSES, self._methods)

    async def write(self, byts: bytes) -> None:
        if not isinstance(byts, bytes):
            raise BadArg("write() takes bytes")
        async with self._lock:
            # Behind: Synapse's client waits for each write's answer before
            # it sends the next, so the disk's work overlaps the next send.
            await self._upload.write(byts, behind=True)

    async def save(self) -> tuple[int, bytes]:
        async with self._lock:
            return await self._upload.save()

    async def close(self) -> None:
        # Under the lock: a write still running in a worker thread finishes first.
        async with self._lock:
            await self._upload.close()
