"""The reference's streaming readers: readlines, jsonlines, csvrows, msgpack.

Each public coroutine validates its arguments the way the Synapse Axon does
(in the same order, with the same error classes), then streams rows produced
by a generator that runs in worker threads (:mod:`axonfs.parsers.runner`).

Argument quirks kept from the reference: ``readlines``, ``jsonlines`` and
``iter_msgpack`` take the sha256 as a **hex string**; ``csvrows`` takes **raw
bytes**. ``errors`` is a codec error handler (``'ignore'`` by default,
``'replace'``, ...; ``None`` means strict, where a bad byte is BadDataValu).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from contextlib import aclosing
from typing import Any, Protocol

import msgpack

from axonfs.backends.base import BlobReader
from axonfs.errors import BadArg, BadDataValu, BadJsonText
from axonfs.hashing import Sha256
from axonfs.parsers.runner import BlobRaw, open_text, parse_limiter, stream_rows


class BlobSource(Protocol):
    """What the readers need of the Axon: a row's check and its bytes."""

    def require(self, sha256: bytes) -> object:
        """Raise NoSuchFile unless the blob is stored."""

    def open_blob(self, sha256: Sha256) -> BlobReader:
        """Open a stored blob's bytes for reading."""


log = logging.getLogger(__name__)

Rows = Generator[tuple[Any, int], None, None]
"""What a parser generator yields: ``(row, cost)`` pairs."""

MAX_LINE = 64 << 20
"""Longest line (in characters) readlines/jsonlines/csvrows accept; longer is BadDataValu
(the reference has no limit and would hold the whole line in memory)."""
MSGPACK_MAX_BUFFER = 100 << 20


async def _stream(axon: BlobSource, factory: Callable[[], Rows]) -> AsyncGenerator[Any, None]:
    """Rows of *factory* from worker threads; closes the stream however it ends."""
    async with aclosing(stream_rows(parse_limiter(axon), factory)) as rows:
        async for row in rows:
            yield row


def _sha_from_hex(sha256: Any) -> bytes:
    if not isinstance(sha256, str):
        raise BadArg("sha256 must be a hex string for this call", value=repr(sha256)[:80])
    try:
        return bytes.fromhex(sha256)
    except ValueError:
        raise BadArg(f"sha256 is not hex: {sha256!r}", value=sha256) from None


def _check_errors(errors: Any) -> None:
    if errors is None:
        return
    try:
        if not isinstance(errors, str):
            raise LookupError(errors)
        codecs.lookup_error(errors)
    except LookupError:
        raise BadArg(f"Unknown encoding error handler: {errors!r}", errors=repr(errors)) from None


def _open(axon: BlobSource, sha256: bytes) -> BlobReader:
    """Open the blob (in the worker thread; the caller checked it exists)."""
    return axon.open_blob(Sha256(sha256))


def _bounded_lines(text: io.TextIOWrapper) -> Iterator[str]:
    """The lines of *text* with their newline; a line over :data:`MAX_LINE` is
    BadDataValu once MAX_LINE characters of it are read, not once all are."""
    while True:
        try:
            line = text.readline(MAX_LINE + 1)
        except UnicodeDecodeError as exc:
            raise BadDataValu(f"Unicode decode error: {exc}") from None
        if not line:
            return
        if len(line) > MAX_LINE:
            raise BadDataValu(f"line longer than {MAX_LINE} characters", limit=MAX_LINE)
        yield line


def _lines(axon: BlobSource, sha256: bytes, errors: str | None) -> Rows:
    with open_text(_open(axon, sha256), errors) as text:
        for line in _bounded_lines(text):
            line = line.rstrip("\n")
            yield line, len(line) + 16


async def readlines(
    axon: BlobSource, sha256: str, errors: str | None = "ignore"
) -> AsyncGenerator[str, None]:
    """Yield the lines of a text blob without their newline (``\\r\\n`` counts as one)."""
    sha = _sha_from_hex(sha256)
    axon.require(sha)
    _check_errors(errors)
    async with aclosing(_stream(axon, lambda: _lines(axon, sha, errors))) as lines:
        async for line in lines:
            yield line


