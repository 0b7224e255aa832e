/* libFuzzer target over the C API of libdirectline (see docs/fuzzing.md).
 *
 * Input format, kept readable so that the corpus is plain text:
 *
 *   byte 0   the mode: which entry points the input drives (the mode_*
 *            functions; see LLVMFuzzerTestOneInput and docs/fuzzing.md)
 *   byte 1   flags, low four bits (so '0'..'9' and ':'..'?' read well):
 *              1  the network client speaks Direct Line 1.1 (else 3.0)
 *              2  the network client holds a token (else a secret)
 *              4  the conversation is opened with a token of its own that
 *                 expires (so the refresher schedules it)
 *              8  a progress callback is set on the conversation
 *   byte 2   '\n', which starts the first field
 *   rest     fields separated by '\n'; the last field of a mode takes the
 *            rest of the input, newlines and NULs included, so JSON may be
 *            pretty-printed there and upload data may be binary.
 *            A field that is not there (no newline before it) is NULL.
 *
 * Every call that could reach the network goes to a client whose endpoint is
 * http://127.0.0.1:9 (nothing listens there: connection refused at once)
 * with retries off and short timeouts. Clients built from fuzzed configs
 * only ever make calls that send nothing.
 *
 * After every call the documented invariants of include/directline.h and
 * docs/conventions.md are checked, and any breach aborts, which libFuzzer
 * reports as a crash with the input that caused it:
 *  - the status is a known dl_status, one the function documents, never
 *    DL_ERR_INTERNAL and never DL_OK for a request that must have failed;
 *  - out_json is always written; on DL_OK it is a JSON object, on error the
 *    error JSON with the same status and name; a refused argument was never
 *    sent ("attempts": 0, "delivery": "not_sent");
 *  - on error out_client / out_conversation are NULL;
 *  - no output contains the client's secret, and only dl_conversation_state
 *    contains a token;
 *  - freed, forged and wrong-kind handles get DL_ERR_INVALID_HANDLE;
 *  - dl_conversation_state's output opens again with dl_conversation_open
 *    and gives the same state back;
 *  - the log callback (at DL_LOG_DEBUG for every input) gets lines of UTF-8
 *    without a newline, at the levels asked for, without secret or token;
 *    callbacks that call back into the library get DL_ERR_REENTRANT;
 *  - every string is freed with dl_string_free and every handle freed, so
 *    LeakSanitizer (-detect_leaks=1) sees any leak of the library's.
 * docs/fuzzing.md lists the modes and the checks in full.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "directline.h"

#define SECRET "fzSECRETq7Kx3Vb9Lm2Np"
#define CLIENT_TOKEN "fzCLIENTTOKENw4Hj8Rt6"
#define CONV_TOKEN "fzCONVTOKENa9Bs5Qe3"
#define ENDPOINT "http://127.0.0.1:9/fuzz"
#define FIXTURES "fz-fixtures"

#define NSTATUS 23
#define BIT(s) (1u << (s))
#define NETWORKY (BIT(DL_ERR_NETWORK) | BIT(DL_ERR_TIMEOUT))

static char *const UNWRITTEN = (char *)"unwritten";

/* ------------------------------------------------------------------ */
/* The input being run, for the checks that depend on it.              */

static const uint8_t *g_data;
static size_t g_size;
static int g_flags;
static const char *g_mode_name = "?";

static int input_contains(const char *needle) {
    return g_size && memmem(g_data, g_size, needle, strlen(needle)) != NULL;
}

static size_t input_count(const char *needle) {
    size_t count = 0, length = strlen(needle);
    const uint8_t *at = g_data, *end = g_data + g_size;
    while (length && at < end) {
        const uint8_t *hit = memmem(at, (size_t)(end - at), needle, length);
        if (!hit) break;
        count++;
        at = hit + 1;
    }
    return count;
}

static void fail(const char *function, int32_t status, const char *out, const char *fmt, ...) {
    va_list args;
    fprintf(stderr, "\n==fuzz_api== INVARIANT BROKEN in %s (mode %s, flags %d): ", function, g_mode_name, g_flags);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\n==fuzz_api== status %d (%s)\n==fuzz_api== out_json: %s\n", status,
            dl_status_name(status), out == UNWRITTEN ? "(not written)" : out ? out : "(NULL)");
    abort();
}

/* ------------------------------------------------------------------ */
/* A strict RFC 8259 validator for what the library hands out.         */

typedef struct {
    const unsigned char *p, *end;
    int depth;
} json_cursor;

