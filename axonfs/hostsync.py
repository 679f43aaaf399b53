"""Hosts that share a bucket converge through it, at a cost that follows the changes.

Each host's index is its own; the bucket holds the blobs and the hosts'
change records (:mod:`axonfs.changelog`). The protocol, whose invariants
``docs/ARCHITECTURE.md`` states in full:

Publishing. A local add or delete is queued in the index's ``sync`` DB in
the same transaction that commits it, which comes after the blob's upload
(blob first, index second). :meth:`HostSync.publish` writes the queue as
records (one PUT per up to :attr:`SyncConfig.record_max` changes) and drops
what it wrote. A crash or an S3 outage leaves the queue for the next try, so
no change is lost and no record names bytes that were never stored.

Applying. :meth:`HostSync.pull` lists, per other host, the records after the
last one applied (one LIST each when nothing changed: constant in the
bucket's size), reads the new ones and checks every blob they name against
the bucket (a HEAD each): a blob named by an add that exists is indexed
(dated now); a blob named by a delete that is gone loses its row and its name
in the mount. The bucket decides, not the order of records: hosts' records
are not ordered against each other (clocks disagree), and an add racing a
delete of the same bytes ends the same way on every host, as the bucket
ended it. The cursors (last change applied, per host) advance after the
commit; applying a record twice changes nothing.

Catching up. A host whose next record is gone (collected while it was away)
or that has never synced loads the newest checkpoint: the blobs a host held
and the cursors it had applied. Blobs it lists are indexed; rows it lacks are
checked against the bucket; the cursors jump to its own; records after them
follow as usual.

Collecting. A host writes a checkpoint when it has applied (and published)
:attr:`SyncConfig.checkpoint_every` changes past the newest one and is at
least as far on every host's records as it. Each host deletes only its own
records, and only those the newest checkpoint covers and that are older than
:attr:`SyncConfig.retention` by the bucket's clock; the same for its own
superseded checkpoints, keeping the newest two.

Concurrency: :meth:`run` is a long-lived task in the daemon's nursery; all
S3 work runs in worker threads under the backend's limiter.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from axonfs.axon import Axon
from axonfs.backends.s3 import S3Backend
from axonfs.changelog import Change, ChangeLog, Checkpoint, Record, RecordName
from axonfs.errors import AxonError, BackendError, BlobMissing
from axonfs.hashing import Sha256
from axonfs.store.index import BlobRow

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECK_PARALLELISM = 16
"""Requests in flight while reading new records and checking the blobs they name
(at most the S3 backend's connection pool, 16 by default)."""
SCAN_BATCH = 10_000
PUBLISH_RETRY = 5.0
"""Seconds between tries to publish when no pull interval sets the pace."""
MAINTAIN_EVERY = 60
"""Pulls between checks for a due checkpoint or collection when nothing changed
(when something did, the check follows that pull)."""


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """How often and how much; the defaults suit a fleet of a few hosts."""

    interval: float | None = None
    """Seconds between pulls (None: publish only, never pull)."""
    record_max: int = 1000
    """Most changes in one record."""
    checkpoint_every: int = 10_000
    """Changes applied past the newest checkpoint before this host writes one."""
    retention: float = 86_400.0
    """Seconds (bucket clock) a record outlives the checkpoint that covers it:
    a host away for less catches up from records, a host away longer from the
    checkpoint."""


@dataclass(slots=True)
class SyncReport:
    """What one pull did."""

    records: int = 0
    added: int = 0
    deleted: int = 0
    from_checkpoint: bool = False
    skipped_hosts: list[str] = field(default_factory=list)
    """Hosts whose next record is damaged (logged; their cursor waits)."""


@dataclass(frozen=True, slots=True)
class PeerState:
    """How far this host is on one other host's records (for ``ctl stats``)."""

    host: str
    applied: int
    """The last change of that host applied here."""
    latest: int | None
    """The last change of that host seen in the bucket at the last pull."""


class HostSync:
    """Publishes this host's changes and applies the others'. One per daemon."""

    def __init__(self, axon: Axon, backend: S3Backend, config: SyncConfig) -> None:
        """Start queueing this store's changes at once (call before any commit)."""
        self.axon = axon
        self.index = axon.index
        self.changes = ChangeLog(backend)
        self.backend = backend
        self.config = config
        axon.store.publish_changes = True
        self.host = self.index.host_id(lambda: secrets.token_hex(8))
        self.latest: dict[str, int] = {}
        self._wake = trio.Event()
        self._since_maintained = 0
        self._pulls = 0
        self._newest: tuple[str, dict[str, int]] | None = None
        self._pulling = trio.Lock()
        self._publishing = trio.Lock()
        axon.watch(self)

    # -- watcher: a commit happened, maybe with changes to publish ----------------

    def blobs_added(self, rows: Sequence[BlobRow]) -> None:
        self._wake.set()

    def blobs_deleted(self, rows: Sequence[BlobRow]) -> None:
        self._wake.set()

    # -- the loops -----------------------------------------------------------------

    async def run(self) -> None:
        """Publish after commits (and retry every interval); pull every interval."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish_loop)
            if self.axon.sync_interval:
                nursery.start_soon(self._wake_after_syncs)
            if self.config.interval:
                nursery.start_soon(self._pull_loop, self.config.interval)

    async def _publish_loop(self) -> None:
        retry = self.config.interval or PUBLISH_RETRY
        rounds = 0
        while True:
            with trio.move_on_after(retry):
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                self._since_maintained += await self.publish()
                rounds += 1
                # A host that never pulls still collects its own old records.
                if not self.config.interval and rounds % MAINTAIN_EVERY == 0:
                    await self.maintain()
            except (AxonError, OSError) as exc:  # S3 away: the queue waits in the index
                log.warning("cannot publish this host's changes yet (%s); will retry", exc)

    async def _wake_after_syncs(self) -> None:
        """Deferred commits' changes can go out once a sync made them durable."""
        while True:
            await self.axon.wait_synced()
            self._wake.set()

    async def _pull_loop(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                report = await self.pull()
                self._pulls += 1
                if self._since_maintained or self._pulls % MAINTAIN_EVERY == 0:
                    await self.maintain()
            except (AxonError, OSError) as exc:  # S3 away, or the index's disk full
                log.warning("sync from the bucket failed: %s; will retry", exc)
                continue
            if report.added or report.deleted:
                log.info(
                    "sync: %d records applied, %d blobs indexed, %d dropped",
                    report.records,
                    report.added,
                    report.deleted,
                )

    async def _thread(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.axon.limiters.blob_io)

    # -- publishing ------------------------------------------------------------------

    async def publish(self) -> int:
        """Write every queued change as records; return how many changes went out."""
        sent = 0
        async with self._publishing:
            # Only durable changes go out. A change that a power cut here could
            # still undo would have its seq given again to another change, and
            # hosts that applied the first record would skip the second. With
            # a sync interval, the others go out after the sync that makes
            # them durable (see _wake_after_syncs).
            upto = self.index.next_out(durable=True) - 1
            while batch := [
                change
                for change in self.index.outbox_batch(self.config.record_max)
                if change[0] <= upto
            ]:
                record = Record(
                    self.host,
                    tuple(Change(seq, kind == b"a", sha, size) for seq, kind, sha, size in batch),
                )
                await self._thread(self.changes.write_record, record)
                await trio.to_thread.run_sync(self.index.outbox_drop, record.last)
                sent += len(batch)
        return sent

    def queued(self) -> int:
        """Changes committed here and not yet in the bucket."""
        return self.index.next_out() - 1 - self.published()

    def published(self) -> int:
        """The last of this host's changes that is in the bucket."""
        pending = self.index.outbox_batch(1)
        return pending[0][0] - 1 if pending else self.index.next_out() - 1

    # -- applying ----------------------------------------------------------------------

    async def pull(self) -> SyncReport:
        """Apply every other host's records written since the last pull."""
        async with self._pulling:
            report = SyncReport()
            hosts = [h for h in await self._thread(self.changes.hosts) if h != self.host]
            cursors = self.index.cursors()
            if not cursors and hosts:
                await self._from_checkpoint(report)
                cursors = self.index.cursors()
            found: dict[str, list[RecordName]] = {}
            for host in hosts:
                found[host] = names = await self._thread(
                    self.changes.records_after, host, cursors.get(host, 0)
                )
                self.latest[host] = names[-1].last if names else cursors.get(host, 0)
            records: list[Record] = []
            for host, names in found.items():
                try:
                    got = await self._read(host, names, cursors.get(host, 0))
                except BlobMissing:
                    got = None
                except BackendError as exc:
                    if "name" not in exc.fields:
                        raise  # S3 away, not a bad record
                    # One host's damaged record must not stop the others' changes;
                    # this host's wait (its cursor stays) until the record is fixed.
                    log.error("skipping the changes of host %s: %s", host, exc)
                    report.skipped_hosts.append(host)
                    continue
                if got is None:  # a gap: records were collected while we were away
                    await self._from_checkpoint(report)
                    await self._bridge(host, names)
                    return report
                records += got
            await self._apply(records, report)
            self._since_maintained += len(records)
            return report

    async def _bridge(self, host: str, names: list[RecordName]) -> None:
        """If even the newest checkpoint leaves a gap before *host*'s oldest
        record, fall back to ``recover`` (the bucket itself) and go on from there.

        Adds in the gap are found by the listing; deletes in it are not (their
        rows stay until ``fsck``), which is why collection keeps records the
        newest checkpoint does not cover.
        """
        if not names:
            return
        oldest = await self._thread(self.changes.read_record, names[0].name)
        if self.index.cursors().get(host, 0) + 1 >= oldest.first:
            return
        log.warning(
            "the records of host %s before change %d are gone and no checkpoint "
            "covers them; indexing the bucket's listing instead",
            host,
            oldest.first,
        )
        await trio.to_thread.run_sync(self.index.set_cursors, {host: oldest.first - 1})
        await self.axon.recover(verify=False)

    async def _read(self, host: str, names: list[RecordName], cursor: int) -> list[Record] | None:
        """The records *names* in order, or None if one is missing before them."""
        # BlobMissing (collected between the listing and the read) is a gap too.
        records = await self._thread(self._read_all, [entry.name for entry in names])
        for record in records:
            if record.first > cursor + 1:
                return None
            cursor = record.last
            self.latest[host] = record.last
        return records

    def _read_all(self, names: list[str]) -> list[Record]:
        """GET the records, CHECK_PARALLELISM at a time (a worker thread's job)."""
        if len(names) <= 1:
            return [self.changes.read_record(name) for name in names]
        with ThreadPoolExecutor(CHECK_PARALLELISM, thread_name_prefix="sync-read") as pool:
            return list(pool.map(self.changes.read_record, names))

    async def _apply(self, records: list[Record], report: SyncReport) -> None:
        cursors = self.index.cursors()
        adds: dict[Sha256, int] = {}
        deletes: set[Sha256] = set()
        advanced: dict[str, int] = {}
        for record in records:
            for change in record.changes:
                if change.seq <= cursors.get(record.host, 0):
                    continue  # re-published overlap of a record already applied
                if change.added:
                    adds[change.sha256] = change.size
                else:
                    deletes.add(change.sha256)
            advanced[record.host] = max(record.last, advanced.get(record.host, 0))
        report.records += len(records)
        added, dropped = await self._decide(adds, deletes)
        report.added += added
        report.deleted += dropped
        if advanced:
            merged = {host: max(seq, cursors.get(host, 0)) for host, seq in advanced.items()}
            await trio.to_thread.run_sync(self.index.set_cursors, merged)

    async def _decide(self, adds: dict[Sha256, int], deletes: set[Sha256]) -> tuple[int, int]:
        """Index the named adds that exist; drop the named deletes that are gone.

        A blob this host is deleting itself (queued, not yet published) is not
        re-indexed even if its bytes are still there: they are about to go.
        """
        pending_deletes = {
            sha for _, kind, sha, _ in self.index.outbox_batch(1 << 30) if kind == b"d"
        }
        unknown = [sha for sha in adds if sha not in pending_deletes and not self.index.has(sha)]
        rows = {sha: row for sha in deletes if (row := self.index.get(sha)) is not None}
        present = await self._thread(self._exist, list(set(unknown) | set(rows)))
        found = [(sha, adds[sha]) for sha in unknown if present[sha]]
        gone = [row for sha, row in rows.items() if not present[sha]]
        return await self.axon.apply_remote(found, gone)

    def _exist(self, shas: list[Sha256]) -> dict[Sha256, bool]:
        """HEAD each blob, CHECK_PARALLELISM at a time (a worker thread's job)."""
        if not shas:
            return {}
        with ThreadPoolExecutor(CHECK_PARALLELISM, thread_name_prefix="sync-check") as pool:
            return dict(zip(shas, pool.map(self.backend.exists, shas), strict=True))

    # -- checkpoints -------------------------------------------------------------------

    async def _from_checkpoint(self, report: SyncReport) -> None:
        """Catch up from the newest checkpoint (or from nothing, if none exists)."""
        listed = await self._thread(self.changes.checkpoints)
        if not listed:
            # No checkpoint yet: every record is still there, from the first.
            await trio.to_thread.run_sync(
                self.index.set_cursors,
                {h: 0 for h in await self._thread(self.changes.hosts) if h != self.host},
            )
            return
        name = listed[-1][0]
        checkpoint = await self._thread(self.changes.read_checkpoint, name)
        report.from_checkpoint = True
        held = {sha: size for sha, size in checkpoint.blobs}
        missing = [(sha, size) for sha, size in checkpoint.blobs if not self.index.has(sha)]
        rows = await trio.to_thread.run_sync(self._rows)
        extra = [row for row in rows if row.sha256 not in held]
        present = await self._thread(self._exist, [row.sha256 for row in extra])
        added, dropped = await self.axon.apply_remote(
            missing, [row for row in extra if not present[row.sha256]]
        )
        report.added += added
        report.deleted += dropped
        cursors = self.index.cursors()
        merged = {
            host: max(seq, cursors.get(host, 0))
            for host, seq in checkpoint.cursors.items()
            if host != self.host
        }
        await trio.to_thread.run_sync(self.index.set_cursors, merged)
        log.info("caught up from checkpoint %s: %d blobs indexed, %d dropped", name, added, dropped)

    def _rows(self) -> list[BlobRow]:
        """Every live row (a worker thread's job: a million take seconds)."""
        rows: list[BlobRow] = []
        after = b""
        while batch := self.index.blobs_batch(after, SCAN_BATCH):
            rows += batch
            after = batch[-1].sha256
        return rows

    async def maintain(self) -> None:
        """Write a checkpoint if one is due, then collect what the newest covers."""
        self._since_maintained = 0
        listed = await self._thread(self.changes.checkpoints)
        newest = await self._newest_cursors(listed)
        mine = dict(self.index.cursors())
        mine[self.host] = self.published()
        progress = sum(mine.values()) - (sum(newest.values()) if newest else 0)
        ahead = newest is None or all(mine.get(h, 0) >= seq for h, seq in newest.items())
        if ahead and progress >= self.config.checkpoint_every:
            rows = await trio.to_thread.run_sync(self._rows)
            blobs = [(row.sha256, row.size) for row in rows]
            name = await self._thread(
                self.changes.write_checkpoint, Checkpoint(self.host, mine, blobs)
            )
            log.info("wrote checkpoint %s (%d blobs)", name, len(blobs))
            listed = await self._thread(self.changes.checkpoints)
            newest = await self._newest_cursors(listed)
        if newest is not None:
            await self._collect(newest, listed)

    async def _newest_cursors(self, listed: list[tuple[str, int, float]]) -> dict[str, int] | None:
        """The cursors of the newest checkpoint (read once per checkpoint)."""
        if not listed:
            return None
        name = listed[-1][0]
        if self._newest is None or self._newest[0] != name:
            checkpoint = await self._thread(self.changes.read_checkpoint, name)
            self._newest = (name, checkpoint.cursors)
        return self._newest[1]

    async def _collect(self, newest: dict[str, int], listed: list[tuple[str, int, float]]) -> None:
        """Delete this host's records and checkpoints the newest checkpoint made
        unnecessary, once they are older than the retention by the bucket's clock."""
        cutoff = listed[-1][2] - self.config.retention
        covered = newest.get(self.host, 0)
        mine = await self._thread(self.changes.records_after, self.host, 0)
        old = [entry.name for entry in mine if entry.last <= covered and entry.modified <= cutoff]
        old += [
            name
            for name, _, modified in listed[:-2]
            if name.endswith("-" + self.host) and modified <= cutoff
        ]
        if old:
            await self._thread(self.changes.delete, old)
            log.info("collected %d change records and checkpoints", len(old))

    def peers(self) -> list[PeerState]:
        """Every other host seen, how far this host has applied its records."""
        cursors = self.index.cursors()
        return [
            PeerState(host, applied, self.latest.get(host))
            for host, applied in sorted(cursors.items())
        ]
