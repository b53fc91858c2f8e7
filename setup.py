"""Only here for what pyproject.toml cannot say: the C shim (cffi, API mode) and the
`ocirun` front end (a C executable, ocirun/frontend/) are compiled at install time."""

import importlib.util
import os

from setuptools import setup

# setuptools has no build_scripts of its own: distutils' (setuptools' copy, once imported)
from distutils.command.build_scripts import build_scripts  # noqa: E402, I001

_spec = importlib.util.spec_from_file_location(
    "build_frontend", os.path.join(os.path.dirname(os.path.abspath(__file__)), "ocirun", "frontend",
                                   "build_frontend.py"))
build_frontend = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_frontend)


class BuildScripts(build_scripts):
    """The scripts (bin/ocirun-direct, the Python launcher of the direct path), and
    the `ocirun` command compiled next to them."""

    def run(self):
        super().run()
        self.mkpath(self.build_dir)
        build_frontend.compile_frontend(os.path.join(self.build_dir, "ocirun"))


setup(cffi_modules=["ocirun/shim/build_shim.py:ffibuilder"], cmdclass={"build_scripts": BuildScripts})
