"""The axonfs exception tree.

Every error the store raises on purpose is an :class:`AxonError`. Each class
carries a stable wire ``code`` (its name, as the Synapse Axon spells it, so a
client can re-raise the same class), the ``errno`` the FUSE adapter answers
with, and keyword fields that travel with it::

    AxonError
    ├── NoSuchFile        the blob is not in the store            ENOENT
    ├── BadArg            an argument is out of range or malformed EINVAL
    ├── BadDataValu       the blob's content cannot be parsed      EIO
    │   └── BadJsonText   a JSON line does not parse               EIO
    ├── HitLimit          max:bytes / max:count reached            ENOSPC
    ├── StoreLocked       another process has the store open       EBUSY
    ├── StoreUnavailable  the store directory cannot be used       EROFS, EACCES...
    ├── StoreCorrupt      index and blobs disagree                 EIO
    ├── MountFailed       the kernel would not mount (/dev/fuse)   EIO
    └── BackendError      the blob backend failed                  EIO
        └── BlobMissing   the index names a blob the backend lacks EIO

:func:`to_wire` and :func:`from_wire` turn an error into the dictionary that
crosses the control socket and back. Code written against a Synapse Axon
proxy keeps working: the class names are Synapse's, and ``exc.get("mesg")``
and ``exc.errinfo`` behave as on a ``SynErr``.
"""

from __future__ import annotations

import errno as errno_codes
from pathlib import Path
from typing import Any


class AxonError(Exception):
    """Base of every error axonfs raises deliberately."""

    errno: int = errno_codes.EIO

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    @property
    def code(self) -> str:
        return type(self).__name__

    @property
    def errinfo(self) -> dict[str, Any]:
        """The fields with the message as ``mesg``: what a Synapse ``SynErr`` carries."""
        return {**self.fields, "mesg": self.message}

    def get(self, key: str, default: Any = None) -> Any:
        """A field (``"mesg"``: the message), as ``SynErr.get`` does."""
        return self.errinfo.get(key, default)

    def __str__(self) -> str:
        return self.message


class NoSuchFile(AxonError):
    errno = errno_codes.ENOENT


class BadArg(AxonError):
    errno = errno_codes.EINVAL


class BadDataValu(AxonError):
    errno = errno_codes.EIO


class BadJsonText(BadDataValu):
    pass


class HitLimit(AxonError):
    errno = errno_codes.ENOSPC


class StoreLocked(AxonError):
    errno = errno_codes.EBUSY


class StoreUnavailable(AxonError):
    """The store directory is missing, not a store, read-only or not ours to write.

    Carries the errno of the system call that failed (EIO if none did).
    """

    def __init__(self, message: str, errno: int = errno_codes.EIO, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.errno = errno  # per instance: the cause varies


def store_unavailable(store: Path, exc: OSError, doing: str) -> StoreUnavailable:
    """Say in one sentence why *store* could not be used, and what to do.

    *doing* says what failed ("create", "open", "write to").
    """
    cause = exc.errno or errno_codes.EIO
    if cause == errno_codes.EROFS:
        message = (
            f"the store {store} is on a read-only filesystem; remount it read-write "
            "('axonfs fsck' without --repair only reads it)"
        )
    elif cause in (errno_codes.EACCES, errno_codes.EPERM):
        message = (
            f"cannot {doing} the store {store}: permission denied; run as its owner "
            "or choose another --store"
        )
    else:
        message = (
            f"cannot {doing} the store {store}: {exc.strerror or exc}; check --store "
            "(or $AXONFS_STORE)"
        )
    return StoreUnavailable(message, errno=cause, store=str(store))


class StoreCorrupt(AxonError):
    errno = errno_codes.EIO


class MountFailed(AxonError):
    """The mount could not be made (``/dev/fuse`` unusable, the kernel refused)."""

    errno = errno_codes.EIO


class BackendError(AxonError):
    errno = errno_codes.EIO


class BlobMissing(BackendError):
    pass


def _all_classes() -> dict[str, type[AxonError]]:
    found: dict[str, type[AxonError]] = {}
    pending: list[type[AxonError]] = [AxonError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def to_wire(exc: AxonError) -> dict[str, Any]:
    """Return the wire form of *exc*: ``{"code", "message", **fields}``."""
    return {"code": exc.code, "message": exc.message, **exc.fields}


def from_wire(info: dict[str, Any]) -> AxonError:
    """Rebuild the exception :func:`to_wire` described (AxonError if unknown)."""
    fields = dict(info)
    code = str(fields.pop("code", "AxonError"))
    message = str(fields.pop("message", code))
    cls = _all_classes().get(code, AxonError)
    return cls(message, **fields)