static void json_ws(json_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int json_value(json_cursor *c);

static int json_hex4(json_cursor *c, unsigned *value) {
    *value = 0;
    for (int i = 0; i < 4; i++) {
        if (c->p >= c->end) return 0;
        unsigned char h = *c->p++;
        *value <<= 4;
        if (h >= '0' && h <= '9') *value |= h - '0';
        else if (h >= 'a' && h <= 'f') *value |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') *value |= h - 'A' + 10;
        else return 0;
    }
    return 1;
}

/* One UTF-8 sequence: no overlong forms, no surrogates, at most U+10FFFF. */
static int json_utf8(json_cursor *c) {
    unsigned char b = *c->p;
    int extra;
    unsigned cp, min;
    if (b < 0x80) { c->p++; return 1; }
    if ((b & 0xE0) == 0xC0) { extra = 1; cp = b & 0x1F; min = 0x80; }
    else if ((b & 0xF0) == 0xE0) { extra = 2; cp = b & 0x0F; min = 0x800; }
    else if ((b & 0xF8) == 0xF0) { extra = 3; cp = b & 0x07; min = 0x10000; }
    else return 0;
    if (c->end - c->p <= extra) return 0;
    for (int i = 1; i <= extra; i++) {
        if ((c->p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (c->p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    c->p += extra + 1;
    return 1;
}

static int json_string(json_cursor *c) {
    if (c->p >= c->end || *c->p != '"') return 0;
    c->p++;
    while (c->p < c->end) {
        unsigned char b = *c->p;
        if (b == '"') { c->p++; return 1; }
        if (b < 0x20) return 0;
        if (b == '\\') {
            c->p++;
            if (c->p >= c->end) return 0;
            unsigned char e = *c->p++;
            if (e == 'u') {
                unsigned unit;
                if (!json_hex4(c, &unit)) return 0;
                if (unit >= 0xDC00 && unit <= 0xDFFF) return 0; /* lone low surrogate */
                if (unit >= 0xD800 && unit <= 0xDBFF) {
                    unsigned low;
                    if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u') return 0;
                    c->p += 2;
                    if (!json_hex4(c, &low) || low < 0xDC00 || low > 0xDFFF) return 0;
                }
            } else if (!strchr("\"\\/bfnrt", e) || e == 0) {
                return 0;
            }
            continue;
        }
        if (!json_utf8(c)) return 0;
    }
    return 0;
}

static int json_digits(json_cursor *c) {
    const unsigned char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    return c->p > start;
}

static int json_number(json_cursor *c) {
    if (c->p < c->end && *c->p == '-') c->p++;
    if (c->p >= c->end) return 0;
    if (*c->p == '0') c->p++;
    else if (!json_digits(c)) return 0;
    if (c->p < c->end && *c->p == '.') { c->p++; if (!json_digits(c)) return 0; }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!json_digits(c)) return 0;
    }
    return 1;
}

static int json_literal(json_cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return 0;
    c->p += n;
    return 1;
}

static int json_value(json_cursor *c) {
    json_ws(c);
    if (c->p >= c->end) return 0;
    switch (*c->p) {
    case '{':
        if (++c->depth > 200) return 0;
        c->p++;
        json_ws(c);
        if (c->p < c->end && *c->p == '}') { c->p++; c->depth--; return 1; }
        for (;;) {
            json_ws(c);
            if (!json_string(c)) return 0;
            json_ws(c);
            if (c->p >= c->end || *c->p++ != ':') return 0;
            if (!json_value(c)) return 0;
            json_ws(c);
            if (c->p >= c->end) return 0;
            if (*c->p == ',') { c->p++; continue; }
            if (*c->p == '}') { c->p++; c->depth--; return 1; }
            return 0;
        }
    case '[':
        if (++c->depth > 200) return 0;
        c->p++;
        json_ws(c);
        if (c->p < c->end && *c->p == ']') { c->p++; c->depth--; return 1; }
        for (;;) {
            if (!json_value(c)) return 0;
            json_ws(c);
            if (c->p >= c->end) return 0;
            if (*c->p == ',') { c->p++; continue; }
            if (*c->p == ']') { c->p++; c->depth--; return 1; }
            return 0;
        }
    case '"': return json_string(c);
    case 't': return json_literal(c, "true");
    case 'f': return json_literal(c, "false");
    case 'n': return json_literal(c, "null");
    default: return json_number(c);
    }
}

/* A complete JSON document whose top level is an object. */
static int json_object_document(const char *text) {
    json_cursor c = {(const unsigned char *)text, (const unsigned char *)text + strlen(text), 0};
    json_ws(&c);
    if (c.p >= c.end || *c.p != '{') return 0;
    if (!json_value(&c)) return 0;
    json_ws(&c);
    return c.p == c.end;
}

/* The integer after the first `"key":` (the writer is compact), or -999999. */
static long json_int_member(const char *text, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(text, pattern);
    if (!at) return -999999;
    at += strlen(pattern);
    char *end;
    long value = strtol(at, &end, 10);
    if (end == at || (*end != ',' && *end != '}')) return -999999;
    return value;
}

/* The value of the first `"key": "value"` in the input when it is plain
 * (no escapes), or NULL. Writes at most `size` bytes. */
static const char *input_string_member(const char *text, const char *key, char *buffer, size_t size) {
    if (!text) return NULL;
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *at = strstr(text, pattern);
    if (!at) return NULL;
    at += strlen(pattern);
    while (*at == ' ' || *at == '\t' || *at == '\r' || *at == '\n') at++;
    if (*at++ != ':') return NULL;
    while (*at == ' ' || *at == '\t' || *at == '\r' || *at == '\n') at++;
    if (*at++ != '"') return NULL;
    const char *close = strchr(at, '"');
    if (!close || (size_t)(close - at) + 1 > size) return NULL;
    memcpy(buffer, at, (size_t)(close - at));
    buffer[close - at] = 0;
    if (strchr(buffer, '\\')) return NULL;
    return buffer;
}

/* A credential from the input that we can look for in outputs without
 * false alarms: long, plainly alphanumeric with letters and digits, and
 * present only once in the whole input (so no other field echoes it). */
static int distinctive(const char *value) {
    if (!value || strlen(value) < 12) return 0;
    int letter = 0, digit = 0;
    for (const char *p = value; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) letter = 1;
        else if (*p >= '0' && *p <= '9') digit = 1;
        else return 0;
    }
    return letter && digit && input_count(value) == 1;
}

/* ------------------------------------------------------------------ */
/* The checks made after every call.                                   */

enum {
    MAY_HOLD_TOKENS = 1,   /* dl_conversation_state: its token may appear */
};

/* Credentials from the input to look for in outputs (c and o modes):
 * [0] a config's secret (never handed out), [1] a config's token and
 * [2] a saved state's token (handed out only by dl_conversation_state). */
static const char *g_extra_secret[3];

static void check_status(const char *function, int32_t status, uint32_t allowed, const char *out) {
    if (status < 0 || status >= NSTATUS) fail(function, status, out, "unknown status code");
    if (status == DL_ERR_INTERNAL) fail(function, status, out, "DL_ERR_INTERNAL is a bug in the library");
    if (status == DL_ERR_REENTRANT) fail(function, status, out, "DL_ERR_REENTRANT outside any callback");
    if (!(allowed & BIT(status))) fail(function, status, out, "a status this function does not return here");
    const char *name = dl_status_name(status);
    if (!name || strcmp(name, "DL_ERR_UNKNOWN") == 0) fail(function, status, out, "known status without a name");
}

/* No output holds the secret; only dl_conversation_state a token. */
static void check_leaks(const char *function, int32_t status, const char *out, int options) {
    if (!input_contains(SECRET) && strstr(out, SECRET)) fail(function, status, out, "the secret leaked");
    if (!(options & MAY_HOLD_TOKENS)) {
        if (!input_contains(CLIENT_TOKEN) && strstr(out, CLIENT_TOKEN)) fail(function, status, out, "the client's token leaked");
        if (!input_contains(CONV_TOKEN) && strstr(out, CONV_TOKEN)) fail(function, status, out, "the conversation's token leaked");
    }
    for (int i = 0; i < 3; i++) {
        const char *extra = g_extra_secret[i];
        if (extra && (i == 0 || !(options & MAY_HOLD_TOKENS)) && strstr(out, extra))
            fail(function, status, out, "a credential from the input (\"%s\") leaked", extra);
    }
}

/* Checks out_json after a call and frees it. `out` is what the slot held
 * after the call (it was set to UNWRITTEN before). */
static void check_out(const char *function, int32_t status, uint32_t allowed, char *out, int options) {
    check_status(function, status, allowed, out);
    if (out == UNWRITTEN) fail(function, status, out, "out_json was not written");
    if (!out) fail(function, status, out, "out_json is NULL");
    if (!json_object_document(out)) fail(function, status, out, "out_json is not a JSON object");
    if (status != DL_OK) {
        if (strncmp(out, "{\"error\":{", 10) != 0) fail(function, status, out, "error JSON is not {\"error\": {...}}");
        if (json_int_member(out, "status") != status) fail(function, status, out, "error JSON has another status");
        char name[64];
        snprintf(name, sizeof name, "\"name\":\"%s\"", dl_status_name(status));
        if (!strstr(out, name)) fail(function, status, out, "error JSON has another name");
        if (!strstr(out, "\"message\":\"")) fail(function, status, out, "error JSON has no message");
        if (!strstr(out, "\"delivery\":\"not_sent\"") && !strstr(out, "\"delivery\":\"unknown\""))
            fail(function, status, out, "error JSON has no delivery");
        long attempts = json_int_member(out, "attempts");
        if (attempts < 0) fail(function, status, out, "error JSON has no attempts");
        if (status == DL_ERR_INVALID_ARGUMENT || status == DL_ERR_INVALID_HANDLE) {
            if (attempts != 0) fail(function, status, out, "a refused argument was sent");
            if (!strstr(out, "\"delivery\":\"not_sent\"")) fail(function, status, out, "a refused argument is not not_sent");
        }
        if (status == DL_ERR_NETWORK && !strstr(out, "\"delivery\":\"not_sent\""))
            fail(function, status, out, "connection refused is not \"not_sent\"");
        if (status == DL_ERR_NETWORK && attempts > 1)
            fail(function, status, out, "retried although retry.maxAttempts is 1");
    }
    check_leaks(function, status, out, options);
    dl_string_free(out);
}

/* ------------------------------------------------------------------ */
/* Fields of the input.                                                */

#define MAX_FIELDS 8

typedef struct {
    char *text[MAX_FIELDS];   /* NUL-terminated copies, NULL when absent */
    size_t length[MAX_FIELDS];
    int count;
} fields;

/* Splits data into n fields at '\n'; the last takes the rest. A field is
 * there when the newline before it is (for the first: the one after the
 * header), so "t0\nuser\n" is ("user", "") and "t0\nuser" ("user", NULL). */
static void split(const uint8_t *data, size_t size, int first_present, int n, fields *f) {
    memset(f, 0, sizeof *f);
    size_t at = 0;
    int present = first_present || size > 0;
    for (int i = 0; i < n && present; i++) {
        size_t end = size;
        present = 0;
        if (i < n - 1) {
            const uint8_t *nl = memchr(data + at, '\n', size - at);
            if (nl) {
                end = (size_t)(nl - data);
                present = 1;
            }
        }
        /* An exact-size copy, so that ASan sees any read past the NUL. */
        f->text[i] = malloc(end - at + 1);
        memcpy(f->text[i], data + at, end - at);
        f->text[i][end - at] = 0;
        f->length[i] = end - at;
        f->count = i + 1;
        at = end + 1;
    }
}

static void free_fields(fields *f) {
    for (int i = 0; i < MAX_FIELDS; i++) free(f->text[i]);
}

/* ------------------------------------------------------------------ */
/* Handles used by the network modes.                                  */

static int32_t g_progress_calls;

static int32_t on_progress(void *userdata, uint64_t done, uint64_t total) {
    (void)userdata;
    if (done > total) {
        fprintf(stderr, "==fuzz_api== progress done %llu > total %llu\n", (unsigned long long)done,
                (unsigned long long)total);
        abort();
    }
    g_progress_calls++;
    /* Calls back into the library are refused. */
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_info(NULL, &out);
    if (status != DL_ERR_REENTRANT) fail("dl_conversation_info (in a callback)", status, out, "not refused");
    dl_string_free(out);
    return 0;
}

/* The log callback, at DL_LOG_DEBUG for every input (mode 'l' changes the
 * level for one input): each line is UTF-8 without a newline, at a level
 * the callback asked for, and holds no secret or token. On other threads
 * (the token refresher) the input may be gone: only the fixed checks. */
static pthread_t g_main_thread;
static int32_t g_log_level = DL_LOG_DEBUG;
static unsigned long g_log_lines;

static int g_print_log; /* FUZZ_API_PRINT_LOG=1: echo the lines to stderr */

static void on_log(void *userdata, int32_t level, const char *message) {
    (void)userdata;
    g_log_lines++;
    if (!message) fail("log callback", level, NULL, "NULL message");
    if (g_print_log) fprintf(stderr, "[log %d] %s\n", level, message);
    if (level < DL_LOG_ERROR || level > g_log_level)
        fail("log callback", level, message, "a line at level %d; the callback asked for %d", level, g_log_level);
    json_cursor c = {(const unsigned char *)message, (const unsigned char *)message + strlen(message), 0};
    while (c.p < c.end)
        if (!json_utf8(&c)) fail("log callback", level, message, "a line that is not UTF-8");
    if (strchr(message, '\n')) fail("log callback", level, message, "a line with a newline");
    if (!pthread_equal(pthread_self(), g_main_thread)) return;
    check_leaks("log callback", level, message, 0);
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_info(NULL, &out);
    if (status != DL_ERR_REENTRANT) fail("dl_conversation_info (in the log callback)", status, out, "not refused");
    dl_string_free(out);
}

static void set_log_level(int32_t level) {
    char *out = UNWRITTEN;
    int32_t status = dl_set_log_callback(on_log, NULL, level, &out);
    check_out("dl_set_log_callback", status, BIT(DL_OK), out, 0);
    g_log_level = level;
}

static int v11(void) { return g_flags & 1; }

static dl_client *fresh_network_client(void) {
    char config[512];
    snprintf(config, sizeof config,
             "{\"endpoint\": \"%s\", \"protocol\": \"%s\", \"%s\": \"%s\", \"allowInsecureHttp\": true,"
             " \"retry\": {\"maxAttempts\": 1, \"baseDelayMs\": 0, \"maxDelayMs\": 0},"
             " \"timeoutMs\": 2000, \"connectTimeoutMs\": 1000, \"maxUploadBytes\": 65536}",
             ENDPOINT, v11() ? "1.1" : "3.0", (g_flags & 2) ? "token" : "secret",
             (g_flags & 2) ? CLIENT_TOKEN : SECRET);
    dl_client *client = (dl_client *)1;
    char *out = UNWRITTEN;
    int32_t status = dl_client_new(config, &client, &out);
    if (status != DL_OK || !client) fail("dl_client_new (fixed config)", status, out, "refused %s", config);
    check_out("dl_client_new", status, BIT(DL_OK), out, 0);
    return client;
}

/* The network client for the input's flags, made once and kept: creating
 * one per input would cost a tenth of the run. fresh_network_client() makes
 * one to free. */
static dl_client *g_clients[4];

static dl_client *network_client(void) {
    dl_client **client = &g_clients[g_flags & 3];
    if (!*client) *client = fresh_network_client();
    return *client;
}

static void free_client(dl_client *client) {
    int32_t status = dl_client_free(client);
    if (status != DL_OK) fail("dl_client_free", status, NULL, "freeing a live client");
    status = dl_client_free(client);
    if (status != DL_ERR_INVALID_HANDLE) fail("dl_client_free", status, NULL, "double free not refused");
}

static dl_conversation *open_default(dl_client *client, const char *id) {
    char state[256];
    if (g_flags & 4)
        snprintf(state, sizeof state, "{\"conversationId\": \"%s\", \"token\": \"%s\", \"expires_in\": 1800}", id, CONV_TOKEN);
    else
        snprintf(state, sizeof state, "{\"conversationId\": \"%s\", \"watermark\": \"7\"}", id);
    dl_conversation *conversation = (dl_conversation *)1;
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_open(client, state, &conversation, &out);
    if (status != DL_OK || !conversation) fail("dl_conversation_open (fixed state)", status, out, "refused %s", state);
    check_out("dl_conversation_open", status, BIT(DL_OK), out, 0);
    if (g_flags & 8) {
        status = dl_conversation_set_progress(conversation, on_progress, NULL);
        if (status != DL_OK) fail("dl_conversation_set_progress", status, NULL, "on a live handle");
    }
    return conversation;
}

/* Checks info on a live handle: never the token, ended as expected. */
static void check_info(dl_conversation *conversation) {
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_info(conversation, &out);
    if (status != DL_OK) fail("dl_conversation_info", status, out, "on a live handle");
    if (!strstr(out, "\"conversationId\":") || !strstr(out, "\"ended\":"))
        fail("dl_conversation_info", status, out, "info lacks conversationId or ended");
    check_out("dl_conversation_info", status, BIT(DL_OK), out, 0);
}

/* dl_conversation_state, and its output opened again on `client` (when the
 * client is live) gives the same state. */
static void check_state_roundtrip(dl_client *client, dl_conversation *conversation, int client_live) {
    char *state = UNWRITTEN;
    int32_t status = dl_conversation_state(conversation, &state);
    if (status != DL_OK) fail("dl_conversation_state", status, state, "on a live handle");
    if (!json_object_document(state)) fail("dl_conversation_state", status, state, "not a JSON object");
    if (!strstr(state, "\"conversationId\":")) fail("dl_conversation_state", status, state, "no conversationId");
    check_leaks("dl_conversation_state", status, state, MAY_HOLD_TOKENS);
    if (client_live) {
        dl_conversation *again = (dl_conversation *)1;
        char *out = UNWRITTEN;
        status = dl_conversation_open(client, state, &again, &out);
        if (status != DL_OK) fail("dl_conversation_open", status, out, "refuses the output of dl_conversation_state: %s", state);
        check_out("dl_conversation_open (saved state)", status, BIT(DL_OK), out, 0);
        char *second = UNWRITTEN;
        status = dl_conversation_state(again, &second);
        if (status != DL_OK) fail("dl_conversation_state", status, second, "on a live handle");
        if (strcmp(state, second) != 0)
            fail("dl_conversation_state", status, second, "the state reopened differs from the state saved: %s", state);
        dl_string_free(second);
        if (dl_conversation_free(again) != DL_OK) fail("dl_conversation_free", 0, NULL, "live handle");
    }
    dl_string_free(state);
}

static void free_conversation(dl_conversation *conversation) {
    int32_t status = dl_conversation_free(conversation);
    if (status != DL_OK) fail("dl_conversation_free", status, NULL, "freeing a live conversation");
    status = dl_conversation_free(conversation);
    if (status != DL_ERR_INVALID_HANDLE) fail("dl_conversation_free", status, NULL, "double free not refused");
    char *out = UNWRITTEN;
    status = dl_conversation_info(conversation, &out);
    check_out("dl_conversation_info (freed)", status, BIT(DL_ERR_INVALID_HANDLE), out, 0);
}

/* ------------------------------------------------------------------ */
/* The calls, each with the statuses it may return here.               */

static const uint32_t SEND_STATUSES =
    BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_INVALID_HANDLE) | BIT(DL_ERR_TOO_LARGE) | NETWORKY;
static const uint32_t UPLOAD_STATUSES = SEND_STATUSES | BIT(DL_ERR_IO);

/* Whether the input has a member "activity" whose value is an object. */
static int has_activity_member(void) {
    const uint8_t *at = g_data, *end = g_data + g_size;
    while (at < end) {
        const uint8_t *hit = memmem(at, (size_t)(end - at), "\"activity\"", 10);
        if (!hit) return 0;
        const uint8_t *p = hit + 10;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
        if (p < end && *p == ':') {
            p++;
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
            if (p < end && *p == '{') return 1;
        }
        at = hit + 1;
    }
    return 0;
}

static void after_send(const char *function, dl_conversation *conversation, int32_t status, char *out, uint32_t allowed) {
    (void)conversation;
    /* 3.0: a send that got as far as the network carries its correlation id. */
    if (!v11() && status == DL_ERR_NETWORK && strcmp(function, "dl_upload_bytes") != 0 &&
        strcmp(function, "dl_upload_file") != 0 && out && out != UNWRITTEN && !strstr(out, "\"clientActivityID\":\"")) {
        if (strcmp(function, "dl_upload_multipart") != 0 || has_activity_member())
            fail(function, status, out, "a 3.0 send's error lacks its clientActivityID");
    }
    check_out(function, status, allowed, out, 0);
}

static void call_send_activity(dl_conversation *c, const char *activity) {
    char *out = UNWRITTEN;
    int32_t status = dl_send_activity(c, activity, &out);
    after_send("dl_send_activity", c, status, out, SEND_STATUSES);
}

static int32_t call_send_text(dl_conversation *c, const char *user, const char *text) {
    char *out = UNWRITTEN;
    int32_t status = dl_send_text(c, user, text, &out);
    after_send("dl_send_text", c, status, out, SEND_STATUSES);
    return status;
}

static int32_t call_end(dl_conversation *c, const char *user) {
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_end(c, user, &out);
    /* 1.1 sends nothing: DL_OK. */
    after_send("dl_conversation_end", c, status, out, SEND_STATUSES | (v11() ? BIT(DL_OK) : 0));
    return status;
}

static void call_upload_bytes(dl_conversation *c, const char *user, const void *data, size_t length,
                              const char *type, const char *name) {
    char *out = UNWRITTEN;
    int32_t status = dl_upload_bytes(c, user, data, length, type, name, &out);
    after_send("dl_upload_bytes", c, status, out, UPLOAD_STATUSES);
}

static void call_upload_file(dl_conversation *c, const char *user, const char *path, const char *type,
                             const char *name) {
    char *out = UNWRITTEN;
    int32_t status = dl_upload_file(c, user, path, type, name, &out);
    after_send("dl_upload_file", c, status, out, UPLOAD_STATUSES);
}

static void call_multipart(dl_conversation *c, const char *user, const char *manifest) {
    char *out = UNWRITTEN;
    int32_t status = dl_upload_multipart(c, user, manifest, &out);
    after_send("dl_upload_multipart", c, status, out, UPLOAD_STATUSES);
}

static void call_wait(dl_conversation *c, const char *options) {
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_wait(c, options, &out);
    check_out("dl_conversation_wait", status,
              BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_INVALID_HANDLE) | BIT(DL_ERR_CANCELLED) | NETWORKY, out, 0);
}

