# ruff: noqa: E501 - the markdown table rows are long lines
"""Render the figures of a reliability-suite run as ``docs/RELIABILITY.md``.

Run the suite with ``AXONFS_RELIABILITY_REPORT=docs/RELIABILITY.md`` to
regenerate the document from that run::

    AXONFS_RELIABILITY_REPORT=docs/RELIABILITY.md .venv/bin/python -m pytest tests/reliability

The prose below is fixed; every number comes from the run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

INTRO = """\
# Reliability

What `tests/reliability/` does to a running axonfs daemon, and what it found. The suite runs
with the rest of the tests (`make test`, i.e. `.venv/bin/python -m pytest`); every test is
bounded in time and count and uses only loopback addresses, a temporary store and, for the
full-disk test, a small tmpfs. Every mount it makes is undone, even when a test fails, and the
session fails if one is left in `/proc/mounts`. The figures below are from the run named at
the end of this page (regenerate them with
`AXONFS_RELIABILITY_REPORT=docs/RELIABILITY.md .venv/bin/python -m pytest tests/reliability`).

## What each test does

| test | what happens | what must hold |
|---|---|---|
| `test_crash.py` | 20 writer threads copy small and medium files (0–64 KiB, 256 KiB–1 MiB) into `/incoming/` while 4 readers read and hash blobs under `/by-sha256/`; the daemon is SIGKILLed at a random moment 0.15–1.2 s in; repeated for at least 20 rounds on the same store | after each kill `axonfs fsck` reports a clean store, `axonfs mount` recovers the dead mount point, every blob whose `close()` returned is present and byte-exact, every visible blob hashes to its name and is a whole file some writer wrote, `/incoming` and `tmp/` are empty |
| `test_full_disk.py` | the store on a 64 MiB tmpfs, mostly taken by a ballast file; writers copy 6 MiB files until the disk is full; a socket client `put`s too | writers get `ENOSPC` from `write()` or `close()`, nothing partial is committed, `tmp/` is empty once the failing handles are closed, reads (mount and socket) keep working while the disk is full, writes work again once the ballast is removed, `fsck` is clean |
| `test_bad_input.py` | hypothesis-generated garbage, truncated, oversized and malformed control frames and calls with random argument types against `axonfs serve`; invalid and hostile names under every directory of the mount (lookup, open, create, mkdir, rename, symlink, link, mknod, setxattr); hostile `wget` targets on a loopback HTTP server (redirect loop, endless body, header flood, huge announced length) | each input gets a clear error (a `ProtocolError`/`BadArg`/… frame, an errno, or `ok: false` with a message); the daemon stays up (`ping` after every strategy, `put`/`has`/`metrics` at the end), never answers `EIO` for a name, never fails a whole connection (only a call with arguments of the wrong type may be logged, with its traceback, as an unexpected `AxonError`), and `fsck` is clean at the end |
| `test_load.py` | 8 readers (whole-file and random ranged reads, each verified against the blob's hash) and 4 writers on the mount plus 4 socket clients (`put`, `get`, `has`, `upload`, `hashes`, `metrics`) for a bounded period | no error, every read byte-exact, the daemon's open descriptors back to where they started, no spool file left, `fsck` clean |
| `test_s3_faults.py` | the S3 backend behind a loopback proxy to a moto server and to Ceph RGW over HTTPS; the proxy is stopped and restarted during ingest and during reads | writes during the outage fail at `close()` with `EIO` and leave nothing; every acknowledged blob survives byte-exact; reads during the outage are byte-exact or `EIO`; the socket keeps answering; writes resume once S3 is back; a store-level fsck with the S3 backend is clean (`axonfs fsck` has no S3 options yet) |
| `test_exhaustion.py` | 40 connections each part way through a 32 MiB frame; 12 uploads in 4 MiB writes while such frames hold most of the budget; a 32 MiB frame of arrays of a million nils; 100 pipelined `hashset` calls; `csvrows` over a 384 MiB field without newline; `jsonlines` over `[` x 100,000; `axonfs ctl del` on a full 32 MiB tmpfs (big and journaled blobs); a read at the daemon's descriptor limit; inodes running out between spool and blob directory; a 127 KiB gzip body that inflates to 128 MiB; wget URLs with credentials and query secrets; `axonfs ctl wget` against a server that never answers; an `OSError` inside an inline and a task call | the daemon's RSS high-water mark stays under the request budget plus slack (frames that find no room within 5 s get `HitLimit`; the uploads all complete), under 160 MiB of growth for the decoded frame, under 300 MiB for `csvrows`; the first 64 pipelined calls are answered; deep JSON is `BadJsonText` without an ERROR line; every delete commits; the reader gets `EMFILE` (blob not marked broken, a warning logged), the writer `ENOSPC`; the bomb stops with `HitLimit` after 64 MiB, the daemon growing by less than 64 MiB; no secret reaches the log; `ctl wget` exits non-zero by itself; both call paths give the same error reply and keep the connection |
| `test_power_cut.py` | the store on the power-cut harness, a FUSE file system that keeps only what was synced; the power is cut at the syncs of a fixed sequence of calls, during the recovery from a cut, while eight writers put and delete, and while files are copied into `/incoming/` (see [Power cuts](#power-cuts)) | after each cut `axonfs fsck` is clean, every acknowledged put is present and byte-exact, every acknowledged delete is still done |
"""


NOTES = """\
## What the suite found and what changed because of it

* **LMDB's `ENOSPC` was an unexpected error.** A commit whose index transaction hit a full disk
  raised `lmdb.DiskError`: the writer's `close()` got `EIO` and the daemon logged a traceback and
  marked the run as failed. The index now raises it as `OSError(ENOSPC)`
  (`axonfs/store/index.py`), so `close()` reports "No space left on device".
* **A full disk during a large write became `EIO`.** Large writes hash and write in two threads
  under a trio nursery, whose `ExceptionGroup` hid the `OSError`; later writes to the same file
  answered `EIO`, which the kernel then reported at `close()`. The group is unwrapped
  (`axonfs/incoming.py`, `axonfs/axon.py` `Upload.write`) and later writes repeat the first
  error's errno.
* **An `OSError` in a control-socket call was logged as a daemon bug** (traceback at ERROR); it
  is now a warning and the reply carries `errno` (`axonfs/ctlserver.py`, `docs/PROTOCOL.md`).
* **A control frame whose `t` was a map killed its connection without a reply** (`TypeError:
  unhashable type`); it is now a `ProtocolError` like any other unknown kind.
* **Names longer than 255 bytes were accepted in `/incoming`** (FUSE passes up to 1024); they
  now get `ENAMETOOLONG`, matching `statfs`'s `f_namemax`.
* **`wget` had no size limit**: an endless body filled the disk. `--wget-max-bytes` (default
  4 GiB, 0: none) caps it; a body (or a `Content-Length`) over the cap is refused with
  `HitLimit` and nothing is stored.
* **Request memory had no daemon-wide bound**: 40 connections part way through 32 MiB frames
  took the daemon from 32 MB to 1.36 GB, and one 32 MiB frame of nils cost +545 MiB decoded.
  Large frames now draw on one request budget (`axonfs/budget.py`, 256 MiB, shared by every
  front end of the store) for their bytes and their decoded elements; a frame that finds it
  spent waits, unread, up to 5 s for room (busy uploads are paced, not refused), then is refused
  with `HitLimit`; a pipelined burst over the in-flight limit has its first 64 calls
  answered (it used to be refused whole); inline calls follow the same error policy as the rest.
* **`csvrows` read a whole line before its field limit applied** (1 GiB without a newline: 2.1
  GB); it now reads lines capped like `readlines` (64 Mi characters, `BadDataValu`). Deeply
  nested JSON (`RecursionError`) is `BadJsonText` like any bad line, noted at INFO.
* **A full disk blocked deletes** (`commit.intent` could not be written, and the index may
  need pages): the store keeps a 4 MiB reserve file, freed for a delete commit when the disk is
  full and allocated again after it.
* **Running out of descriptors marked blobs broken** (`EIO`, ERROR): a `BackendError` now
  answers the errno it carries (`EMFILE`, `ENOSPC`...), which is logged as a warning and marks
  nothing; the daemon raises its soft descriptor limit to the hard one at start.
* **wget**: a gzip body is refused once it decodes to more than 200 times what was received
  (past 64 MiB), decoded 1 MiB at a time by axonfs rather than a network read at a time by
  httpx, so a bomb stops early and small; `axonfs ctl wget`/`wput`/`postfiles` default to a
  300 s limit; URLs in the daemon's log (httpx's included) lose their userinfo and query values.
* **An S3 upload that failed after reaching the bucket left an orphan** (fsck: "in the backend
  but not the index"): the commit cleared its intent although an op failed with a
  `BackendError`. The intent is now kept, so the next commit (or the next open) settles it.

Known behaviour, not changed: a write that fails on a full disk may be reported by the kernel
only at `close()` (buffered FUSE writes); a blob whose commit completed as the daemon was
killed is visible although its writer's `close()` never returned ("visible but close never
returned" below); a call with arguments of the wrong type is answered `AxonError` naming the
exception (e.g. `TypeError`) and logged with its traceback; `axonfs fsck` has no S3 options
yet, so the S3 test checks the store with `axonfs.fsck.fsck` and the S3 backend.

"""


POWER_CUT = """\
## Power cuts

Killing the daemon cannot catch a missing `fsync`: the kernel's page cache survives the kill.
`test_power_cut.py` puts the store on a file system that loses, on a simulated power cut,
everything that was never synced: the power-cut harness (`tests/helpers/powercut.py`, tested
by `test_power_cut_harness.py`).

**What the harness models.** A FUSE file system (pyfuse3 + trio, in its own process, so a
store and its daemon can live on it) whose tree is kept in memory and whose file data sits in
a backing directory. Beside that live view it keeps a durable image, which changes only when
something syncs:

* `fsync`/`fdatasync` of a file copies its data written since the last sync, and its size,
  to the durable image. `msync(MS_SYNC)` of a shared mapping reaches the daemon as the same
  FSYNC (after the kernel wrote the dirty pages), so LMDB with `writemap` is covered too; a
  write through an `O_SYNC`/`O_DSYNC` descriptor is durable when it returns (LMDB writes its
  meta page that way; axonfs opens its index with `sync`, `metasync`, no `writemap`).
* `fsync` of a directory makes its current entries durable. A create, `mkdir`, rename, link
  or unlink survives only once its directory (both, for a rename) was synced; an entry synced
  without its file's data comes back empty (the zero-length file of a real crash).
* A power cut is a SIGKILL of the harness at any instant, or, for a sweep, at the start of its
  K-th sync (before that sync has any effect). Every sync is persisted before the harness
  replies, so whatever a caller was told is durable is in the image. The next start shows the
  durable image only.
* `syncfs(2)` and `sync(2)` do not reach a FUSE daemon: the kernel sends FUSE_SYNCFS to
  virtiofs only (checked on this Linux 6.18; `test_syncfs_does_not_reach_a_fuse_file_system`
  fails if a kernel ever passes it on). On this harness, as on any FUSE file system, they make
  nothing durable.
* Optionally (`keep_unsynced`), the start after a cut lets each unsynced 4 KiB piece of a
  durable file, and its unsynced size, survive with a given chance, in any order: the kernel's
  writeback part way through when the power went.

**What it does not model.** Torn sectors; unsynced directory changes that survive anyway (a
real file system may persist a create or rename early); timestamps, ownership and xattrs
across a crash; `datasync` is treated as a full `fsync`; `fallocate` is not implemented (glibc emulates
it with writes); file locks stay in the kernel; S3 uploads (the S3 backend's durability is the
bucket's: a completed PUT). The harness is the strict POSIX worst case for entries and data:
ext4 in its default `data=ordered` mode keeps more than this (one journal commits every
pending metadata change), so some of what it found could not happen on ext4, but may on
other file systems (and on FUSE-backed stores).

**Crash points** (after each: `axonfs fsck` clean, every acknowledged put present and
byte-exact, every acknowledged delete still done; a delete in flight may go either way):

* a sweep over the syncs of one fixed sequence of calls on a fresh store (small puts
  journaled in the index, large puts as blob files, a streamed upload, a multi-put, a dedup,
  deletes of a journaled and of a file blob, a spill of the journal, more puts, a delete of a
  spilled blob, the clean close). The durable image changes only at a sync, so a cut at the
  start of each sync reaches every distinct state this sequence can leave. By default 10 of
  its syncs, evenly spread; `AXONFS_POWERCUT_SWEEP=all` cuts at every one. The sweep runs
  again (5 points by default) with half of the unsynced file pieces surviving each cut;
* a second cut during the recovery from a first one: the open (by `axonfs fsck`) that settles
  an interrupted commit and rewrites the journal's files, cut at 4 of its syncs, after first
  cuts at two points of the sequence;
* cuts after 2, 25 and 150 acknowledged calls while eight writers put (70% journaled small
  blobs) and delete concurrently, so commits group several callers, and spills run beside them;
* cuts after 1 and 40 files closed in `/incoming` by four copying threads, on a mount whose
  store is on the harness;
* cuts at 4 of the syncs of `axonfs recover` indexing the blob files of a store whose index
  was lost (after the sequence), then recover run again to the end.

**With a sync interval** (`--sync-interval`), a put of a small blob is acknowledged before it
is durable, so the checks change for those puts only: the ones that survive a cut must be
whole and, where the calls were made one at a time, a prefix of the acknowledged order;
everything else (larger blobs, deletes, whatever a sync or a durable call covered) must
survive as without the interval. Run in that mode: the sequence sweep (with an interval no
sweep outlives, so only the calls sync: the same syncs every run) with and without half of
the unsynced pieces kept, eight concurrent writers cut after 150 acknowledged calls, `/incoming`
copies cut after 40 closes, and the bound: small puts one after the other with a 100 ms
interval, cut after 3 s; every put acknowledged more than the interval plus 1.5 s (a sync late
on a loaded machine) before the cut must survive. With the interval's timer disabled, that
test lost every promised put.

**What it found** (each fixed in its own commit; with any one of the first three fixes
reverted, the sequence test fails with the message quoted):

* **The store's own directories were never synced.** LMDB syncs `data.mdb`'s contents but not
  the directory it created the file in, and nothing synced `index.lmdb/`, `blobs/` or the
  store's entry in its parent. A store created, filled and cleanly closed came back empty
  ("acknowledged blob 505f… was lost"). The store now fsyncs `index.lmdb/`, itself and its
  parent when it opens (`axonfs/store/store.py`, `_sync_layout`).
* **Deletes were not durable, and neither was the commit intent.** A deleted blob's unlink was
  never synced, and `commit.intent`, which finishes an interrupted delete, relied on ext4's
  ordering: after a cut, deleted blobs came back as unindexed files ("2 blobs in the backend but
  not the index"), which `fsck --repair` or `recover` would have indexed again. The intent is
  now `fdatasync`ed before any bytes move (its directory too when the file is created; it is
  then kept and emptied rather than removed, so later commits sync no directory for it), and
  a commit's deletes (and those of settling an interrupted commit) are flushed before it
  returns. Journaled small puts are unchanged. Both halves are needed: with either removed and
  the other kept, the full sweep still ends with an unindexed blob (`axonfs/store/intent.py`,
  `axonfs/store/store.py`, `axonfs/backends/local.py`). The old reliance on ext4 did not hold
  either: with delayed allocation a new file's data is not ordered before the journal commit
  that creates it, so ext4 could also bring the intent back empty. Measured on the 2-core VM
  (three alternating runs of 150 sequential puts, then 75 deletes, on ext4), a 256 KiB `put`
  took 2.33-2.57 ms before and 2.73-2.92 ms after, a delete 1.24-1.48 ms before and 1.69-2.12
  ms after.
* **On a FUSE file system, spilled small blobs were never synced.** The journal's files are made
  durable with one `syncfs` per batch before the journal rows are dropped; on FUSE `syncfs` does
  nothing, so three acknowledged small blobs of a cleanly closed store were missing ("3 blobs
  missing from the backend"). Where `fstatfs` says FUSE, the local backend now syncs the batch
  file by file and directory by directory; elsewhere nothing changed (`axonfs/fsutil.py`
  `syncfs_is_durable`, `axonfs/backends/local.py`).
* **Reopening a store on a FUSE file system warned that the delete reserve could not be
  allocated**: glibc emulates `posix_fallocate` there by reading each block, which the
  write-only descriptor refused with `EBADF` (the file already had its size, so only the
  warning was wrong). It is opened read-write now; no test checks this warning.

After these fixes no crash point, in the default run or a full sweep, lost an acknowledged
blob, undid an acknowledged delete or left `fsck` a problem.

"""


def _rows(figures: dict[str, Any]) -> list[str]:
    lines = ["| figure | value |", "|---|---|"]
    for key, value in figures.items():
        lines.append(f"| {key.replace('_', ' ')} | {value} |")
    return lines


def render(figures: dict[str, dict[str, Any]], seconds: float) -> str:
    parts = [INTRO, NOTES, POWER_CUT, "## Figures from the last run", ""]
    titles = {
        "crash": "Crash (SIGKILL during ingest)",
        "full_disk": "Full disk",
        "bad_input": "Bad input",
        "load": "Load",
        "s3_faults": "S3 faults",
        "exhaustion": "Exhaustion",
        "power_cut_sequence": "Power cuts: sweep over a sequence's syncs",
        "power_cut_sequence_half_kept": "Power cuts: the same sweep, half of the unsynced pieces kept",
        "power_cut_recovery": "Power cuts: during recovery",
        "power_cut_concurrent": "Power cuts: concurrent writers",
        "power_cut_incoming": "Power cuts: /incoming",
        "power_cut_index_recover": "Power cuts: recover rebuilding a lost index",
        "power_cut_sequence_interval": "Power cuts with a sync interval: the sequence sweep",
        "power_cut_sequence_interval_half_kept": (
            "Power cuts with a sync interval: the same sweep, half of the unsynced pieces kept"
        ),
        "power_cut_interval_bound": (
            "Power cuts with a 100 ms sync interval: what a cut after 3 s of small puts lost"
        ),
    }
    losses = sum(int(entry.get("lost", 0)) for entry in figures.values())
    for key in titles:
        if key in figures:
            parts += [f"### {titles[key]}", "", *_rows(figures[key]), ""]
    missing = [titles[key] for key in titles if key not in figures]
    if missing:
        parts += [f"Not run in this session: {', '.join(missing)}.", ""]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts += [
        "### Summary",
        "",
        f"**Losses: {losses}.** No acknowledged blob was lost, no partial blob became "
        "visible, the daemon never died except when the test killed it, and every `fsck` "
        "was clean.",
        "",
        f"Run of {now} on {platform.node() or 'an unnamed host'} ({os.cpu_count()} CPUs, "
        f"Linux {platform.release()}, Python {platform.python_version()}); the reliability "
        f"tests took {seconds:.0f} s in all.",
        "",
    ]
    return "\n".join(parts)


def write_report(path: Path, figures: dict[str, dict[str, Any]], seconds: float) -> None:
    path.write_text(render(figures, seconds))
    print(f"\nreliability figures written to {path}:\n{json.dumps(figures, indent=2)}")
