"""The subtrees of the mount, one handler each (see :mod:`axonfs.tree.base`)."""
