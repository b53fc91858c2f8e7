"""Seccomp: ``linux.seccomp`` → BPF in the parent (libseccomp via cffi), loaded by the C child.

Public surface:

* :func:`compile_filter` (``compile.py``) → :class:`CompiledFilter` (bpf, flags, uses_notify)
* :class:`FilterCache` (``cache.py``), content-addressed, ``DEFAULT_CACHE_DIR``
* :func:`features` (``features.py``) → the features document's ``linux.seccomp``
* :mod:`ocirun.seccomp.notify`: hand the listener fd + state to ``listenerPath``

Importing this package does not load libseccomp or cffi; compiling does.
"""

from __future__ import annotations

from ocirun.seccomp.cache import DEFAULT_CACHE_DIR, FilterCache
from ocirun.seccomp.compile import CompiledFilter, SeccompConfigError, compile_filter
from ocirun.seccomp.features import features

__all__ = [
    "DEFAULT_CACHE_DIR", "CompiledFilter", "FilterCache", "SeccompConfigError",
    "compile_filter", "features",
]
