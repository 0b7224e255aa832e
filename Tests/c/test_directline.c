/* C test suite for libdirectline, run against the local emulator:
 *     test_directline http://127.0.0.1:PORT
 * It is compiled against include/directline.h with -Werror and linked to
 * the built libdirectline.so. Prints "N passed, N failed" last. */
#define _DEFAULT_SOURCE /* usleep */
#include "directline.h"
#include "emulator_control.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int passed, failed;
static const char *base_url;

#define CHECK(condition) check((condition), #condition, __FILE__, __LINE__)

static int check(int ok, const char *what, const char *file, int line) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
    }
    return ok;
}

static int contains(const char *text, const char *needle) {
    return text != NULL && strstr(text, needle) != NULL;
}

static const char *const protocols[] = {"3.0", "1.1"};

static dl_client *new_client(const char *protocol, const char *extra) {
    char config[1024];
    dl_client *client = NULL;
    char *out = NULL;
    snprintf(config, sizeof config,
             "{\"endpoint\": \"%s\", \"protocol\": \"%s\", \"secret\": \"emulator-secret\"%s%s}",
             base_url, protocol, extra != NULL ? ", " : "", extra != NULL ? extra : "");
    int32_t status = dl_client_new(config, &client, &out);
    CHECK(status == DL_OK && client != NULL);
    dl_string_free(out);
    return client;
}

static void reset_emulator(void) {
    CHECK(emu_post(base_url, "/_emulator/reset", NULL) == 200);
}

static void test_version(void) {
    CHECK(dl_version_number() == DL_VERSION_NUMBER);
    CHECK(strcmp(dl_version(), DL_VERSION_STRING) == 0);
    CHECK(strcmp(dl_status_name(DL_OK), "DL_OK") == 0);
    CHECK(strcmp(dl_status_name(DL_ERR_BOT), "DL_ERR_BOT") == 0);
    CHECK(strcmp(dl_status_name(DL_ERR_INTERNAL), "DL_ERR_INTERNAL") == 0);
    CHECK(strcmp(dl_status_name(999), "DL_ERR_UNKNOWN") == 0);
    CHECK(strcmp(dl_status_name(-1), "DL_ERR_UNKNOWN") == 0);
    dl_string_free(NULL);
}

static void expect_bad_config(const char *config, const char *message_part) {
    dl_client *client = (dl_client *)0x1;
    char *out = (char *)0x1;
    CHECK(dl_client_new(config, &client, &out) == DL_ERR_INVALID_ARGUMENT);
    CHECK(client == NULL);
    CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_ARGUMENT\""));
    if (!CHECK(contains(out, message_part))) fprintf(stderr, "  got: %s\n", out != NULL ? out : "(null)");
    CHECK(!contains(out, "emulator-secret"));
    dl_string_free(out);
}

