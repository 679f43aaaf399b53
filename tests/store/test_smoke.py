import hashlib

from axonfs.axon import Axon


async def test_put_get_roundtrip(axon: Axon) -> None:
    data = b"asdfqwer"
    size, sha = await axon.put(data)
    assert (size, sha) == (8, hashlib.sha256(data).digest())
    assert b"".join([c async for c in axon.get(sha)]) == data
    assert await axon.metrics() == {"size:bytes": 8, "file:count": 1}
