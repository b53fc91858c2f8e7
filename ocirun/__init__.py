"""ocirun: an OCI runtime-spec compliant container runtime, a drop-in for runc."""

__version__ = "0.1.0"
#: The version of the OCI Runtime Specification this runtime implements.
SPEC_VERSION = "1.3.0"
