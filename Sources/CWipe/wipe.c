/* Zeroing on release. The shared object is linked with --wrap=free and
 * --wrap=realloc (Package.swift): every call to free() or realloc() from
 * the objects linked into libdirectline.so (the library's code and the
 * statically linked Swift runtime) lands here. Calls from the host and from
 * other libraries are untouched. libcurl gets the same functions through
 * curl_global_init_mem when the library initialises it.
 *
 * A Swift String or array cannot be wiped by the code that owns it (copies
 * are implicit and the last release frees), so the wipe happens where every
 * copy ends: at free. The cost is a memset of each freed block (under 1% of
 * a send's instructions, docs/performance.md). */
#define _GNU_SOURCE
#include "wipe.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

void __real_free(void *block);
void *__real_realloc(void *block, size_t size);

void dlwipe_free(void *block) {
    if (block == NULL) return;
    /* explicit_bzero: the compiler may not drop the stores as dead. */
    explicit_bzero(block, malloc_usable_size(block));
    __real_free(block);
}

void *dlwipe_realloc(void *block, size_t size) {
    if (block == NULL) return malloc(size);
    if (size == 0) {
        dlwipe_free(block);
        return NULL;
    }
    /* glibc's realloc would free the old block, or the cut-off tail of a
     * shrunk one, without wiping: move to a fresh block instead. */
    size_t old_size = malloc_usable_size(block);
    void *moved = malloc(size);
    if (moved == NULL) return NULL;
    memcpy(moved, block, old_size < size ? old_size : size);
    dlwipe_free(block);
    return moved;
}

char *dlwipe_strdup(const char *text) {
    size_t length = strlen(text) + 1;
    char *copy = malloc(length);
    if (copy != NULL) memcpy(copy, text, length);
    return copy;
}

void __wrap_free(void *block) { dlwipe_free(block); }

void *__wrap_realloc(void *block, size_t size) { return dlwipe_realloc(block, size); }
