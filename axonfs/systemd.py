"""sd_notify without a dependency: tell systemd (``Type=notify``) how we are.

Messages go to the datagram socket named by ``$NOTIFY_SOCKET``; without it
(not started by systemd) :func:`notify` does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send *message* (``READY=1``, ``STOPPING=1``, ``STATUS=...``) to systemd.

    Returns:
        True if it was sent, False when not running under systemd or on error.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", address, exc)
        return False
    return True