static void call_get_activities(dl_conversation *c) {
    char *out = UNWRITTEN;
    int32_t status = dl_get_activities(c, &out);
    check_out("dl_get_activities", status, BIT(DL_ERR_INVALID_HANDLE) | NETWORKY, out, 0);
}

static void call_conversation_refresh(dl_conversation *c) {
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_refresh(c, &out);
    check_out("dl_conversation_refresh", status,
              BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_INVALID_HANDLE) | BIT(DL_ERR_TOKEN_EXPIRED) | NETWORKY, out, 0);
}

static void call_token_refresh(dl_client *client, const char *token) {
    char *out = UNWRITTEN;
    int32_t status = dl_token_refresh(client, token, &out);
    check_out("dl_token_refresh", status,
              BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_INVALID_HANDLE) | BIT(DL_ERR_TOKEN_EXPIRED) | NETWORKY, out, 0);
}

static void call_token_generate(dl_client *client, const char *request) {
    char *out = UNWRITTEN;
    int32_t status = dl_token_generate(client, request, &out);
    check_out("dl_token_generate", status,
              BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_INVALID_HANDLE) | BIT(DL_ERR_FORBIDDEN) | NETWORKY, out, 0);
}

static void call_conversation_start(dl_client *client, const char *request) {
    char *out = UNWRITTEN;
    dl_conversation *conversation = (dl_conversation *)1;
    int32_t status = dl_conversation_start(client, request, &conversation, &out);
    if (conversation) fail("dl_conversation_start", status, out, "out_conversation not NULL after an error");
    check_out("dl_conversation_start", status, BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_INVALID_HANDLE) | NETWORKY,
              out, 0);
}