static void test_bad_configs(void) {
    expect_bad_config(NULL, "config_json must not be NULL");
    expect_bad_config("", "not valid JSON");
    expect_bad_config("{\"secret\": \"emulator-secret\"", "not valid JSON");
    expect_bad_config("{\"secret\": \"\xff\xfe\"}", "not valid UTF-8");
    expect_bad_config("[1, 2]", "must be a JSON object");
    expect_bad_config("{\"secret\": \"emulator-secret\", \"timeout\": 5}", "unknown key \\\"timeout\\\"");
    expect_bad_config("{\"secret\": \"emulator-secret\", \"protocol\": \"4.0\"}", "\\\"3.0\\\" or \\\"1.1\\\"");
    expect_bad_config("{\"secret\": \"emulator-secret\", \"endpoint\": \"http://example.com\"}", "not loopback");
    expect_bad_config("{\"token\": \"a\\r\\nInjected: 1\"}", "control character");

    char *out = NULL;
    CHECK(dl_client_new("{\"secret\": \"s\"}", NULL, &out) == DL_ERR_INVALID_ARGUMENT);
    CHECK(contains(out, "out_client must not be NULL"));
    dl_string_free(out);
    dl_client *client = NULL;
    CHECK(dl_client_new("{\"secret\": \"s\"}", &client, NULL) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}

static void test_handles(void) {
    dl_client *client = new_client("3.0", NULL);
    dl_conversation *conversation = NULL;
    char *out = NULL;

    CHECK(dl_client_free(NULL) == DL_OK);
    CHECK(dl_conversation_free(NULL) == DL_OK);
    CHECK(dl_conversation_info(NULL, &out) == DL_ERR_INVALID_HANDLE);
    CHECK(contains(out, "NULL"));
    dl_string_free(out);

    CHECK(dl_conversation_info((dl_conversation *)0x1234, &out) == DL_ERR_INVALID_HANDLE);
    dl_string_free(out);
    CHECK(dl_conversation_info((dl_conversation *)client, &out) == DL_ERR_INVALID_HANDLE);
    CHECK(contains(out, "another kind"));
    dl_string_free(out);
    CHECK(dl_conversation_free((dl_conversation *)client) == DL_ERR_INVALID_HANDLE);

    CHECK(dl_conversation_open(client, "{\"conversationId\": \"c1\", \"token\": \"t\"}", &conversation, &out) == DL_OK);
    dl_string_free(out);
    CHECK(dl_client_free((dl_client *)conversation) == DL_ERR_INVALID_HANDLE);
    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_conversation_free(conversation) == DL_ERR_INVALID_HANDLE);
    CHECK(dl_send_text(conversation, "u", "x", &out) == DL_ERR_INVALID_HANDLE);
    dl_string_free(out);

    CHECK(dl_client_free(client) == DL_OK);
    CHECK(dl_client_free(client) == DL_ERR_INVALID_HANDLE);
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_ERR_INVALID_HANDLE);
    CHECK(conversation == NULL);
    dl_string_free(out);
}

/* Polls until the echo bot's reply to `text` shows up. */
static int wait_for_echo(dl_conversation *conversation, const char *text) {
    char expected[256];
    snprintf(expected, sizeof expected, "\"text\":\"echo: %s\"", text);
    for (int attempt = 0; attempt < 50; attempt++) {
        char *out = NULL;
        int32_t status = dl_get_activities(conversation, &out);
        int found = status == DL_OK && contains(out, expected);
        dl_string_free(out);
        if (found) return 1;
        usleep(100 * 1000);
    }
    return 0;
}

static void test_conversation(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = NULL;
    char *out = NULL;

    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_OK);
    CHECK(contains(out, "\"conversationId\""));
    CHECK(contains(out, "\"token\""));
    dl_string_free(out);

    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(contains(out, v3 ? "\"protocol\":\"3.0\"" : "\"protocol\":\"1.1\""));
    CHECK(contains(out, "\"watermark\":null"));
    CHECK(!contains(out, "token\""));
    dl_string_free(out);

    CHECK(dl_send_text(conversation, "user1", "hello from C", &out) == DL_OK);
    if (v3) {
        CHECK(contains(out, "\"id\":\""));
        CHECK(contains(out, "\"clientActivityID\":\"dlc-"));
    } else {
        CHECK(out != NULL && strcmp(out, "{}") == 0);
    }
    dl_string_free(out);
    CHECK(wait_for_echo(conversation, "hello from C"));

    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(!contains(out, "\"watermark\":null"));
    dl_string_free(out);

    /* Everything read: a second read returns no old activity. */
    CHECK(dl_get_activities(conversation, &out) == DL_OK);
    CHECK(!contains(out, "hello from C"));
    dl_string_free(out);

    const char *activity = v3
        ? "{\"type\": \"message\", \"from\": {\"id\": \"user1\"}, \"text\": \"custom\", "
          "\"channelData\": {\"clientActivityID\": \"my-id-1\"}}"
        : "{\"from\": \"user1\", \"text\": \"custom\", \"channelData\": {\"k\": 1}}";
    CHECK(dl_send_activity(conversation, activity, &out) == DL_OK);
    if (v3) CHECK(contains(out, "\"clientActivityID\":\"my-id-1\""));
    dl_string_free(out);
    CHECK(wait_for_echo(conversation, "custom"));

    /* Five sends on one client share one TCP connection. */
    reset_emulator();
    dl_conversation *second = NULL;
    CHECK(dl_conversation_start(client, NULL, &second, NULL) == DL_OK);
    for (int i = 0; i < 5; i++) CHECK(dl_send_text(second, "user1", "again", NULL) == DL_OK);
    CHECK(emu_request_count(base_url) == 6);
    CHECK(emu_connection_count(base_url) == 1);

    CHECK(dl_conversation_free(second) == DL_OK);
    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}

