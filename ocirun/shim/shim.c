int ocirun_shim_version(void) { return 1; }
