"""The exception tree: stable wire codes and a lossless wire form."""

from __future__ import annotations

import errno

import pytest

from axonfs import errors
from axonfs.errors import AxonError, from_wire, to_wire

CLASSES = [
    errors.NoSuchFile,
    errors.BadArg,
    errors.BadDataValu,
    errors.BadJsonText,
    errors.HitLimit,
    errors.StoreLocked,
    errors.StoreCorrupt,
    errors.BackendError,
    errors.BlobMissing,
]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_wire_round_trip(cls: type[AxonError]) -> None:
    exc = cls("something happened", sha256="ab" * 32, size=3)
    wire = to_wire(exc)
    assert wire == {
        "code": cls.__name__,
        "message": "something happened",
        "sha256": "ab" * 32,
        "size": 3,
    }
    back = from_wire(wire)
    assert type(back) is cls
    assert (back.message, back.fields, str(back)) == (exc.message, exc.fields, str(exc))


def test_codes_and_errnos_the_reference_and_fuse_expect() -> None:
    assert errors.NoSuchFile("x").code == "NoSuchFile"
    assert errors.HitLimit("x").code == "HitLimit"
    assert errors.NoSuchFile.errno == errno.ENOENT
    assert errors.BadArg.errno == errno.EINVAL
    assert errors.HitLimit.errno == errno.ENOSPC
    assert errors.StoreLocked.errno == errno.EBUSY
    assert issubclass(errors.BlobMissing, errors.BackendError)
    assert issubclass(errors.BadJsonText, errors.BadDataValu)


def test_unknown_codes_come_back_as_the_base_class() -> None:
    back = from_wire({"code": "SomethingNew", "message": "from a newer daemon"})
    assert type(back) is AxonError and back.message == "from a newer daemon"
