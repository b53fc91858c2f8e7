#ifndef OCIRUN_SHIM_H
#define OCIRUN_SHIM_H
#include <stdint.h>
/* All declarations shared with Python live in shim_cdef.h (also cffi's cdef). */
#include "shim_cdef.h"
#endif
