"""``axonfs ctl``: every Axon call from the shell, through a daemon's control socket.

Each call is a sub-subcommand (``axonfs ctl has SHA``). Hashes are hex on the
command line and in the output. Output is human-readable by default; ``--json``
prints one JSON value per line (bytes as hex) for scripts. The client side of
the socket is :mod:`axonfs.client`; this module only parses arguments, calls,
prints and chooses the exit status.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from axonfs.cliutil import (
    EXIT_FAILED,
    EXIT_FALSE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    HelpFormatter,
    Parsers,
    QuietError,
    Subparsers,
)
from axonfs.errors import AxonError, BadArg, NoSuchFile
from axonfs.hashing import parse_sha256
from axonfs.units import size_type

if TYPE_CHECKING:
    from axonfs.client import AxonClient

EPILOG = """\
finding the daemon (first that applies):
  --socket PATH        that socket
  -m PATH              the daemon serving the axonfs mount that holds PATH (its root or
                       any directory in it; xattr user.axonfs.socket of the mount's root)
  --store DIR          the daemon of that store (DIR/run/ctl.sock)
  $AXONFS_SOCKET       that socket
  otherwise            the daemon of the default store ($AXONFS_STORE, ~/.local/share/axonfs)

exit status:
  0  done
  1  absent or false (has/size/del of a missing blob, get of a missing blob, ...)
  2  usage error
  3  the daemon is unreachable, or refused this user
  4  the call failed (for wget/wput/postfiles: the request failed, "ok": false)

examples:
  axonfs ctl put report.pdf               prints "SIZE SHA256"
  axonfs ctl get SHA256 -o report.pdf
  axonfs ctl wget https://example.com/x   stores the body, prints code, size, sha256
  axonfs ctl --json hashes --follow       one [index, [sha256, size]] per line, live
  axonfs ctl csvrows SHA256 --delimiter '|'
"""

COMMON_HELP = {
    "socket": "the daemon's control socket",
    "mount": "reach the daemon serving the axonfs mount that holds this path",
    "store": "reach the daemon of this store directory",
    "json": "print one JSON value per line (bytes as hex)",
}

READ_CHUNK = 4 << 20
HTTP_TIMEOUT = 300.0
"""Default total time limit of wget, wput and postfiles from the command line
(the API's default is the reference's None): a server that accepts and never
answers must not hang a shell or a cron job forever."""
WANTS_BATCH = 10000


# -- argument types ------------------------------------------------------------------


def sha256_arg(text: str) -> bytes:
    """A hex SHA-256 on the command line (either case)."""
    try:
        return parse_sha256(text)
    except BadArg:
        raise argparse.ArgumentTypeError(f"not a SHA-256 (64 hex digits): {text!r}") from None


def time_arg(text: str) -> int:
    """Epoch milliseconds, or an ISO-8601 time (naive means local time)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not epoch milliseconds or an ISO-8601 time: {text!r}"
        ) from None


def pair_arg(separator: str) -> Callable[[str], tuple[str, str]]:
    def parse(text: str) -> tuple[str, str]:
        key, found, value = text.partition(separator)
        if not found or not key:
            raise argparse.ArgumentTypeError(f"expected KEY{separator}VALUE, got {text!r}")
        return key.strip(), value.strip() if separator == ":" else value

    return parse


def char_arg(text: str) -> str:
    decoded = text.encode().decode("unicode_escape") if "\\" in text else text
    return decoded


# -- output ------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Bytes as hex, tuples as lists: what --json prints."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(jsonable(key)): jsonable(item) for key, item in value.items()}
    return value


class Output:
    """Prints results as text lines or as JSON lines."""

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout

    def emit_mapping(self, mapping: dict[str, Any]) -> None:
        """A dict as one JSON value, or as ``name value`` lines."""
        if self.as_json:
            self.emit(mapping)
        else:
            for name, value in mapping.items():
                self.emit(None, f"{name} {value}")

    def emit(self, value: Any, text: str | None = None) -> None:
        if self.as_json or text is None:
            line = json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))
        else:
            line = text
        self.stream.write(line + "\n")