/* dl_conversation_open with a fuzzed state; on success the handle is
 * checked (info, state round trip) and returned, else NULL. */
static dl_conversation *call_open(dl_client *client, const char *state, int client_live) {
    static char token[256]; /* g_extra_secret[2] points here until the next open */
    const char *own = input_string_member(state, "token", token, sizeof token);
    g_extra_secret[2] = distinctive(own) ? own : NULL;
    /* Without "reconnect" (which no escape can spell here) nothing is sent. */
    int may_send = !state || strstr(state, "reconnect") || strchr(state, '\\');
    uint32_t allowed = BIT(DL_OK) | BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_INVALID_HANDLE) |
                       (may_send ? NETWORKY | BIT(DL_ERR_TOKEN_EXPIRED) : 0);
    if (!client_live) allowed = BIT(DL_ERR_INVALID_HANDLE);
    dl_conversation *conversation = (dl_conversation *)1;
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_open(client, state, &conversation, &out);
    if (status != DL_OK && conversation) fail("dl_conversation_open", status, out, "out_conversation not NULL after an error");
    if (status == DL_OK && !conversation) fail("dl_conversation_open", status, out, "DL_OK without a handle");
    if (status == DL_OK && (!strstr(out, "\"conversationId\":") || !strstr(out, "\"ended\":false")))
        fail("dl_conversation_open", status, out, "the result is not dl_conversation_info's");
    check_out("dl_conversation_open", status, allowed, out, 0);
    if (status != DL_OK) {
        g_extra_secret[2] = NULL;
        return NULL;
    }
    check_info(conversation);
    check_state_roundtrip(client, conversation, client_live);
    return conversation;
}

