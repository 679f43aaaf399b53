#!/usr/bin/env python3
"""Run every axonfs benchmark and write one table of ratios into docs/PERFORMANCE.md.

Runs, one after the other (never at once: they measure the same two cores):

* the reference Synapse Axon (``../shared/bench/synapse_axon_bench.py``, with
  Telepath), in its own virtual environment, created on first use;
* ``bench_store.py``, ``bench_mount.py``, ``bench_socket.py`` and ``bench_s3.py``,
  each writing JSON to ``bench/results/``.

Then it renders one table, every figure as a ratio against its native ceiling or
the reference measured in the same run, with the issue's target and whether it
is met, between the ``run_all`` markers of ``docs/PERFORMANCE.md``.

    python bench/run_all.py            # the full sizes (about 30 minutes)
    python bench/run_all.py --quick    # small sizes, to check that everything runs
    python bench/run_all.py --only store,socket --no-reference
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
DOC = REPO / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"
REFERENCE_BENCH = REPO.parent / "shared" / "bench" / "synapse_axon_bench.py"
# The venv `make venv` builds for the Telepath tests (synapse pinned there too).
SYNAPSE_VENV = Path(os.environ.get("AXONFS_SYNAPSE_VENV", REPO / ".venv-synapse"))
SYNAPSE_VERSION = "2.256.0"

SIZES = {
    # name: (full arguments, --quick arguments)
    "store": ([], ["--big-mib", "128", "--small-count", "1000"]),
    "mount": (["--runs", "1"], ["--quick", "--runs", "1"]),
    # The reference runs 10,000 small blobs: the socket run matches it, so
    # hashes() walks the same number of rows on both sides.
    "socket": (["--small-count", "10000"], ["--big-mib", "128", "--small-count", "1000"]),
    # moto accepts ~300 PUTs/s: creating 100,000 objects for recover alone takes
    # five minutes, so run_all recovers 20,000 (bench_s3.py's default is 100,000).
    "s3": (
        ["--recover-count", "20000"],
        ["--big-mib", "64", "--small-count", "200", "--recover-count", "2000"],
    ),
}
REFERENCE_ARGS = {
    False: ["--small-count", "10000", "--big-mib", "1024"],
    True: ["--small-count", "1000", "--big-mib", "128"],
}

# bench_mount.py reports flat keys; its targets are listed here.
MOUNT_ROWS = [
    ("mount: dd 1 GiB blob, first read", "read_dd_first_ratio", ">= 0.25x ceiling", 0.25, "ge"),
    ("mount: dd 1 GiB blob, second read", "read_dd_second_ratio", ">= 0.5x ceiling", 0.5, "ge"),
    ("mount: cp 1 GiB into /incoming", "ingest_large_ratio", ">= 0.7x ceiling", 0.7, "ge"),
    ("mount: cp -r 10,000 x 4 KiB", "ingest_small_ratio", ">= 0.7x ceiling", 0.7, "ge"),
    ("mount: ls -f 100,000 blobs (warm)", "ls_f_warm_ratio", "<= 3x ceiling", 3.0, "le"),
    ("mount: ls -l 100,000 blobs (warm)", "ls_l_warm_ratio", "<= 2x ceiling", 2.0, "le"),
    ("mount: daemon RSS, 4 GiB ingest (MiB)", "rss_mib", "< 150 MiB", 150.0, "lt"),
]


def log(message: str) -> None:
    print(f"[run_all {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synapse_python() -> Path | None:
    """The reference's interpreter, installing synapse into its venv if needed."""
    python = SYNAPSE_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {SYNAPSE_VENV} with synapse=={SYNAPSE_VERSION}")
        subprocess.run([sys.executable, "-m", "venv", str(SYNAPSE_VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import synapse"], capture_output=True)
    if check.returncode != 0:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"synapse=={SYNAPSE_VERSION}"]
        )
        if done.returncode != 0:
            log("could not install synapse: running without the reference")
            return None
    return python


def run_reference(quick: bool) -> Path | None:
    python = synapse_python() if REFERENCE_BENCH.exists() else None
    if python is None:
        return None
    out = RESULTS / "reference.json"
    log("reference Synapse Axon (local and Telepath)")
    with out.open("w") as sink:
        done = subprocess.run(
            [
                str(python),
                str(REFERENCE_BENCH),
                "--telepath",
                "all",
                "--puts-batch",
                "100",
                *REFERENCE_ARGS[quick],
            ],
            stdout=sink,
        )
    return out if done.returncode == 0 else None


def run_bench(name: str, quick: bool, reference: Path | None) -> dict[str, Any] | None:
    out = RESULTS / f"{name}.json"
    command = [
        sys.executable,
        str(HERE / f"bench_{name}.py"),
        "--json",
        str(out),
        *SIZES[name][quick],
    ]
    if reference is not None and name in ("store", "socket"):
        command += ["--reference", str(reference)]
    log(" ".join(command[1:]))
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO)
    log(f"{name}: exit {done.returncode} after {time.monotonic() - started:.0f} s")
    if done.returncode != 0 or not out.exists():
        return None
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def ratio_cell(row: dict[str, Any], name: str) -> str:
    parts = []
    if name == "s3":  # S3 against the local backend and against plain boto3 calls on moto
        if row.get("ratio") is not None:
            parts.append(f"{row['ratio']:.3g}x local backend")
        if row.get("ratio_ceiling") is not None:
            parts.append(f"{row['ratio_ceiling']:.2f}x plain S3 calls")
        return ", ".join(parts) or "-"
    if row.get("ratio_ceiling") is not None:
        parts.append(f"{row['ratio_ceiling']:.2f}x ceiling")
    if row.get("ratio_reference") is not None:
        parts.append(f"{row['ratio_reference']:.2f}x reference")
    if row.get("x_telepath-unix") is not None:
        parts.append(f"{row['x_telepath-unix']:.2f}x reference over Telepath")
    return ", ".join(parts) or "-"


