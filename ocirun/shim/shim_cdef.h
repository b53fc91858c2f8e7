int ocirun_shim_version(void);
