"""Blobs as objects in an S3-compatible bucket: ``<prefix><sha256hex>``.

The index stays local; only the bytes move to the bucket (AWS S3, MinIO, Ceph
RGW, Garage, SeaweedFS, moto). Credentials come from boto3's usual chain
(environment, profile, instance role) and never from the command line.

Writes. :meth:`S3Backend.put_file` uploads a spool file whose hash is already
known. Blobs up to ``part_size`` go up in one PUT; larger ones as a multipart
upload whose parts are read from the spool file one at a time and sent by at
most ``upload_parallelism`` threads, so memory stays below
``upload_parallelism * part_size`` whatever the blob's size. A multipart upload
that fails is aborted; if even the abort fails (the server is gone), it is
remembered and aborted again before the next upload, and uploads this
process left behind more than ``stale_upload_age`` seconds ago are aborted at
start-up. An S3 PUT is durable when it returns, so :meth:`S3Backend.flush`
has nothing to do: the store commits the index row right after.

Reads. A blob is read in aligned blocks of ``block_size`` bytes with ranged
GETs, and each block is kept in a local LRU cache capped in bytes
(:mod:`axonfs.backends.cache`). A small random read fetches one block and no
more; sequential reads (and reads from offset 0) fetch the next blocks in the
background, several per GET, in a window that grows with the run up to
``readahead_blocks`` (:mod:`axonfs.backends.readahead`). A GET's blocks are
handed over as they arrive, each once cached. Concurrent readers of one block
share one GET.

Listing. :meth:`S3Backend.list` splits the key space under the prefix into 16
ranges by the first hex digit and lists them in parallel, so a million
objects do not take one sequential paginated listing.

Faults. Every request is retried with capped, jittered exponential backoff
on transient errors (:mod:`axonfs.backends.retry`); when attempts run out the
call raises :class:`~axonfs.errors.BackendError` naming the blob (EIO at the
FUSE layer), and the next call tries afresh, so the backend recovers by
itself when the server comes back. Cached blocks stay readable meanwhile.

Several hosts on one bucket. Each host has its own index; hosts tell each
other of their adds and deletes through small objects under ``changes/``
(:meth:`S3Backend.put_object` and friends; :mod:`axonfs.hostsync`), and a
blob another host uploaded also shows up here after ``recover``. Deleting a
blob removes the object from the shared bucket for every host; there is no
reference counting across hosts.

Concurrency: the methods block; call them from worker threads. One boto3
client is built in ``__init__`` and shared by every thread (boto3 clients are
thread-safe; sessions are not, so only the constructor touches the session).
A semaphore of ``max_connections`` tokens, equal to the client's connection
pool, bounds the requests in flight, and one thread pool of the same size
runs multipart parts, readahead and listing ranges. Callers should run
backend calls under an ``s3_io`` limiter with ``max_connections`` tokens.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.session
from botocore.exceptions import ClientError
from botocore.utils import parse_timestamp

from axonfs.backends.base import BlobBackend, BlobStream, Listing
from axonfs.backends.cache import BlockCache, CacheStats
from axonfs.backends.readahead import BlockFetcher, BlockReader, Deliver
from axonfs.backends.retry import RetryPolicy, TransientError, call_with_retry
from axonfs.backends.stream import RangeStream
from axonfs.errors import AxonError, BackendError, BlobMissing
from axonfs.hashing import Sha256, is_sha256_hex
from axonfs.units import parse_size

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB
"""S3's smallest allowed part (all but the last)."""
MAX_PARTS = 10_000
"""S3's largest allowed part count; the part size grows to fit."""
HEX_DIGITS = "0123456789abcdef"
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
SIZE_MEMO_ENTRIES = 65_536
CHANGES_DIR = "changes/"
"""Under the prefix: the hosts' change records and checkpoints (axonfs.changelog),
small objects that listings of blobs pass over without counting them as strangers."""

