"""The streaming readers, case by case from the reference semantics (axon-semantics.md)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
from helpers.daemon import InProcessDaemon

from axonfs import client
from axonfs.axon import Axon
from axonfs.errors import BadArg, BadDataValu, BadJsonText, NoSuchFile

CHUNK = 16 << 20
MISSING = b"\x05" * 32


async def rows(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


async def put(axon: Axon, data: bytes) -> bytes:
    return (await axon.put(data))[1]


# -- readlines -------------------------------------------------------------------


async def test_readlines(axon: Axon) -> None:
    sha = await put(axon, b"asdf\n\nqwer\n")
    assert await rows(axon.readlines(sha.hex())) == ["asdf", "", "qwer"]
    sha = await put(axon, b"a\r\nb\rc")  # universal newlines, as the reference reads
    assert await rows(axon.readlines(sha.hex())) == ["a", "b", "c"]


async def test_readlines_errors_modes(axon: Axon) -> None:
    sha = await put(axon, b"/$A\x00_v4\x1b\xff\xfe\n")
    assert await rows(axon.readlines(sha.hex())) == ["/$A\x00_v4\x1b"]
    assert await rows(axon.readlines(sha.hex(), errors="replace")) == ["/$A\x00_v4\x1b\ufffd\ufffd"]
    with pytest.raises(BadDataValu):
        await rows(axon.readlines(sha.hex(), errors=None))
    with pytest.raises(BadArg):
        await rows(axon.readlines(sha.hex(), errors="no-such-handler"))


async def test_readlines_argument_quirks(axon: Axon) -> None:
    sha = await put(axon, b"x\n")
    with pytest.raises(BadArg):  # hex, not bytes (the reference: binascii.Error)
        await rows(axon.readlines(sha))  # type: ignore[arg-type]
    with pytest.raises(NoSuchFile):
        await rows(axon.readlines(MISSING.hex()))


async def test_readlines_multibyte_across_chunk_boundaries(axon: Axon) -> None:
    # '.ॐwords': the 3-byte character straddles the 1 MiB read buffer and the 16 MiB mark
    for boundary in (1 << 20, CHUNK):
        filler = b"a" * (boundary - 3) + b"\n"
        sha = await put(axon, filler + ".ॐwords\n".encode())
        lines = await rows(axon.readlines(sha.hex(), errors=None))
        assert lines[-1] == ".ॐwords" and len(lines) == 2


# -- jsonlines -------------------------------------------------------------------


async def test_jsonlines(axon: Axon) -> None:
    sha = await put(axon, b'{"a": 1}\n\n  \n[1, 2]\n"s"\n')
    assert await rows(axon.jsonlines(sha.hex())) == [{"a": 1}, [1, 2], "s"]


async def test_jsonlines_bad_line_after_good_ones(axon: Axon) -> None:
    sha = await put(axon, b'{"a": 1}\n{"b": 2}\nnot json\n{"c": 3}\n')
    seen: list[Any] = []
    with pytest.raises(BadJsonText, match="Bad json line encountered while processing") as info:
        async for item in axon.jsonlines(sha.hex()):
            seen.append(item)
    assert seen == [{"a": 1}, {"b": 2}]
    assert info.value.fields["sha256"] == sha.hex()
    assert isinstance(info.value, BadDataValu)
    with pytest.raises(NoSuchFile):
        await rows(axon.jsonlines(MISSING.hex()))


# -- csvrows ---------------------------------------------------------------------


def _csv(rows_: list[list[str]], **fmtparams: Any) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, **fmtparams).writerows(rows_)
    return buffer.getvalue().encode()


async def test_csvrows_quoted_commas_and_quotes(axon: Axon) -> None:
    names = ["alice", "bob, jr", 'carol "cc"', "dave", "eve", "frank", "grace"]
    table = [[names[i % 7], str(i), "x,y", 'say "hi"', "", "end"] for i in range(70)]
    sha = await put(axon, _csv(table))
    got = await rows(axon.csvrows(sha))
    assert got == [tuple(row) for row in table]
    assert all(isinstance(row, tuple) for row in got)
    assert len({row[0] for row in got}) == 7


async def test_csvrows_delimiter_and_embedded_newlines(axon: Axon) -> None:
    sha = await put(axon, b"a|b|c\n1|2|3\n")
    assert await rows(axon.csvrows(sha, delimiter="|")) == [("a", "b", "c"), ("1", "2", "3")]
    sha = await put(axon, b'"multi\nline",x\n"tab\there",y\n')
    assert await rows(axon.csvrows(sha)) == [("multi\nline", "x"), ("tab\there", "y")]
    sha = await put(axon, b"a\tb\n")
    assert await rows(axon.csvrows(sha, dialect="excel-tab")) == [("a", "b")]


async def test_csvrows_across_the_16mib_mark(axon: Axon) -> None:
    # 128 rows fill CHUNK-3 bytes, so the 129th row's 'ॐ' straddles the 16 MiB mark
    # (fields stay under csv's default 128 KiB field limit).
    width, extra = divmod(CHUNK - 3, 128)
    data = b"".join(b"x" * (width - 1 + (i < extra)) + b"\n" for i in range(128))
    assert len(data) == CHUNK - 3
    sha = await put(axon, data + ".ॐwords".encode())
    got = await rows(axon.csvrows(sha))
    assert len(got) == 129 and got[-1] == (".ॐwords",)


async def test_csvrows_latin1_and_errors(axon: Axon) -> None:
    sha = await put(axon, "caf\u00e9,na\u00efve\n".encode("latin-1") + b"plain,row\n")
    assert await rows(axon.csvrows(sha)) == [("caf", "nave"), ("plain", "row")]
    assert await rows(axon.csvrows(sha, errors="replace")) == [
        ("caf\ufffd", "na\ufffdve"),
        ("plain", "row"),
    ]
    with pytest.raises(BadDataValu):
        await rows(axon.csvrows(sha, errors=None))


async def test_csvrows_bad_arguments(axon: Axon) -> None:
    sha = await put(axon, b'"a,\n')
    with pytest.raises(BadArg, match="Invalid CSV dialect"):
        await rows(axon.csvrows(sha, dialect="nope"))
    with pytest.raises(BadArg, match="Invalid csv format parameter"):
        await rows(axon.csvrows(sha, delimiter="||"))
    with pytest.raises(BadArg, match="Invalid csv format parameter"):
        await rows(axon.csvrows(sha, bogus=1))
    with pytest.raises(BadDataValu, match="CSV error: unexpected end of data"):
        await rows(axon.csvrows(sha, strict=True))
    with pytest.raises(BadArg):  # raw bytes, not hex (the reference: TypeError)
        await rows(axon.csvrows(sha.hex()))  # type: ignore[arg-type]
    with pytest.raises(NoSuchFile):  # missing beats a bad dialect
        await rows(axon.csvrows(MISSING, dialect="nope"))


async def test_csvrows_nul_bytes(axon: Axon) -> None:
    sha = await put(axon, b"a\x00b,c\n")
    assert await rows(axon.csvrows(sha)) == [("a\x00b", "c")]


# -- msgpack ---------------------------------------------------------------------


async def test_iter_mpk_file(axon: Axon) -> None:
    data = b"".join(msgpack.packb(item) for item in ("foo", "bar", "baz"))
    sha = await put(axon, data)
    assert await rows(axon.iterMpkFile(sha.hex())) == ["foo", "bar", "baz"]
    sha = await put(axon, msgpack.packb([1, [2, {"k": b"v"}]]) + b"\x92\x01")  # partial tail
    assert await rows(axon.iterMpkFile(sha.hex())) == [(1, (2, {"k": b"v"}))]
    with pytest.raises(BadArg):
        await rows(axon.iterMpkFile(sha))  # type: ignore[arg-type]
    with pytest.raises(NoSuchFile):
        await rows(axon.iterMpkFile(MISSING.hex()))
    sha = await put(axon, b"\xc1")
    with pytest.raises(BadDataValu):
        await rows(axon.iterMpkFile(sha.hex()))


# -- over the socket -------------------------------------------------------------


async def test_parsers_over_the_socket(in_process: InProcessDaemon) -> None:
    async with client.connect(in_process.socket) as axon:
        _, sha = await axon.put(b"a,b\n1,2\n")
        assert await rows(axon.csvrows(sha)) == [("a", "b"), ("1", "2")]
        assert await rows(axon.readlines(sha.hex())) == ["a,b", "1,2"]
        _, sha = await axon.put(b'{"a": [1]}\nbad\n')
        seen: list[Any] = []
        with pytest.raises(BadJsonText):
            async for item in axon.jsonlines(sha.hex()):
                seen.append(item)
        assert seen == [{"a": (1,)}]  # arrays arrive as tuples, as over Telepath
        _, sha = await axon.put(msgpack.packb("foo") + msgpack.packb(["x"]))
        assert await rows(axon.iterMpkFile(sha.hex())) == ["foo", ("x",)]
        with pytest.raises(BadArg, match="Invalid CSV dialect"):
            await rows(axon.csvrows(sha, dialect="nope"))
        assert json.loads(json.dumps(await axon.metrics()))["file:count"] == 3
