"""The config file: precedence (command line > file > default) and refusals (exit 2)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from helpers.cli import run_axonfs

from axonfs.store.store import Store

from .conftest import StartServe, clean_env


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def effective(*args: str | Path) -> dict[str, object]:
    """The settings ``--print-config`` reports, parsed back from its TOML."""
    result = run_axonfs(*args, "--print-config", env=clean_env())
    assert result.returncode == 0, result.stderr
    return tomllib.loads(result.stdout)


def test_file_overrides_defaults_and_command_line_overrides_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "a.toml",
        """
store = "st"                    # relative to the file's directory
mountpoint = "/srv/samples"
max-bytes = 1000
max-count = 10
cache-size = "2G"
incoming-retention = 60
allow-delete = true
allow-other = true
log-level = "warning"
metrics-listen = "127.0.0.1:9567"
""",
    )
    settings = effective("mount", "--config", config)
    assert settings["store"] == str(tmp_path / "st")
    assert settings["mountpoint"] == "/srv/samples"
    assert settings["max-bytes"] == 1000
    assert settings["cache-size"] == 2 << 30
    assert settings["incoming-retention"] == 60.0
    assert settings["allow-delete"] is True
    assert settings["log-level"] == "warning"
    assert "ctl-group" not in settings  # unset: printed as a comment
    assert settings["s3-prefix"] == ""  # the option's default

    settings = effective(
        "--log-level",
        "debug",
        "mount",
        "--config",
        config,
        "--max-bytes",
        "5",
        "--no-allow-other",
        "--store",
        tmp_path / "other",
        tmp_path / "mnt",
    )
    assert settings["max-bytes"] == 5
    assert settings["max-count"] == 10  # not on the command line: the file's
    assert settings["allow-other"] is False
    assert settings["allow-delete"] is True
    assert settings["store"] == str(tmp_path / "other")
    assert settings["mountpoint"] == str(tmp_path / "mnt")
    assert settings["log-level"] == "debug"


def test_print_config_shows_the_defaults_in_force(tmp_path: Path) -> None:
    env = {**clean_env(), "AXONFS_STORE": str(tmp_path / "st")}
    result = run_axonfs("mount", "--print-config", tmp_path / "mnt", env=env)
    assert result.returncode == 0, result.stderr
    settings = tomllib.loads(result.stdout)
    assert settings["store"] == str(tmp_path / "st")
    assert settings["log"] == str(tmp_path / "st" / "axonfs.log")
    assert settings["wget-max-bytes"] == 4 << 30
    assert settings["incoming-retention"] == 3600.0
    assert settings["cache-size"] == 1 << 30
    assert settings["cache-dir"] == str(tmp_path / "st" / "cache")
    assert "# max-bytes: not set: no limit" in result.stdout.splitlines()
    assert "is not set" not in result.stdout
    fsck = run_axonfs("fsck", "--print-config", env=env)
    assert tomllib.loads(fsck.stdout)["store"] == str(tmp_path / "st")


def test_one_file_serves_mount_and_serve(tmp_path: Path) -> None:
    config = write(
        tmp_path / "a.toml", 'mountpoint = "/srv/x"\nallow-other = true\nmax-count = 3\n'
    )
    settings = effective("serve", "--config", config)
    assert settings["max-count"] == 3
    assert "mountpoint" not in settings and "allow-other" not in settings


def test_flag_negations(tmp_path: Path) -> None:
    config = write(tmp_path / "a.toml", "no-readahead = true\n")
    assert effective("mount", "--config", config)["no-readahead"] is True
    assert effective("mount", "--config", config, "--readahead")["no-readahead"] is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_bytes = 3\n", "unknown key 'max_bytes' (did you mean 'max-bytes'?)"),
        ("bogus = 1\n", "unknown key 'bogus'; valid keys: "),
        ("foreground = true\n", "unknown key 'foreground' (a command-line-only option)"),
        ("[s3]\nbucket = 'b'\n", "unknown key 's3' (a table"),
        ("max-bytes = 'lots'\n", "key 'max-bytes': not a byte count: 'lots'"),
        ("max-count = true\n", "key 'max-count': expected an integer, not true"),
        ("allow-other = 1\n", "key 'allow-other': expected true or false"),
        ("log-level = 'loud'\n", "key 'log-level': 'loud' is not one of"),
        ("cache-size = 'lots'\n", "key 'cache-size': not a byte count"),
        ("incoming-retention = 'long'\n", "key 'incoming-retention': expected a number"),
        ("store = ['a', 'b']\n", "key 'store': expected one value, not a list"),
        ("store = \n", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_with_the_key(tmp_path: Path, text: str, message: str) -> None:
    config = write(tmp_path / "bad.toml", text)
    result = run_axonfs("mount", "--config", config, tmp_path, env=clean_env())
    assert result.returncode == 2, result
    assert message in result.stderr
    assert str(config) in result.stderr
    assert not (tmp_path / "store").exists()


def test_missing_file_and_missing_mountpoint(tmp_path: Path) -> None:
    result = run_axonfs("mount", "--config", tmp_path / "none.toml", env=clean_env())
    assert result.returncode == 2 and "cannot read config file" in result.stderr
    config = write(tmp_path / "a.toml", "max-count = 3\n")
    result = run_axonfs("mount", "--config", config, env=clean_env())
    assert result.returncode == 2 and "no MOUNTPOINT" in result.stderr


def test_bad_values_found_at_start_exit_2(tmp_path: Path) -> None:
    """Values only checked when combined (S3 options without a bucket, remote metrics)."""
    config = write(tmp_path / "a.toml", f'store = "{tmp_path / "st"}"\ns3-region = "x"\n')
    result = run_axonfs("serve", "--foreground", "--config", config, env=clean_env())
    assert result.returncode == 2 and "S3 options need --s3-bucket" in result.stderr
    config = write(
        tmp_path / "b.toml", f'store = "{tmp_path / "st"}"\nmetrics-listen = "0.0.0.0:9567"\n'
    )
    result = run_axonfs("serve", "--foreground", "--config", config, env=clean_env())
    assert result.returncode == 2 and "not a loopback address" in result.stderr


def test_a_daemon_runs_from_the_file(tmp_path: Path, start_serve: StartServe) -> None:
    """The file's settings reach the daemon: its limit refuses the second blob."""
    config = write(tmp_path / "a.toml", "max-count = 1\n")
    served = start_serve("--config", config, env=clean_env())
    first = tmp_path / "one"
    first.write_bytes(b"one")
    second = tmp_path / "two"
    second.write_bytes(b"two")
    assert served.ctl("put", "--no-progress", str(first)).returncode == 0
    refused = served.ctl("put", "--no-progress", str(second))
    assert refused.returncode != 0 and "HitLimit" in refused.stderr, refused


def test_the_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "systemd" / "example.toml"
    settings = effective("mount", "--config", example)
    assert settings["mountpoint"] == "/srv/samples" and settings["allow-other"] is True


def test_fsck_takes_the_store_from_a_daemon_config(tmp_path: Path) -> None:
    config = write(tmp_path / "a.toml", 'store = "st"\nmountpoint = "/srv/x"\nallow-other = true\n')
    missing = run_axonfs("fsck", "--config", config, env=clean_env())
    assert missing.returncode == 3 and f"no store at {tmp_path / 'st'}" in missing.stderr
    Store(tmp_path / "st").close()
    result = run_axonfs("fsck", "--config", config, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert (
        run_axonfs("fsck", "--config", config, "--repair", "--quick", env=clean_env()).returncode
        == 0
    )