/* ------------------------------------------------------------------ */
/* Modes.                                                              */

/* 'c': dl_client_new with a fuzzed config. Nothing that sends is called on
 * the client: its endpoint could be anywhere. */
static void mode_config(const fields *f) {
    static char secret[256], token[256];
    const char *config = f->text[0];
    const char *s = input_string_member(config, "secret", secret, sizeof secret);
    const char *t = input_string_member(config, "token", token, sizeof token);
    g_extra_secret[0] = distinctive(s) ? s : NULL;
    g_extra_secret[1] = distinctive(t) ? t : NULL;

    dl_client *client = (dl_client *)1;
    char *out = UNWRITTEN;
    int drop_out = (g_flags & 8) != 0;
    int32_t status = dl_client_new(config, &client, drop_out ? NULL : &out);
    if (status != DL_OK && client) fail("dl_client_new", status, drop_out ? NULL : out, "out_client not NULL after an error");
    if (status == DL_OK && !client) fail("dl_client_new", status, drop_out ? NULL : out, "DL_OK without a handle");
    if (drop_out) check_status("dl_client_new", status, BIT(DL_OK) | BIT(DL_ERR_INVALID_ARGUMENT), NULL);
    else check_out("dl_client_new", status, BIT(DL_OK) | BIT(DL_ERR_INVALID_ARGUMENT), out, 0);
    if (status == DL_OK) {
        /* Calls that send nothing: open (no reconnect), info, state. */
        dl_conversation *conversation = call_open(client, "{\"conversationId\": \"c-1\", \"watermark\": \"0\"}", 1);
        if (conversation) {
            char *text = UNWRITTEN;
            status = dl_conversation_state(conversation, &text);
            check_out("dl_conversation_state", status, BIT(DL_OK), text, MAY_HOLD_TOKENS);
            free_conversation(conversation);
        }
        free_client(client);
    }
    /* With out_client NULL: refused. */
    out = UNWRITTEN;
    status = dl_client_new(config, NULL, &out);
    check_out("dl_client_new (out_client NULL)", status, BIT(DL_ERR_INVALID_ARGUMENT), out, 0);
    g_extra_secret[0] = g_extra_secret[1] = g_extra_secret[2] = NULL;
}

/* 'o': dl_conversation_open with a fuzzed saved state. */
static void mode_open(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = call_open(client, f->text[0], 1);
    if (conversation) {
        call_conversation_refresh(conversation);
        check_info(conversation);
        free_conversation(conversation);
    }
    g_extra_secret[2] = NULL;

}

/* 'a': dl_send_activity with fuzzed activity JSON. */
static void mode_activity(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-a");
    call_send_activity(conversation, f->text[0]);
    free_conversation(conversation);

}

/* 't': dl_send_text(user, text). */
static void mode_text(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-t");
    call_send_text(conversation, f->text[0], f->text[1]);
    free_conversation(conversation);

}

/* 'e': dl_conversation_end(user), then info says ended. */
static void mode_end(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-e");
    int32_t status = call_end(conversation, f->text[0]);
    check_info(conversation);
    if (status == DL_OK) {
        /* Ended: info says so, and the token is no longer refreshed. */
        char *out = UNWRITTEN;
        status = dl_conversation_info(conversation, &out);
        if (!out || out == UNWRITTEN || !strstr(out, "\"ended\":true") || !strstr(out, "\"autoRefresh\":false"))
            fail("dl_conversation_info", status, out, "after dl_conversation_end: not ended, or still refreshing");
        dl_string_free(out);
    }
    call_send_text(conversation, "after-end", "still a handle");
    free_conversation(conversation);

}

/* 'm': dl_upload_multipart(user, manifest). */
static void mode_multipart(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-m");
    call_multipart(conversation, f->text[0], f->text[1]);
    free_conversation(conversation);

}

/* 'u': dl_upload_bytes(user, content type, file name, data). Flag 4 makes
 * the optional content type and file name NULL. Data keeps NULs. */
static void mode_bytes(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-u");
    int nulls = (g_flags & 4) != 0;
    const char *data = f->text[3];
    size_t length = f->length[3];
    call_upload_bytes(conversation, f->text[0], data, length, nulls ? NULL : f->text[1], nulls ? NULL : f->text[2]);
    /* NULL data: only with length 0. */
    call_upload_bytes(conversation, f->text[0], NULL, length, f->text[1], f->text[2]);
    free_conversation(conversation);

}

/* 'U': dl_upload_file(user, path, content type, file name). */
static void mode_file(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-f");
    call_upload_file(conversation, f->text[0], f->text[1], f->text[2], f->text[3]);
    free_conversation(conversation);

}

/* 'w': dl_conversation_wait(options) on a handle that never sent (so the
 * first poll is at once and fails at once), then dl_get_activities. */
static void mode_wait(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-w");
    call_wait(conversation, f->text[0]);
    call_get_activities(conversation);
    free_conversation(conversation);

}

/* 'L': dl_conversation_listen(options), then next (without waiting, and for
 * 50 ms), fd and unlisten twice: the listener's reads are refused at once
 * and retried (state "reconnecting"), never a failure of its own. */
