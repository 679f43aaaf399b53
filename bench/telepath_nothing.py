"""A Telepath server that does nothing: the ceiling Synapse's client allows.

Synapse's own client costs the same against any server: its pool links,
message packing, a future per call, asyncio's wake-ups. This server answers
every call of the benchmark's client with as little work as any server can
do: a blocking socket and a thread per connection (no event loop), messages
only split apart, every reply made in advance. Whatever rate the client
reaches against it is the most any Telepath server can show with that client
on this machine; divided by the reference Axon's rate in the same run, it is
the highest ratio any server could reach.

What it answers: ``has`` (False), ``size`` (None), ``put``/``puts`` (a made-up
size and digest), ``upload`` (a share whose ``write`` only counts the bytes and
whose ``save`` answers that count), ``get`` (that many bytes of one ready
16 MiB piece: the piece size of axonfs and the reference alike),
``hashes``/``history`` (``rows`` ready-made rows, one ``t2:yield`` each, sent
in one write), anything else None.

With ``event_loop=True`` the same answers come from one trio event loop (in a
thread of its own) instead: the most a server built on trio, as axonfs is, can
reach with that client, whatever it does per call.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import trio

from axonfs.telepath.server import TELEVERS
from axonfs.telepath.service import AxonApi
from axonfs.telepath.wire import encode

PIECE = bytes(range(256)) * (1 << 16)
"""16 MiB: the piece size of a get, on axonfs and the reference alike."""
DIGEST = b"\0" * 32


def _share_info(meths: dict[str, dict[str, bool]]) -> dict[str, Any]:
    api = AxonApi.__new__(AxonApi)
    api._methods = {}
    info = api.share_info()
    info["meths"] = meths
    return info


class NothingServer:
    """Serve on the unix socket *path* from daemon threads (*event_loop*: from
    a trio event loop in one); :attr:`url` to reach it."""

    def __init__(self, path: Path, rows: int = 30_000, event_loop: bool = False) -> None:
        self.path = path
        self.url = f"unix://{path}"
        self.uploaded = 0
        """Bytes written to the upload share since its last save."""
        self.saved = 0
        """The size the last save answered: what a get sends."""
        self._rows = b"".join(
            encode("t2:yield", {"retn": (True, (indx, (indx.to_bytes(32, "big"), 4096)))})
            for indx in range(rows)
        )
        self._piece = encode("t2:yield", {"retn": (True, PIECE)})
        genr = {"genr": True}
        self._syn = encode(
            "tele:syn",
            {
                "vers": TELEVERS,
                "retn": (True, None),
                "sess": "f" * 32,
                "features": {},
                "sharinfo": _share_info(
                    {name: {} for name in ("has", "size", "put", "puts", "upload", "getCellInfo")}
                    | {name: genr for name in ("get", "hashes", "history")}
                ),
            },
        )
        self._share = encode(
            "t2:share",
            {"iden": "upload", "sharinfo": _share_info({"write": {}, "save": {}})},
        )
        self._none = encode("t2:fini", {"retn": (True, None)})
        self._false = encode("t2:fini", {"retn": (True, False)})
        self._stored = encode("t2:fini", {"retn": (True, (4096, DIGEST))})
        self._end = encode("t2:yield", {"retn": None})
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(path))
        self._listener.listen(128)
        self._stop: trio.CancelScope | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        if event_loop:
            started = threading.Event()
            threading.Thread(target=trio.run, args=(self._loop, started), daemon=True).start()
            started.wait()
        else:
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self._listener.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        unpacker = _unpacker()
        with conn:
            while data := conn.recv(1 << 20):
                unpacker.feed(data)
                for name, info in unpacker:
                    for reply in self._replies(name, info):
                        conn.sendall(reply)

    async def _loop(self, started: threading.Event) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._listener))
        with trio.CancelScope() as self._stop:
            self._token = trio.lowlevel.current_trio_token()
            started.set()
            await trio.serve_listeners(self._serve_stream, [listener])

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        unpacker = _unpacker()
        async with stream:
            while data := await stream.receive_some(1 << 20):
                unpacker.feed(data)
                for name, info in unpacker:
                    for reply in self._replies(name, info):
                        await stream.send_all(reply)

    def _replies(self, name: str, info: dict[str, Any]) -> Iterator[bytes]:
        if name == "tele:syn":
            yield self._syn
        elif name == "t2:init":
            yield from self._answer(info)
        # share:fini and anything else: nothing to say

    def _answer(self, info: dict[str, Any]) -> Iterator[bytes]:
        method, args, _kwargs = info["todo"]
        if info.get("name") == "upload":  # the share
            if method == "write":
                self.uploaded += len(args[0])
                yield self._none
            else:
                self.saved, self.uploaded = self.uploaded, 0
                yield encode("t2:fini", {"retn": (True, (self.saved, DIGEST))})
            return
        if method == "has":
            yield self._false
        elif method == "put":
            yield self._stored
        elif method == "puts":
            yield encode("t2:fini", {"retn": (True, [(4096, DIGEST)] * len(args[0]))})
        elif method == "upload":
            yield self._share
        elif method == "get":
            yield encode("t2:genr", {})
            left = self.saved
            while left >= len(PIECE):
                yield self._piece
                left -= len(PIECE)
            if left:
                yield encode("t2:yield", {"retn": (True, PIECE[:left])})
            yield self._end
        elif method in ("hashes", "history"):
            yield encode("t2:genr", {}) + self._rows + self._end
        else:
            yield self._none

    def close(self) -> None:
        if self._stop is not None and self._token is not None:
            trio.from_thread.run_sync(self._stop.cancel, trio_token=self._token)
        self._listener.close()


def _unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(
        raw=False, use_list=False, strict_map_key=False, max_buffer_size=64 << 20
    )
