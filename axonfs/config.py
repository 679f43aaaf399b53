"""Defaults and the paths derived from them, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_STORE = "AXONFS_STORE"


def default_store() -> Path:
    """``$AXONFS_STORE``, else ``$XDG_DATA_HOME/axonfs`` (``~/.local/share/axonfs``)."""
    if env := os.environ.get(ENV_STORE):
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "axonfs"


def control_socket(store: Path) -> Path:
    """Where the daemon of *store* listens: ``<store>/run/ctl.sock``.

    ``<store>/run`` is mode 0700, so only the owner (and root) can reach it.
    """
    return store / "run" / "ctl.sock"


LOG_NAME = "axonfs.log"
"""The log of a detached daemon, in its store: ``<store>/axonfs.log``."""

MOUNT_SOCKET_XATTR = "user.axonfs.socket"
"""Extended attribute on a mount's root naming its daemon's control socket."""

WGET_MAX_BYTES = 4 << 30
"""Default cap of one ``wget`` download (``--wget-max-bytes``; 0: no cap)."""


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """The daemon's settings for the calls that reach the network (wget, wput, postfiles)."""

    http_proxy: str | None = None
    """``--http-proxy``: the proxy of a call whose ``proxy`` argument is True or None."""
    max_bytes: int = WGET_MAX_BYTES
    """``--wget-max-bytes``: the most one ``wget`` stores (0: no cap)."""
