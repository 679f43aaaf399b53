"""Telepath users: names and salted scrypt hashes in ``<store>/telepath/users.json``.

Network listeners admit a client that names a user of this file with its
password (``tcp://NAME:PASSWORD@HOST:PORT/``). ``axonfs passwd`` writes the
file; the daemon reads it for every login, so a change takes effect for new
connections while it runs, and nothing is cached that could go stale.

The file holds, per user, the scrypt parameters, a random 16-byte salt and
the derived key (hex); it is replaced atomically (write, fsync, rename) with
mode 0600 inside a 0700 directory. A password never reaches the log.

Concurrency: :func:`verify` derives a key (tens of milliseconds of CPU, 16 MiB
of memory), so the server calls it through ``trio.to_thread`` under a limiter
of its own; the rest is small file I/O run where it is called.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USERS_FILE = Path("telepath") / "users.json"
FORMAT_VERSION = 1

SCRYPT_N = 1 << 14
SCRYPT_R = 8
SCRYPT_P = 1
KEY_BYTES = 32
SALT_BYTES = 16
NAME_MAX = 128


class UsersFileError(ValueError):
    """The users file is unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    salt: bytes
    key: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def create(cls, password: str) -> PasswordHash:
        salt = secrets.token_bytes(SALT_BYTES)
        return cls(salt, _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))

    def matches(self, password: str) -> bool:
        candidate = _derive(password, self.salt, self.n, self.r, self.p)
        return hmac.compare_digest(candidate, self.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": "scrypt",
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": self.salt.hex(),
            "key": self.key.hex(),
        }

    @classmethod
    def from_json(cls, data: Any) -> PasswordHash:
        try:
            if data["scheme"] != "scrypt":
                raise UsersFileError(f"unknown password scheme {data['scheme']!r}")
            return cls(
                bytes.fromhex(data["salt"]),
                bytes.fromhex(data["key"]),
                int(data["n"]),
                int(data["r"]),
                int(data["p"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsersFileError(f"malformed user entry: {exc}") from None


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem: OpenSSL's default (32 MiB) is just enough for n=2**14, r=8; be explicit.
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=64 << 20,
        dklen=KEY_BYTES,
    )


def users_path(store: Path) -> Path:
    return store / USERS_FILE


def validate_name(name: str) -> None:
    """User names travel in URLs before ``:`` and ``@``: keep them plain."""
    if (
        not name
        or len(name) > NAME_MAX
        or any(c in name for c in ":@/?#%")
        or not name.isprintable()
        or name != name.strip()
    ):
        raise ValueError(
            f"invalid user name {name!r}: use letters, digits and . _ - "
            f"(at most {NAME_MAX} characters)"
        )


def load(store: Path) -> dict[str, PasswordHash]:
    """The users of *store* (none if the file does not exist)."""
    try:
        text = users_path(store).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsersFileError(f"cannot read {users_path(store)}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        entries = data["users"]
        if data.get("version") != FORMAT_VERSION or not isinstance(entries, dict):
            raise UsersFileError(f"unsupported users file version {data.get('version')!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsersFileError(f"{users_path(store)} is malformed: {exc}") from None
    return {str(name): PasswordHash.from_json(entry) for name, entry in entries.items()}


def save(store: Path, users: dict[str, PasswordHash]) -> None:
    """Replace the users file atomically (mode 0600)."""
    path = users_path(store)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {
        "version": FORMAT_VERSION,
        "users": {name: users[name].to_json() for name in sorted(users)},
    }
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def set_password(store: Path, name: str, password: str) -> None:
    validate_name(name)
    users = load(store)
    users[name] = PasswordHash.create(password)
    save(store, users)


def delete_user(store: Path, name: str) -> bool:
    """Remove *name*; False if there was no such user."""
    users = load(store)
    if users.pop(name, None) is None:
        return False
    save(store, users)
    return True


def verify(store: Path, name: str, password: object) -> bool:
    """Whether *name* is a user of *store* and *password* is theirs.

    Reads the file each time (logins are rare; edits apply at once). A
    missing user still costs one key derivation, so timing does not tell
    which names exist.
    """
    entry = load(store).get(name)
    if not isinstance(password, str):
        return False
    if entry is None:
        PasswordHash.create(password)
        return False
    return entry.matches(password)