static void test_open_existing(const char *protocol) {
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *started = NULL, *opened = NULL;
    char *out = NULL, state[1024], id[128] = "", token[256] = "";

    CHECK(dl_conversation_start(client, NULL, &started, &out) == DL_OK);
    CHECK(out != NULL && sscanf(strstr(out, "\"conversationId\":\"") + 18, "%127[^\"]", id) == 1);
    CHECK(out != NULL && sscanf(strstr(out, "\"token\":\"") + 9, "%255[^\"]", token) == 1);
    dl_string_free(out);

    snprintf(state, sizeof state, "{\"conversationId\": \"%s\", \"token\": \"%s\"}", id, token);
    CHECK(dl_conversation_open(client, state, &opened, &out) == DL_OK);
    CHECK(contains(out, id));
    CHECK(!contains(out, token));
    dl_string_free(out);
    CHECK(dl_send_text(opened, "user1", "via open", NULL) == DL_OK);
    CHECK(wait_for_echo(started, "via open"));

    /* Another conversation's token is refused by the service. */
    snprintf(state, sizeof state, "{\"conversationId\": \"%s-other\", \"token\": \"%s\"}", id, token);
    dl_conversation *wrong = NULL;
    CHECK(dl_conversation_open(client, state, &wrong, NULL) == DL_OK);
    int32_t status = dl_send_text(wrong, "user1", "x", &out);
    CHECK(status == DL_ERR_FORBIDDEN || status == DL_ERR_NOT_FOUND);
    CHECK(!contains(out, token) && !contains(out, "emulator-secret"));
    dl_string_free(out);

    dl_conversation_free(wrong);
    dl_conversation_free(opened);
    dl_conversation_free(started);
    dl_client_free(client);
}

