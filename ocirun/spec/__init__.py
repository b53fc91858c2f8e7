"""config.json: loading, schema check, semantic rules, the typed model, `spec` and `validate`.

Import the submodules you need (``ocirun.spec.load``, ``ocirun.spec.model`` …);
this package imports nothing, so ``ocirun state`` never pays for the validator.
"""