static void mode_listen(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-L");
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_listen(conversation, f->text[0], &out);
    if (status == DL_ERR_UNSUPPORTED && !v11() && out != UNWRITTEN && out != NULL && strstr(out, "libcurl") == NULL) {
        fail("dl_conversation_listen", status, out, "unsupported on 3.0 without naming libcurl");
    }
    int listening = status == DL_OK;
    check_out("dl_conversation_listen", status,
              BIT(DL_OK) | BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_UNSUPPORTED) | BIT(DL_ERR_IO), out, 0);
    for (int32_t timeout = 0; timeout <= 50; timeout += 50) {
        out = UNWRITTEN;
        status = dl_conversation_next(conversation, timeout, &out);
        if (listening != (status == DL_OK)) fail("dl_conversation_next", status, out, "not as listen said");
        check_out("dl_conversation_next", status, BIT(DL_OK) | BIT(DL_ERR_INVALID_ARGUMENT), out, 0);
    }
    int32_t fd = -2;
    out = UNWRITTEN;
    status = dl_conversation_fd(conversation, &fd, &out);
    if ((status == DL_OK) != (fd >= 0)) fail("dl_conversation_fd", status, out, "fd and status disagree");
    check_out("dl_conversation_fd", status, BIT(DL_OK) | BIT(DL_ERR_IO), out, 0);
    for (int i = 0; i < 2; i++) {
        out = UNWRITTEN;
        status = dl_conversation_unlisten(conversation, &out);
        if (i == 1 && out != UNWRITTEN && out != NULL && strstr(out, "\"dropped\":0") == NULL) {
            fail("dl_conversation_unlisten", status, out, "dropped twice");
        }
        check_out("dl_conversation_unlisten", status, BIT(DL_OK), out, 0);
    }
    free_conversation(conversation);
}

/* 'f': dl_conversation_confirm(id, options): its first page fails at once. */
static void mode_confirm(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-c");
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_confirm(conversation, f->text[0], f->text[1], &out);
    uint32_t allowed = BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_INVALID_HANDLE) | BIT(DL_ERR_CANCELLED) | NETWORKY;
    if (v11() && status != DL_ERR_INVALID_ARGUMENT) fail("dl_conversation_confirm", status, out, "1.1 not refused");
    check_out("dl_conversation_confirm", status, allowed, out, 0);
    free_conversation(conversation);

}

/* 'r': dl_token_refresh(token), dl_token_generate(request) and
 * dl_conversation_start(request), all to the refused endpoint. */
static void mode_tokens(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-r");
    call_token_refresh(client, f->text[0]);
    call_token_generate(client, f->text[1]);
    call_conversation_start(client, f->text[1]);
    free_conversation(conversation);

}

/* 'k': dl_set_thread_timeouts(options), then calls that go to the network
 * with the override, then the override removed. */
static void mode_timeouts(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-k");
    char *out = UNWRITTEN;
    int32_t status = dl_set_thread_timeouts(f->text[0], &out);
    if (status == DL_OK && (!strstr(out, "\"timeoutMs\":") || !strstr(out, "\"connectTimeoutMs\":")))
        fail("dl_set_thread_timeouts", status, out, "the result is not the override");
    check_out("dl_set_thread_timeouts", status, BIT(DL_OK) | BIT(DL_ERR_INVALID_ARGUMENT), out, 0);
    call_send_text(conversation, "user-k", f->text[1] ? f->text[1] : "timeouts");
    call_get_activities(conversation);
    call_token_refresh(client, "token-k");
    free_conversation(conversation);
    const char *clear[2] = {NULL, "{}"};
    for (int i = 0; i < 2; i++) {
        out = UNWRITTEN;
        status = dl_set_thread_timeouts(clear[i], &out);
        if (status != DL_OK || strcmp(out, "{\"timeoutMs\":null,\"connectTimeoutMs\":null}") != 0)
            fail("dl_set_thread_timeouts", status, out, "%s does not remove the override", clear[i] ? clear[i] : "NULL");
        check_out("dl_set_thread_timeouts", status, BIT(DL_OK), out, 0);
    }
}

/* 'l': dl_set_log_callback with any level (the field's number), or with a
 * NULL callback (flag 8); then a send logged at that level. */
static void mode_log(const fields *f) {
    int32_t level = f->text[0] ? (int32_t)strtol(f->text[0], NULL, 0) : DL_LOG_INFO;
    int known = level >= DL_LOG_OFF && level <= DL_LOG_DEBUG;
    char *out = UNWRITTEN;
    int32_t status = dl_set_log_callback((g_flags & 8) ? NULL : on_log, NULL, level, &out);
    if (status == DL_OK && !known) fail("dl_set_log_callback", status, out, "accepts level %d", level);
    if (status != DL_OK && known) fail("dl_set_log_callback", status, out, "refuses level %d", level);
    check_out("dl_set_log_callback", status, BIT(DL_OK) | BIT(DL_ERR_INVALID_ARGUMENT), out, 0);
    if (status == DL_OK) g_log_level = (g_flags & 8) ? DL_LOG_OFF : level;
    unsigned long before = g_log_lines;
    dl_client *client = network_client();
    dl_conversation *conversation = open_default(client, "conv-l");
    status = call_send_text(conversation, "user-l", f->text[1] ? f->text[1] : "logged");
    free_conversation(conversation);
    if (g_log_level == DL_LOG_OFF && g_log_lines != before) fail("log callback", 0, NULL, "called with logging off");
    if (g_log_level != DL_LOG_OFF && status == DL_ERR_NETWORK && g_log_lines == before)
        fail("log callback", status, NULL, "a failed transfer went unlogged at level %d", g_log_level);
}

static const char *const STATUS_NAMES[NSTATUS] = {
    "DL_OK", "DL_ERR_INVALID_ARGUMENT", "DL_ERR_INVALID_HANDLE", "DL_ERR_TOO_LARGE", "DL_ERR_IO",
    "DL_ERR_NETWORK", "DL_ERR_TIMEOUT", "DL_ERR_TLS", "DL_ERR_BAD_REQUEST", "DL_ERR_UNAUTHORIZED",
    "DL_ERR_FORBIDDEN", "DL_ERR_TOKEN_EXPIRED", "DL_ERR_NOT_FOUND", "DL_ERR_CONFLICT", "DL_ERR_THROTTLED",
    "DL_ERR_BOT", "DL_ERR_SERVICE", "DL_ERR_HTTP", "DL_ERR_PROTOCOL", "DL_ERR_CANCELLED",
    "DL_ERR_REENTRANT", "DL_ERR_INTERNAL", "DL_ERR_UNSUPPORTED",
};

/* 's': dl_status_name with any int32 (the field's first 4 bytes, or the
 * number it spells), dl_version, dl_version_number. */
static void mode_status(const fields *f) {
    int32_t values[3] = {0, -1, NSTATUS};
    if (f->text[0]) {
        char *end;
        values[0] = (int32_t)strtol(f->text[0], &end, 0);
        if (f->length[0] >= 4) memcpy(&values[1], f->text[0], 4);
        values[2] = (int32_t)f->length[0] - 8;
    }
    for (int i = 0; i < 3; i++) {
        const char *name = dl_status_name(values[i]);
        const char *expected = values[i] >= 0 && values[i] < NSTATUS ? STATUS_NAMES[values[i]] : "DL_ERR_UNKNOWN";
        if (!name || strcmp(name, expected) != 0)
            fail("dl_status_name", values[i], NULL, "gives \"%s\", expected \"%s\"", name ? name : "(NULL)", expected);
        if (name != dl_status_name(values[i])) fail("dl_status_name", values[i], NULL, "not a static string");
    }
    if (!dl_version() || strcmp(dl_version(), DL_VERSION_STRING) != 0) fail("dl_version", 0, NULL, "not the header's");
    if (dl_version_number() != DL_VERSION_NUMBER) fail("dl_version_number", 0, NULL, "not the header's");
    dl_string_free(NULL);
}

