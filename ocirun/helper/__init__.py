"""The warm helper: a Python process with all of ocirun imported that forks a
worker per call of the `ocirun` front end (docs/helper.md).

- :mod:`ocirun.helper.protocol`: the frames of the front end <-> worker protocol
  (the C side is ocirun/frontend/protocol.h).
- :mod:`ocirun.helper.paths`: where a helper's socket, lock and status file live.
- :mod:`ocirun.helper.server`: the helper process (``ocirun helper serve``).
- :mod:`ocirun.helper.worker`: one call: adopt the caller's context, run the CLI.
- :mod:`ocirun.helper.context`: the caller's credentials, namespaces, environment,
  stdio, fds, as /proc shows them, and adopting them.
- :mod:`ocirun.helper.frontend`: the worker's :mod:`ocirun.parent`: clones, waits
  and signals done by the calling front end.
- :mod:`ocirun.helper.cli`: ``ocirun helper status|stop|serve``.
"""
