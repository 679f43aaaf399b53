"""Every AxonApi call through Synapse's own Telepath client; prints a JSON report.

Usage: every_call.py URL HTTP_BASE
"""

import asyncio
import hashlib
import json
import sys
from typing import Any

import synapse.exc as s_exc
import synapse.lib.msgpack as s_msgpack
import synapse.telepath as s_telepath


def plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return value


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def raises(coro_or_genr: Any) -> list[str] | None:
    try:
        if hasattr(coro_or_genr, "__aiter__"):
            [item async for item in coro_or_genr]
        else:
            await coro_or_genr
    except s_exc.SynErr as exc:
        return [type(exc).__module__ + "." + type(exc).__name__, exc.get("mesg")]
    return None


async def main(url: str, http_base: str) -> None:
    out: dict[str, Any] = {}
    async with await s_telepath.openurl(url) as axon:
        info = await axon.getCellInfo()
        out["cellinfo"] = {
            "type": info["cell"]["type"],
            "iden": info["cell"]["iden"],
            "version": info["synapse"]["version"],
            "features": info["features"],
        }
        out["iden"] = await axon.getCellIden()
        out["celltype"] = await axon.getCellType()
        out["features"] = proxy_features = dict(axon._features)
        assert proxy_features
        text = b"alpha\n\nbeta\n"
        out["put"] = await axon.put(text)
        out["puts"] = await axon.puts([b"one", b"two", b"one"])
        out["has"] = [await axon.has(sha(text)), await axon.has(sha(b"nope"))]
        out["size"] = [await axon.size(sha(text)), await axon.size(sha(b"nope"))]
        out["wants"] = await axon.wants([sha(text), sha(b"nope")])
        out["hashset"] = await axon.hashset(sha(text))
        out["get"] = b"".join([piece async for piece in axon.get(sha(text))])
        out["get_range"] = b"".join([piece async for piece in axon.get(sha(text), 1, 4)])
        out["hashes"] = [row async for row in axon.hashes(0)]
        out["history"] = len([row async for row in axon.history(0)])
        out["metrics"] = await axon.metrics()
        out["readlines"] = [line async for line in axon.readlines(sha(text).hex())]
        jsonl = b'{"a": 1}\n\n[2, 3]\n'
        await axon.put(jsonl)
        out["jsonlines"] = [item async for item in axon.jsonlines(sha(jsonl).hex())]
        csv = b'a,b\n"c,d",e\n'
        await axon.put(csv)
        out["csvrows"] = [row async for row in axon.csvrows(sha(csv))]
        out["csvrows_pipe"] = [row async for row in axon.csvrows(sha(csv), delimiter="|")]
        mpk = s_msgpack.en("foo") + s_msgpack.en(("bar", 1))
        await axon.put(mpk)
        out["iterMpkFile"] = [item async for item in axon.iterMpkFile(sha(mpk).hex())]
        binary = (0x01020304).to_bytes(4, "big") + b"tail"
        await axon.put(binary)
        out["unpack"] = await axon.unpack(sha(binary), ">I")
        out["unpack_offs"] = await axon.unpack(sha(binary), "4s", offs=4)
        async with await axon.upload() as upfd:
            await upfd.write(b"up")
            await upfd.write(b"load")
            first = await upfd.save()
            await upfd.write(b"second")
            second = await upfd.save()
        out["upload"] = [first, second]
        out["upload_get"] = b"".join([p async for p in axon.get(sha(b"upload"))])
        wget = await axon.wget(f"{http_base}/file")
        out["wget"] = {
            "ok": wget["ok"],
            "code": wget["code"],
            "size": wget["size"],
            "sha256": wget["hashes"]["sha256"],
        }
        wput = await axon.wput(sha(text), f"{http_base}/upload")
        out["wput"] = {"ok": wput["ok"], "code": wput["code"]}
        fields = [
            {"name": "file", "sha256": sha(text).hex(), "filename": "a.txt"},
            {"name": "note", "value": "hi"},
        ]
        post = await axon.postfiles(fields, f"{http_base}/upload", method="PUT")
        out["postfiles"] = {"ok": post["ok"], "code": post["code"]}
        out["del_"] = [await axon.del_(sha(b"two")), await axon.del_(sha(b"two"))]
        out["dels"] = await axon.dels([sha(b"one"), sha(b"nope")])
        out["recoverIndices"] = sorted(await axon.recoverIndices())
        out["health"] = (await axon.getHealthCheck())["status"]
        # Errors arrive as synapse.exc classes with their messages.
        out["err_get"] = await raises(axon.get(sha(b"nope")))
        out["err_unpack_fmt"] = await raises(axon.unpack(sha(binary), "Q!"))
        out["err_unpack_type"] = await raises(axon.unpack(sha(binary), 7))
        out["err_unpack_short"] = await raises(axon.unpack(sha(binary), ">Q", offs=4))
        out["err_unpack_missing"] = await raises(axon.unpack(sha(b"nope"), ">I"))
        out["err_range"] = await raises(axon.get(sha(text), offs=-1, size=2))
        out["err_meth"] = await raises(axon.noSuchMethod())
        out["err_private"] = await raises(axon._private())
        out["err_args"] = await raises(axon.has())
        out["err_csv"] = await raises(axon.csvrows(sha(csv), dialect="nope"))
    print(json.dumps(plain(out)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