static void test_bad_input_sends_nothing(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = NULL;
    char *out = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, NULL) == DL_OK);
    CHECK(emu_post(base_url, "/_emulator/reset", NULL) == 200);

    const char *bad_activities[] = {
        NULL, "", "not json", "[]", "\"text\"", "{\"a\": 1,}", "{\"type\": \"message\", \"from\": {\"id\": \"u\"}} x",
        v3 ? "{\"from\": {\"id\": \"u\"}}" : "{\"from\": {\"id\": \"u\"}}",
        v3 ? "{\"type\": \"message\"}" : "{\"from\": 7}",
        v3 ? "{\"type\": \"message\", \"from\": {\"id\": \"u\"}, \"channelData\": 1}" : "{\"channelData\": [1]}",
        "{\"type\": \"message\", \"from\": {\"id\": \"\xc3\x28\"}}",
    };
    for (size_t i = 0; i < sizeof bad_activities / sizeof *bad_activities; i++) {
        out = NULL;
        CHECK(dl_send_activity(conversation, bad_activities[i], &out) == DL_ERR_INVALID_ARGUMENT);
        CHECK(contains(out, "\"delivery\":\"not_sent\""));
        dl_string_free(out);
    }
    CHECK(dl_send_text(conversation, NULL, "x", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_send_text(conversation, "u", NULL, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_send_text(conversation, "", "x", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_send_text(conversation, "a\nb", "x", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_send_text(conversation, "u", "\xff", NULL) == DL_ERR_INVALID_ARGUMENT);

    size_t size = 262144 + 1;
    char *huge = malloc(size + 1);
    memset(huge, 'x', size);
    huge[size] = '\0';
    CHECK(dl_send_text(conversation, "u", huge, &out) == DL_ERR_TOO_LARGE);
    CHECK(contains(out, "262144"));
    dl_string_free(out);
    free(huge);

    CHECK(dl_conversation_open(client, "{\"conversationId\": \"..\"}", &(dl_conversation *){NULL}, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_conversation_open(client, "{\"conversationId\": \"c\", \"extra\": 1}", &(dl_conversation *){NULL}, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_conversation_start(client, "{\"user\": 5}", &(dl_conversation *){NULL}, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_conversation_start(client, NULL, NULL, NULL) == DL_ERR_INVALID_ARGUMENT);

    CHECK(emu_request_count(base_url) == 0);
    dl_conversation_free(conversation);
    dl_client_free(client);
}

struct status_case {
    int http;
    const char *code;
    int32_t expected;
    const char *delivery;
};

static void test_status_mapping(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    const struct status_case cases[] = {
        {400, "BadArgument", DL_ERR_BAD_REQUEST, "not_sent"},
        {401, "Unauthorized", DL_ERR_UNAUTHORIZED, "not_sent"},
        {403, "Forbidden", DL_ERR_FORBIDDEN, "not_sent"},
        {403, "TokenExpired", DL_ERR_TOKEN_EXPIRED, "not_sent"},
        {404, "NotFound", DL_ERR_NOT_FOUND, "not_sent"},
        {409, "Conflict", DL_ERR_CONFLICT, "not_sent"},
        {429, "Throttled", DL_ERR_THROTTLED, "not_sent"},
        {500, "ServiceError", v3 ? DL_ERR_SERVICE : DL_ERR_BOT, "unknown"},
        {502, "BotError", DL_ERR_BOT, "unknown"},
        {503, "ServiceUnavailable", DL_ERR_SERVICE, "not_sent"},
        {504, "BotTimeout", DL_ERR_SERVICE, "unknown"},
    };
    reset_emulator();
    dl_client *client = new_client(protocol, "\"retry\": {\"maxAttempts\": 1}");
    dl_conversation *conversation = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, NULL) == DL_OK);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char fault[512], expected_http[64], expected_code[96], expected_delivery[64];
        char *out = NULL;
        snprintf(fault, sizeof fault,
                 "{\"method\": \"POST\", \"path\": \"/(activities|messages)$\", \"action\": \"status\", "
                 "\"status\": %d, \"code\": \"%s\", \"message\": \"injected\", \"retryAfter\": \"1\"}",
                 cases[i].http, cases[i].code);
        CHECK(emu_post(base_url, "/_emulator/faults", fault) == 200);
        int32_t status = dl_send_text(conversation, "user1", "mapped", &out);
        snprintf(expected_http, sizeof expected_http, "\"httpStatus\":%d", cases[i].http);
        snprintf(expected_code, sizeof expected_code, "\"serviceCode\":\"%s\"", cases[i].code);
        snprintf(expected_delivery, sizeof expected_delivery, "\"delivery\":\"%s\"", cases[i].delivery);
        if (!CHECK(status == cases[i].expected)) {
            fprintf(stderr, "  %s HTTP %d: got %s\n", protocol, cases[i].http, dl_status_name(status));
        }
        CHECK(contains(out, expected_http));
        CHECK(contains(out, expected_code));
        CHECK(contains(out, expected_delivery));
        CHECK(contains(out, "\"attempts\":1"));
        CHECK(contains(out, "\"serviceMessage\":\"injected\""));
        CHECK(!contains(out, "emulator-secret"));
        dl_string_free(out);
    }
    /* 409 on start, where the service actually returns it. */
    CHECK(emu_post(base_url, "/_emulator/faults",
                   "{\"method\": \"POST\", \"path\": \"/conversations$\", \"action\": \"status\", \"status\": 409}") == 200);
    dl_conversation *conflicted = NULL;
    CHECK(dl_conversation_start(client, NULL, &conflicted, NULL) == DL_ERR_CONFLICT);
    CHECK(conflicted == NULL);
    dl_conversation_free(conversation);
    dl_client_free(client);
}

static void test_retries(void) {
    reset_emulator();
    dl_client *client = new_client("3.0", "\"retry\": {\"maxAttempts\": 3, \"baseDelayMs\": 1, \"maxDelayMs\": 50}");
    dl_conversation *conversation = NULL;
    char *out = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, NULL) == DL_OK);

    /* 429 then success: retried once after Retry-After. */
    int before = emu_request_count(base_url);
    CHECK(emu_post(base_url, "/_emulator/faults",
                   "{\"path\": \"/activities$\", \"action\": \"status\", \"status\": 429, \"retryAfter\": \"0\"}") == 200);
    CHECK(dl_send_text(conversation, "user1", "retried", &out) == DL_OK);
    dl_string_free(out);
    CHECK(emu_request_count(base_url) - before == 2);

    /* 503 three times: gives up after maxAttempts with the count. */
    before = emu_request_count(base_url);
    CHECK(emu_post(base_url, "/_emulator/faults",
                   "{\"path\": \"/activities$\", \"action\": \"status\", \"status\": 503, \"count\": 3}") == 200);
    CHECK(dl_send_text(conversation, "user1", "x", &out) == DL_ERR_SERVICE);
    CHECK(contains(out, "\"attempts\":3"));
    dl_string_free(out);
    CHECK(emu_request_count(base_url) - before == 3);

    /* 502 is never retried: the bot may have the activity. */
    before = emu_request_count(base_url);
    CHECK(emu_post(base_url, "/_emulator/faults",
                   "{\"path\": \"/activities$\", \"action\": \"deliver_then_fail\", \"status\": 502}") == 200);
    CHECK(dl_send_text(conversation, "user1", "once", &out) == DL_ERR_BOT);
    CHECK(contains(out, "\"delivery\":\"unknown\""));
    dl_string_free(out);
    CHECK(emu_request_count(base_url) - before == 1);

    dl_conversation_free(conversation);
    dl_client_free(client);
}

static void test_transport_failures(void) {
    char *out = NULL;
    dl_client *client = NULL;
    dl_conversation *conversation = NULL;

    /* Nothing listens on port 9 of loopback: a connect failure is not_sent. */
    CHECK(dl_client_new("{\"endpoint\": \"http://127.0.0.1:9\", \"secret\": \"emulator-secret\", "
                        "\"retry\": {\"maxAttempts\": 2, \"baseDelayMs\": 1}}", &client, NULL) == DL_OK);
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_ERR_NETWORK);
    CHECK(contains(out, "\"delivery\":\"not_sent\""));
    CHECK(contains(out, "\"attempts\":2"));
    dl_string_free(out);
    dl_client_free(client);

    reset_emulator();
    client = new_client("3.0", "\"timeoutMs\": 700, \"retry\": {\"maxAttempts\": 1}");
    CHECK(dl_conversation_start(client, NULL, &conversation, NULL) == DL_OK);
    CHECK(emu_post(base_url, "/_emulator/faults", "{\"path\": \"/activities$\", \"action\": \"hang\", \"seconds\": 5}") == 200);
    CHECK(dl_send_text(conversation, "user1", "hang", &out) == DL_ERR_TIMEOUT);
    CHECK(contains(out, "\"delivery\":\"unknown\""));
    dl_string_free(out);

    CHECK(emu_post(base_url, "/_emulator/faults", "{\"path\": \"/activities$\", \"action\": \"garbage\"}") == 200);
    CHECK(dl_send_text(conversation, "user1", "garbage", &out) == DL_ERR_PROTOCOL);
    dl_string_free(out);

    /* 1.1 answers 204; an HTML page instead means a proxy, not the service. */
    dl_client *v1 = new_client("1.1", "\"retry\": {\"maxAttempts\": 1}");
    dl_conversation *v1_conversation = NULL;
    CHECK(dl_conversation_start(v1, NULL, &v1_conversation, NULL) == DL_OK);
    CHECK(emu_post(base_url, "/_emulator/faults", "{\"path\": \"/messages$\", \"action\": \"wrong_type\"}") == 200);
    CHECK(dl_send_text(v1_conversation, "user1", "html", &out) == DL_ERR_PROTOCOL);
    CHECK(contains(out, "\"delivery\":\"unknown\""));
    dl_string_free(out);
    dl_conversation_free(v1_conversation);
    dl_client_free(v1);

    /* The server reads the activity and closes the reused connection: the
     * activity may have been processed, so it must not be sent again. */
    int before = emu_request_count(base_url);
    CHECK(emu_post(base_url, "/_emulator/faults", "{\"path\": \"/activities$\", \"action\": \"close\"}") == 200);
    CHECK(dl_send_text(conversation, "user1", "closed", &out) == DL_ERR_NETWORK);
    CHECK(contains(out, "\"delivery\":\"unknown\""));
    dl_string_free(out);
    CHECK(emu_request_count(base_url) - before == 1);

    dl_conversation_free(conversation);
    dl_client_free(client);
}

