"""The client's streams as what they are at run time, for tests that stop reading early."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

T = TypeVar("T")


def closable(stream: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """*stream* as the async generator it is, so a test can ``aclose()`` it.

    The client declares its streaming calls as returning ``AsyncIterator``;
    they are async generators, which is what lets a caller that stops early
    close the stream (and so cancel the daemon's work). Fails if *stream* is not one.
    """
    assert isinstance(stream, AsyncGenerator), type(stream)
    return stream
