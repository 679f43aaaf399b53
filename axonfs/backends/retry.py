"""Retries with capped exponential backoff for transient backend failures.

A remote backend's request fails now and then for reasons that go away by
themselves: a dropped connection, a timeout, a 503 "slow down", a 500 from one
overloaded node. :func:`call_with_retry` repeats such a call a few times with
"full jitter" backoff (a random delay up to ``base * 2**attempt``, capped), so
many threads retrying at once do not hammer the server in lock-step. Anything
else (access denied, no such key, a bad request) fails at once: repeating it
would only delay the error.

Blocking: the delays are ``time.sleep``; call this from worker threads only.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERROR_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry.

    The defaults give up after about 10 s of trying (5 attempts).
    """

    attempts: int = 5
    """Total tries, the first one included (1: no retry)."""
    base_delay: float = 0.2
    """Upper bound of the first backoff, in seconds; doubled per retry."""
    max_delay: float = 5.0
    """Cap of any single backoff, in seconds."""

    def delay(self, retry: int) -> float:
        """Return the sleep before retry number *retry* (0-based), with full jitter."""
        return random.uniform(0.0, min(self.max_delay, self.base_delay * (2**retry)))


class TransientError(Exception):
    """Raised by a call to ask for a retry (e.g. a body shorter than announced)."""


def is_transient(exc: BaseException) -> bool:
    """True if *exc* is the kind of S3/HTTP failure that may pass when retried."""
    if isinstance(
        exc,
        TransientError
        | BotoConnectionError
        | HTTPClientError
        | IncompleteReadError
        | ResponseStreamingError
        | Urllib3Error
        | ConnectionError
        | TimeoutError,
    ):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error.get("Code") in TRANSIENT_ERROR_CODES or status in TRANSIENT_HTTP_STATUS
    return False


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Return ``fn()``, retrying it while it fails with a transient error.

    Args:
        fn: the call; it must be safe to repeat (S3 requests are idempotent).
        policy: attempts and backoff.
        what: names the operation (and blob) in log lines.
        on_retry: called with the exception before each retry (for counters).

    Raises:
        The last exception when attempts run out, or at once when it is not
        transient.
    """
    for retry in range(policy.attempts):
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or retry + 1 >= policy.attempts:
                if retry:
                    log.warning("%s: giving up after %d attempts: %s", what, retry + 1, exc)
                raise
            delay = policy.delay(retry)
            log.info(
                "%s: transient failure (%s), retry %d/%d in %.2fs",
                what,
                exc,
                retry + 1,
                policy.attempts - 1,
                delay,
            )
            if on_retry is not None:
                on_retry(exc)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
