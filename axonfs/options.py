"""The settings of the daemon commands, each declared once, and the typed record they fill.

Every field of :class:`Settings` that is declared with :func:`option` is one
option of ``axonfs mount`` and ``axonfs serve`` (the store and S3 ones also of
``fsck`` and ``recover``). That one declaration gives:

* the command-line option and its help (:func:`add_options`);
* the config file key, its type and choices (:mod:`axonfs.settings`), and the
  ``--no-`` form of a flag;
* what ``--print-config`` shows while it is unset;
* the typed value the command runs with (:meth:`Settings.from_namespace`).

To add a setting, add a field here; the command that uses it reads it from
the :class:`Settings` it is given. Options that only some other command has
(``fsck --repair``, the ``ctl`` calls) stay with that command.

The backend is built here from its options (:func:`backend_from_settings`),
so that :mod:`axonfs.backends` knows nothing of the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axonfs.backends import cache_directory
from axonfs.cliutil import resolve_store, store_help
from axonfs.config import LOG_NAME, WGET_MAX_BYTES
from axonfs.errors import BadArg
from axonfs.mountopts import MountOptionsAction
from axonfs.units import size_type

if TYPE_CHECKING:
    from axonfs.backends.base import BlobBackend

TOP = "axonfs"
"""The command name of the options of ``axonfs`` itself (before the subcommand)."""
DAEMONS = frozenset({"mount", "serve"})
"""The commands whose options are the config keys."""
STORE_USERS = frozenset({"mount", "serve", "fsck", "recover"})
"""The commands that open a store: they take ``--store`` and the backend's options."""
CHECKERS = frozenset({"fsck", "recover"})
"""The commands whose store must already exist."""

S3_GROUP = (
    "S3 backend",
    "Keep blobs in an S3-compatible bucket instead of <store>/blobs. "
    "Credentials come from boto3's chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
    "AWS_PROFILE, ~/.aws, an instance role).",
)
"""Title and description of the argument group of the backend's options."""

ActionClass = type[argparse.Action]
Unset = Callable[["Settings"], tuple[object, str]]
"""What an option left unset (None) means: the value then in force (None if
none) and a note, as ``--print-config`` shows them."""


def not_set(meaning: str = "") -> Unset:
    """The :data:`Unset` of an option that has no value while unset: a note alone."""
    text = f"not set: {meaning}" if meaning else "not set"
    return lambda settings: (None, text)


@dataclass(frozen=True, slots=True)
class Option:
    """How one :class:`Settings` field appears on the command line and in the config file."""

    flags: tuple[str, ...]
    """``("--max-bytes",)``; a positional argument has its name alone (``("mountpoint",)``)."""
    commands: frozenset[str]
    section: str
    """Which part of a command's options it is in (``store``, ``daemon``, ``backend``,
    ``mount``): commands add theirs a section at a time, between their own options."""
    help: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False
    """A ``store_true`` option; a config key then takes true or false."""
    repeated: bool = False
    """An ``append`` option; a config key then takes a list."""
    nargs: str | None = None
    action: ActionClass | None = None
    """An action of its own (``-o``); then the option is not a config key."""
    configurable: bool = True
    """False: how to run rather than what to run, given on the command line only."""
    group: tuple[str, str] | None = None
    """The argument group (title, description) its help is shown under."""
    unset: Unset = not_set()
    help_for: tuple[tuple[str, str], ...] = ()
    """``(command, help)`` where a command words the help otherwise."""

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    @property
    def key(self) -> str:
        """The config file key: the long option without its dashes."""
        long = next((flag for flag in self.flags if flag.startswith("--")), self.flags[0])
        return long.removeprefix("--")

    @property
    def negation(self) -> str:
        """The option that clears a flag: ``--no-FLAG``, or ``--FLAG`` for ``--no-FLAG``."""
        key = self.key
        return f"--{key[3:]}" if key.startswith("no-") else f"--no-{key}"


