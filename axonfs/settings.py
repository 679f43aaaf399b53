"""The config file of ``axonfs mount`` and ``axonfs serve``: TOML, keys = long options.

One source of truth: the valid keys, their types, choices and defaults are
those of the commands' argparse options, read from the parsers themselves. A
key is an option's long name without the dashes (``s3-bucket``,
``max-bytes``, ``allow-other``, ``log-level``, ``mountpoint``), so every
option added to ``mount`` or ``serve`` (by :mod:`axonfs.mount` or
:mod:`axonfs.backends`) is configurable without touching this module. The
file is flat (no tables); one file may serve both commands, each ignoring the
keys only the other has (``serve`` has no mount point).

Precedence, highest first: the command line, the config file, the option's
default. That is s3ql's ``pick(cli, file)``, done by argparse itself: the
file's values become the parsers' defaults (:func:`apply`) before the command
line is parsed, so an option given there wins. A flag set in the file can be
cleared with its ``--no-`` form, which :func:`install` adds for every flag.

Values are checked before anything starts, as the command line would check
them: the option's ``type`` converts strings (``cache-size = "20G"``),
``choices`` are enforced, flags must be booleans, numbers must be numbers.
Relative paths are relative to the config file's directory. Any problem (an
unknown key, a bad value, a table, a file that is not TOML) ends the command
with exit status 2 and a message naming the file and the key.

``fsck`` and ``recover`` also take ``--config``: they use the keys they
have options for (the store and the S3 settings) and ignore the rest.

``--print-config`` prints the settings in force (file and command line
merged) as TOML and exits, which is how to check a file before deploying it.
An option left unset shows the default then in force (``store = "..."  #
default``), or, when unset means "none" (no limit, no proxy), says so in a
comment.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axonfs.cli import EXIT_OK, EXIT_USAGE, QuietError

KEY_COMMANDS = ("mount", "serve")
"""The commands whose options are the config keys."""
CONFIG_COMMANDS = (*KEY_COMMANDS, "fsck", "recover")
"""The commands that take ``--config``; fsck and recover use its store and S3 keys."""
NOT_CONFIGURABLE = frozenset({"help", "version", "command", "config", "print_config",
                              "foreground", "ready_fd"})
"""Destinations that are how to run, not what to run: command line only."""

KEYS_HELP = """\
Every option above can also be set in a TOML file, keyed by its long name
without dashes: s3-bucket = "b", allow-other = true, mountpoint = "/mnt/x".
The command line wins over the file; each flag has a --no- form (--readahead
for --no-readahead) that clears it. An unknown key or a bad value: exit 2."""

_NEGATIONS = "_axonfs_negation"
"""Marks the ``--no-FLAG`` actions :func:`install` adds (they are not keys)."""


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: the option it sets and the parsers that have it."""

    name: str
    action: argparse.Action
    parsers: tuple[argparse.ArgumentParser, ...]

    @property
    def dest(self) -> str:
        return self.action.dest


