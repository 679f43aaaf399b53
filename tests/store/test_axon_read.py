"""get (whole and ranged), has, size, wants, hashset, metrics (every backend)."""

from __future__ import annotations

import hashlib
import random

import pytest
from helpers.hashes import sha_digest

from axonfs.axon import Axon
from axonfs.errors import BadArg, NoSuchFile
from axonfs.hashing import Sha256
from store.storetools import EMPTY_HASHSET, EMPTY_SHA256, MiB, OpenAxon, collect, pieces, read_all

ASDF = b"asdfqwerzxcv"  # the reference's [asdf|qwer|zxcv] blob
MISSING = sha_digest(b"never stored")


@pytest.mark.parametrize(
    ("offs", "size", "expected"),
    [
        (0, 2, b"as"),
        (0, 12, ASDF),
        (0, 13, ASDF),
        (0, 4, b"asdf"),
        (2, 4, b"dfqw"),
        (2, 6, b"dfqwer"),
        (4, 4, b"qwer"),
        (8, 4, b"zxcv"),
        (3, 6, b"fqwerz"),
        (4, 8, b"qwerzxcv"),
        (11, 6, b"v"),
        (0, 1_000_000, ASDF),
    ],
)
async def test_get_range_vectors(axon: Axon, offs: int, size: int, expected: bytes) -> None:
    _, sha = await axon.put(ASDF)
    got = await pieces(axon, sha, offs, size)
    assert b"".join(got) == expected
    assert b"" not in got


@pytest.mark.parametrize(("offs", "size"), [(12, 6), (13, 6), (12, 1), (10**12, 1)])
async def test_get_at_or_past_the_end_yields_exactly_one_empty_piece(
    axon: Axon, offs: int, size: int
) -> None:
    _, sha = await axon.put(ASDF)
    assert await pieces(axon, sha, offs, size) == [b""]


@pytest.mark.parametrize(
    ("offs", "size", "message"),
    [
        (1, -1, "Size must be >= 1"),
        (0, 0, "Size must be >= 1"),
        (-1, 1, "Offs must be >= 0"),
        (-1, 0, "Offs must be >= 0"),  # offs is checked before size
        (-5, -5, "Offs must be >= 0"),
    ],
)
async def test_get_bad_range_is_badarg(axon: Axon, offs: int, size: int, message: str) -> None:
    _, sha = await axon.put(ASDF)
    with pytest.raises(BadArg) as caught:
        await pieces(axon, sha, offs, size)
    assert caught.value.message == message


@pytest.mark.parametrize(("offs", "size"), [(None, None), (0, 1), (-1, 0), (5, -1)])
async def test_get_missing_is_nosuchfile_before_any_range_check(
    axon: Axon, offs: int | None, size: int | None
) -> None:
    with pytest.raises(NoSuchFile) as caught:
        await pieces(axon, MISSING, offs, size)
    assert caught.value.message == "Axon does not contain the requested file."
    assert caught.value.fields["sha256"] == MISSING.hex()


@pytest.mark.parametrize(("offs", "size"), [(0, None), (None, 4)])
async def test_get_with_only_offs_or_only_size_is_badarg(
    axon: Axon, offs: int | None, size: int | None
) -> None:
    """Documented difference: the reference fails with a TypeError here."""
    _, sha = await axon.put(ASDF)
    with pytest.raises(BadArg):
        await pieces(axon, sha, offs, size)


async def test_get_empty_blob(axon: Axon) -> None:
    await axon.put(b"")
    assert await pieces(axon, EMPTY_SHA256) == []
    assert await pieces(axon, EMPTY_SHA256, 0, 1) == [b""]
    assert await pieces(axon, EMPTY_SHA256, 5, 5) == [b""]
    with pytest.raises(BadArg):
        await pieces(axon, EMPTY_SHA256, 0, 0)


async def test_get_whole_blob_has_no_empty_pieces(axon: Axon) -> None:
    data = random.Random(4).randbytes(5 * MiB + 3)
    _, sha = await axon.put(data)
    got = await pieces(axon, sha)
    assert b"".join(got) == data
    assert b"" not in got


BIG = 33 * MiB
BOUNDARY_RANGES = [
    (0, BIG),
    (0, 1),
    (MiB - 1, 2),
    (MiB, MiB),
    (MiB - 3, MiB + 6),
    (16 * MiB - 3, 6),
    (16 * MiB, 1),
    (16 * MiB - 1, 16 * MiB + 2),
    (10, 20 * MiB),
    (32 * MiB - 5, 2 * MiB),
    (BIG - 1, 10),
    (BIG - MiB, MiB),
    (17, BIG),
]


async def test_33_mib_blob_ranges_across_block_boundaries(axon: Axon) -> None:
    data = random.Random(33).randbytes(BIG)
    async with await axon.upload() as upload:
        for offset in range(0, BIG, 3 * MiB + 1):  # writes that straddle every boundary
            await upload.write(data[offset : offset + 3 * MiB + 1])
        assert await upload.save() == (BIG, sha_digest(data))
    assert await axon.size(sha_digest(data)) == BIG
    assert hashlib.sha256(await read_all(axon, sha_digest(data))).digest() == sha_digest(data)
    for offs, size in BOUNDARY_RANGES:
        got = await pieces(axon, sha_digest(data), offs, size)
        assert b"".join(got) == data[offs : offs + size], (offs, size)
        assert b"" not in got, (offs, size)
    assert await pieces(axon, sha_digest(data), BIG, 1) == [b""]