def option(
    *flags: str,
    commands: frozenset[str] = DAEMONS,
    section: str = "daemon",
    default: Any = None,
    **how: Any,
) -> Any:
    """A :class:`Settings` field that is an option; *how* are :class:`Option`'s fields."""
    return field(default=default, metadata={"option": Option(flags, commands, section, **how)})


def sync_interval_type(text: str) -> int:
    """``--sync-interval``: whole milliseconds, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more milliseconds, not {value}")
    return value


def _store_in_force(settings: Settings) -> tuple[object, str]:
    return resolve_store(settings.store), "default: $AXONFS_STORE, else ~/.local/share/axonfs"


def _log_in_force(settings: Settings) -> tuple[object, str]:
    if settings.foreground:
        return None, "not set: stderr (with --foreground)"
    return resolve_store(settings.store) / LOG_NAME, "default"  # a detached daemon's log


def _retention_in_force(settings: Settings) -> tuple[object, str]:
    from axonfs.incoming import RETENTION_DEFAULT  # imported here: it imports trio

    return RETENTION_DEFAULT, "default"


def _s3_default(name: str) -> Unset:
    def in_force(settings: Settings) -> tuple[object, str]:
        from axonfs.backends.s3 import S3Config  # imported here: boto3 is slow to import

        defaults = {item.name: item.default for item in dataclasses.fields(S3Config)}
        return defaults[name], "default (with s3-bucket)"

    return in_force


@dataclass(frozen=True, slots=True)
class Settings:
    """What a daemon command (or fsck, recover) runs with: its options, after the
    config file and the command line. Fields of options a command lacks keep
    their defaults. None means "not given": the code that uses a value picks its
    default then, and ``--print-config`` says which."""

    log_level: str = option(
        "--log-level",
        commands=frozenset({TOP}),
        section="top",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="how much to log to stderr (default: info; journald's format under systemd; "
        "change it live with 'axonfs ctl log-level')",
    )
    store: Path | None = option(
        "--store",
        commands=STORE_USERS,
        section="store",
        type=Path,
        metavar="DIR",
        help=store_help(creates=True),
        help_for=tuple((name, store_help(creates=False)) for name in sorted(CHECKERS)),
        unset=_store_in_force,
    )

    # -- the daemon (mount and serve) ------------------------------------------------
    foreground: bool = option(
        "--foreground",
        flag=True,
        default=False,
        configurable=False,
        help="run the daemon in this process (for systemd Type=notify) instead of "
        "returning once it is ready",
    )
    log: Path | None = option(
        "--log",
        type=Path,
        metavar="FILE",
        unset=_log_in_force,
        help=f"log to FILE (default without --foreground: <store>/{LOG_NAME})",
    )
    ctl_group: str | None = option(
        "--ctl-group",
        metavar="GROUP",
        help="also let members of GROUP use the control socket",
        unset=not_set("only the owner and root may use the control socket"),
    )
    http_proxy: str | None = option(
        "--http-proxy",
        metavar="URL",
        help="proxy for 'axonfs ctl wget'",
        unset=not_set("wget uses no proxy"),
    )
    wget_max_bytes: int | None = option(
        "--wget-max-bytes",
        type=size_type,
        metavar="BYTES",
        help="largest download 'wget' stores; a longer body is cut off and refused "
        "(default 4 GiB; 0: no cap)",
        unset=lambda settings: (WGET_MAX_BYTES, "default"),
    )
    max_bytes: int | None = option(
        "--max-bytes",
        type=size_type,
        metavar="BYTES",
        unset=not_set("no limit"),
        help="refuse a new blob that would take the store past BYTES (e.g. 1G); df on the "
        "mount then shows BYTES as its size",
    )
    max_count: int | None = option(
        "--max-count",
        type=int,
        metavar="N",
        unset=not_set("no limit"),
        help="refuse new blobs once the store holds N blobs",
    )
    sync_interval: int | None = option(
        "--sync-interval",
        type=sync_interval_type,
        metavar="MS",
        unset=lambda settings: (0, "default: every call is durable when it returns"),
        help="let a put of a small blob (up to 128 KiB) return once it is visible, and make "
        "such puts durable within MS milliseconds, all in one sync: the speed of bulk "
        "loads of small files against losing the last MS of them to a power cut (a "
        "killed daemon still loses nothing; 'axonfs ctl sync' or fsync of any file in the "
        "mount makes everything durable at once). On S3, every add returns once its bytes "
        "are in the bucket, and only its index row waits for the sync: a power cut loses "
        "rows, which 'axonfs recover' rebuilds, never bytes. 0, the default: every call is "
        "durable when it returns",
    )
    metrics_listen: str | None = option(
        "--metrics-listen",
        metavar="HOST:PORT",
        unset=not_set("no metrics endpoint"),
        help="serve Prometheus metrics on http://HOST:PORT/metrics (loopback only, e.g. "
        "127.0.0.1:9567)",
    )
    metrics_allow_remote: bool = option(
        "--metrics-allow-remote",
        flag=True,
        default=False,
        help="allow --metrics-listen on a non-loopback address (the endpoint has no "
        "authentication)",
    )
    ready_fd: int | None = option(
        "--ready-fd", type=int, help=argparse.SUPPRESS, configurable=False
    )
    telepath_listen: list[str] | None = option(
        "--telepath-listen",
        repeated=True,
        metavar="URL",
        unset=not_set("Telepath on <store>/run/telepath.sock only"),
        help="also serve Telepath on tcp://HOST:PORT or ssl://HOST:PORT (repeatable; "
        "loopback only; users: 'axonfs passwd')",
    )
    telepath_allow_remote: bool = option(
        "--telepath-allow-remote",
        flag=True,
        default=False,
        help="allow --telepath-listen on a non-loopback address",
    )
    tls_cert: Path | None = option(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        unset=not_set("no TLS listener"),
        help="certificate (chain) for ssl:// Telepath listeners",
    )
    tls_key: Path | None = option(
        "--tls-key",
        type=Path,
        metavar="PEM",
        unset=not_set("the key is in the tls-cert file"),
        help="its private key, if not in the --tls-cert file",
    )

    # -- the blob backend (every command that opens a store) -------------------------
    s3_bucket: str | None = option(
        "--s3-bucket",
        commands=STORE_USERS,
        section="backend",
        group=S3_GROUP,
        metavar="NAME",
        unset=not_set("blobs are files in <store>/blobs"),
        help="the bucket (created when missing); selects the S3 backend",
    )
    s3_endpoint: str | None = option(
        "--s3-endpoint",
        commands=STORE_USERS,
        section="backend",
        group=S3_GROUP,
        metavar="URL",
        unset=not_set("AWS"),
        help="the S3 endpoint, for MinIO, Ceph, Garage... (default: AWS)",
    )
    s3_prefix: str = option(
        "--s3-prefix",
        commands=STORE_USERS,
        section="backend",
        group=S3_GROUP,
        metavar="P",
        default="",
        help="prepended to every object key (default: none)",
    )
    s3_region: str | None = option(
        "--s3-region",
        commands=STORE_USERS,
        section="backend",
        group=S3_GROUP,
        metavar="R",
        unset=not_set("boto3's configuration, else us-east-1"),
        help="the region (default: boto3's configuration, else us-east-1)",
    )
    cache_size: int | None = option(
        "--cache-size",
        commands=STORE_USERS,
        section="backend",
        group=S3_GROUP,
        metavar="BYTES",
        type=size_type,
        unset=_s3_default("cache_size"),
        help="cap of the local read cache in <store>/cache, e.g. 20G (default: 1G; 0 disables it)",
    )
    cache_dir: Path | None = option(
        "--cache-dir",
        commands=STORE_USERS,
        section="backend",
        group=S3_GROUP,
        metavar="DIR",
        type=Path,
        unset=lambda settings: (
            cache_directory(None, resolve_store(settings.store)),
            "default (with s3-bucket)",
        ),
        help="where the read cache lives (default: $AXONFS_CACHE_DIR, else <store>/cache)",
    )
    s3_part_size: int | None = option(
        "--s3-part-size",
        commands=STORE_USERS,
        section="backend",
        group=S3_GROUP,
        metavar="BYTES",
        type=size_type,
        unset=_s3_default("part_size"),
        help="multipart upload part size, at least 5M (default: 16M); smaller blobs go up "
        "in one PUT",
    )
    s3_connections: int | None = option(
        "--s3-connections",
        commands=STORE_USERS,
        section="backend",
        group=S3_GROUP,
        metavar="N",
        type=int,
        unset=_s3_default("max_connections"),
        help="S3 requests in flight at once (default: 16)",
    )
    s3_sync_interval: float | None = option(
        "--s3-sync-interval",
        commands=STORE_USERS,
        section="backend",
        group=S3_GROUP,
        metavar="SECONDS",
        type=float,
        unset=not_set("other hosts' changes are applied only by 'axonfs ctl recover'"),
        help="every SECONDS, apply the adds and deletes other hosts sharing the bucket "
        "recorded in it (their change records; a few requests when nothing changed); "
        "default: never, other hosts' blobs are then indexed only by 'axonfs ctl "
        "recover'",
    )

    # -- the mount ---------------------------------------------------------------------
    allow_other: bool = option(
        "--allow-other",
        commands=frozenset({"mount"}),
        section="mount",
        flag=True,
        default=False,
        help="let other users see the mount (needs user_allow_other in /etc/fuse.conf unless root)",
    )
    read_only: bool = option(
        "--read-only",
        commands=frozenset({"mount"}),
        section="mount",
        flag=True,
        default=False,
        help="mount read-only: /incoming refuses new files, nothing can be deleted (the "
        "control socket still stores blobs)",
    )
    nonempty: bool = option(
        "--nonempty",
        commands=frozenset({"mount"}),
        section="mount",
        flag=True,
        default=False,
        help="mount over a directory that is not empty (hiding its files)",
    )
    mount_options: str | None = option(
        "-o",
        commands=frozenset({"mount"}),
        section="mount",
        metavar="OPTIONS",
        action=MountOptionsAction,
        configurable=False,
        help="mount options, comma-separated, as FUSE tools take them: ro, allow_other, "
        "default_permissions, nonempty, kernel flags (nosuid, nodev, noexec, "
        "noatime...), axonfs's own options as key=value (max-bytes=1G, "
        "allow-delete...); mount(8)'s (rw, noauto, nofail, _netdev, x-*...) are ignored",
    )
    kernel_flags: Sequence[str] = ()
    """The kernel's mount flags given with ``-o`` (``nosuid``, ``noatime``...)."""
    allow_delete: bool = option(
        "--allow-delete",
        commands=frozenset({"mount"}),
        section="mount",
        flag=True,
        default=False,
        help="let 'rm /MOUNTPOINT/by-sha256/<hex>' delete the blob",
    )
    incoming_retention: float | None = option(
        "--incoming-retention",
        commands=frozenset({"mount"}),
        section="mount",
        type=float,
        metavar="SECONDS",
        unset=_retention_in_force,
        help="how long a committed file stays listed in /incoming (default 3600; 0: "
        "removed at once)",
    )
    no_readahead: bool = option(
        "--no-readahead",
        commands=frozenset({"mount"}),
        section="mount",
        flag=True,
        default=False,
        help="keep the kernel's default read-ahead (128 KiB)",
    )
    stop_timeout: float | None = option(
        "--stop-timeout",
        commands=frozenset({"mount"}),
        section="mount",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, wait up to SECONDS for files being written to /incoming "
        "to be closed before unmounting (default 60)",
    )
    mountpoint: Path | None = option(
        "mountpoint",
        commands=frozenset({"mount"}),
        section="mount",
        type=Path,
        metavar="MOUNTPOINT",
        nargs="?",
        unset=not_set("give one on the command line"),
        help="where to mount (or 'mountpoint' in the --config file)",
    )

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Settings:
        """The settings of parsed options; those the command lacks keep their defaults."""
        given = vars(args)
        return cls(
            **{
                item.name: given[item.name]
                for item in dataclasses.fields(cls)
                if item.name in given
            }
        )

    def values(self) -> dict[str, Any]:
        """Every field's value by name."""
        return dataclasses.asdict(self)