def _json_objects(axon: BlobSource, sha256: bytes, hexsha: str, errors: str | None) -> Rows:
    for line, cost in _lines(axon, sha256, errors):
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line), cost
        except (ValueError, RecursionError) as exc:
            # RecursionError: nesting deeper than the interpreter's stack
            # ("[" x 100,000), which is bad input like any other. The caller
            # gets the error; the daemon's log only notes it.
            log.info("bad json line in %s: %s", hexsha, exc)
            raise BadJsonText(
                f"Bad json line encountered while processing {hexsha}, ({exc})", sha256=hexsha
            ) from None


async def jsonlines(
    axon: BlobSource, sha256: str, errors: str | None = "ignore"
) -> AsyncGenerator[Any, None]:
    """Yield the JSON value of each non-blank line; a bad line is BadJsonText."""
    sha = _sha_from_hex(sha256)
    axon.require(sha)
    _check_errors(errors)
    async with aclosing(_stream(axon, lambda: _json_objects(axon, sha, sha256, errors))) as items:
        async for item in items:
            yield item


def _csv_rows(
    axon: BlobSource, sha256: bytes, dialect: str, errors: str | None, fmtparams: dict[str, Any]
) -> Rows:
    with open_text(_open(axon, sha256), errors) as text:
        try:
            # Lines come bounded: csv.reader over the file itself reads a
            # whole line before it checks its field size limit, and a
            # blob without newlines is one line however long it is.
            reader = csv.reader(_bounded_lines(text), dialect, **fmtparams)
        except TypeError as exc:
            raise BadArg(f"Invalid csv format parameter: {exc}") from None
        try:
            for row in reader:
                yield tuple(row), sum(map(len, row)) + 16
        except csv.Error as exc:
            raise BadDataValu(f"CSV error: {exc}") from None
        except UnicodeDecodeError as exc:
            raise BadDataValu(f"Unicode decode error: {exc}") from None


async def csvrows(
    axon: BlobSource,
    sha256: bytes,
    dialect: str = "excel",
    errors: str | None = "ignore",
    **fmtparams: Any,
) -> AsyncGenerator[tuple[str, ...], None]:
    """Yield the rows of a CSV blob as tuples (``csv.reader`` dialect and fmtparams)."""
    if not isinstance(sha256, bytes):
        raise BadArg("sha256 must be raw bytes for csvrows", value=repr(sha256)[:80])
    axon.require(sha256)
    if dialect not in csv.list_dialects():
        raise BadArg(f"Invalid CSV dialect, use one of {csv.list_dialects()}", dialect=dialect)
    _check_errors(errors)
    async with aclosing(
        _stream(axon, lambda: _csv_rows(axon, sha256, dialect, errors, fmtparams))
    ) as rows:
        async for row in rows:
            yield row


def _msgpack_items(axon: BlobSource, sha256: bytes) -> Rows:
    with BlobRaw(_open(axon, sha256)) as raw:
        unpacker = msgpack.Unpacker(
            raw,
            use_list=False,
            raw=False,
            strict_map_key=False,
            max_buffer_size=MSGPACK_MAX_BUFFER,
            read_size=1 << 20,
        )
        try:
            for item in unpacker:
                yield item, 64
        except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:
            raise BadDataValu(f"msgpack error: {type(exc).__name__}: {exc}") from None


async def iter_msgpack(axon: BlobSource, sha256: str) -> AsyncGenerator[Any, None]:
    """Yield the items of a msgpack blob (arrays as tuples; a trailing partial item is
    ignored, as the reference does)."""
    sha = _sha_from_hex(sha256)
    axon.require(sha)
    async with aclosing(_stream(axon, lambda: _msgpack_items(axon, sha))) as items:
        async for item in items:
            yield item
