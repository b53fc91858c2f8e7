#ifndef OCIRUN_SHIM_H
#define OCIRUN_SHIM_H
int ocirun_shim_version(void);
#endif
