"""Mount options as FUSE tools take them: ``-o a,b=c`` and the ``mount.fuse.axonfs`` helper.

``axonfs mount -o OPTIONS`` accepts, comma-separated:

* the kernel's mount flags libfuse understands (``ro``, ``nosuid``, ``nodev``,
  ``noexec``, ``noatime``, ``sync``, ``dirsync``...), passed to the mount
  unchanged; ``ro`` is ``--read-only``;
* the FUSE options ``allow_other`` (= ``--allow-other``) and
  ``default_permissions`` (always in force: the kernel checks modes);
* ``nonempty`` (= ``--nonempty``): mount over a directory that is not empty;
* axonfs's own options, as ``key=value`` or ``flag``, spelt as the config
  file's keys (``max-bytes=1G``, ``allow-delete``, ``store=/srv/store``;
  ``_`` may stand for ``-``);
* options meant for mount(8) or systemd (``rw``, ``defaults``, ``noauto``,
  ``nofail``, ``_netdev``, ``user``, ``x-systemd.*``, ``comment=``...), ignored.

Anything else is a usage error naming the option. The options are applied
where ``-o`` stands on the command line, so an option after it wins, as
argparse does for repeated options.

:func:`helper_main` is ``mount.fuse.axonfs``, the program mount(8) runs for
``mount -t fuse.axonfs STORE MOUNTPOINT -o ...`` and for fstab lines of type
``fuse.axonfs``: it turns mount(8)'s calling convention into ``axonfs mount``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

KERNEL_FLAGS = frozenset(
    {
        "ro",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "exec",
        "noexec",
        "async",
        "sync",
        "noatime",
        "nodiratime",
        "norelatime",
        "nostrictatime",
        "symfollow",
        "nosymfollow",
        "dirsync",
    }
)
"""Mount flags libfuse turns into mount(2) flags (its own table; it refuses others)."""

ALIASES = {"ro": "--read-only", "allow_other": "--allow-other", "nonempty": "--nonempty"}
"""FUSE tools' spellings of axonfs's own flags."""

IGNORED = frozenset(
    {
        "rw",
        "defaults",
        "auto",
        "noauto",
        "user",
        "nouser",
        "users",
        "owner",
        "group",
        "_netdev",
        "nofail",
        "default_permissions",
        "atime",
        "relatime",
        "strictatime",
        "diratime",
        "lazytime",
        "nolazytime",
        "loud",
        "silent",
    }
)
"""Options for mount(8), fstab or systemd, or already in force: accepted, no effect.
(``rw`` is mount(8)'s default and says nothing against ``--read-only`` given elsewhere.)"""

IGNORED_PREFIXES = ("x-", "comment=", "user=")
"""x-*: for systemd and other tools; user=NAME: added by mount(8) to a user mount."""

NOT_OPTIONS = frozenset(
    {"--help", "--foreground", "--ready-fd", "--config", "--print-config", "--version"}
)
"""Long options that are not settings of the mount (how to run, not what to mount)."""


def split(text: str) -> Iterator[tuple[str, str | None]]:
    """Given ``"a,b=c"``, yield ``("a", None)`` and ``("b", "c")``; empty items are skipped."""
    for item in text.split(","):
        item = item.strip()
        if item:
            name, equals, value = item.partition("=")
            yield name, (value if equals else None)


class MountOptionsAction(argparse.Action):
    """``-o OPTIONS``: apply each option to the namespace as its own option would."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        for name, value in split(str(values)):
            try:
                apply_option(parser, namespace, name, value)
            except ValueError as exc:
                parser.error(f"-o {name}: {exc}")


def apply_option(
    parser: argparse.ArgumentParser, namespace: argparse.Namespace, name: str, value: str | None
) -> None:
    """Apply one ``-o`` option to *namespace*.

    Raises:
        ValueError: an unknown option, or a value where none belongs (or the reverse).
    """
    if name in IGNORED or name.startswith(IGNORED_PREFIXES):
        return
    if name in KERNEL_FLAGS and name != "ro":
        if value is not None:
            raise ValueError("takes no value")
        namespace.kernel_flags = [*namespace.kernel_flags, name]
        return
    if name == "config":
        raise ValueError("give the config file as --config FILE")
    option = ALIASES.get(name) or "--" + name.replace("_", "-")
    action = parser._option_string_actions.get(option)
    if action is None or option in NOT_OPTIONS or action.help == argparse.SUPPRESS:
        raise ValueError("unknown mount option (see 'axonfs mount --help')")
    if action.nargs == 0:
        if value is not None:
            raise ValueError("is a flag and takes no value")
        action(parser, namespace, None, option)
        return
    if value is None:
        raise ValueError("needs a value: -o NAME=VALUE")
    try:
        converted = parser._get_values(action, [value])
    except argparse.ArgumentError as exc:
        raise ValueError(exc.message) from None
    action(parser, namespace, converted, option)


def helper_arguments(argv: Sequence[str]) -> list[str] | None:
    """mount(8)'s helper arguments, as the ``axonfs`` arguments that do the mount
    (None for ``-f``, mount(8)'s "fake": do nothing).

    mount(8) runs ``mount.fuse.axonfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE]``;
    SOURCE is the store directory. ``config=FILE`` becomes ``--config FILE``, which
    must be seen before the command line is parsed.
    """
    parser = argparse.ArgumentParser(
        prog="mount.fuse.axonfs", add_help=True, description="mount(8)'s helper for fuse.axonfs"
    )
    parser.add_argument("source", metavar="STORE")
    parser.add_argument("mountpoint", metavar="MOUNTPOINT")
    parser.add_argument("-o", dest="options", action="append", default=[])
    parser.add_argument("-t", dest="type", default="fuse.axonfs")
    for flag in ("-s", "-f", "-n", "-v"):  # sloppy, fake, no mtab, verbose
        parser.add_argument(flag, action="store_true")
    args = parser.parse_args(list(argv))
    config: list[str] = []
    kept: list[str] = []
    for name, value in split(",".join(args.options)):
        if name == "config" and value:
            config = ["--config", value]
        else:
            kept.append(name if value is None else f"{name}={value}")
    command = ["mount", "--store", args.source, *config]
    if kept:
        command += ["-o", ",".join(kept)]
    if args.f:
        return None
    return [*command, args.mountpoint]


def helper_main(argv: Sequence[str] | None = None) -> int:
    """``mount.fuse.axonfs``: run ``axonfs mount`` for mount(8)."""
    arguments = helper_arguments(sys.argv[1:] if argv is None else argv)
    if arguments is None:
        return 0
    # -P: mount(8) runs helpers in the caller's working directory, which must not
    # shadow the package.
    os.execv(sys.executable, [sys.executable, "-P", "-m", "axonfs", *arguments])