/* 'h': forged, freed, NULL and wrong-kind handles: every call refuses them. */
static void mode_handles(const fields *f) {
    dl_client *client = network_client();
    dl_conversation *live = open_default(client, "conv-h");
    uint64_t bits = 0;
    if (f->text[0]) memcpy(&bits, f->text[0], f->length[0] < 8 ? f->length[0] : 8);
    if (f->text[0] && f->length[0] > 8) bits ^= strtoull(f->text[0] + 8, NULL, 0);

    dl_client *dead_client = fresh_network_client();
    free_client(dead_client);
    dl_conversation *dead = open_default(client, "conv-dead");
    free_conversation(dead);

    void *candidates[5] = {(void *)(uintptr_t)bits, (void *)(uintptr_t)(bits ^ (uintptr_t)client),
                           (void *)(uintptr_t)(bits ^ (uintptr_t)live), dead, dead_client};
    for (int i = 0; i < 5; i++) {
        void *h = candidates[i];
        if (!h || h == (void *)live || h == (void *)g_clients[0] || h == (void *)g_clients[1] ||
            h == (void *)g_clients[2] || h == (void *)g_clients[3])
            continue;
        dl_conversation *c = h;
        dl_client *k = h;
        char *out;
        int32_t status;
#define REFUSED(call, name)                                                              \
    out = UNWRITTEN;                                                                     \
    status = call;                                                                       \
    check_out(name, status, BIT(DL_ERR_INVALID_HANDLE), out, 0);
        REFUSED(dl_conversation_info(c, &out), "dl_conversation_info");
        REFUSED(dl_conversation_state(c, &out), "dl_conversation_state");
        REFUSED(dl_send_text(c, "u", "t", &out), "dl_send_text");
        REFUSED(dl_get_activities(c, &out), "dl_get_activities");
        REFUSED(dl_conversation_wait(c, NULL, &out), "dl_conversation_wait");
        REFUSED(dl_token_refresh(k, "tok", &out), "dl_token_refresh");
        REFUSED(dl_token_generate(k, NULL, &out), "dl_token_generate");
        {
            dl_conversation *made = (dl_conversation *)1;
            REFUSED(dl_conversation_open(k, "{\"conversationId\": \"x\"}", &made, &out), "dl_conversation_open");
            if (made) fail("dl_conversation_open", status, NULL, "out_conversation not NULL");
        }
        status = dl_conversation_set_progress(c, on_progress, NULL);
        if (status != DL_ERR_INVALID_HANDLE) fail("dl_conversation_set_progress", status, NULL, "bad handle accepted");
        status = dl_conversation_free(c);
        if (status != DL_ERR_INVALID_HANDLE) fail("dl_conversation_free", status, NULL, "bad handle accepted");
        status = dl_client_free(k);
        if (status != DL_ERR_INVALID_HANDLE) fail("dl_client_free", status, NULL, "bad handle accepted");
#undef REFUSED
    }
    /* Wrong kind: a live client as a conversation and the other way round. */
    char *out = UNWRITTEN;
    int32_t status = dl_conversation_info((dl_conversation *)client, &out);
    check_out("dl_conversation_info (a client)", status, BIT(DL_ERR_INVALID_HANDLE), out, 0);
    out = UNWRITTEN;
    status = dl_token_refresh((dl_client *)live, "tok", &out);
    check_out("dl_token_refresh (a conversation)", status, BIT(DL_ERR_INVALID_HANDLE), out, 0);
    if (dl_client_free(NULL) != DL_OK || dl_conversation_free(NULL) != DL_OK) fail("*_free(NULL)", 0, NULL, "not DL_OK");
    free_conversation(live);

}

/* 'z': a script, one operation a line: its first byte says what, the rest
 * is the argument (NULL when the line is that byte alone). Slots 0-3 hold
 * conversations on one network client. Drives sequences: use after free,
 * send after end, conversations outliving their client, saved state. */
static void mode_script(const uint8_t *data, size_t size) {
    dl_client *client = fresh_network_client();
    int client_live = 1;
    dl_conversation *slot[4] = {0};
    int freed[4] = {0}, sent[4] = {0};
    int current = 0, lines = 0;
    size_t at = 0;
    while (at < size && lines++ < 24) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - data) : size;
        char op = (char)data[at];
        char *arg = NULL;
        if (end - at > 1) {
            arg = malloc(end - at);
            memcpy(arg, data + at + 1, end - at - 1);
            arg[end - at - 1] = 0;
        }
        at = end + 1;
        dl_conversation *c = slot[current];
        int have = c != NULL;
        /* A freed handle must be refused by everything. */
        uint32_t dead = freed[current] ? BIT(DL_ERR_INVALID_HANDLE) : 0;
        char *out = UNWRITTEN;
        int32_t status;
        switch (op) {
        case 'n': current = arg ? (unsigned char)arg[0] % 4 : 0; break;
        case 'o':
        case 'O':
            if (have && !freed[current]) free_conversation(c);
            slot[current] = op == 'o' ? call_open(client, arg, client_live)
                                      : (client_live ? open_default(client, "conv-z") : NULL);
            freed[current] = 0;
            sent[current] = 0;
            break;
        case 'x':
            if (client_live) free_client(client);
            client_live = 0;
            break;
        case 'f':
            if (have && !freed[current]) free_conversation(c);
            freed[current] = have;
            break;
        default:
            if (!have) break;
            switch (op) {
            case 'i':
                status = dl_conversation_info(c, &out);
                check_out("dl_conversation_info", status, dead ? dead : BIT(DL_OK), out, 0);
                break;
            case 'j':
                if (dead) {
                    status = dl_conversation_state(c, &out);
                    check_out("dl_conversation_state", status, dead, out, 0);
                } else {
                    check_state_roundtrip(client, c, client_live);
                }
                break;
            case 'a':
                status = dl_send_activity(c, arg, &out);
                after_send("dl_send_activity", c, status, out, dead ? dead : SEND_STATUSES);
                sent[current] = 1;
                break;
            case 't':
                status = dl_send_text(c, "user-z", arg, &out);
                after_send("dl_send_text", c, status, out, dead ? dead : SEND_STATUSES);
                sent[current] = 1;
                break;
            case 'T':
                status = dl_send_text(c, arg, "hello", &out);
                after_send("dl_send_text", c, status, out, dead ? dead : SEND_STATUSES);
                sent[current] = 1;
                break;
            case 'e':
                status = dl_conversation_end(c, arg, &out);
                after_send("dl_conversation_end", c, status, out,
                           dead ? dead : SEND_STATUSES | (v11() ? BIT(DL_OK) : 0));
                sent[current] = 1;
                break;
            case 'u':
                status = dl_upload_bytes(c, "user-z", arg, arg ? strlen(arg) : 0, NULL, NULL, &out);
                after_send("dl_upload_bytes", c, status, out, dead ? dead : UPLOAD_STATUSES);
                sent[current] = 1;
                break;
            case 'm':
                status = dl_upload_multipart(c, "user-z", arg, &out);
                after_send("dl_upload_multipart", c, status, out, dead ? dead : UPLOAD_STATUSES);
                sent[current] = 1;
                break;
            case 'w':
                /* After a send the first poll waits afterSendMs: skip. */
                if (sent[current] && !dead) break;
                status = dl_conversation_wait(c, arg, &out);
                check_out("dl_conversation_wait", status,
                          dead ? dead : BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_CANCELLED) | NETWORKY, out, 0);
                break;
            case 'g':
                status = dl_get_activities(c, &out);
                check_out("dl_get_activities", status, dead ? dead : NETWORKY, out, 0);
                break;
            case 'c':
                status = dl_conversation_confirm(c, arg, NULL, &out);
                check_out("dl_conversation_confirm", status,
                          dead ? dead : BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_CANCELLED) | NETWORKY, out, 0);
                break;
            case 'r':
                status = dl_conversation_refresh(c, &out);
                check_out("dl_conversation_refresh", status,
                          dead ? dead : BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_TOKEN_EXPIRED) | NETWORKY, out, 0);
                break;
            case 'p':
                status = dl_conversation_set_progress(c, arg ? on_progress : NULL, NULL);
                if (status != (dead ? DL_ERR_INVALID_HANDLE : DL_OK))
                    fail("dl_conversation_set_progress", status, NULL, "unexpected status");
                break;
            case 'k':
                status = dl_set_thread_timeouts(arg, &out);
                check_out("dl_set_thread_timeouts", status, BIT(DL_OK) | BIT(DL_ERR_INVALID_ARGUMENT), out, 0);
                break;
            case 'R':
                status = dl_token_refresh(client, arg, &out);
                check_out("dl_token_refresh", status,
                          client_live ? BIT(DL_ERR_INVALID_ARGUMENT) | BIT(DL_ERR_TOKEN_EXPIRED) | NETWORKY
                                      : BIT(DL_ERR_INVALID_HANDLE),
                          out, 0);
                break;
            default: break;
            }
        }
        free(arg);
    }
    for (int i = 0; i < 4; i++)
        if (slot[i] && !freed[i]) free_conversation(slot[i]);
    if (client_live) free_client(client);
    g_extra_secret[2] = NULL;
}