def iso_ms(tick: int) -> str:
    when = datetime.fromtimestamp(tick / 1000, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the calls -----------------------------------------------------------------------

# The CLI runs one task at a time: blocking file I/O in its handlers (noqa ASYNC2xx) is fine.
Handler = Callable[["AxonClient", argparse.Namespace, Output], Awaitable[int]]


async def _put(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    from tqdm import tqdm

    names: list[str] = args.files or ["-"]
    named = len(names) > 1  # several results: say which file each is
    total = sum(os.path.getsize(name) for name in names if name != "-" and os.path.isfile(name))  # noqa: ASYNC240
    show = sys.stderr.isatty() and not args.no_progress
    with tqdm(
        total=total or None,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not show,
        desc="put",
        leave=False,
    ) as bar:
        async with axon.upload() as upload:
            for name in names:
                for chunk in _read_chunks(name):
                    await upload.write(chunk)
                    bar.update(len(chunk))
                size, sha256 = await upload.save()
                with tqdm.external_write_mode():  # the line above the bar, never inside it
                    out.emit(
                        (size, sha256), f"{size} {sha256.hex()}" + (f" {name}" if named else "")
                    )
                    out.stream.flush()
    return EXIT_OK


def _read_chunks(name: str) -> Iterator[bytes]:
    handle = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
    try:
        while chunk := handle.read(READ_CHUNK):
            yield chunk
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


async def _get(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    offs, size = args.offs, args.size
    if offs is not None or size is not None:
        offs, size = offs or 0, size if size is not None else 1 << 62
    target = args.output
    show = bool(target) and sys.stderr.isatty()  # to stdout, the bytes are the output
    total = await _get_total(axon, args.sha256, offs, size) if show else None
    handle = open(target, "wb") if target else sys.stdout.buffer  # noqa: SIM115, ASYNC230
    try:
        with _byte_bar(total, "get", show) as bar:
            async for chunk in axon.get(args.sha256, offs, size):
                handle.write(chunk)
                bar.update(len(chunk))
    except BaseException:
        if target:
            handle.close()
            Path(target).unlink(missing_ok=True)  # noqa: ASYNC240
        raise
    finally:
        if target:
            handle.close()
        else:
            handle.flush()
    return EXIT_OK


async def _get_total(
    axon: AxonClient, sha256: bytes, offs: int | None, size: int | None
) -> int | None:
    """The bytes ``get`` will write (None if the blob is absent: get reports that)."""
    blob_size: int | None = await axon.size(sha256)
    if blob_size is None:
        return None
    if offs is None or size is None:
        return blob_size
    return max(0, min(size, blob_size - offs))


def _byte_bar(total: int | None, desc: str, show: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total or None,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not show,
        desc=desc,
        leave=False,
    )


async def _has(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    status = EXIT_OK
    for sha256 in args.sha256:
        present = await axon.has(sha256)
        out.emit(present, f"{sha256.hex()} {'present' if present else 'absent'}")
        status = status if present else EXIT_FALSE
    return status


async def _size(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    status = EXIT_OK
    for sha256 in args.sha256:
        size = await axon.size(sha256)
        out.emit(size, f"{sha256.hex()} {'absent' if size is None else size}")
        status = status if size is not None else EXIT_FALSE
    return status


async def _unpack(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    values = await axon.unpack(args.sha256, args.format, args.offs)
    out.emit(values, " ".join(str(jsonable(value)) for value in values))
    return EXIT_OK


async def _ping(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    info = await axon.ping()
    out.emit(
        info,
        "\n".join(
            [
                f"{info['server']} pid {info['pid']}",
                *(f"telepath {url}" for url in info.get("telepath", ())),
            ]
        ),
    )
    return EXIT_OK


async def _wants(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    for batch in _batches(args.sha256 or _stdin_hashes(), WANTS_BATCH):
        for sha256 in await axon.wants(batch):
            out.emit(sha256, sha256.hex())
    return EXIT_OK


def _stdin_hashes() -> Iterator[bytes]:
    for line in sys.stdin:
        for word in line.split():
            try:
                yield parse_sha256(word)
            except BadArg as exc:
                raise QuietError(f"stdin: {exc}", EXIT_USAGE) from None


def _batches(items: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _hashes(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    async for indx, (sha256, size) in axon.hashes(
        args.offs, wait=args.follow, timeout=args.timeout
    ):
        out.emit((indx, (sha256, size)), f"{indx} {sha256.hex()} {size}")
        if args.follow:
            out.stream.flush()
    return EXIT_OK


async def _history(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    async for tick, (sha256, size) in axon.history(args.start, args.end):
        out.emit((tick, (sha256, size)), f"{iso_ms(tick)} {sha256.hex()} {size}")
    return EXIT_OK


async def _hashset(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    out.emit_mapping(await axon.hashset(args.sha256))
    return EXIT_OK


async def _del(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    results = await axon.dels(args.sha256)
    for sha256, deleted in zip(args.sha256, results, strict=True):
        out.emit(deleted, f"{sha256.hex()} {'deleted' if deleted else 'absent'}")
    return EXIT_OK if all(results) else EXIT_FALSE


async def _metrics(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    out.emit_mapping(await axon.metrics())
    return EXIT_OK


async def _sync(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    count = await axon.sync()
    out.emit(count, f"{count} commits made durable" if count else "everything was durable")
    return EXIT_OK


async def _stats(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    from axonfs.stats import format_text

    snapshot = await axon.stats()
    out.emit(snapshot, None if out.as_json else format_text(snapshot))
    return EXIT_OK


async def _log_level(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    try:
        result = await axon.log_level(args.level, args.logger or "")
    except BadArg as exc:
        raise QuietError(str(exc), EXIT_USAGE) from None
    levels = result["levels"]
    out.emit(levels, "\n".join(f"{name or '(root)'} {level}" for name, level in levels.items()))
    return EXIT_OK


def _http_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments wget, wput and postfiles share."""
    ssl_opts: dict[str, Any] = {}
    for key, path in (
        ("client_cert", args.client_cert),
        ("client_key", args.client_key),
        ("ca_cert", args.ca_cert),
    ):
        if path is not None:
            ssl_opts[key] = Path(path).read_text()
    proxy: bool | str = args.proxy if args.proxy is not None else not args.no_proxy
    return {
        "params": dict(args.param) or None,
        "headers": dict(args.header) or None,
        "method": args.method,
        "ssl": not args.no_ssl_verify,
        "timeout": args.timeout or None,
        "proxy": proxy,
        "ssl_opts": ssl_opts or None,
    }


def _http_result(result: dict[str, Any], args: argparse.Namespace, out: Output, text: str) -> int:
    if not result.get("ok"):
        if out.as_json:
            out.emit(result)
        message = result.get("mesg") or result.get("reason")
        raise QuietError(f"request failed: {message}", EXIT_FAILED)
    out.emit(result, text)
    if args.fail and int(result.get("code", 0)) >= 400:
        return EXIT_FAILED
    return EXIT_OK


async def _wget(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    kwargs = _http_kwargs(args)
    kwargs["method"] = args.method or "GET"
    if args.json_body is not None:
        try:
            kwargs["json"] = json.loads(args.json_body)
        except ValueError as exc:
            raise QuietError(f"--json-body is not JSON: {exc}", EXIT_USAGE) from None
    if args.body_file is not None:
        kwargs["body"] = Path(args.body_file).read_bytes()  # noqa: ASYNC240
    if sys.stderr.isatty() and not args.no_progress:
        result = await _wget_with_bar(axon, args.url, kwargs)
    else:
        result = await axon.wget(args.url, **kwargs)
    text = (
        f"{result.get('code')} {result.get('reason')} {result.get('size')} "
        f"{result.get('hashes', {}).get('sha256')} {result.get('url')}"
    )
    return _http_result(result, args, out, text)


async def _wget_with_bar(axon: AxonClient, url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with _byte_bar(None, "wget", True) as bar:
        async for step in axon.wget_progress(url, **kwargs):
            if step.get("done"):
                result = step["result"]
            else:
                if step["total"] and bar.total != step["total"]:
                    bar.total = step["total"]
                    bar.refresh()  # the size, as soon as the server has said it
                bar.update(step["received"] - bar.n)
    return result


async def _wput(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    kwargs = _http_kwargs(args)
    kwargs["method"] = args.method or "PUT"
    result = await axon.wput(args.sha256, args.url, **kwargs)
    return _http_result(
        result, args, out, f"{result.get('code')} {result.get('reason')} {result.get('url')}"
    )


def field_arg(text: str) -> dict[str, Any]:
    """``NAME=VALUE`` or ``NAME=@SHA256``, then optional ``;filename=F`` ``;type=T``."""
    spec, *options = text.split(";")
    name, found, value = spec.partition("=")
    if not found or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE or NAME=@SHA256, got {text!r}")
    field: dict[str, Any] = {"name": name}
    if value.startswith("@"):
        field["sha256"] = sha256_arg(value[1:]).hex()
    else:
        field["value"] = value
    for option in options:
        key, _, setting = option.partition("=")
        names = {
            "filename": "filename",
            "type": "content_type",
            "encoding": "content_transfer_encoding",
        }
        if key.strip() not in names:
            raise argparse.ArgumentTypeError(f"unknown field option {key!r} in {text!r}")
        field[names[key.strip()]] = setting
    return field


async def _postfiles(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    kwargs = _http_kwargs(args)
    kwargs["method"] = args.method or "POST"
    result = await axon.postfiles(args.field, args.url, **kwargs)
    if result.get("ok") and args.output:
        Path(args.output).write_bytes(result.get("body", b""))  # noqa: ASYNC240
    return _http_result(
        result,
        args,
        out,
        f"{result.get('code')} {result.get('reason')} "
        f"{len(result.get('body', b''))} {result.get('url')}",
    )


def _errors(args: argparse.Namespace) -> str | None:
    return None if args.errors == "strict" else args.errors


async def _print_rows(
    rows: AsyncIterator[Any], out: Output, text: Callable[[Any], str | None]
) -> int:
    async for row in rows:
        out.emit(row, text(row))
    return EXIT_OK


async def _readlines(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    rows = axon.readlines(args.sha256.hex(), errors=_errors(args))
    return await _print_rows(rows, out, lambda line: line)


async def _jsonlines(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    return await _print_rows(
        axon.jsonlines(args.sha256.hex(), errors=_errors(args)), out, lambda item: None
    )


async def _msgpack(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    return await _print_rows(axon.iterMpkFile(args.sha256.hex()), out, lambda item: None)


QUOTING = {
    "minimal": csv.QUOTE_MINIMAL,
    "all": csv.QUOTE_ALL,
    "nonnumeric": csv.QUOTE_NONNUMERIC,
    "none": csv.QUOTE_NONE,
}


async def _csvrows(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    given = {
        "delimiter": args.delimiter,
        "quotechar": args.quotechar,
        "escapechar": args.escapechar,
        "lineterminator": args.lineterminator,
        "doublequote": args.doublequote,
        "skipinitialspace": args.skipinitialspace,
        "strict": args.strict,
    }
    fmtparams: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    if args.quoting is not None:
        fmtparams["quoting"] = QUOTING[args.quoting]
    writer: Any = None
    async for row in axon.csvrows(args.sha256, args.dialect, errors=_errors(args), **fmtparams):
        if out.as_json:
            out.emit(row)
            continue
        if writer is None:  # made once the daemon accepted the dialect
            # Rows go out in the input's dialect (delimiter, quoting...), so that
            # what is printed reads back as the blob did; lines end with \n.
            writer = csv.writer(out.stream, args.dialect, **{"lineterminator": "\n", **fmtparams})
        try:
            writer.writerow(row)
        except csv.Error as exc:  # e.g. --quoting none without --escapechar
            raise QuietError(f"cannot print a row in this dialect: {exc}", EXIT_USAGE) from None
    return EXIT_OK


async def _recover(axon: AxonClient, args: argparse.Namespace, out: Output) -> int:
    from tqdm import tqdm

    report: dict[str, Any] = {}
    with tqdm(desc="recovering", unit=" blobs", disable=not sys.stderr.isatty()) as bar:
        async for step in axon.recover_progress(verify=args.verify):
            if step.get("done"):
                report = {key: value for key, value in step.items() if key != "done"}
            else:
                bar.update(step["listed"] - bar.n)
                bar.set_postfix(added=step["added"])
    out.emit(
        report,
        f"listed {report['listed']}, added {report['added']}, already indexed "
        f"{report['skipped']}, ignored {report['ignored']}, corrupt "
        f"{len(report['corrupt'])}",
    )
    return EXIT_FALSE if report["corrupt"] else EXIT_OK


# -- running ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Entry point for every ``axonfs ctl`` call (``func`` of its parser)."""
    import trio

    from axonfs import client
    from axonfs.protocol import AccessDenied, DaemonUnreachable

    if sum(x is not None for x in (args.socket, args.mount, args.store)) > 1:
        raise QuietError("give at most one of --socket, -m and --store", EXIT_USAGE)
    if args.handler is _put:
        for name in args.files:
            _check_readable(name)

    async def main() -> int:
        async with client.connect(args.socket, mount=args.mount, store=args.store) as axon:
            return int(await args.handler(axon, args, Output(args.json)))

    try:
        return trio.run(main)
    except (DaemonUnreachable, AccessDenied) as exc:
        raise QuietError(str(exc), EXIT_UNREACHABLE) from None
    except NoSuchFile as exc:
        raise QuietError(f"{exc} ({exc.fields.get('sha256', '')})", EXIT_FALSE) from None
    except AxonError as exc:
        raise QuietError(f"{exc.code}: {exc}", EXIT_FAILED) from None
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error. Silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        raise QuietError(str(exc), EXIT_FAILED) from None


def _check_readable(name: str) -> None:
    """Refuse, before connecting, a FILE that ``put`` cannot store.

    Anything that can be read is fine: a regular file, but also ``/dev/stdin``,
    a named pipe or ``<(command)``.
    """
    if name == "-":
        return
    if os.path.isdir(name):
        raise QuietError(
            f"{name} is a directory: put stores files (give the files, e.g. "
            f"{name.rstrip('/')}/*, or copy the tree into the mount's incoming/)",
            EXIT_USAGE,
        )
    if not os.path.exists(name):
        raise QuietError(f"{name}: no such file", EXIT_USAGE)


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument(
        "--socket", metavar="PATH", help=COMMON_HELP["socket"], **(default or {"default": None})
    )
    parser.add_argument(
        "-m", "--mount", metavar="PATH", help=COMMON_HELP["mount"], **(default or {"default": None})
    )
    parser.add_argument(
        "--store", metavar="DIR", help=COMMON_HELP["store"], **(default or {"default": None})
    )
    parser.add_argument(
        "--json", action="store_true", help=COMMON_HELP["json"], **(default or {"default": False})
    )


def _http_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HTTP options")
    group.add_argument("--method", help="the HTTP method")
    group.add_argument(
        "--header",
        metavar="K:V",
        type=pair_arg(":"),
        action="append",
        default=[],
        help="add a request header (repeatable)",
    )
    group.add_argument(
        "--param",
        metavar="K=V",
        type=pair_arg("="),
        action="append",
        default=[],
        help="add a query parameter (repeatable)",
    )
    group.add_argument(
        "--no-ssl-verify", action="store_true", help="do not verify the server's TLS certificate"
    )
    group.add_argument("--ca-cert", metavar="PEM", help="also trust the CAs in this PEM file")
    group.add_argument("--client-cert", metavar="PEM", help="client certificate (mTLS)")
    group.add_argument(
        "--client-key", metavar="PEM", help="client key, if not in the --client-cert file"
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        default=HTTP_TIMEOUT,
        help="total time limit, seconds (default: %(default)s; 0: none)",
    )
    proxy = group.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy", metavar="URL", help="use this proxy (default: the daemon's --http-proxy, if any)"
    )
    proxy.add_argument("--no-proxy", action="store_true", help="use no proxy")
    group.add_argument(
        "--fail", action="store_true", help="exit 4 when the server answers with a status >= 400"
    )


def _errors_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--errors",
        default="ignore",
        metavar="MODE",
        help="how to handle bytes that are not UTF-8: ignore (default), "
        "replace, strict (fail), or any Python codec error handler",
    )


def register(commands: Subparsers) -> Parsers:
    """Add ``axonfs ctl`` and its calls to the ``axonfs`` command."""
    ctl = commands.add_parser(
        "ctl",
        formatter_class=HelpFormatter,
        epilog=EPILOG,
        help="call a running daemon: put, get, wget, csvrows, hashes, ...",
        description="Call the Axon API of a running axonfs daemon through its control\n"
        "socket. Hashes are hex. Output is text; --json prints one JSON value\n"
        "per line, bytes as hex. Run 'axonfs ctl CALL --help' for each call.",
    )
    _common(ctl, suppress=False)
    calls = ctl.add_subparsers(dest="call", metavar="CALL", required=True)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, suppress=True)

    def add(
        name: str,
        handler: Handler,
        help_text: str,
        description: str,
    ) -> argparse.ArgumentParser:
        parser = calls.add_parser(
            name,
            parents=[common],
            help=help_text,
            formatter_class=HelpFormatter,
            description=description,
            epilog=EPILOG.split("\n\n")[1],
        )
        parser.set_defaults(func=run, handler=handler)
        return parser

    p = add(
        "put",
        _put,
        "store files",
        "Store each FILE (or stdin for '-' or no FILE),\n"
        "streaming; print 'SIZE SHA256' per file, followed by the file's name when there\n"
        "are several. FILE may be anything readable (/dev/stdin, a pipe), not a\n"
        "directory. A progress bar shows on a terminal.",
    )
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")

    p = add(
        "get",
        _get,
        "write a blob's bytes",
        "Write a blob (or the byte range --offs,\n"
        "--size) to stdout or to -o FILE. Exit 1 if the blob is absent.",
    )
    p.add_argument("sha256", type=sha256_arg, metavar="SHA256")
    p.add_argument("--offs", type=int, metavar="N", help="start at byte N (default 0)")
    p.add_argument(
        "--size",
        type=size_type,
        metavar="BYTES",
        help="at most BYTES, e.g. 4096 or 1M (default: to the end)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")

    for name, handler, text in (
        ("has", _has, "whether blobs are stored"),
        ("size", _size, "the sizes of blobs"),
    ):
        p = add(
            name, handler, text, f"Print {text}, one line per SHA256.\nExit 1 if any is absent."
        )
        p.add_argument("sha256", type=sha256_arg, nargs="+", metavar="SHA256")

    p = add(
        "unpack",
        _unpack,
        "decode bytes of a blob with a struct format",
        "Print the values struct.unpack(FORMAT) reads from a blob at --offs (Python\n"
        "struct syntax, e.g. '<I' or '>HH4s'; at most 1 MiB). Exit 1 if the blob is absent.",
    )
    p.add_argument("sha256", type=sha256_arg, metavar="SHA256")
    p.add_argument("format", metavar="FORMAT")
    p.add_argument("--offs", type=int, default=0, metavar="N", help="start at byte N")

    add(
        "ping",
        _ping,
        "the daemon's version, pid and Telepath URLs",
        "Print the daemon's version and pid, and the Telepath URLs it serves\n"
        "(unix://<store>/run/telepath.sock, plus any --telepath-listen).",
    )

    p = add(
        "wants",
        _wants,
        "which hashes are missing",
        "Print the SHA256s (arguments,\n"
        "or whitespace-separated on stdin) the store does not have, in input order.",
    )
    p.add_argument("sha256", type=sha256_arg, nargs="*", metavar="SHA256")

    p = add(
        "hashes",
        _hashes,
        "list blobs in added order",
        "Print 'INDEX SHA256 SIZE' of\n"
        "stored blobs in the order they were added, from index --offs. With --follow,\n"
        "keep printing new blobs until --timeout seconds pass without one.",
    )
    p.add_argument(
        "--offs",
        type=int,
        default=0,
        metavar="N",
        help="start at the blob with index N (default 0: the first)",
    )
    p.add_argument("--follow", action="store_true", help="wait for new blobs")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="with --follow: stop after S seconds without a new blob (default: never)",
    )

    p = add(
        "history",
        _history,
        "list blobs added in a time span",
        "Print 'TIME SHA256\n"
        "SIZE' of blobs added from START to END (inclusive), including deleted ones.\n"
        "Times are epoch milliseconds or ISO-8601 (naive = local time).",
    )
    p.add_argument("start", type=time_arg, metavar="START")
    p.add_argument("end", type=time_arg, nargs="?", metavar="END")

    p = add(
        "hashset",
        _hashset,
        "md5, sha1, sha256, sha512 of a blob",
        "Print the md5, sha1, sha256 and sha512 of a blob.",
    )
    p.add_argument("sha256", type=sha256_arg, metavar="SHA256")

    p = add("del", _del, "delete blobs", "Delete each blob. Exit 1 if any was absent.")
    p.add_argument("sha256", type=sha256_arg, nargs="+", metavar="SHA256")

    add("metrics", _metrics, "bytes and files stored", "Print size:bytes and file:count.")

    add(
        "sync",
        _sync,
        "make every commit durable now",
        "Make every committed blob durable at once, and print how many commits were not\n"
        "yet. Only a daemon with --sync-interval has such commits; without one, every\n"
        "call is durable when it returns.",
    )

    add(
        "stats",
        _stats,
        "the daemon's operational counters",
        "Print uptime, FUSE requests and their latencies (count, misses: names and\n"
        "attributes that do not exist; errors: the rest; mean, p50, p99, max),\n"
        "bytes read and written through the mount, commits, dedup hits, the backend's\n"
        "requests, errors and cache hits, open handles and spool usage. --json prints\n"
        "the whole record (latencies in ns, with power-of-two histogram buckets).",
    )

    p = add(
        "log-level",
        _log_level,
        "show or change the daemon's log level",
        "Set the level of the daemon's log (debug, info, warning, error, critical) while\n"
        "it runs, for every module or only --logger NAME (e.g. axonfs.ops); without\n"
        "LEVEL, print the current levels. Not persistent: a restart uses the\n"
        "configured level.",
    )
    p.add_argument(
        "level",
        nargs="?",
        choices=["debug", "info", "warning", "error", "critical"],
        metavar="LEVEL",
    )
    p.add_argument(
        "--logger", metavar="NAME", help="only this logger and its children (default: all)"
    )

    p = add(
        "wget",
        _wget,
        "download a URL into the store",
        "Download URL and store the body whatever the status code; print 'CODE REASON\n"
        "SIZE SHA256 URL' (--json: the whole result dictionary). Exit 4 if the request\n"
        "failed (no response), or with --fail on a status >= 400.",
    )
    p.add_argument("url", metavar="URL")
    _http_options(p)
    p.add_argument("--json-body", metavar="JSON", help="send this JSON as the request body")
    p.add_argument("--body-file", metavar="FILE", help="send this file as the request body")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="never show a progress bar (one shows on a terminal)",
    )

    p = add(
        "wput",
        _wput,
        "send a blob to a URL",
        "Send a blob as the body of a request\n(PUT by default) to URL; print 'CODE REASON URL'.",
    )
    p.add_argument("sha256", type=sha256_arg, metavar="SHA256")
    p.add_argument("url", metavar="URL")
    _http_options(p)

    p = add(
        "postfiles",
        _postfiles,
        "send a multipart form of blobs and values",
        "POST a multipart/form-data form to URL. Each --field is NAME=VALUE (text) or\n"
        "NAME=@SHA256 (a stored blob, streamed), optionally followed by ;filename=F,\n"
        ";type=MIME-TYPE, ;encoding=CTE. Print 'CODE REASON BODY-SIZE URL'.",
    )
    p.add_argument("url", metavar="URL")
    p.add_argument(
        "--field",
        type=field_arg,
        action="append",
        required=True,
        metavar="SPEC",
        help="a form field: NAME=VALUE or NAME=@SHA256, then ;filename=F, "
        ";type=T, ;encoding=E (repeatable)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write the response body to FILE")
    _http_options(p)

    p = add(
        "readlines",
        _readlines,
        "print a text blob line by line",
        "Print the lines of a text blob (UTF-8).",
    )
    p.add_argument("sha256", type=sha256_arg, metavar="SHA256")
    _errors_option(p)

    p = add(
        "jsonlines",
        _jsonlines,
        "print the objects of a JSON-lines blob",
        "Print each JSON value of a JSON-lines blob, one per line (blank lines skipped).",
    )
    p.add_argument("sha256", type=sha256_arg, metavar="SHA256")
    _errors_option(p)

    p = add(
        "csvrows",
        _csvrows,
        "print the rows of a CSV blob",
        "Parse a CSV blob with Python's csv module and print its rows in the same\n"
        "dialect (delimiter, quoting...; lines end with \\n), so the output reads back\n"
        "as the blob did; --json prints one array per row. The options are csv.reader's\n"
        "dialect and format parameters; C accepts escapes such as '\\t'.",
    )
    p.add_argument("sha256", type=sha256_arg, metavar="SHA256")
    p.add_argument("--dialect", default="excel", help="excel (default), excel-tab or unix")
    p.add_argument(
        "--delimiter",
        type=char_arg,
        metavar="C",
        help="the field separator (excel: ',', excel-tab: '\\t')",
    )
    p.add_argument(
        "--quotechar",
        type=char_arg,
        metavar="C",
        help="the character that quotes fields (default '\"')",
    )
    p.add_argument(
        "--escapechar",
        type=char_arg,
        metavar="C",
        help="escapes the delimiter and quotechar (default: none)",
    )
    p.add_argument(
        "--lineterminator",
        type=char_arg,
        metavar="S",
        help="ends printed rows (default \\n; reading accepts any line end)",
    )
    p.add_argument(
        "--doublequote",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a quotechar inside a field is doubled (default: yes)",
    )
    p.add_argument(
        "--skipinitialspace",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ignore spaces just after a delimiter (default: no)",
    )
    p.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fail on bad CSV instead of reading it as best it can (default: no)",
    )
    p.add_argument(
        "--quoting",
        choices=sorted(QUOTING),
        help="which fields are quoted: minimal (default), all, nonnumeric, none",
    )
    _errors_option(p)

    p = add(
        "msgpack",
        _msgpack,
        "print the items of a msgpack blob",
        "Print each item of a msgpack blob as JSON (the reference's iterMpkFile).",
    )
    p.add_argument("sha256", type=sha256_arg, metavar="SHA256")

    p = add(
        "recover",
        _recover,
        "index blobs the index lacks (live)",
        "Index every blob the backend holds and the index lacks, through the running\n"
        "daemon (the reference's recoverIndices). Exit 1 if corrupt blobs were found.",
    )
    verify = p.add_mutually_exclusive_group()
    verify.add_argument(
        "--verify",
        dest="verify",
        action="store_true",
        default=None,
        help="re-hash every blob before adopting it (default for local blobs)",
    )
    verify.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="adopt blobs without re-hashing them (default on S3, where "
        "verifying downloads every object)",
    )
    return {"ctl": ctl}
