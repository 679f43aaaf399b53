"""axonfs: a content-addressed blob store (the Synapse Axon API) as a FUSE filesystem."""

__version__ = "0.1.0"