/* ------------------------------------------------------------------ */

/* Files the upload modes can name, relative to the working directory. */
static void make_fixtures(void) {
    mkdir(FIXTURES, 0755);
    mkdir(FIXTURES "/dir", 0755);
    FILE *file = fopen(FIXTURES "/small.txt", "w");
    if (file) { fputs("hello, bot\n", file); fclose(file); }
    file = fopen(FIXTURES "/empty.bin", "w");
    if (file) fclose(file);
    file = fopen(FIXTURES "/image.png", "w");
    if (file) { fwrite("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 1, 16, file); fclose(file); }
    /* Larger than the network client's maxUploadBytes (65536): sparse. */
    file = fopen(FIXTURES "/big.bin", "w");
    if (file) { if (ftruncate(fileno(file), 70000) != 0) perror("ftruncate"); fclose(file); }
    if (symlink("small.txt", FIXTURES "/link.txt") != 0 && errno != EEXIST) perror("symlink");
    /* A FIFO: opening one for reading would block until a writer comes, so
     * an upload of it must be refused (DL_ERR_IO), not wait forever. */
    if (mkfifo(FIXTURES "/fifo", 0600) != 0 && errno != EEXIST) perror("mkfifo");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    /* The Swift runtime's own crash handler would catch our abort() and
     * start swift-backtrace, which hangs under ASan: it must be off before
     * libswiftCore loads, so run again with it off. */
    if (!getenv("SWIFT_BACKTRACE")) {
        setenv("SWIFT_BACKTRACE", "enable=no", 1);
        execv("/proc/self/exe", *argv);
        perror("fuzz_api: execv /proc/self/exe");
        exit(2);
    }
    /* Every network call must fail fast: nothing may listen on port 9. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(9)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&address, sizeof address) == 0) {
        fprintf(stderr, "fuzz_api: something listens on 127.0.0.1:9; the target needs that port closed\n");
        exit(2);
    }
    if (fd >= 0) close(fd);
    make_fixtures();
    g_main_thread = pthread_self();
    g_print_log = getenv("FUZZ_API_PRINT_LOG") != NULL;
    set_log_level(DL_LOG_DEBUG);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    g_data = data;
    g_size = size;
    char mode = (char)data[0];
    g_flags = size > 1 ? data[1] & 0x0F : 0;
    size_t start = size > 1 ? 2 : 1;
    int first_present = start < size && data[start] == '\n';
    if (first_present) start++;
    const uint8_t *rest = data + start;
    size_t length = size - start;

    fields f;
    g_extra_secret[0] = g_extra_secret[1] = g_extra_secret[2] = NULL;
    switch (mode) {
    case 'c': g_mode_name = "config"; split(rest, length, first_present, 1, &f); mode_config(&f); break;
    case 'o': g_mode_name = "open"; split(rest, length, first_present, 1, &f); mode_open(&f); break;
    case 'a': g_mode_name = "activity"; split(rest, length, first_present, 1, &f); mode_activity(&f); break;
    case 't': g_mode_name = "text"; split(rest, length, first_present, 2, &f); mode_text(&f); break;
    case 'e': g_mode_name = "end"; split(rest, length, first_present, 1, &f); mode_end(&f); break;
    case 'm': g_mode_name = "multipart"; split(rest, length, first_present, 2, &f); mode_multipart(&f); break;
    case 'u': g_mode_name = "bytes"; split(rest, length, first_present, 4, &f); mode_bytes(&f); break;
    case 'U': g_mode_name = "file"; split(rest, length, first_present, 4, &f); mode_file(&f); break;
    case 'w': g_mode_name = "wait"; split(rest, length, first_present, 1, &f); mode_wait(&f); break;
    case 'L': g_mode_name = "listen"; split(rest, length, first_present, 1, &f); mode_listen(&f); break;
    case 'f': g_mode_name = "confirm"; split(rest, length, first_present, 2, &f); mode_confirm(&f); break;
    case 'r': g_mode_name = "tokens"; split(rest, length, first_present, 2, &f); mode_tokens(&f); break;
    case 's': g_mode_name = "status"; split(rest, length, first_present, 1, &f); mode_status(&f); break;
    case 'h': g_mode_name = "handles"; split(rest, length, first_present, 1, &f); mode_handles(&f); break;
    case 'k': g_mode_name = "timeouts"; split(rest, length, first_present, 2, &f); mode_timeouts(&f); break;
    case 'l': g_mode_name = "log"; split(rest, length, first_present, 2, &f); mode_log(&f); break;
    case 'z': g_mode_name = "script"; memset(&f, 0, sizeof f); mode_script(rest, length); break;
    default: return 0;
    }
    free_fields(&f);
    /* What an input may change for the process: the thread's timeouts and
     * the log level. */
    if (mode == 'z' || mode == 'k') {
        char *out = UNWRITTEN;
        int32_t status = dl_set_thread_timeouts(NULL, &out);
        check_out("dl_set_thread_timeouts", status, BIT(DL_OK), out, 0);
    }
    if (g_log_level != DL_LOG_DEBUG) set_log_level(DL_LOG_DEBUG);
    return 0;
}
