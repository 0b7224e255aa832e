/* See include/csystem.h. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

#include "csystem.h"

const char *csystem_object_path(const void *address) {
    Dl_info info;
    if (address == NULL || dladdr(address, &info) == 0) return NULL;
    return info.dli_fname;
}
