"""``axonfs ctl stats`` and the Prometheus endpoint, against real activity."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.cli import run_axonfs
from helpers.s3server import new_bucket_name

from axonfs import axon as axon_module
from axonfs.axon import Axon
from axonfs.metrics_http import parse_listen, prometheus_text
from axonfs.stats import FuseStats, OpStats, Stats, format_text, instrument

from .conftest import MakeOpsMount, StartServe, clean_env, metrics_port


def stats(mnt: Path) -> dict[str, Any]:
    result = run_axonfs("ctl", "-m", mnt, "--json", "stats", env=clean_env())
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample line."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_stats_follow_real_activity(make_mount: MakeOpsMount, tmp_path: Path) -> None:
    mounted = make_mount("--metrics-listen", "127.0.0.1:0")
    before = stats(mounted.mnt)
    assert before["fuse"]["bytes_written"] == 0 and before["store"]["blobs"] == 0

    data = os.urandom(300_000)
    source = tmp_path / "sample.bin"
    source.write_bytes(data)
    shutil.copyfile(source, mounted.path("incoming", "a"))
    shutil.copyfile(source, mounted.path("incoming", "b"))  # the same bytes: a dedup hit
    sha = hashlib.sha256(data).hexdigest()
    assert mounted.path("by-sha256", sha).read_bytes() == data

    # Normal "no" answers: missing names, attributes a file does not have.
    for name in ("absent-1", "absent-2"):
        assert not mounted.path("incoming", name).exists()
    with pytest.raises(OSError) as no_attribute:
        os.getxattr(mounted.path("by-sha256", sha), "user.not-there")
    assert no_attribute.value.errno == errno.ENODATA

    after = stats(mounted.mnt)
    fuse = after["fuse"]
    assert fuse["ops"]["lookup"]["misses"] >= 2 and fuse["ops"]["lookup"]["errors"] == 0
    assert fuse["ops"]["getxattr"]["misses"] >= 1 and fuse["ops"]["getxattr"]["errors"] == 0
    assert fuse["bytes_written"] == 2 * len(data)
    assert fuse["bytes_read"] >= len(data)
    for op in ("create", "write", "flush", "release", "lookup", "open", "read"):
        assert fuse["ops"][op]["count"] >= 1, op
        assert 0 < fuse["ops"][op]["mean_ns"] <= fuse["ops"][op]["max_ns"], op
        assert 0 < fuse["ops"][op]["p99_ns"] <= fuse["ops"][op]["max_ns"], op
    assert fuse["open_files"] == 0
    assert after["store"] == {"path": str(mounted.store), "blobs": 1, "bytes": len(data)}
    assert after["commits"]["batches"] >= 1 and after["commits"]["ops"] >= 1
    assert after["dedup_hits"] == 1
    assert after["spool"] == {"files": 0, "bytes": 0}
    assert after["backend"]["name"] == "local"
    assert after["uptime_s"] > before["uptime_s"]

    text = run_axonfs("ctl", "-m", mounted.mnt, "stats", env=clean_env())
    assert text.returncode == 0
    assert re.search(r"^  read +\d+ +0 +0 +\d", text.stdout, re.MULTILINE), text.stdout
    assert re.search(r"^  lookup +\d+ +[1-9]\d* +0 ", text.stdout, re.MULTILINE), text.stdout
    assert "1 dedup hits" in text.stdout and "585.9 KiB written" in text.stdout

    # The same counters for Prometheus, scraped over loopback.
    port = metrics_port(mounted.log_file.read_text())
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    scraped = samples(response.text)
    assert scraped["axonfs_store_blobs"] == 1
    assert scraped["axonfs_dedup_hits_total"] == 1
    assert scraped["axonfs_fuse_written_bytes_total"] == 2 * len(data)
    assert scraped['axonfs_fuse_request_duration_seconds_count{op="read"}'] >= 1
    assert scraped['axonfs_fuse_request_misses_total{op="lookup"}'] >= 2
    assert scraped['axonfs_fuse_request_errors_total{op="lookup"}'] == 0
    assert (
        scraped['axonfs_fuse_request_duration_seconds_bucket{op="read",le="+Inf"}']
        == scraped['axonfs_fuse_request_duration_seconds_count{op="read"}']
    )
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 404
    assert httpx.post(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 405
    mounted.umount()


def test_serve_stats_without_a_mount(start_serve: StartServe) -> None:
    served = start_serve(env=clean_env())
    result = served.ctl("--json", "stats")
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert snapshot["fuse"] is None and snapshot["control"]["connections"] == 1
    assert "fuse       not mounted" in served.ctl("stats").stdout


def test_s3_counters_and_the_cache_dir_from_a_config_file(
    start_serve: StartServe, moto_server: str, tmp_path: Path
) -> None:
    config = tmp_path / "s3.toml"
    config.write_text(
        f's3-bucket = "{new_bucket_name()}"\ns3-endpoint = "{moto_server}"\n'
        f'cache-dir = "cache"\ncache-size = "64M"\n'
    )
    served = start_serve("--config", config, env=clean_env())
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(100_000))
    put = served.ctl("put", "--no-progress", str(blob))
    assert put.returncode == 0, put.stderr
    sha = put.stdout.split()[1]
    for _ in range(2):
        got = served.ctl("get", sha, "-o", str(tmp_path / "out"))
        assert got.returncode == 0 and (tmp_path / "out").read_bytes() == blob.read_bytes()
    backend = json.loads(served.ctl("--json", "stats").stdout)["backend"]
    assert backend["name"] == "s3"
    assert sum(backend["requests"].values()) >= 2 and backend["failures"] == 0
    assert backend["cache"]["hits"] >= 1
    assert any((tmp_path / "cache").rglob("*")), "the read cache is not in cache-dir"
    text = served.ctl("stats").stdout
    assert "backend    s3: " in text and "cache      " in text


def test_metrics_listen_is_loopback_only() -> None:
    assert parse_listen("127.0.0.1:9567") == ("127.0.0.1", 9567)
    assert parse_listen("[::1]:9567") == ("::1", 9567)
    assert parse_listen("localhost:1") == ("localhost", 1)
    for remote in ("0.0.0.0:9567", "[::]:9567", "192.0.2.1:80", "example.com:80"):
        with pytest.raises(ValueError, match="not a loopback address"):
            parse_listen(remote)
    assert parse_listen("0.0.0.0:9567", allow_remote=True) == ("0.0.0.0", 9567)
    for bad in ("9567", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)


def test_quantiles_bound_the_exact_ones() -> None:
    """Each estimate is the nearest-rank quantile rounded up to a power of two."""
    rng = random.Random(7)
    for trial in range(200):
        durations = [int(rng.lognormvariate(10, 2)) + 1 for _ in range(rng.randint(1, 400))]
        op = OpStats()
        for duration in durations:
            op.record(duration)
        ordered = sorted(durations)
        for fraction in (0.5, 0.9, 0.99, 1.0):
            exact = ordered[math.ceil(fraction * len(ordered)) - 1]
            estimate = op.quantile_ns(fraction)
            assert exact <= estimate <= min(2 * exact, op.max_ns), (trial, fraction)


def test_p99_may_be_above_or_below_the_mean() -> None:
    steady = OpStats()
    for duration in (1000, 1100, 1200, 50_000):
        steady.record(duration)
    assert steady.as_dict()["p99_ns"] >= steady.as_dict()["mean_ns"]
    one_slow = OpStats()
    for _ in range(199):
        one_slow.record(1000)
    one_slow.record(1_000_000_000)
    snapshot = one_slow.as_dict()
    assert snapshot["p99_ns"] == 1024 < snapshot["mean_ns"]  # correct: the tail is one request
    text = format_text(
        {
            "version": "t",
            "pid": 1,
            "uptime_s": 1.0,
            "store": {"path": "/s", "blobs": 0, "bytes": 0},
            "commits": {"batches": 0, "ops": 0},
            "dedup_hits": 0,
            "spool": {"files": 0, "bytes": 0},
            "journal": {"blobs": 0},
            "backend": {"name": "local"},
            "fuse": {
                "bytes_read": 0,
                "bytes_written": 0,
                "open_files": 0,
                "open_dirs": 0,
                "failsafe": False,
                "ops": {"read": snapshot},
            },
        }
    )
    assert "a mean above the p99: fewer than 1% of those requests took most" in text


async def test_expected_misses_are_not_errors() -> None:
    import pyfuse3

    class Handlers:
        async def lookup(self, parent: int, name: bytes, ctx: object = None) -> None:
            raise pyfuse3.FUSEError(errno.ENOENT if name == b"absent" else errno.EIO)

        async def getxattr(self, inode: int, name: bytes, ctx: object = None) -> None:
            raise pyfuse3.FUSEError(errno.ENODATA)

    fuse = FuseStats()
    handlers = instrument(Handlers(), fuse)
    for name in (b"absent", b"absent", b"broken"):
        with pytest.raises(pyfuse3.FUSEError):
            await handlers.lookup(1, name)
    with pytest.raises(pyfuse3.FUSEError):
        await handlers.getxattr(1, b"security.selinux")
    lookup, getxattr = fuse.ops["lookup"], fuse.ops["getxattr"]
    assert (lookup.count, lookup.misses, lookup.errors) == (3, 2, 1)
    assert (getxattr.count, getxattr.misses, getxattr.errors) == (1, 1, 0)


def test_latency_buckets_and_p99() -> None:
    op = OpStats()
    for _ in range(99):
        op.record(1000)  # 1 us: bucket 10
    op.record(5_000_000)
    assert op.count == 100 and op.max_ns == 5_000_000
    assert op.quantile_ns(0.99) == 1024  # the 99th of 100 is still fast
    assert op.quantile_ns(1.0) == 5_000_000  # capped at the max
    text = prometheus_text(
        {
            "version": "t",
            "uptime_s": 1.5,
            "started_at": 0,
            "dedup_hits": 0,
            "store": {"blobs": 0, "bytes": 0},
            "commits": {"batches": 0, "ops": 0},
            "spool": {"files": 0, "bytes": 0},
            "journal": {"blobs": 7},
            "control": {
                "connections": 2,
                "requests": 1,
                "refused": 0,
                "protocol_errors": 0,
                "items_sent": 5,
                "stream_bytes": 4096,
            },
            "backend": {
                "name": "s3",
                "requests": {"GetObject": 3},
                "retries": 1,
                "failures": 2,
                "bytes_sent": 0,
                "bytes_received": 9,
                "cache": {
                    "hits": 4,
                    "misses": 5,
                    "evictions": 0,
                    "blocks": 1,
                    "bytes": 10,
                    "capacity": 20,
                },
            },
            "fuse": {
                "bytes_read": 0,
                "bytes_written": 0,
                "open_files": 0,
                "open_dirs": 0,
                "failsafe": False,
                "ops": {"read": op.as_dict()},
            },
        }
    )
    scraped = samples(text)
    assert scraped['axonfs_backend_requests_total{operation="GetObject"}'] == 3
    assert scraped["axonfs_backend_failures_total"] == 2
    assert scraped["axonfs_cache_hits_total"] == 4 and scraped["axonfs_cache_misses_total"] == 5
    assert scraped['axonfs_fuse_request_duration_seconds_bucket{op="read",le="1.024e-06"}'] == 99
    assert scraped['axonfs_fuse_request_duration_seconds_bucket{op="read",le="+Inf"}'] == 100
    assert scraped['axonfs_build_info{version="t"}'] == 1
    assert scraped["axonfs_journal_blobs"] == 7
    assert scraped["axonfs_control_connections"] == 2
    assert scraped["axonfs_control_stream_bytes"] == 4096


async def test_journal_counts_small_blobs_whose_files_are_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(axon_module, "SPILL_IDLE", 3600)  # no background spill meanwhile
    async with Axon.open(tmp_path / "store") as axon:
        await axon.puts([b"small", b"blobs"])
        snapshot = await Stats(axon).snapshot()
        assert snapshot["journal"] == {"blobs": 2}
        assert "journal    2 small blobs" in format_text(snapshot)
        await axon.spill_journal()
        assert (await Stats(axon).snapshot())["journal"] == {"blobs": 0}