KeyRange = tuple[str | None, str | None]
"""(StartAfter or None, first key past the range or None)."""
RangeListing = tuple[list[Listing], int]
"""The blobs found in a key range, and how many other keys it held."""
NameListing = tuple[list[tuple[str, float]], list[str]]
"""Object names with their last-modified times, and rolled-up "directories"."""


@dataclass(frozen=True, slots=True)
class S3Config:
    """Where the bucket is and how to talk to it."""

    bucket: str
    endpoint_url: str | None = None
    """None: AWS's own endpoint for the region."""
    prefix: str = ""
    """Prepended to every key; include a trailing ``/`` if you want one."""
    region: str | None = None
    """None: from boto3's chain, else us-east-1."""
    part_size: int = 16 * MiB
    """Multipart part size; blobs up to this size go up in a single PUT."""
    upload_parallelism: int = 4
    """Parts of one blob in flight at once (memory: this times part_size)."""
    max_connections: int = 16
    """Requests in flight at once for the whole backend; the connection pool size."""
    block_size: int = 1 * MiB
    """Unit of ranged reads and of the read cache; a small read fetches one."""
    readahead_blocks: int = 16
    """The most blocks fetched ahead of a sequential reader (and in one GET)."""
    cache_size: int = 1 << 30
    """Byte cap of the local read cache (0: no cache)."""
    list_page_size: int = 1000
    """Keys per listing request (S3's maximum is 1000)."""
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stale_upload_age: float = 86_400.0
    """Multipart uploads older than this (seconds) are aborted at start-up."""

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("an S3 bucket name is required")
        if self.part_size < MIN_PART_SIZE:
            raise ValueError(f"the S3 part size must be at least {MIN_PART_SIZE} bytes")
        if self.block_size < 4096 or self.max_connections < 1 or self.upload_parallelism < 1:
            raise ValueError("block_size >= 4096, max_connections >= 1, upload_parallelism >= 1")


@dataclass(frozen=True, slots=True)
class S3Stats:
    """A snapshot of the backend's counters since it was opened.

    ``requests`` counts HTTP requests by operation, every retry included
    (what a provider bills).
    """

    requests: dict[str, int]
    retries: int
    failures: int
    bytes_sent: int
    bytes_received: int
    cache: CacheStats

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


