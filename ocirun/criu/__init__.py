"""CRIU, for ``checkpoint`` and ``restore``: its RPC messages (``rpc``), a client of
``criu swrk`` (``swrk``), what this host's CRIU can do (``host``) and the options
a container's dump and restore need (``options``). See docs/checkpoint.md.

Nothing here is imported by the other verbs.
"""
