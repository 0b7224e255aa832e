/* C glue for what Swift's Glibc module does not show (GNU extensions). Private
 * to the library, never exported: the csystem_ prefix keeps it apart from the
 * public dl_ API. */
#ifndef DIRECTLINE_CSYSTEM_H
#define DIRECTLINE_CSYSTEM_H

/* The file name of the shared object that holds `address` (dladdr), or NULL.
 * Valid while that object stays loaded. */
const char *csystem_object_path(const void *address);

#endif
