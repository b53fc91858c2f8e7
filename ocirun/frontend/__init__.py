"""The `ocirun` command's C front end (frontend.c, protocol.h), compiled at install by setup.py."""
