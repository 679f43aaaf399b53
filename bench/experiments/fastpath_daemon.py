"""`axonfs serve` with an experimental fast path patched in (nothing under axonfs/ edited).

A/B aid for docs/PERFORMANCE.md: unary index lookups (has, size, wants,
hashset, metrics) are executed inline in the connection's read loop -- no task,
no CancelScope, no inspect.signature per request -- and their reply is sent at
once. Errors fall back to the normal path. (The daemon has since answered has,
size, wants and metrics inline itself; this adds hashset.) Run as the daemon
command:

    python bench/experiments/fastpath_daemon.py serve --store DIR --foreground
"""

from __future__ import annotations

import sys
from typing import Any

from axonfs import ctlserver
from axonfs.protocol import OK

FAST = frozenset({"has", "size", "wants", "hashset", "metrics"})
_orig_dispatch = ctlserver._Connection._dispatch


async def _dispatch(self: ctlserver._Connection, message: dict[str, Any], charge: int) -> bool:
    call = message.get("call")
    if call in FAST and not message.get("kwargs"):
        try:
            result = await getattr(self.axon, call)(*message.get("args", ()))
        except Exception:  # noqa: BLE001 - let the normal path produce the error
            return await _orig_dispatch(self, message, charge)
        await self.send({"id": message["id"], "t": OK, "result": result})
        return False  # answered: no request holds the frame's charge
    return await _orig_dispatch(self, message, charge)


# A monkeypatch is what this script is for.
ctlserver._Connection._dispatch = _dispatch  # type: ignore[method-assign]

if __name__ == "__main__":
    from axonfs.cli import main

    sys.exit(main(sys.argv[1:]))