def install(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``--config``, ``--print-config`` and ``--no-FLAG`` to the daemon commands.

    Called once the subcommands are registered, so that flags added by any
    module get their negation.
    """
    for name in CONFIG_COMMANDS:
        sub = commands.choices.get(name)
        if sub is None:
            continue
        flags = [action for action in sub._actions if _is_flag(action)
                 and action.dest not in NOT_CONFIGURABLE and name in KEY_COMMANDS]
        group = sub.add_argument_group("configuration", KEYS_HELP if name in KEY_COMMANDS
                                        else "Take the store and S3 settings from a daemon's "
                                             "config file (see 'axonfs mount --help').")
        group.add_argument("--config", type=Path, metavar="FILE", default=None,
                           help="read settings from this TOML file")
        group.add_argument("--print-config", action="store_true",
                           help="print the settings in force as TOML and exit")
        taken = set(sub._option_string_actions)
        for flag in flags:
            option = _long_option(flag)
            if option is None:
                continue
            negation = f"--{option[3:]}" if option.startswith("no-") else f"--no-{option}"
            if negation in taken:
                continue
            action = group.add_argument(
                negation, dest=flag.dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                action="store_true" if isinstance(flag, argparse._StoreFalseAction)
                else "store_false")
            setattr(action, _NEGATIONS, True)


def config_keys(parser: argparse.ArgumentParser) -> dict[str, Key]:
    """Every valid config key: the daemon commands' options and the global ones."""
    found: dict[str, tuple[argparse.Action, list[argparse.ArgumentParser]]] = {}
    sources = [(parser, True), *((_subparser(parser, name), name in KEY_COMMANDS)
                                 for name in CONFIG_COMMANDS)]
    for source, defines_keys in sources:
        if source is None:
            continue
        for action in source._actions:
            name = _key_name(action)
            if name is None or (name not in found and not defines_keys):
                continue
            entry = found.setdefault(name, (action, []))
            entry[1].append(source)
    return {name: Key(name, action, tuple(parsers))
            for name, (action, parsers) in found.items()}


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser | None = action.choices.get(name)
            return found
    return None


def _key_name(action: argparse.Action) -> str | None:
    if (action.dest in NOT_CONFIGURABLE or action.dest == argparse.SUPPRESS
            or getattr(action, _NEGATIONS, False) or action.help == argparse.SUPPRESS
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                                   argparse._SubParsersAction))):
        return None
    if not action.option_strings:
        return action.dest.replace("_", "-")
    return _long_option(action)


def _long_option(action: argparse.Action) -> str | None:
    for option in action.option_strings:
        if option.startswith("--"):
            return option[2:]
    return None


def _is_flag(action: argparse.Action) -> bool:
    return isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))


# -- loading ------------------------------------------------------------------------------


