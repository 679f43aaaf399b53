"""A Synapse Cortex whose ``axon:`` is axonfs, running Storm's $lib.axon calls.

Usage: cortex_wget.py AXONFS_URL WORKDIR HTTP_URL. Prints a JSON report.
"""

import asyncio
import json
import os
import sys
from typing import Any

import synapse.cortex as s_cortex


async def main(axon_url: str, workdir: str, http_url: str) -> None:
    conf: dict[str, Any] = {"axon": axon_url, "health:sysctl:checks": False}
    async with await s_cortex.Cortex.anit(os.path.join(workdir, "core"), conf=conf) as core:
        await asyncio.wait_for(core.axready.wait(), 30)
        opts = {"vars": {"url": http_url}}
        wget = await core.callStorm("$resp = $lib.axon.wget($url) return($resp)", opts=opts)
        sha256 = wget["hashes"]["sha256"]
        opts = {"vars": {"sha256": sha256}}
        lines = await core.callStorm(
            "$lines = () for $line in $lib.axon.readlines($sha256) { $lines.append($line) } "
            "return($lines)",
            opts=opts,
        )
        unpacked = await core.callStorm("return($lib.axon.unpack($sha256, '>5s'))", opts=opts)
        size = await core.callStorm("return($lib.axon.size($sha256))", opts=opts)
        put = await core.callStorm("return($lib.bytes.put($lib.hex.decode(01020304)))")
        node = await core.callStorm("[ file:bytes=$sha256 ] return($node.repr())", opts=opts)
    print(
        json.dumps(
            {
                "ok": wget["ok"],
                "code": wget["code"],
                "sha256": sha256,
                "lines": lines,
                "unpack": [v.hex() for v in unpacked],
                "size": size,
                "put": [put[0], put[1].hex() if isinstance(put[1], bytes) else put[1]],
                "node": node,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