/* Writes `size` pseudo-random bytes to a new temporary file; returns its
 * path (static buffer) and the bytes in *out_bytes (caller frees). */
static const char *temp_file(size_t size, unsigned char **out_bytes) {
    static char path[64];
    unsigned char *bytes = malloc(size > 0 ? size : 1);
    unsigned state = (unsigned)size * 2654435761u + 1;
    for (size_t i = 0; i < size; i++) {
        state = state * 1103515245u + 12345u;
        bytes[i] = (unsigned char)(state >> 16);
    }
    snprintf(path, sizeof path, "/tmp/dl-upload-test-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, bytes, size) == (ssize_t)size);
    close(fd);
    *out_bytes = bytes;
    return path;
}

/* Fetches the bytes the emulator stored for the n-th attachment (0-based)
 * of a conversation and compares them with `expected`. */
static int stored_attachment_equals(const char *conversation_id, int n, const unsigned char *expected, size_t size) {
    char path[256];
    snprintf(path, sizeof path, "/_emulator/conversations/%s", conversation_id);
    char *stored = emu_get(base_url, path);
    const char *at = stored;
    for (int i = 0; at != NULL && i <= n; i++) {
        at = strstr(at, "/_emulator/attachments/");
        if (at != NULL && i < n) at++;
    }
    int equal = 0;
    if (at != NULL) {
        char attachment[256];
        size_t length = 0;
        sscanf(at, "%255[^\"]", attachment);
        char *bytes = emu_get_bytes(base_url, attachment, &length);
        equal = bytes != NULL && length == size && memcmp(bytes, expected, size) == 0;
        free(bytes);
    }
    free(stored);
    return equal;
}

struct progress_record {
    uint64_t last_done, last_total;
    int calls, decreased, cancel_after, reentrant_status;
    dl_conversation *conversation;
};

static int32_t record_progress(void *userdata, uint64_t done, uint64_t total) {
    struct progress_record *record = userdata;
    if (done < record->last_done) record->decreased = 1;
    record->last_done = done;
    record->last_total = total;
    record->calls++;
    if (record->conversation != NULL) {
        /* Calling back in, even to free our own handle, is refused. */
        record->reentrant_status = dl_conversation_free(record->conversation);
        record->conversation = NULL;
    }
    return record->cancel_after > 0 && record->calls >= record->cancel_after;
}

static void test_uploads(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    reset_emulator();
    dl_client *client = new_client(protocol, "\"maxUploadBytes\": 1048576");
    dl_conversation *conversation = NULL;
    char id[128] = "", *out = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_OK);
    CHECK(out != NULL && sscanf(strstr(out, "\"conversationId\":\"") + 18, "%127[^\"]", id) == 1);
    dl_string_free(out);

    /* Exactly the limit goes through byte for byte, with progress to the end. */
    unsigned char *bytes = NULL;
    const char *path = temp_file(1048576, &bytes);
    struct progress_record record = {0, 0, 0, 0, 0, 0, NULL};
    CHECK(dl_conversation_set_progress(conversation, record_progress, &record) == DL_OK);
    CHECK(dl_upload_file(conversation, "user1", path, "application/octet-stream", "exact.bin", &out) == DL_OK);
    CHECK(v3 ? contains(out, "\"id\":\"") : strcmp(out, "{}") == 0);
    dl_string_free(out);
    CHECK(record.calls > 0 && !record.decreased);
    CHECK(record.last_done == 1048576 && record.last_total == 1048576);
    CHECK(stored_attachment_equals(id, 0, bytes, 1048576));
    unlink(path);
    free(bytes);

    /* One byte over the limit, a missing file, a directory: nothing is sent. */
    int before = emu_request_count(base_url);
    path = temp_file(1048577, &bytes);
    CHECK(dl_upload_file(conversation, "user1", path, NULL, NULL, &out) == DL_ERR_TOO_LARGE);
    CHECK(contains(out, "1048577"));
    dl_string_free(out);
    CHECK(dl_upload_bytes(conversation, "user1", bytes, 1048577, NULL, NULL, NULL) == DL_ERR_TOO_LARGE);
    unlink(path);
    free(bytes);
    CHECK(dl_upload_file(conversation, "user1", "/nonexistent/file.bin", NULL, NULL, &out) == DL_ERR_IO);
    CHECK(contains(out, "\"delivery\":\"not_sent\""));
    dl_string_free(out);
    CHECK(dl_upload_file(conversation, "user1", "/tmp", NULL, NULL, NULL) == DL_ERR_IO);
    CHECK(dl_upload_bytes(conversation, "user1", "x", 1, "text/plain\r\nX-Injected: 1", NULL, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_bytes(conversation, "user1", NULL, 5, NULL, NULL, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_bytes(conversation, NULL, "x", 1, NULL, NULL, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_multipart(conversation, "user1", "{\"files\": []}", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_multipart(conversation, "user1", "{\"files\": [{\"dataBase64\": \"not base64!\"}]}", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_multipart(conversation, "user1", "{\"files\": [{\"path\": \"/a\", \"dataBase64\": \"\"}]}", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_multipart(conversation, "user1", "{\"files\": [{\"path\": \"/nonexistent\"}]}", NULL) == DL_ERR_IO);
    CHECK(emu_request_count(base_url) == before);

    /* One byte, from memory, with a hostile file name. */
    CHECK(dl_upload_bytes(conversation, "user1", "Z", 1, NULL, "a\"b\r\nX-Injected: 1.txt", &out) == DL_OK);
    dl_string_free(out);
    char *log = emu_get(base_url, "/_emulator/requests");
    CHECK(contains(log, "filename=\\\"a%22b%0D%0AX-Injected: 1.txt\\\""));
    CHECK(!contains(log, "\"x-injected\""));
    free(log);
    CHECK(stored_attachment_equals(id, 1, (const unsigned char *)"Z", 1));

    /* Multipart: a message part and two files, in order. */
    path = temp_file(3000, &bytes);
    char manifest[512];
    snprintf(manifest, sizeof manifest,
             "{\"activity\": {\"text\": \"see attached\"}, \"files\": [{\"path\": \"%s\", \"filename\": \"one.bin\"}, "
             "{\"dataBase64\": \"aGVsbG8=\", \"contentType\": \"text/plain\", \"filename\": \"two.txt\"}]}", path);
    CHECK(dl_upload_multipart(conversation, "user1", manifest, &out) == DL_OK);
    if (v3) CHECK(contains(out, "\"clientActivityID\":\"dlc-"));
    dl_string_free(out);
    CHECK(stored_attachment_equals(id, 2, bytes, 3000));
    CHECK(stored_attachment_equals(id, 3, (const unsigned char *)"hello", 5));
    unlink(path);
    free(bytes);

    /* Cancel from the progress callback: nothing is stored. */
    path = temp_file(600000, &bytes);
    record = (struct progress_record){0, 0, 0, 0, 1, 0, NULL};
    CHECK(dl_upload_file(conversation, "user1", path, NULL, NULL, &out) == DL_ERR_CANCELLED);
    CHECK(contains(out, "\"delivery\":\"not_sent\""));
    dl_string_free(out);
    CHECK(record.calls == 1);

    /* Re-entry from the callback is refused; the upload still completes. */
    record = (struct progress_record){0, 0, 0, 0, 0, 0, conversation};
    CHECK(dl_upload_file(conversation, "user1", path, NULL, NULL, NULL) == DL_OK);
    CHECK(record.reentrant_status == DL_ERR_REENTRANT);
    /* The cancelled upload stored nothing: this one is attachment 4. */
    CHECK(stored_attachment_equals(id, 4, bytes, 600000));
    CHECK(!stored_attachment_equals(id, 5, bytes, 600000));
    CHECK(dl_conversation_set_progress(conversation, NULL, NULL) == DL_OK);
    CHECK(dl_conversation_set_progress(NULL, NULL, NULL) == DL_ERR_INVALID_HANDLE);
    unlink(path);
    free(bytes);

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}

enum { THREADS = 8, SENDS_PER_THREAD = 10 };

struct worker {
    dl_conversation *conversation;
    int ok, invalid_handle, other;
};

static void *send_repeatedly(void *argument) {
    struct worker *worker = argument;
    for (int i = 0; i < SENDS_PER_THREAD; i++) {
        char *out = NULL;
        int32_t status = dl_send_text(worker->conversation, "user1", "threaded", &out);
        int32_t read = dl_get_activities(worker->conversation, NULL);
        if (status == DL_OK && read == DL_OK) {
            worker->ok++;
        } else if (status == DL_ERR_INVALID_HANDLE || read == DL_ERR_INVALID_HANDLE) {
            worker->invalid_handle++;
        } else {
            worker->other++;
            fprintf(stderr, "  thread send: %s %s\n", dl_status_name(status), out != NULL ? out : "");
        }
        dl_string_free(out);
    }
    return NULL;
}

/* Runs THREADS workers on one conversation; if free_midway, the handle is
 * freed while they run. Returns the summed counts. */
static struct worker run_workers(dl_conversation *conversation, int free_midway) {
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    struct worker total = {conversation, 0, 0, 0};
    for (int i = 0; i < THREADS; i++) {
        workers[i] = total;
        CHECK(pthread_create(&threads[i], NULL, send_repeatedly, &workers[i]) == 0);
    }
    if (free_midway) {
        usleep(20 * 1000);
        CHECK(dl_conversation_free(conversation) == DL_OK);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        total.ok += workers[i].ok;
        total.invalid_handle += workers[i].invalid_handle;
        total.other += workers[i].other;
    }
    return total;
}

static void test_threads(void) {
    reset_emulator();
    dl_client *client = new_client("3.0", NULL);
    dl_conversation *conversation = NULL;
    char path[256], id[128] = "", *out = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_OK);
    CHECK(out != NULL && sscanf(strstr(out, "\"conversationId\":\"") + 18, "%127[^\"]", id) == 1);
    dl_string_free(out);

    struct worker total = run_workers(conversation, 0);
    CHECK(total.ok == THREADS * SENDS_PER_THREAD);
    CHECK(total.invalid_handle == 0 && total.other == 0);
    /* Every send arrived exactly once: the user's activities plus the bot's echoes. */
    snprintf(path, sizeof path, "/_emulator/conversations/%s", id);
    char *stored = emu_get(base_url, path);
    CHECK(count_occurrences(stored, "\"text\":\"threaded\"") == THREADS * SENDS_PER_THREAD);
    CHECK(count_occurrences(stored, "\"text\":\"echo: threaded\"") == THREADS * SENDS_PER_THREAD);
    free(stored);

    /* Freeing the handle while eight threads use it: calls already running
     * finish, later ones get DL_ERR_INVALID_HANDLE, nothing crashes. */
    total = run_workers(conversation, 1);
    CHECK(total.other == 0);
    CHECK(total.ok + total.invalid_handle == THREADS * SENDS_PER_THREAD);
    CHECK(total.invalid_handle > 0);
    CHECK(dl_client_free(client) == DL_OK);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s EMULATOR_URL\n", argv[0]);
        return 2;
    }
    base_url = argv[1];
    test_version();
    test_bad_configs();
    test_handles();
    for (size_t i = 0; i < 2; i++) {
        test_conversation(protocols[i]);
        test_open_existing(protocols[i]);
        test_bad_input_sends_nothing(protocols[i]);
        test_status_mapping(protocols[i]);
        test_uploads(protocols[i]);
    }
    test_retries();
    test_transport_failures();
    test_threads();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