def apply(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """If *argv* names a ``--config`` file, make its values the parsers' defaults.

    Raises:
        QuietError: (exit 2) the file is unreadable, not TOML, or has an
            unknown key or a bad value.
    """
    path = _config_argument(argv)
    if path is None:
        return
    for key, value in load(path, config_keys(parser)).items():
        for owner in key.parsers:
            owner.set_defaults(**{key.dest: value})


def _config_argument(argv: Sequence[str]) -> Path | None:
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(list(argv))
    config: Path | None = known.config
    return config


def load(path: Path, keys: dict[str, Key]) -> dict[Key, Any]:
    """Read and check the config file at *path*; return each key's converted value."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise QuietError(f"cannot read config file {path}: {exc.strerror}", EXIT_USAGE) from None
    except tomllib.TOMLDecodeError as exc:
        raise QuietError(f"{path}: not valid TOML: {exc}", EXIT_USAGE) from None
    base = path.expanduser().absolute().parent
    values: dict[Key, Any] = {}
    for name, value in document.items():
        key = keys.get(name)
        if key is None:
            raise QuietError(f"{path}: unknown key {name!r}{_why_unknown(name, value, keys)}",
                             EXIT_USAGE)
        try:
            values[key] = convert(key.action, value, base)
        except ValueError as exc:
            raise QuietError(f"{path}: key {name!r}: {exc}", EXIT_USAGE) from None
    return values


def _why_unknown(name: str, value: Any, keys: dict[str, Key]) -> str:
    if isinstance(value, dict):
        return f" (a table: the file is flat, e.g. {name}-bucket = ..., not [{name}])"
    if name.replace("-", "_") in NOT_CONFIGURABLE:
        return " (a command-line-only option)"
    return _suggestion(name, keys)


def _suggestion(name: str, keys: dict[str, Key]) -> str:
    import difflib

    close = difflib.get_close_matches(name.replace("_", "-"), keys, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; valid keys: {', '.join(sorted(keys))}"


def convert(action: argparse.Action, value: Any, base: Path) -> Any:
    """Check and convert a TOML *value* for *action*, as argparse would a CLI string.

    Raises:
        ValueError: with a message fit to follow the key's name.
    """
    if isinstance(value, dict):
        raise ValueError("expected a value, not a table (the config file is flat)")
    if isinstance(value, list) and isinstance(action, argparse._AppendAction):
        # A repeatable option (--telepath-listen): a list, each item checked alike.
        return [_typed(action.type, item, base) for item in value]
    if isinstance(value, list):
        raise ValueError(f"expected one value, not a list: {value!r}")
    if _is_flag(action):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, not {value!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    converted = _typed(action.type, value, base)
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"{value!r} is not one of {choices}")
    return converted


def _typed(kind: Any, value: Any, base: Path) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected {_describe(kind)}, not {str(value).lower()}")
    if kind is None:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, not {value!r}")
        return value
    if kind is int:
        if not isinstance(value, int):
            raise ValueError(f"expected an integer, not {value!r}")
        return value
    if kind is float:
        if not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, not {value!r}")
        return float(value)
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a path (a string), not {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a string or a number, not {value!r}")
    try:
        return kind(str(value))
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise ValueError(str(exc) or f"invalid value {value!r}") from None


def _describe(kind: Any) -> str:
    return {None: "a string", int: "an integer", float: "a number",
            Path: "a path (a string)"}.get(kind, "a value")


# -- showing --------------------------------------------------------------------------------


def print_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Print the settings of *args* that the config file can hold, as TOML."""
    command = _subparser(parser, args.command)
    lines = [f"# axonfs {args.command}: settings in force (command line > config file > "
             "default)"]
    unset = _unset_meaning(args)
    for name, key in config_keys(parser).items():
        if command not in key.parsers and parser not in key.parsers:
            continue
        value = getattr(args, key.dest, None)
        if value is not None:
            lines.append(f"{name} = {_toml(value)}")
            continue
        in_force, meaning = unset.get(name, (None, "not set"))
        lines.append(f"# {name}: {meaning}" if in_force is None
                     else f"{name} = {_toml(in_force)}  # {meaning}")
    print("\n".join(lines))
    return EXIT_OK


def _unset_meaning(args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    """What each option left unset (None) means: the value then in force, if it
    has one, and a note. The defaults are computed where they are decided (the
    option's default of None is how the daemon tells "not given")."""
    import dataclasses

    from axonfs.backends import cache_directory
    from axonfs.backends.s3 import S3Config
    from axonfs.cli import resolve_store
    from axonfs.config import WGET_MAX_BYTES
    from axonfs.incoming import RETENTION_DEFAULT
    from axonfs.mount import LOG_NAME

    store = resolve_store(args)
    s3 = {field.name: field.default for field in dataclasses.fields(S3Config)}
    detached = not getattr(args, "foreground", False)  # a detached daemon logs to the store
    return {
        "store": (store, "default: $AXONFS_STORE, else ~/.local/share/axonfs"),
        "log": (store / LOG_NAME, "default") if detached
               else (None, "not set: stderr (with --foreground)"),
        "mountpoint": (None, "not set: give one on the command line"),
        "ctl-group": (None, "not set: only the owner and root may use the control socket"),
        "http-proxy": (None, "not set: wget uses no proxy"),
        "wget-max-bytes": (WGET_MAX_BYTES, "default"),
        "max-bytes": (None, "not set: no limit"),
        "max-count": (None, "not set: no limit"),
        "metrics-listen": (None, "not set: no metrics endpoint"),
        "telepath-listen": (None, "not set: Telepath on <store>/run/telepath.sock only"),
        "tls-cert": (None, "not set: no TLS listener"),
        "tls-key": (None, "not set: the key is in the tls-cert file"),
        "incoming-retention": (RETENTION_DEFAULT, "default"),
        "s3-bucket": (None, "not set: blobs are files in <store>/blobs"),
        "s3-endpoint": (None, "not set: AWS"),
        "s3-region": (None, "not set: boto3's configuration, else us-east-1"),
        "cache-size": (s3["cache_size"], "default (with s3-bucket)"),
        "cache-dir": (cache_directory(None, store), "default (with s3-bucket)"),
        "s3-part-size": (s3["part_size"], "default (with s3-bucket)"),
        "s3-connections": (s3["max_connections"], "default (with s3-bucket)"),
        "s3-sync-interval": (None, "not set: other hosts' changes are applied only by "
                                   "'axonfs ctl recover'"),
    }


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