def options() -> list[tuple[str, Option]]:
    """Every option, as (field name, :class:`Option`), in the order of the fields."""
    return [
        (item.name, item.metadata["option"])
        for item in dataclasses.fields(Settings)
        if "option" in item.metadata
    ]


def add_options(parser: argparse.ArgumentParser, command: str, *sections: str) -> None:
    """Add to *parser* the options of *command* that are in *sections*, in field order."""
    groups: dict[tuple[str, str], argparse._ArgumentGroup] = {}
    for name, declared in options():
        if declared.section not in sections or command not in declared.commands:
            continue
        target: argparse.ArgumentParser | argparse._ArgumentGroup = parser
        if declared.group is not None:
            if declared.group not in groups:
                groups[declared.group] = parser.add_argument_group(*declared.group)
            target = groups[declared.group]
        _add(target, name, declared, dict(declared.help_for).get(command, declared.help))


def _add(
    target: argparse.ArgumentParser | argparse._ArgumentGroup,
    name: str,
    declared: Option,
    help_text: str,
) -> None:
    how: dict[str, Any] = {"help": help_text}
    if declared.positional:
        how.update(type=declared.type, metavar=declared.metavar, nargs=declared.nargs)
        target.add_argument(name, **how)
        return
    how["dest"] = name
    if declared.flag:
        how["action"] = "store_true"
    else:
        how.update(type=declared.type, metavar=declared.metavar, default=_default(name))
        if declared.action is not None:
            how["action"] = declared.action
        elif declared.repeated:
            how["action"] = "append"
        if declared.choices is not None:
            how["choices"] = list(declared.choices)
    target.add_argument(*declared.flags, **how)


