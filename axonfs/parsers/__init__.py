"""Streaming readers over stored blobs, as the Synapse Axon offers them.

``readlines``, ``jsonlines``, ``csvrows`` and ``iter_msgpack`` (the
reference's ``iterMpkFile``) run off the trio thread and stream row by row;
none loads a whole blob. See :mod:`axonfs.parsers.readers`.
"""

from axonfs.parsers.readers import csvrows, iter_msgpack, jsonlines, readlines

__all__ = ["csvrows", "iter_msgpack", "jsonlines", "readlines"]
