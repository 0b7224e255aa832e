/* Typed, non-variadic wrappers around libcurl's variadic entry points, so
 * that Swift can call them. Each wrapper fixes the argument type that the
 * option expects. They are the library's private glue, never exported: the
 * ccurl_ prefix keeps them apart from the public dl_ API. */
#ifndef DIRECTLINE_CCURL_SHIM_H
#define DIRECTLINE_CCURL_SHIM_H

#include <curl/curl.h>

typedef size_t (*ccurl_data_fn)(char *buffer, size_t size, size_t count, void *userdata);
typedef int (*ccurl_xferinfo_fn)(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                                   curl_off_t ultotal, curl_off_t ulnow);
typedef int (*ccurl_seek_fn)(void *userdata, curl_off_t offset, int origin);
typedef int (*ccurl_prereq_fn)(void *userdata, char *primary_ip, char *local_ip, int primary_port,
                                 int local_port);
typedef int (*ccurl_debug_fn)(CURL *handle, curl_infotype type, char *data, size_t size, void *userdata);
typedef curl_socket_t (*ccurl_opensocket_fn)(void *userdata, curlsocktype purpose, struct curl_sockaddr *address);

static inline CURLcode ccurl_set_long(CURL *h, CURLoption o, long v) {
    return curl_easy_setopt(h, o, v);
}
static inline CURLcode ccurl_set_off(CURL *h, CURLoption o, curl_off_t v) {
    return curl_easy_setopt(h, o, v);
}
static inline CURLcode ccurl_set_string(CURL *h, CURLoption o, const char *v) {
    return curl_easy_setopt(h, o, v);
}
static inline CURLcode ccurl_set_pointer(CURL *h, CURLoption o, void *v) {
    return curl_easy_setopt(h, o, v);
}
static inline CURLcode ccurl_set_slist(CURL *h, CURLoption o, struct curl_slist *v) {
    return curl_easy_setopt(h, o, v);
}
static inline CURLcode ccurl_set_data_fn(CURL *h, CURLoption o, ccurl_data_fn v) {
    return curl_easy_setopt(h, o, v);
}
static inline CURLcode ccurl_set_xferinfo_fn(CURL *h, ccurl_xferinfo_fn v) {
    return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, v);
}
static inline CURLcode ccurl_set_seek_fn(CURL *h, ccurl_seek_fn v) {
    return curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, v);
}
static inline CURLcode ccurl_set_debug_fn(CURL *h, ccurl_debug_fn v) {
    return curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, v);
}
static inline CURLcode ccurl_set_opensocket_fn(CURL *h, ccurl_opensocket_fn v) {
    return curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, v);
}
static inline CURLcode ccurl_set_prereq_fn(CURL *h, ccurl_prereq_fn v) {
    return curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, v);
}
/* The value of the last `name` header of the final response, or NULL. Valid
 * until the handle's next transfer. */
static inline const char *ccurl_last_header(CURL *h, const char *name) {
    struct curl_header *first = NULL;
    if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &first) != CURLHE_OK || first == NULL) return NULL;
    struct curl_header *last = first;
    if (first->amount > 1 &&
        curl_easy_header(h, name, first->amount - 1, CURLH_HEADER, -1, &last) != CURLHE_OK) return NULL;
    return last->value;
}
static inline CURLcode ccurl_get_long(CURL *h, CURLINFO i, long *v) {
    return curl_easy_getinfo(h, i, v);
}
static inline CURLcode ccurl_get_off(CURL *h, CURLINFO i, curl_off_t *v) {
    return curl_easy_getinfo(h, i, v);
}

/* libcurl's WebSocket API (8.11 and later, when built with ws/wss) is looked
 * up at run time, so that the library builds against and loads with a
 * libcurl that lacks it (Debian 12's 7.88). These mirror its declarations
 * with our own names; their layout and values are libcurl's stable ABI
 * (curl/websockets.h). */
struct ccurl_ws_frame {
    int age;
    int flags;
    curl_off_t offset;
    curl_off_t bytesleft;
    size_t len;
};
enum {
    CCURL_WS_TEXT = 1 << 0,
    CCURL_WS_BINARY = 1 << 1,
    CCURL_WS_CONT = 1 << 2,
    CCURL_WS_CLOSE = 1 << 3,
    CCURL_WS_PING = 1 << 4,
    CCURL_WS_PONG = 1 << 6
};
typedef CURLcode (*ccurl_ws_send_fn)(CURL *curl, const void *buffer, size_t buflen, size_t *sent,
                                     curl_off_t fragsize, unsigned int flags);
typedef const struct ccurl_ws_frame *(*ccurl_ws_meta_fn)(CURL *curl);

static inline CURLcode ccurl_ws_send(ccurl_ws_send_fn fn, CURL *curl, const void *buffer, size_t length,
                                     size_t *sent, unsigned int flags) {
    return fn(curl, buffer, length, sent, 0, flags);
}
static inline const struct ccurl_ws_frame *ccurl_ws_meta(ccurl_ws_meta_fn fn, CURL *curl) {
    return fn(curl);
}
/* Where libcurl's curl_easy_init is, as this library calls it (for dladdr). */
static inline void *ccurl_easy_init_address(void) {
    return (void *)&curl_easy_init;
}
/* The features and protocols of the libcurl in use. */
static inline unsigned int ccurl_version_num(void) {
    return curl_version_info(CURLVERSION_NOW)->version_num;
}
static inline const char *const *ccurl_protocols(void) {
    return curl_version_info(CURLVERSION_NOW)->protocols;
}

#endif