def _default(name: str) -> Any:
    return next(item.default for item in dataclasses.fields(Settings) if item.name == name)


# -- what the settings build -------------------------------------------------------------


def backend_from_settings(settings: Settings, store: Path) -> BlobBackend | None:
    """Build the backend *settings* select for the store at *store* (None: local files).

    Builds the client but sends no request: the bucket is checked (and
    created) on first use, from a worker thread.

    Raises:
        BadArg: an S3 option without ``--s3-bucket``, or an invalid value.
    """
    if not settings.s3_bucket:
        given = [
            name
            for name, value in (
                ("s3_endpoint", settings.s3_endpoint),
                ("s3_region", settings.s3_region),
                ("s3_part_size", settings.s3_part_size),
                ("s3_connections", settings.s3_connections),
                ("cache_size", settings.cache_size),
                ("s3_sync_interval", settings.s3_sync_interval),
            )
            if value is not None
        ]
        if given or settings.s3_prefix:
            raise BadArg("S3 options need --s3-bucket", options=given)
        return None
    from axonfs.backends.s3 import S3Backend, S3Config  # imported here: boto3 is slow

    try:
        config = S3Config(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint,
            prefix=settings.s3_prefix,
            region=settings.s3_region,
        )
        if settings.s3_part_size is not None:
            config = dataclasses.replace(config, part_size=settings.s3_part_size)
        if settings.s3_connections is not None:
            config = dataclasses.replace(config, max_connections=settings.s3_connections)
        if settings.cache_size is not None:
            config = dataclasses.replace(config, cache_size=settings.cache_size)
    except ValueError as exc:
        raise BadArg(str(exc)) from None
    return S3Backend(config, cache_dir=cache_directory(settings.cache_dir, store))
