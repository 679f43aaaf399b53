"""Byte counts as people write them: ``512``, ``64M``, ``1G``, ``10GiB``.

Every option that takes a size (``--max-bytes``, ``--cache-size``,
``--wget-max-bytes``, ``--s3-part-size``) parses it here, so each takes the
same units, on the command line, in ``-o`` and in the config file.
"""

from __future__ import annotations

import argparse

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
"""Binary multiples: ``1G`` is 2**30 bytes, as ``df -h`` and ``truncate -s`` count."""


def parse_size(text: str) -> int:
    """Parse a byte count with an optional binary suffix (K, M, G, T, P; ``iB``/``B`` optional).

    Raises:
        ValueError: *text* is not a non-negative whole number of bytes or units.
    """
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    suffix = value[-1:] if value[-1:] in UNITS else ""
    number = value[: len(value) - len(suffix)].strip()
    if not number.isdigit():
        raise ValueError(f"not a byte count: {text!r} (e.g. 4096, 512M, 1G)")
    return int(number) * UNITS[suffix]


def size_type(text: str) -> int:
    """:func:`parse_size` as an argparse ``type=``."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
