/* Test-side access to the emulator's control API (/_emulator/...), over
 * libcurl directly so that the library under test is not involved. */
#ifndef EMULATOR_CONTROL_H
#define EMULATOR_CONTROL_H

#include <stddef.h>

/* POSTs `json` (may be NULL) to base_url + path; returns the HTTP status. */
long emu_post(const char *base_url, const char *path, const char *json);
/* GETs base_url + path; returns a malloc'd body (caller frees) or NULL. */
char *emu_get(const char *base_url, const char *path);
/* GETs base_url + path; returns a malloc'd body and its length in *length. */
char *emu_get_bytes(const char *base_url, const char *path, size_t *length);
/* How many requests the emulator logged since the last reset. */
int emu_request_count(const char *base_url);
/* How many distinct TCP connections those requests came on. */
int emu_connection_count(const char *base_url);
/* Occurrences of `needle` in `haystack`. */
int count_occurrences(const char *haystack, const char *needle);
/* Whether `text` (may be NULL) contains `needle`. */
int contains(const char *text, const char *needle);
/* Seconds on the monotonic clock. */
double now_seconds(void);
/* Copies the string value of "key" from compact JSON into `buffer`; 0 when
 * the key is missing or not a string (then `buffer` is empty). */
int json_string(const char *json, const char *key, char *buffer, size_t size);

#endif
