"""The config file of ``axonfs mount`` and ``axonfs serve``: TOML, keys = long options.

One source of truth: the valid keys, their types, choices and defaults are
those of the options declared in :mod:`axonfs.options`. A key is an option's
long name without the dashes (``s3-bucket``, ``max-bytes``, ``allow-other``,
``log-level``, ``mountpoint``), so every option declared there is
configurable without touching this module. The file is flat (no tables); one
file may serve both commands, each ignoring the keys only the other has
(``serve`` has no mount point).

Precedence, highest first: the command line, the config file, the option's
default. That is s3ql's ``pick(cli, file)``, done by argparse itself: the
file's values become the parsers' defaults (:func:`apply`) before the command
line is parsed, so an option given there wins. A flag set in the file can be
cleared with its ``--no-`` form, which :func:`add_config_options` adds for
every flag.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axonfs.cliutil import EXIT_OK, EXIT_USAGE, QuietError
from axonfs.options import DAEMONS, TOP, Option, Settings, options

CONFIG_COMMANDS = (*sorted(DAEMONS), "fsck", "recover")
"""The commands that take ``--config``; fsck and recover use its store and S3 keys."""
NOT_CONFIGURABLE = frozenset({"help", "version", "command", "config", "print_config"}) | {
    dest for dest, declared in options() if not declared.configurable
}
"""Names of options that are how to run, not what to run: command line only."""

KEYS_HELP = """\
Every option above can also be set in a TOML file, keyed by its long name
without dashes: s3-bucket = "b", allow-other = true, mountpoint = "/mnt/x".
The command line wins over the file; each flag has a --no- form (--readahead
for --no-readahead) that clears it. An unknown key or a bad value: exit 2."""


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: the option it sets and the field of :class:`Settings` it fills."""

    name: str
    dest: str
    option: Option


def add_config_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``--config``, ``--print-config`` and (daemons) ``--no-FLAG`` to *command*'s parser."""
    daemon = command in DAEMONS
    group = parser.add_argument_group(
        "configuration",
        KEYS_HELP
        if daemon
        else "Take the store and S3 settings from a daemon's "
        "config file (see 'axonfs mount --help').",
    )
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        default=None,
        help="read settings from this TOML file",
    )
    group.add_argument(
        "--print-config", action="store_true", help="print the settings in force as TOML and exit"
    )
    if not daemon:
        return
    for dest, declared in options():
        if declared.flag and declared.configurable and command in declared.commands:
            group.add_argument(
                declared.negation,
                dest=dest,
                action="store_false",
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )


def config_keys() -> dict[str, Key]:
    """Every valid config key, in the order of the options."""
    return {
        declared.key: Key(declared.key, dest, declared)
        for dest, declared in options()
        if declared.configurable
    }


# -- loading ------------------------------------------------------------------------------


def apply(parsers: Mapping[str, argparse.ArgumentParser], argv: Sequence[str]) -> None:
    """If *argv* names a ``--config`` file, make its values the parsers' defaults.

    Args:
        parsers: each command's parser by name; ``axonfs`` itself under
            :data:`axonfs.options.TOP`.

    Raises:
        QuietError: (exit 2) the file is unreadable, not TOML, or has an
            unknown key or a bad value.
    """
    path = _config_argument(argv)
    if path is None:
        return
    for key, value in load(path, config_keys()).items():
        for command in sorted(key.option.commands):
            if command in parsers:
                parsers[command].set_defaults(**{key.dest: value})


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
            raise QuietError(
                f"{path}: unknown key {name!r}{_why_unknown(name, value, keys)}", EXIT_USAGE
            )
        try:
            values[key] = convert(key.option, value, base)
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


def convert(option: Option, value: Any, base: Path) -> Any:
    """Check and convert a TOML *value* for *option*, as argparse would a CLI string.

    Raises:
        ValueError: with a message fit to follow the key's name.
    """
    if isinstance(value, dict):
        raise ValueError("expected a value, not a table (the config file is flat)")
    if isinstance(value, list) and option.repeated:
        # A repeatable option (--telepath-listen): a list, each item checked alike.
        return [_typed(option.type, item, base) for item in value]
    if isinstance(value, list):
        raise ValueError(f"expected one value, not a list: {value!r}")
    if option.flag:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, not {value!r}")
        return value
    converted = _typed(option.type, value, base)
    if option.choices is not None and converted not in option.choices:
        choices = ", ".join(map(str, option.choices))
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
    return {None: "a string", int: "an integer", float: "a number", Path: "a path (a string)"}.get(
        kind, "a value"
    )


# -- showing --------------------------------------------------------------------------------


def print_config(command: str, settings: Settings) -> int:
    """Print the settings of *command* that the config file can hold, as TOML."""
    lines = [f"# axonfs {command}: settings in force (command line > config file > default)"]
    values = settings.values()
    for name, key in config_keys().items():
        if command not in key.option.commands and TOP not in key.option.commands:
            continue
        value = values[key.dest]
        if value is not None:
            lines.append(f"{name} = {_toml(value)}")
            continue
        in_force, meaning = key.option.unset(settings)
        lines.append(
            f"# {name}: {meaning}"
            if in_force is None
            else f"{name} = {_toml(in_force)}  # {meaning}"
        )
    print("\n".join(lines))
    return EXIT_OK


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