async def test_ranged_get_reads_what_it_returns(axon: Axon) -> None:
    """A 4 KiB ranged read costs 4 KiB, not an internal 16 MiB block."""
    data = random.Random(5).randbytes(20 * MiB)
    _, sha = await axon.put(data)
    before = _bytes_read()
    for offs in range(MiB - 2048, 20 * MiB, 2 * MiB + 4096):
        assert b"".join(await pieces(axon, sha, offs, 4096)) == data[offs : offs + 4096]
    reads = 10
    assert _bytes_read() - before < reads * 64 * 1024


def _bytes_read() -> int:
    """Bytes this process has passed through read-like system calls."""
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


async def test_has_and_size(axon: Axon) -> None:
    _, sha = await axon.put(ASDF)
    assert await axon.has(sha) is True
    assert await axon.size(sha) == 12
    assert await axon.has(MISSING) is False
    assert await axon.size(MISSING) is None
    await axon.put(b"")
    assert await axon.has(EMPTY_SHA256) is True
    assert await axon.size(EMPTY_SHA256) == 0


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, "z" * 32, bytes(64)])
async def test_has_and_size_of_a_non_sha256(axon: Axon, bad: bytes) -> None:
    await axon.put(ASDF)
    assert await axon.has(bad) is False
    assert await axon.size(bad) is None


async def test_wants_keeps_order_and_duplicates(axon: Axon) -> None:
    have, lack1, lack2 = sha_digest(b"have"), sha_digest(b"lack 1"), sha_digest(b"lack 2")
    await axon.put(b"have")
    wanted = await axon.wants([lack2, have, lack1, lack2, have, lack1])
    assert isinstance(wanted, list)
    assert wanted == [lack2, lack1, lack2, lack1]
    assert await axon.wants([have, have]) == []
    assert await axon.wants([]) == []
    assert await axon.wants(iter([lack1])) == [lack1]


async def test_hashset_has_exactly_the_four_digests(axon: Axon) -> None:
    data = random.Random(6).randbytes(5 * MiB + 1)
    _, sha = await axon.put(data)
    hashset = await axon.hashset(sha)
    assert list(hashset) == ["md5", "sha1", "sha256", "sha512"]
    assert hashset == {
        name: hashlib.new(name, data).hexdigest() for name in ("md5", "sha1", "sha256", "sha512")
    }


async def test_hashset_of_the_empty_blob(axon: Axon) -> None:
    await axon.put(b"")
    assert await axon.hashset(EMPTY_SHA256) == EMPTY_HASHSET


async def test_hashset_of_a_missing_blob(axon: Axon) -> None:
    with pytest.raises(NoSuchFile):
        await axon.hashset(MISSING)


async def test_hashset_is_computed_once_and_cached(axon: Axon) -> None:
    _, sha = await axon.put(ASDF)
    assert axon.index.get_hashset(Sha256(sha)) is None  # computed lazily
    first = await axon.hashset(sha)
    cached = axon.index.get_hashset(Sha256(sha))
    assert cached is not None
    assert {name: digest.hex() for name, digest in cached.items()} == first
    # Replace the cached row behind the Axon's back: a second call that
    # re-hashed the blob would return the real digests, not these.
    sentinel = {"md5": b"\x01" * 16, "sha1": b"\x02" * 20, "sha512": b"\x03" * 64}
    axon.index.put_hashset(Sha256(sha), sentinel)
    again = await axon.hashset(sha)
    assert again == {"md5": "01" * 16, "sha1": "02" * 20, "sha256": sha.hex(), "sha512": "03" * 64}
    # Deleting drops the cache; a re-added blob is hashed afresh.
    await axon.del_(sha)
    assert axon.index.get_hashset(Sha256(sha)) is None
    await axon.put(ASDF)
    assert await axon.hashset(sha) == first


async def test_metrics_arithmetic(axon: Axon) -> None:
    metrics = await axon.metrics()
    assert metrics == {"size:bytes": 0, "file:count": 0}
    assert list(metrics) == ["size:bytes", "file:count"]
    big = b"b" * (2 * MiB + 5)
    await axon.put(b"asdfasdf")
    await axon.put(big)
    assert await axon.metrics() == {"size:bytes": 2 * MiB + 13, "file:count": 2}
    await axon.put(b"")
    assert await axon.metrics() == {"size:bytes": 2 * MiB + 13, "file:count": 3}
    await axon.put(b"asdfasdf")  # dedup changes nothing
    assert await axon.metrics() == {"size:bytes": 2 * MiB + 13, "file:count": 3}
    await axon.puts([b"penn" * 2 + b"y", b"rgry" * 2 + b"rgr"])
    assert await axon.metrics() == {"size:bytes": 2 * MiB + 33, "file:count": 5}
    assert await axon.del_(sha_digest(big)) is True
    assert await axon.metrics() == {"size:bytes": 28, "file:count": 4}
    assert await axon.del_(sha_digest(big)) is False
    assert await axon.metrics() == {"size:bytes": 28, "file:count": 4}
    assert await axon.dels([EMPTY_SHA256, sha_digest(b"asdfasdf")]) == [True, True]
    assert await axon.metrics() == {"size:bytes": 20, "file:count": 2}


async def test_metrics_survive_reopen(open_axon: OpenAxon) -> None:
    async with open_axon() as axon:
        await axon.puts([b"one", b"three", b""])
        await axon.del_(sha_digest(b"one"))
    async with open_axon() as axon:
        assert await axon.metrics() == {"size:bytes": 5, "file:count": 2}
        assert await collect(axon.hashes(0)) == [
            (1, (sha_digest(b"three"), 5)),
            (2, (EMPTY_SHA256, 0)),
        ]
