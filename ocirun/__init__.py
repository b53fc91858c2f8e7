"""ocirun: an OCI runtime-spec compliant container runtime, a drop-in for runc.

As a library: ``ocirun.Runtime`` and ``ocirun.Container`` (docs/api.md), the
errors in ``ocirun.errors``. They are imported on first use (module
``__getattr__``): ``import ocirun`` is on every command line's path and must
stay this small.
"""

__version__ = "0.1.0"
#: The version of the OCI Runtime Specification this runtime implements.
SPEC_VERSION = "1.3.0"

__all__ = ["Runtime", "Container", "SPEC_VERSION", "__version__"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.runtime import Container, Runtime


def __getattr__(name: str) -> object:
    if name in ("Runtime", "Container"):
        from ocirun import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'ocirun' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"Runtime", "Container"})
