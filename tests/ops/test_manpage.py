"""The man page and the shell completion, generated from the parsers (no install needed)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from axonfs.cli import build_parser


def generate(module: str, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every command and subcommand name, e.g. ``ctl get``."""
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(prefix + name)
                found += commands(sub, f"{prefix}{name} ")
    return found


def test_every_command_and_option_is_on_the_page(tmp_path: Path) -> None:
    page = generate("axonfs.manpage")
    parser = build_parser()
    for command in commands(parser):
        assert f"axonfs {command}".replace("-", "\\-") in page, command
    mount = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "mount"
    ]
    entries = " ".join(re.findall(r"\.TP\n\\fB(.*?)\\fR", page)).replace("\\-", "-")
    named = set(re.findall(r"--?[\w-]+", entries))
    for action in mount._actions:
        if action.help != argparse.SUPPRESS:
            assert set(action.option_strings) <= named, action.option_strings


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_renders_the_page_without_warnings(tmp_path: Path) -> None:
    (tmp_path / "axonfs.1").write_text(generate("axonfs.manpage"))
    result = subprocess.run(
        ["man", "--warnings", "-l", str(tmp_path / "axonfs.1")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0
    assert result.stderr == ""
    assert "mount.fuse.axonfs" in result.stdout


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "axonfs.bash"
    script.write_text(generate("axonfs.completion", "bash"))
    result = subprocess.run(
        [
            "bash",
            "-c",
            f""". {script}
COMP_WORDS=(axonfs ctl hash); COMP_CWORD=2; _shtab_axonfs axonfs hash ctl; echo "${{COMPREPLY[*]}}"
COMP_WORDS=(axonfs mount --read); COMP_CWORD=2; _shtab_axonfs axonfs --read mount
echo "${{COMPREPLY[*]}}"
""",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.splitlines() == ["hashes hashset", "--read-only"]


def test_zsh_completion(tmp_path: Path) -> None:
    text = generate("axonfs.completion", "zsh")
    assert text.startswith("#compdef axonfs")
    assert "--read-only" in text and "umount" in text
    if shutil.which("zsh"):
        (tmp_path / "_axonfs").write_text(text)
        subprocess.run(["zsh", "-n", str(tmp_path / "_axonfs")], check=True, timeout=60)


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "axonfs.completion", "fish"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "usage:" in result.stderr
