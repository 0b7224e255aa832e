/* Zeroing on release: every block the library (its Swift code and the
 * Swift runtime linked into it) frees is wiped first, and libcurl is given
 * the same functions, so that no credential outlives the buffer that held
 * it, freed or not. See Sources/CWipe/wipe.c. */
#ifndef DIRECTLINE_WIPE_H
#define DIRECTLINE_WIPE_H

#include <stddef.h>

/* free(), after zeroing the whole block. */
void dlwipe_free(void *block);
/* realloc() that never leaves the old contents behind: the block moves to a
 * fresh one, and the old one is wiped and freed. */
void *dlwipe_realloc(void *block, size_t size);
/* strdup() whose copy dlwipe_free releases. */
char *dlwipe_strdup(const char *text);

#endif
