"""Connect and call has(); print {"ok": bool, "error": [class, mesg] | null}.

Usage: connect.py URL
"""

import asyncio
import json
import sys

import synapse.exc as s_exc
import synapse.telepath as s_telepath


async def main(url: str) -> None:
    try:
        async with await s_telepath.openurl(url) as axon:
            await axon.has(b"\0" * 32)
    except s_exc.SynErr as exc:
        print(json.dumps({"ok": False, "error": [type(exc).__name__, exc.get("mesg")]}))
        return
    print(json.dumps({"ok": True, "error": None}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
