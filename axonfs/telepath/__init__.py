"""Telepath, Synapse's RPC protocol, as a third front end of the daemon's Axon.

Beside the FUSE tree and ``ctl.sock``, the daemon serves the same
:class:`~axonfs.axon.Axon` to Synapse's own client, its axon tools and a
Cortex (``axon: unix://<store>/run/telepath.sock``). One module per concern:

* :mod:`~axonfs.telepath.wire`: the msgpack message stream and the error form;
* :mod:`~axonfs.telepath.service`: the objects and methods a client can call;
* :mod:`~axonfs.telepath.server`: listeners, admission, sessions, dispatch;
* :mod:`~axonfs.telepath.users`: the users of network listeners (scrypt);
* :mod:`~axonfs.telepath.config`, :mod:`~axonfs.telepath.command`: the
  daemon's options and ``axonfs passwd``.

axonfs never imports Synapse: the protocol is implemented here from its
behaviour, and Synapse is only a test dependency, in a virtualenv of its own.
"""
