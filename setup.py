"""Only here for cffi: the C shim is compiled at install time (API mode)."""
from setuptools import setup

setup(cffi_modules=["ocirun/shim/build_shim.py:ffibuilder"])
