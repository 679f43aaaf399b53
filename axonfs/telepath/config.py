"""What the Telepath options of ``axonfs mount``/``serve`` parse into.

``--telepath-listen tcp://HOST:PORT`` or ``ssl://HOST:PORT`` (repeatable)
adds a network listener; ``ssl://`` needs ``--tls-cert`` (and ``--tls-key``
unless the certificate file holds the key). Like ``--metrics-listen``, a
non-loopback host is refused unless ``--telepath-allow-remote``. The unix
socket needs no option: every daemon serves it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 27492
"""Telepath's own default port, as Synapse's client assumes."""
SUN_PATH_MAX = 107
"""Bytes of a unix socket path (sun_path less its NUL) Synapse's client can connect to."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class TelepathConfig:
    listen: tuple[ListenAddress, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None


def from_options(
    listen: Sequence[str], *, allow_remote: bool, tls_cert: Path | None, tls_key: Path | None
) -> TelepathConfig:
    """Build the config from the options' values.

    Raises:
        ValueError: a malformed URL, a remote host not allowed, ssl without a certificate.
    """
    addresses = tuple(parse_listen(url, allow_remote=allow_remote) for url in listen)
    if any(address.scheme == "ssl" for address in addresses) and tls_cert is None:
        raise ValueError("an ssl:// listener needs --tls-cert")
    return TelepathConfig(addresses, tls_cert, tls_key)


def parse_listen(url: str, *, allow_remote: bool = False) -> ListenAddress:
    """``tcp://HOST:PORT`` or ``ssl://HOST:PORT`` (``[::1]`` for IPv6; port 0: any)."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("tcp", "ssl"):
        raise ValueError(f"expected tcp://HOST:PORT or ssl://HOST:PORT, not {url!r}")
    rest = rest.rstrip("/")
    if rest.startswith("["):
        host, _, port_text = rest[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not host or (port_text and not port_text.isdigit()) or int(port_text or 0) > 65535:
        raise ValueError(f"expected {scheme}://HOST:PORT, not {url!r}")
    if not allow_remote and not _is_loopback(host):
        raise ValueError(
            f"{host} is not a loopback address (allow it with --telepath-allow-remote)"
        )
    return ListenAddress(scheme, host, int(port_text) if port_text else DEFAULT_PORT)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unix_url_problem(path: Path) -> str | None:
    """Why Synapse's client could not reach a unix socket at *path*, or None.

    Its URL parser cuts ``unix://PATH`` at ``:`` (a share name) and ``?``
    (options), and the kernel limits the path to 107 bytes.
    """
    text = os.fspath(path)
    size = len(os.fsencode(text))
    fix = (
        "use a store path without it (a symlink to the store will do) or "
        "--telepath-listen tcp://127.0.0.1:PORT"
    )
    if size > SUN_PATH_MAX:
        return (
            f"the path is {size} bytes, more than the {SUN_PATH_MAX} a unix socket "
            f"allows; use a shorter store path (a symlink to the store will do) or "
            f"--telepath-listen tcp://127.0.0.1:PORT"
        )
    for char, meaning in ((":", "a share name"), ("?", "URL options")):
        if char in text:
            return f"Synapse's URL parser takes {char!r} in the path for {meaning}; {fix}"
    return None
