#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "emulator_control.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct buffer {
    char *data;
    size_t length;
};

static size_t collect(char *chunk, size_t size, size_t count, void *userdata) {
    struct buffer *buffer = userdata;
    size_t total = size * count;
    char *grown = realloc(buffer->data, buffer->length + total + 1);
    if (grown == NULL) return 0;
    buffer->data = grown;
    memcpy(buffer->data + buffer->length, chunk, total);
    buffer->length += total;
    buffer->data[buffer->length] = '\0';
    return total;
}

static long request(const char *base_url, const char *path, const char *post_json, char **out_body,
                    size_t *out_length) {
    char url[1024];
    struct buffer body = {NULL, 0};
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    long status = 0;
    CURL *curl = curl_easy_init();
    snprintf(url, sizeof url, "%s%s", base_url, path);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    if (post_json != NULL) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post_json);
    if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    if (out_length != NULL) *out_length = body.length;
    if (out_body != NULL) {
        *out_body = body.data;
    } else {
        free(body.data);
    }
    return status;
}

long emu_post(const char *base_url, const char *path, const char *json) {
    return request(base_url, path, json != NULL ? json : "", NULL, NULL);
}

char *emu_get(const char *base_url, const char *path) {
    char *body = NULL;
    request(base_url, path, NULL, &body, NULL);
    return body;
}

char *emu_get_bytes(const char *base_url, const char *path, size_t *length) {
    char *body = NULL;
    request(base_url, path, NULL, &body, length);
    return body;
}

int count_occurrences(const char *haystack, const char *needle) {
    int count = 0;
    size_t step = strlen(needle);
    if (haystack == NULL || step == 0) return 0;
    for (const char *at = strstr(haystack, needle); at != NULL; at = strstr(at + step, needle)) count++;
    return count;
}

int contains(const char *text, const char *needle) {
    return text != NULL && strstr(text, needle) != NULL;
}

double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int json_string(const char *json, const char *key, char *buffer, size_t size) {
    char pattern[128];
    buffer[0] = '\0';
    if (json == NULL) return 0;
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *at = strstr(json, pattern);
    if (at == NULL) return 0;
    at += strlen(pattern);
    size_t length = strcspn(at, "\"");
    if (at[length] != '"' || length + 1 > size) return 0;
    memcpy(buffer, at, length);
    buffer[length] = '\0';
    return 1;
}

int emu_request_count(const char *base_url) {
    char *log = emu_get(base_url, "/_emulator/requests");
    int count = count_occurrences(log, "\"method\"");
    free(log);
    return log == NULL ? -1 : count;
}

int emu_connection_count(const char *base_url) {
    char *log = emu_get(base_url, "/_emulator/requests");
    long seen[256];
    int distinct = 0;
    const char *key = "\"connection\":";
    for (const char *at = log != NULL ? strstr(log, key) : NULL; at != NULL; at = strstr(at + 1, key)) {
        long id = strtol(at + strlen(key), NULL, 10);
        int known = 0;
        for (int i = 0; i < distinct; i++) known |= seen[i] == id;
        if (!known && distinct < 256) seen[distinct++] = id;
    }
    free(log);
    return distinct;
}
