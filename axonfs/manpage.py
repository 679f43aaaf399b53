"""``axonfs.1``, the manual page, generated from the argparse definitions.

``python -m axonfs.manpage > axonfs.1`` (``make install`` does this). The
page is built from the same parsers ``axonfs --help`` prints, so it cannot
drift from the command: every command and subcommand gets its usage line,
description, options and epilog. The text is plain roff with the man
macros (``.TH``, ``.SH``, ``.TP``), which every man(1) renders.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Iterator

from axonfs import __version__

SECTIONS_AFTER = """\
.SH FILES
.TP
.I ~/.local/share/axonfs
the default store (\\fB$AXONFS_STORE\\fR overrides it)
.TP
.I <store>/run/ctl.sock
the control socket of the daemon that has the store open
.TP
.I <store>/axonfs.log
the log of a daemon started without \\fB\\-\\-foreground\\fR
.TP
.I /etc/axonfs/<instance>.toml
the config file of the system unit \\fBaxonfs@<instance>.service\\fR
.TP
.I /sbin/mount.fuse.axonfs
the helper \\fBmount\\fR(8) runs for \\fB\\-t fuse.axonfs\\fR and fstab lines
.SH SEE ALSO
\\fBfusermount3\\fR(1), \\fBmount.fuse3\\fR(8), \\fBfstab\\fR(5), \\fBsystemd.service\\fR(5)
"""


def escape(text: str) -> str:
    """*text* as roff: backslashes and dashes escaped, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines()
    )


def render(parser: argparse.ArgumentParser, date: datetime.date | None = None) -> str:
    """The whole manual page for *parser* (the ``axonfs`` command)."""
    day = (date or datetime.date.today()).isoformat()
    lines = [
        f'.TH AXONFS 1 "{day}" "axonfs {__version__}" "User Commands"',
        ".SH NAME",
        "axonfs \\- a content\\-addressed blob store (the Synapse Axon API) as a FUSE filesystem",
        ".SH SYNOPSIS",
        *_usage(parser),
        ".SH DESCRIPTION",
        *_paragraphs(parser.description or ""),
        ".SH OPTIONS",
        *_options(parser),
        ".SH COMMANDS",
    ]
    for name, sub in _subcommands(parser):
        lines += _command(name, sub, depth=2)
    if parser.epilog:
        lines += [".SH NOTES", ".nf", escape(parser.epilog), ".fi"]
    return "\n".join(lines) + "\n" + SECTIONS_AFTER


def _command(name: str, parser: argparse.ArgumentParser, depth: int) -> list[str]:
    lines = [f'.SS "{escape(name)}"' if depth == 2 else f".TP\n.B {escape(name)}"]
    if depth > 2:
        lines.append(escape(parser.description or "").replace("\n", " ") or ".")
        lines += [".RS", *_usage(parser), *_options(parser), ".RE"]
        return lines
    lines += [*_usage(parser), *_paragraphs(parser.description or ""), *_options(parser)]
    subs = list(_subcommands(parser))
    if subs:
        lines.append(".PP\nCommands:")
        for sub_name, sub in subs:
            lines += _command(f"{name} {sub_name}", sub, depth + 1)
    if parser.epilog:
        lines += [".PP", ".nf", escape(parser.epilog), ".fi"]
    return lines


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    usage = " ".join(parser.format_usage().removeprefix("usage: ").split())
    return [".PP", f"\\fB{escape(usage)}\\fR"]


def _paragraphs(text: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        if paragraph.strip():
            lines += [".PP", escape(" ".join(paragraph.split()))]
    return lines


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        lines += [
            ".TP",
            f"\\fB{escape(_invocation(action))}\\fR",
            escape(_help(parser, action)) or "\\&",
        ]
    return lines


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return str(action.metavar or action.dest)
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    if isinstance(action.metavar, str):
        metavar = action.metavar
    elif action.choices is not None:
        metavar = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        metavar = action.dest.upper()
    return ", ".join(f"{option} {metavar}" for option in action.option_strings)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = parser.formatter_class(prog=parser.prog)._expand_help(action)
    return " ".join(text.split())


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases share one parser
                    seen.add(id(sub))
                    yield name, sub


def main() -> int:
    from axonfs.cli import build_parser

    sys.stdout.write(render(build_parser()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