def table_rows(name: str, doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, ratios, target, met) rows of one benchmark's JSON."""
    if name == "mount":
        rows = []
        for label, key, target, want, how in MOUNT_ROWS:
            value = doc.get(key)
            if value is None:
                continue
            met = {"ge": value >= want, "le": value <= want, "lt": value < want}[how]
            shown = f"{value:.0f} MiB" if key == "rss_mib" else f"{value:.2f}x ceiling"
            rows.append((label, shown, target, "yes" if met else "no"))
        return rows
    rows = []
    for row in doc.get("table", []):
        met = row.get("met")
        if row["figure"].startswith(" ") and ratio_cell(row, name) == "-":
            continue  # an indented detail line of the benchmark's own table
        rows.append(
            (
                f"{name}: {row['figure'].strip()}",
                ratio_cell(row, name),
                row.get("target", ""),
                "" if met is None else ("yes" if met else "no"),
            )
        )
    return rows


def load_saved(names: list[str]) -> dict[str, dict[str, Any] | None]:
    """The JSON of an earlier run, to re-render the table without measuring."""
    saved: dict[str, dict[str, Any] | None] = {}
    for name in names:
        path = RESULTS / f"{name}.json"
        saved[name] = json.loads(path.read_text()) if path.exists() else None
    return saved


def render(results: dict[str, dict[str, Any] | None], quick: bool) -> str:
    stamps = [path.stat().st_mtime for path in RESULTS.glob("*.json")] or [time.time()]
    lines = [
        BEGIN,
        "",
        f"Measured by `bench/run_all.py{' --quick' if quick else ''}`, finished "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(max(stamps)))}. Each ratio "
        "compares axonfs with the ceiling or the reference measured in the same run; "
        "the sections below give each benchmark's figures, conditions and analysis.",
        "",
        "| figure | ratio | target | met |",
        "|---|---|---|---|",
    ]
    for name, doc in results.items():
        if doc is None:
            lines.append(f"| {name}: did not run or failed | - | - | - |")
            continue
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table_rows(name, doc)]
    return "\n".join([*lines, "", END])


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = (
            text.rstrip()
            + "\n\n## Summary of every benchmark (bench/run_all.py)\n\n"
            + block
            + "\n"
        )
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--only", default=",".join(SIZES), help=f"comma-separated subset of {','.join(SIZES)}"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the reference Synapse Axon"
    )
    parser.add_argument(
        "--no-doc",
        action="store_true",
        help="print the table instead of writing docs/PERFORMANCE.md",
    )
    parser.add_argument(
        "--keep-reference",
        action="store_true",
        help="reuse bench/results/reference.json instead of measuring it again",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: rebuild the table from bench/results/*.json",
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    names = [name for name in args.only.split(",") if name]
    unknown = set(names) - set(SIZES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    # Benchmarks not run this time keep their last results in the table.
    results = load_saved(list(SIZES))
    if not args.render_only:
        saved_reference = RESULTS / "reference.json"
        reference = (
            None
            if args.no_reference
            else run_reference(args.quick)
            if not (args.keep_reference and saved_reference.exists())
            else saved_reference
        )
        results.update({name: run_bench(name, args.quick, reference) for name in names})
    block = render(results, args.quick)
    print(block)
    if not args.no_doc:
        write_doc(block)
        log(f"wrote the table into {DOC.relative_to(REPO)}")
    return 0 if all(results[name] is not None for name in names) else 1


if __name__ == "__main__":
    raise SystemExit(main())