class _Counters:
    """Thread-safe counters behind :meth:`S3Backend.stats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._other: Counter[str] = Counter()

    def request(self, kind: str) -> None:
        with self._lock:
            self._requests[kind] += 1

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._other[name] += amount

    def snapshot(self, cache: CacheStats) -> S3Stats:
        with self._lock:
            other = self._other
            return S3Stats(
                dict(self._requests),
                other["retries"],
                other["failures"],
                other["bytes_sent"],
                other["bytes_received"],
                cache,
            )


class S3Backend(BlobBackend):
    """A bucket (or a prefix of one) holding blobs named by sha256 hex."""

    name = "s3"
    reads_are_local = False
    durable_off_machine = True

    def __init__(self, config: S3Config, cache_dir: Path) -> None:
        """Build the client; no request is sent until the first call."""
        self.config = config
        self.max_connections = config.max_connections
        self.prefix = config.prefix
        self.ignored = 0
        core = botocore.session.get_session()
        # botocore turns every timestamp in a response into a datetime with
        # dateutil, which is most of the CPU time of a listing (one per key)
        # and GIL-bound; keep them as the server's ISO 8601 text and parse
        # only the few used (_timestamp).
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
        session = boto3.session.Session(botocore_session=core, region_name=config.region)
        self.region = session.region_name or "us-east-1"
        self.client: Any = session.client(
            "s3",
            region_name=self.region,
            endpoint_url=config.endpoint_url,
            config=botocore.config.Config(
                max_pool_connections=config.max_connections,
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                retries={"total_max_attempts": 1},  # retry.py retries, with our policy
                tcp_keepalive=True,
                # S3-compatible servers vary in their support of the newer
                # flexible checksums; Content-MD5 (sent below) works everywhere.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path" if config.endpoint_url else "auto"},
            ),
        )
        self.cache = BlockCache(cache_dir, config.cache_size, config.block_size)
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._pool = ThreadPoolExecutor(config.max_connections, thread_name_prefix="s3")
        # A pool of its own: a batch's uploads must not wait behind the reads
        # and part uploads they would otherwise share threads with.
        self._batch_pool = ThreadPoolExecutor(config.max_connections, thread_name_prefix="s3-batch")
        self.fetcher = BlockFetcher(
            self.cache, config.block_size, config.readahead_blocks, self._get_blocks, self._pool
        )
        self._counters = _Counters()
        self._lock = threading.Lock()  # guards the small dicts below; never held for I/O
        self._ready_lock = threading.Lock()
        self._ready_done = False
        self._pending_aborts: list[tuple[str, str]] = []  # (key, upload id)
        self._sizes: OrderedDict[str, int] = OrderedDict()  # hex -> size, LRU memo

    def key_of(self, sha256: Sha256) -> str:
        return self.prefix + sha256.hex()

    # -- requests ----------------------------------------------------------------

    def _call(self, kind: str, what: str, fn: Callable[[], T]) -> T:
        """Run one request with retries; translate failures to backend errors.

        Raises:
            BlobMissing: the object (or the upload) does not exist.
            BackendError: anything else, once retries are exhausted.
        """

        def attempt() -> T:
            self._counters.request(kind)
            with self._slots:
                return fn()

        try:
            return call_with_retry(
                attempt,
                policy=self.config.retry,
                what=what,
                on_retry=lambda exc: self._counters.add("retries"),
            )
        except AxonError:
            raise
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in NOT_FOUND_CODES or code == "NoSuchUpload":
                raise BlobMissing(f"{what}: not found", code_s3=code) from None
            self._counters.add("failures")
            log.error("%s failed: %s", what, exc)
            raise BackendError(
                f"{what} failed: {error.get('Message') or code}", code_s3=code
            ) from exc
        except Exception as exc:
            self._counters.add("failures")
            log.error("%s failed: %s", what, exc)
            raise BackendError(f"{what} failed: S3 is unreachable or erroring ({exc})") from exc

    def _ready(self) -> None:
        """Create the bucket if missing and clean stale uploads, once."""
        if self._ready_done:
            return
        with self._ready_lock:
            if self._ready_done:
                return
            bucket = self.config.bucket
            try:
                self._call(
                    "head_bucket",
                    f"checking bucket {bucket}",
                    lambda: self.client.head_bucket(Bucket=bucket),
                )
            except BlobMissing:
                self._create_bucket()
            self._ready_done = True
        self.abort_stale_uploads(self.config.stale_upload_age)

    def _create_bucket(self) -> None:
        bucket = self.config.bucket
        args: dict[str, Any] = {"Bucket": bucket}
        if self.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        log.info("creating S3 bucket %s", bucket)
        try:
            self._call(
                "create_bucket",
                f"creating bucket {bucket}",
                lambda: self.client.create_bucket(**args),
            )
        except BackendError as exc:
            code = exc.fields.get("code_s3")
            if code == "InvalidLocationConstraint":
                # Ceph RGW names regions after its zonegroups, not AWS's regions.
                raise BackendError(
                    f"creating bucket {bucket} failed: the server has no region "
                    f"{self.region!r} (on Ceph RGW the region is the zonegroup's name); "
                    "leave the region unset or create the bucket beforehand",
                    code_s3=code,
                ) from None
            if code not in ("BucketAlreadyOwnedByYou",):
                raise

    # -- writing -----------------------------------------------------------------

    def put_file(self, sha256: Sha256, path: Path, sync: bool = True) -> None:
        """Upload the spool file as ``<prefix><hex>``; remove it once stored.

        An upload is durable when it returns, so *sync* changes nothing.
        """
        self._ready()
        self.abort_pending_uploads()
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise BackendError(
                f"cannot read spool of {sha256.hex()}: {exc.strerror}", sha256=sha256.hex()
            ) from exc
        key = self.key_of(sha256)
        started = time.monotonic()
        if size <= self.config.part_size:
            self._put_single(key, path, f"upload of blob {sha256.hex()}")
        else:
            self._put_multipart(key, path, size, f"upload of blob {sha256.hex()}")
        log.debug(
            "stored blob %s (%d bytes) in %.3fs", sha256.hex(), size, time.monotonic() - started
        )
        self._remember_size(sha256.hex(), size)
        path.unlink(missing_ok=True)

    def put_files(self, items: list[tuple[Sha256, Path]]) -> list[AxonError | None]:
        """Upload a batch: single-PUT blobs in parallel, multipart ones in turn.

        A commit batch of small files then costs about one round trip per
        ``max_connections`` blobs instead of one per blob.
        """
        small = [
            i for i, (_, path) in enumerate(items) if _size_or_zero(path) <= self.config.part_size
        ]
        errors: list[AxonError | None] = [None] * len(items)

        def put(i: int) -> None:
            try:
                self.put_file(*items[i])
            except AxonError as exc:
                errors[i] = exc

        parallel = set(small) if len(small) > 1 else set()
        list(self._batch_pool.map(put, sorted(parallel)))
        for i in range(len(items)):
            if i not in parallel:
                put(i)
        return errors

    def _put_single(self, key: str, path: Path, what: str) -> None:
        data = path.read_bytes()
        md5 = _content_md5(data)
        self._call(
            "put_object",
            what,
            lambda: self.client.put_object(
                Bucket=self.config.bucket, Key=key, Body=data, ContentMD5=md5
            ),
        )
        self._counters.add("bytes_sent", len(data))

    def _put_multipart(self, key: str, path: Path, size: int, what: str) -> None:
        if self._object_size(key, what) == size:
            log.info("%s: the bucket already holds it", what)
            return
        part_size = max(self.config.part_size, -(-size // MAX_PARTS))
        bucket = self.config.bucket
        upload_id: str = self._call(
            "create_multipart_upload",
            what,
            lambda: self.client.create_multipart_upload(Bucket=bucket, Key=key),
        )["UploadId"]
        try:
            parts = self._upload_parts(key, upload_id, path, part_size, what)
            self._complete(key, upload_id, parts, size, what)
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _upload_parts(
        self, key: str, upload_id: str, path: Path, part_size: int, what: str
    ) -> list[dict[str, Any]]:
        """Send the parts, at most ``upload_parallelism`` in flight (and in memory)."""
        pending: set[Future[dict[str, Any]]] = set()
        parts: list[dict[str, Any]] = []
        try:
            with open(path, "rb") as file:
                number = 0
                while data := file.read(part_size):
                    number += 1
                    pending.add(
                        self._pool.submit(self._upload_part, key, upload_id, number, data, what)
                    )
                    del data
                    if len(pending) >= self.config.upload_parallelism:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        parts.extend(f.result() for f in done)
            done, pending = wait(pending)
            parts.extend(f.result() for f in done)
        finally:
            # Parts still in flight would land after the abort and be billed.
            for future in pending:
                future.cancel()
            wait(pending)
        return sorted(parts, key=lambda part: int(part["PartNumber"]))

    def _upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, what: str
    ) -> dict[str, Any]:
        md5 = _content_md5(data)
        response = self._call(
            "upload_part",
            f"{what} (part {number})",
            lambda: self.client.upload_part(
                Bucket=self.config.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=md5,
            ),
        )
        self._counters.add("bytes_sent", len(data))
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _complete(
        self, key: str, upload_id: str, parts: list[dict[str, Any]], size: int, what: str
    ) -> None:
        try:
            self._call(
                "complete_multipart_upload",
                what,
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.config.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BlobMissing:
            # A retry after a lost response finds the upload already completed.
            if self._object_size(key, what) != size:
                raise BackendError(f"{what}: the multipart upload vanished") from None

    def _abort(self, key: str, upload_id: str) -> None:
        """Abort an upload, or remember it for later if the server is away."""
        try:
            self._call(
                "abort_multipart_upload",
                f"aborting upload of {key}",
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.config.bucket, Key=key, UploadId=upload_id
                ),
            )
            log.info("aborted the multipart upload of %s", key)
        except BlobMissing:
            pass
        except BackendError:
            log.warning("could not abort the multipart upload of %s; will retry", key)
            with self._lock:
                self._pending_aborts.append((key, upload_id))

    def abort_pending_uploads(self) -> int:
        """Retry the aborts that failed earlier; return how many remain."""
        with self._lock:
            pending, self._pending_aborts = self._pending_aborts, []
        for key, upload_id in pending:
            self._abort(key, upload_id)
        with self._lock:
            return len(self._pending_aborts)

    def abort_stale_uploads(self, older_than: float) -> int:
        """Abort multipart uploads under the prefix started more than *older_than* s ago.

        A crash in the middle of an upload leaves its parts billed; a day is
        far longer than any live upload by another host takes. Failures are
        logged, not raised. Returns the number aborted.
        """
        bucket, cutoff, aborted = self.config.bucket, time.time() - older_than, 0
        try:
            response = self._call(
                "list_multipart_uploads",
                "listing multipart uploads",
                lambda: self.client.list_multipart_uploads(Bucket=bucket, Prefix=self.prefix),
            )
        except AxonError as exc:
            log.warning("cannot list stale multipart uploads: %s", exc)
            return 0
        for upload in response.get("Uploads", []):
            if _timestamp(upload["Initiated"]) < cutoff:
                log.info("aborting a stale multipart upload of %s", upload["Key"])
                self._abort(upload["Key"], upload["UploadId"])
                aborted += 1
        return aborted

    def flush(self) -> None:
        """Nothing to do: a completed S3 PUT is durable."""

    # -- reading -----------------------------------------------------------------

    def open(self, sha256: Sha256) -> BlockReader:
        """Open a blob; costs a HEAD only if its size is neither memoized nor cached."""
        sha_hex = sha256.hex()
        size = self._known_size(sha_hex)
        if size is None:
            size = self._object_size(self.key_of(sha256), f"reading blob {sha_hex}")
            if size is None:
                raise BlobMissing(
                    f"blob {sha_hex} is missing from bucket {self.config.bucket}", sha256=sha_hex
                )
            self._remember_size(sha_hex, size)
        return BlockReader(self.fetcher, sha_hex, size)

    def stream(self, sha256: Sha256, size: int, start: int, end: int) -> BlobStream | None:
        """One GET for the range, the read cache filled behind the reader; None
        if the range's first block is cached (the block reader then serves it
        from the cache, fetching only what is missing)."""
        sha_hex = sha256.hex()
        if self.cache.contains(sha_hex, start // self.config.block_size):
            return None
        return RangeStream(
            self._get_blocks, self.cache, sha_hex, size, start, end, self.config.block_size
        )

    def _object_size(self, key: str, what: str) -> int | None:
        """HEAD *key*: its size, or None if absent."""
        try:
            response = self._call(
                "head_object",
                what,
                lambda: self.client.head_object(Bucket=self.config.bucket, Key=key),
            )
        except BlobMissing:
            return None
        return int(response["ContentLength"])

    def _known_size(self, sha_hex: str) -> int | None:
        with self._lock:
            size = self._sizes.get(sha_hex)
            if size is not None:
                self._sizes.move_to_end(sha_hex)
                return size
        return self.cache.known_size(sha_hex)

    def _remember_size(self, sha_hex: str, size: int) -> None:
        with self._lock:
            self._sizes[sha_hex] = size
            if len(self._sizes) > SIZE_MEMO_ENTRIES:
                self._sizes.popitem(last=False)

    def _get_blocks(
        self, sha_hex: str, start: int, end: int, block_size: int, deliver: Deliver
    ) -> None:
        """One ranged GET of ``[start, end)``, its blocks handed to *deliver* as
        they arrive; a broken or short stream is resumed (retried) from the
        first block not yet delivered."""
        position = start

        def get() -> None:
            nonlocal position
            response = self.client.get_object(
                Bucket=self.config.bucket,
                Key=self.prefix + sha_hex,
                Range=f"bytes={position}-{end - 1}",
            )
            with response["Body"] as body:
                while position < end:
                    want = min(block_size, end - position)
                    data: bytes = body.read(want)
                    if len(data) != want:
                        raise TransientError(f"got {len(data)} bytes, expected {want}")
                    self._counters.add("bytes_received", want)
                    deliver(position, data)
                    position += want

        try:
            self._call("get_object", f"reading blob {sha_hex} at {start}", get)
        except BlobMissing:
            raise BlobMissing(
                f"blob {sha_hex} is missing from bucket {self.config.bucket}", sha256=sha_hex
            ) from None

    # -- the rest of the interface -------------------------------------------------

    def exists(self, sha256: Sha256) -> bool:
        return self._object_size(self.key_of(sha256), f"checking blob {sha256.hex()}") is not None

    def delete(self, sha256: Sha256) -> bool:
        """Delete the object (for every host sharing the bucket; see the module doc)."""
        sha_hex, key = sha256.hex(), self.key_of(sha256)
        existed = self.exists(sha256)
        if existed:
            self._call(
                "delete_object",
                f"deleting blob {sha_hex}",
                lambda: self.client.delete_object(Bucket=self.config.bucket, Key=key),
            )
        with self._lock:
            self._sizes.pop(sha_hex, None)
        self.cache.discard(sha_hex)
        return existed

    def list(self) -> Iterator[Listing]:
        """Yield every blob under the prefix, listing 16 key ranges in parallel."""
        self._ready()
        self.ignored = 0
        futures = [
            self._pool.submit(self._list_range, start_after, stop_at)
            for start_after, stop_at in self._ranges()
        ]
        try:
            for future in as_completed(futures):
                found, ignored = future.result()
                self.ignored += ignored
                yield from found
        finally:
            for future in futures:
                future.cancel()

    def _ranges(self) -> tuple[KeyRange, ...]:
        """Split the keys under the prefix into 16 ranges by first hex digit.

        Range *i* holds keys from ``prefix + HEX[i]`` (inclusive) to
        ``prefix + HEX[i+1]``; the first starts at the prefix itself and the
        last runs to its end, so keys that do not start with a hex digit are
        listed too (and counted as ignored). S3's StartAfter is exclusive:
        "the character before HEX[i], then the largest code point" sorts just
        below every key starting with HEX[i].
        """
        bounds = [self.prefix + digit for digit in HEX_DIGITS]
        return tuple(
            (
                None if i == 0 else low[:-1] + chr(ord(low[-1]) - 1) + "\U0010ffff",
                bounds[i + 1] if i + 1 < len(bounds) else None,
            )
            for i, low in enumerate(bounds)
        )

    def _list_range(self, start_after: str | None, stop_at: str | None) -> RangeListing:
        args: dict[str, Any] = {
            "Bucket": self.config.bucket,
            "Prefix": self.prefix,
            "MaxKeys": self.config.list_page_size,
        }
        if start_after is not None:
            args["StartAfter"] = start_after
        found: list[Listing] = []
        ignored = 0
        while True:
            response = self._call(
                "list_objects_v2",
                f"listing bucket {self.config.bucket}",
                lambda: self.client.list_objects_v2(**args),
            )
            for item in response.get("Contents", []):
                key: str = item["Key"]
                if stop_at is not None and key >= stop_at:
                    return found, ignored
                name = key[len(self.prefix) :]
                if is_sha256_hex(name):
                    found.append(Listing(Sha256(bytes.fromhex(name)), int(item["Size"])))
                elif not name.startswith(CHANGES_DIR):
                    ignored += 1
            if not response.get("IsTruncated"):
                return found, ignored
            args["ContinuationToken"] = response["NextContinuationToken"]

    # -- small objects beside the blobs (the hosts' change log) -----------------------

    def put_object(self, name: str, data: bytes) -> None:
        """Store *data* as ``<prefix><name>`` in one PUT (durable when it returns)."""
        self._ready()
        md5 = _content_md5(data)
        self._call(
            "put_object",
            f"writing {name}",
            lambda: self.client.put_object(
                Bucket=self.config.bucket, Key=self.prefix + name, Body=data, ContentMD5=md5
            ),
        )
        self._counters.add("bytes_sent", len(data))

    def get_object(self, name: str) -> bytes:
        """The whole of ``<prefix><name>``.

        Raises:
            BlobMissing: there is no such object.
        """

        def get() -> bytes:
            response = self.client.get_object(Bucket=self.config.bucket, Key=self.prefix + name)
            with response["Body"] as body:
                data: bytes = body.read()
            if len(data) != int(response["ContentLength"]):
                raise TransientError(f"got {len(data)} bytes of {name}")
            return data

        data = self._call("get_object", f"reading {name}", get)
        self._counters.add("bytes_received", len(data))
        return data

    def list_names(
        self, under: str, start_after: str | None = None, delimiter: str | None = None
    ) -> NameListing:
        """Names under ``<prefix><under>`` (after *start_after*), in key order.

        Returns:
            ``(name, last-modified time)`` per object, names relative to the
            prefix, and with *delimiter* the "directories" rolled up.
        """
        self._ready()
        args: dict[str, Any] = {
            "Bucket": self.config.bucket,
            "Prefix": self.prefix + under,
            "MaxKeys": self.config.list_page_size,
        }
        if start_after is not None:
            args["StartAfter"] = self.prefix + start_after
        if delimiter is not None:
            args["Delimiter"] = delimiter
        names: NameListing = ([], [])
        cut = len(self.prefix)
        while True:
            response = self._call(
                "list_objects_v2", f"listing {under}", lambda: self.client.list_objects_v2(**args)
            )
            names[0].extend(
                (item["Key"][cut:], _timestamp(item["LastModified"]))
                for item in response.get("Contents", [])
            )
            names[1].extend(entry["Prefix"][cut:] for entry in response.get("CommonPrefixes", []))
            if not response.get("IsTruncated"):
                return names
            args["ContinuationToken"] = response["NextContinuationToken"]

    def delete_names(self, names: Sequence[str]) -> None:
        """Delete ``<prefix><name>`` for each name (absent ones are no error)."""
        for start in range(0, len(names), 1000):  # S3's most keys per batch delete
            keys = [{"Key": self.prefix + name} for name in names[start : start + 1000]]
            batch = {"Objects": keys, "Quiet": True}
            response = self._call(
                "delete_objects",
                f"deleting {len(keys)} objects",
                partial(self.client.delete_objects, Bucket=self.config.bucket, Delete=batch),
            )
            if errors := response.get("Errors"):
                raise BackendError(
                    f"deleting {len(errors)} objects failed: {errors[0].get('Code')}",
                    code_s3=errors[0].get("Code"),
                )

    def stats(self) -> S3Stats:
        """Requests by kind, retries, bytes moved and the read cache's counters."""
        return self._counters.snapshot(self.cache.stats())

    def close(self) -> None:
        """Retry pending aborts once, stop the worker threads, close connections."""
        try:
            self.abort_pending_uploads()
        except AxonError as exc:  # pragma: no cover - _abort logs and keeps them
            log.warning("pending multipart aborts: %s", exc)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._batch_pool.shutdown(wait=True, cancel_futures=True)
        self.fetcher.fail_all(BackendError("the S3 backend is closed"))
        self.client.close()


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # put_file will report it


def _timestamp(text: str) -> float:
    """A response's timestamp (kept as text by the client) as POSIX seconds."""
    try:
        return datetime.fromisoformat(text).timestamp()  # S3's form: 2026-12-06T10:36:55.123Z
    except ValueError:
        return float(parse_timestamp(text).timestamp())  # any other form botocore knows


def _content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


__all__ = ["S3Backend", "S3Config", "S3Stats", "parse_size"]
