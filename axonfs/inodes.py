"""The mount's inode numbers: which ranges each subtree of the tree owns.

64 bits, stable for the life of the store except /incoming's:

============================== =========================================
``1`` ... ``5``                 root, by-sha256, incoming, history,
                                history.log
``DAY_BASE + day``              /history/<day> (days since 1970-01-01)
``INCOMING_BASE + n``           entries below /incoming (per daemon run)
``BLOB_BASE + indx``            /by-sha256/<hex>; *indx* is the blob's
                                sequence number in the index
``LINK_BASE + indx``            the blob's /history symlink
============================== =========================================

A new subtree takes numbers no other range holds (``6`` up to ``DAY_BASE``
are free) and declares them in its handler's ``inodes``.
"""

from __future__ import annotations

ROOT_INODE = 1
BY_SHA256_INODE = 2
INCOMING_INODE = 3
HISTORY_INODE = 4
HISTORY_LOG_INODE = 5
DAY_BASE = 1 << 24
INCOMING_BASE = 1 << 32
BLOB_BASE = 1 << 40
LINK_BASE = 1 << 52
INODE_END = 1 << 64
