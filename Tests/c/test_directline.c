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
#include <time.h>
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

/* ---- Lifecycle: tokens, automatic refresh, saved state, wait, end ---- */

/* Logged requests with exactly this path (and method, unless NULL). */
static int log_count(const char *method, const char *path) {
    char needle[512];
    if (method != NULL) {
        snprintf(needle, sizeof needle, "\"method\":\"%s\",\"path\":\"%s\"", method, path);
    } else {
        snprintf(needle, sizeof needle, "\"path\":\"%s\"", path);
    }
    char *log = emu_get(base_url, "/_emulator/requests");
    int count = count_occurrences(log, needle);
    free(log);
    return count;
}

static void set_token_lifetime(int seconds) {
    char config[64];
    snprintf(config, sizeof config, "{\"tokenLifetime\": %d}", seconds);
    CHECK(emu_post(base_url, "/_emulator/config", config) == 200);
}

/* Restores the emulator's start-up settings and checks they are back. */
static void reset_emulator_config(void) {
    reset_emulator();
    char *config = emu_get(base_url, "/_emulator/config");
    CHECK(contains(config, "\"tokenLifetime\":1800"));
    CHECK(contains(config, "\"nullWatermark\":false"));
    free(config);
}

static dl_client *new_token_client(const char *protocol, const char *token) {
    char config[1024];
    dl_client *client = NULL;
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"protocol\": \"%s\", \"token\": \"%s\"}",
             base_url, protocol, token);
    CHECK(dl_client_new(config, &client, NULL) == DL_OK && client != NULL);
    return client;
}

/* Starts a conversation; its id and token go to the buffers (128, 256). */
static dl_conversation *start_conversation(dl_client *client, char *id, char *token) {
    dl_conversation *conversation = NULL;
    char *out = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_OK);
    CHECK(json_string(out, "conversationId", id, 128));
    CHECK(json_string(out, "token", token, 256));
    dl_string_free(out);
    return conversation;
}

static dl_conversation *open_state(dl_client *client, const char *state) {
    dl_conversation *conversation = NULL;
    char *out = NULL;
    int32_t status = dl_conversation_open(client, state, &conversation, &out);
    if (!CHECK(status == DL_OK && conversation != NULL)) fprintf(stderr, "  open: %s\n", out != NULL ? out : "");
    dl_string_free(out);
    return conversation;
}

/* Sends `text` as user1 and checks the send succeeded. */
static int send_ok(dl_conversation *conversation, const char *text) {
    char *out = NULL;
    int32_t status = dl_send_text(conversation, "user1", text, &out);
    if (!CHECK(status == DL_OK)) fprintf(stderr, "  send %s: %s\n", text, out != NULL ? out : "");
    dl_string_free(out);
    return status == DL_OK;
}

/* A copy of a saved state (a JSON object) with `member` added; caller frees. */
static char *state_with(const char *state, const char *member) {
    size_t length = state != NULL ? strlen(state) : 0;
    char *copy = malloc(length + strlen(member) + 4);
    if (length < 2 || state[length - 1] != '}') {
        strcpy(copy, "{}");
        return copy;
    }
    memcpy(copy, state, length - 1);
    sprintf(copy + length - 1, ",%s}", member);
    return copy;
}

static void test_lifecycle_handles(void) {
    reset_emulator();
    dl_client *client = new_client("3.0", NULL);
    dl_conversation *conversation = NULL, *freed = NULL;
    char *out = NULL;
    CHECK(dl_conversation_open(client, "{\"conversationId\": \"c1\"}", &conversation, NULL) == DL_OK);
    CHECK(dl_conversation_open(client, "{\"conversationId\": \"c2\"}", &freed, NULL) == DL_OK);
    CHECK(dl_conversation_free(freed) == DL_OK);
    dl_client *gone = new_client("3.0", NULL);
    CHECK(dl_client_free(gone) == DL_OK);
    dl_conversation *forged = (dl_conversation *)0x1234;
    dl_conversation *bad_conversations[] = {NULL, forged, freed, (dl_conversation *)client};
    dl_client *bad_clients[] = {NULL, (dl_client *)0x1234, gone, (dl_client *)conversation};

    for (size_t i = 0; i < 4; i++) {
        dl_conversation *bad = bad_conversations[i];
        out = NULL;
        CHECK(dl_conversation_state(bad, &out) == DL_ERR_INVALID_HANDLE);
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_HANDLE\""));
        dl_string_free(out);
        out = NULL;
        CHECK(dl_conversation_refresh(bad, &out) == DL_ERR_INVALID_HANDLE);
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_HANDLE\""));
        dl_string_free(out);
        out = NULL;
        CHECK(dl_conversation_wait(bad, "{\"timeoutMs\": 0}", &out) == DL_ERR_INVALID_HANDLE);
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_HANDLE\""));
        dl_string_free(out);
        out = NULL;
        CHECK(dl_conversation_end(bad, "user1", &out) == DL_ERR_INVALID_HANDLE);
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_HANDLE\""));
        dl_string_free(out);
        out = NULL;
        CHECK(dl_conversation_info(bad, &out) == DL_ERR_INVALID_HANDLE);
        dl_string_free(out);
        /* NULL out_json: the status alone, no crash. */
        CHECK(dl_conversation_state(bad, NULL) == DL_ERR_INVALID_HANDLE);
        CHECK(dl_conversation_refresh(bad, NULL) == DL_ERR_INVALID_HANDLE);
        CHECK(dl_conversation_wait(bad, NULL, NULL) == DL_ERR_INVALID_HANDLE);
        CHECK(dl_conversation_end(bad, "user1", NULL) == DL_ERR_INVALID_HANDLE);
        CHECK(dl_conversation_info(bad, NULL) == DL_ERR_INVALID_HANDLE);
    }
    for (size_t i = 0; i < 4; i++) {
        dl_client *bad = bad_clients[i];
        dl_conversation *opened = (dl_conversation *)0x1;
        out = NULL;
        CHECK(dl_token_generate(bad, NULL, &out) == DL_ERR_INVALID_HANDLE);
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_HANDLE\""));
        dl_string_free(out);
        out = NULL;
        CHECK(dl_token_refresh(bad, "some-token", &out) == DL_ERR_INVALID_HANDLE);
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_HANDLE\""));
        dl_string_free(out);
        out = NULL;
        CHECK(dl_conversation_open(bad, "{\"conversationId\": \"c1\"}", &opened, &out) == DL_ERR_INVALID_HANDLE);
        CHECK(opened == NULL);
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_HANDLE\""));
        dl_string_free(out);
        CHECK(dl_token_generate(bad, NULL, NULL) == DL_ERR_INVALID_HANDLE);
        CHECK(dl_token_refresh(bad, "some-token", NULL) == DL_ERR_INVALID_HANDLE);
        CHECK(dl_conversation_open(bad, "{\"conversationId\": \"c1\"}", &opened, NULL) == DL_ERR_INVALID_HANDLE);
    }

    /* Missing pointers are bad arguments. */
    dl_conversation *opened = (dl_conversation *)0x1;
    out = NULL;
    CHECK(dl_conversation_open(client, NULL, &opened, &out) == DL_ERR_INVALID_ARGUMENT);
    CHECK(opened == NULL);
    CHECK(contains(out, "state_json must not be NULL"));
    dl_string_free(out);
    out = NULL;
    CHECK(dl_conversation_open(client, "{\"conversationId\": \"c1\"}", NULL, &out) == DL_ERR_INVALID_ARGUMENT);
    CHECK(contains(out, "out_conversation must not be NULL"));
    dl_string_free(out);
    CHECK(dl_conversation_open(client, "{\"conversationId\": \"c1\"}", NULL, NULL) == DL_ERR_INVALID_ARGUMENT);
    out = NULL;
    CHECK(dl_token_refresh(client, NULL, &out) == DL_ERR_INVALID_ARGUMENT);
    CHECK(contains(out, "token must not be NULL"));
    dl_string_free(out);
    CHECK(dl_token_refresh(client, NULL, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_token_refresh(client, "", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_token_refresh(client, "a\r\nInjected: 1", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_token_refresh(client, "\xff", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_token_generate(client, "not json", NULL) == DL_ERR_INVALID_ARGUMENT);
    out = NULL;
    CHECK(dl_conversation_end(conversation, NULL, &out) == DL_ERR_INVALID_ARGUMENT);
    CHECK(contains(out, "\"delivery\":\"not_sent\""));
    dl_string_free(out);
    CHECK(dl_conversation_end(conversation, "", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_conversation_end(conversation, "a\nb", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(emu_request_count(base_url) == 0);

    /* Calls that succeed without sending also accept a NULL out_json. */
    CHECK(dl_conversation_info(conversation, NULL) == DL_OK);
    CHECK(dl_conversation_state(conversation, NULL) == DL_OK);
    dl_conversation *quiet = NULL;
    CHECK(dl_conversation_open(client, "{\"conversationId\": \"c3\"}", &quiet, NULL) == DL_OK && quiet != NULL);
    CHECK(dl_conversation_free(quiet) == DL_OK);
    CHECK(emu_request_count(base_url) == 0);

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}

static void test_wait(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    const char *empty_list = v3 ? "\"activities\":[]" : "\"messages\":[]";
    char id[128], token[256], first_mark[32] = "", second_mark[32] = "", info_mark[32] = "", *out = NULL;
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);

    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"watermark\":null"));
    CHECK(contains(out, "\"ended\":false"));
    CHECK(contains(out, "\"autoRefresh\":true"));
    CHECK(contains(out, "\"tokenRefreshError\":null"));
    CHECK(!contains(out, "\"tokenExpiresAt\":null"));
    CHECK(!contains(out, token));
    dl_string_free(out);

    /* The reply to the first message, without the caller's own message. */
    send_ok(conversation, "wait one");
    out = NULL;
    int32_t status = dl_conversation_wait(conversation, NULL, &out);
    if (!CHECK(status == DL_OK)) fprintf(stderr, "  wait: %s\n", out != NULL ? out : "");
    CHECK(contains(out, v3 ? "\"activities\":[" : "\"messages\":["));
    CHECK(contains(out, "\"text\":\"echo: wait one\""));
    CHECK(count_occurrences(out, "\"text\":\"echo: ") == 1);
    CHECK(!contains(out, "\"text\":\"wait one\""));
    CHECK(contains(out, "\"timedOut\":false"));
    CHECK(json_string(out, "watermark", first_mark, sizeof first_mark));
    dl_string_free(out);

    /* The handle's watermark advanced to the one the wait returned. */
    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(json_string(out, "watermark", info_mark, sizeof info_mark));
    CHECK(strcmp(info_mark, first_mark) == 0 && atoi(info_mark) > 0);
    dl_string_free(out);

    /* A second wait returns only the new reply. */
    send_ok(conversation, "wait two");
    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 5000, \"intervalMs\": 100}", &out) == DL_OK);
    CHECK(contains(out, "\"text\":\"echo: wait two\""));
    CHECK(!contains(out, "echo: wait one"));
    CHECK(count_occurrences(out, "\"text\":\"echo: ") == 1);
    CHECK(contains(out, "\"timedOut\":false"));
    CHECK(json_string(out, "watermark", second_mark, sizeof second_mark));
    CHECK(atoi(second_mark) > atoi(first_mark));
    dl_string_free(out);

    /* includeOwn: the caller's message too, before the reply. */
    send_ok(conversation, "wait three");
    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 5000, \"includeOwn\": true}", &out) == DL_OK);
    const char *own = out != NULL ? strstr(out, "\"text\":\"wait three\"") : NULL;
    const char *reply = out != NULL ? strstr(out, "\"text\":\"echo: wait three\"") : NULL;
    CHECK(own != NULL && reply != NULL && own < reply);
    CHECK(!contains(out, "wait two"));
    dl_string_free(out);

    /* userId names the caller's user: another user's message ends the wait. */
    char *other = NULL;
    CHECK(dl_send_text(conversation, "user2", "from user2", &other) == DL_OK);
    dl_string_free(other);
    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 5000, \"userId\": \"user1\"}", &out) == DL_OK);
    CHECK(contains(out, "\"text\":\"from user2\""));
    CHECK(contains(out, "\"text\":\"echo: from user2\""));
    CHECK(contains(out, "\"timedOut\":false"));
    dl_string_free(out);

    /* Nothing sent: a short wait times out with an empty list, not an error. */
    double started = now_seconds();
    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 300, \"intervalMs\": 100}", &out) == DL_OK);
    double elapsed = now_seconds() - started;
    CHECK(contains(out, "\"timedOut\":true"));
    CHECK(contains(out, empty_list));
    CHECK(elapsed >= 0.25 && elapsed < 5.0);
    dl_string_free(out);
    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 0}", &out) == DL_OK);
    CHECK(contains(out, "\"timedOut\":true") && contains(out, empty_list));
    dl_string_free(out);

    /* Bad options: refused before anything is sent. */
    const char *bad_options[] = {
        "{\"timeout\": 100}", "{\"intervalMs\": 0}", "{\"intervalMs\": 49}", "{\"timeoutMs\": -1}",
        "{\"timeoutMs\": \"100\"}", "{\"timeoutMs\": 1.5}", "{\"afterSendMs\": true}", "{\"includeOwn\": 1}",
        "{\"includeOwn\": \"yes\"}", "{\"userId\": 5}", "{\"userId\": \"\"}", "{\"userId\": \"a\\nb\"}",
        "", "{", "{\"timeoutMs\": 100,}", "[]", "\"timeoutMs\"", "{\"timeoutMs\": 100} x", "\xff",
    };
    int before = emu_request_count(base_url);
    for (size_t i = 0; i < sizeof bad_options / sizeof *bad_options; i++) {
        out = NULL;
        status = dl_conversation_wait(conversation, bad_options[i], &out);
        if (!CHECK(status == DL_ERR_INVALID_ARGUMENT)) {
            fprintf(stderr, "  %s options %s: %s\n", protocol, bad_options[i], dl_status_name(status));
        }
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_ARGUMENT\""));
        dl_string_free(out);
    }
    CHECK(dl_conversation_wait(conversation, "{\"intervalMs\": 0}", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(emu_request_count(base_url) == before);

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}

/* A service that answers no watermark sends everything again on every
 * poll: each reply is still returned once. */
static void test_wait_without_watermarks(const char *protocol) {
    char id[128], token[256], *out = NULL;
    reset_emulator();
    CHECK(emu_post(base_url, "/_emulator/config", "{\"nullWatermark\": true}") == 200);
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);

    send_ok(conversation, "again one");
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 5000}", &out) == DL_OK);
    CHECK(count_occurrences(out, "\"text\":\"echo: again one\"") == 1);
    CHECK(contains(out, "\"timedOut\":false"));
    dl_string_free(out);

    send_ok(conversation, "again two");
    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 5000}", &out) == DL_OK);
    CHECK(count_occurrences(out, "\"text\":\"echo: again two\"") == 1);
    CHECK(!contains(out, "again one"));
    dl_string_free(out);

    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 250, \"intervalMs\": 100}", &out) == DL_OK);
    CHECK(contains(out, "\"timedOut\":true"));
    CHECK(!contains(out, "echo: "));
    dl_string_free(out);

    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"watermark\":null"));
    dl_string_free(out);

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
    reset_emulator_config();
}

/* Waits on `conversation` for exactly the echoes of "resume two" and
 * "resume three", in order, and nothing older. */
static void expect_resumed_replies(dl_conversation *conversation) {
    char *out = NULL;
    int32_t status = dl_conversation_wait(conversation, "{\"timeoutMs\": 5000, \"userId\": \"user1\"}", &out);
    if (!CHECK(status == DL_OK)) fprintf(stderr, "  wait: %s\n", out != NULL ? out : "");
    const char *two = out != NULL ? strstr(out, "\"text\":\"echo: resume two\"") : NULL;
    const char *three = out != NULL ? strstr(out, "\"text\":\"echo: resume three\"") : NULL;
    CHECK(two != NULL && three != NULL && two < three);
    CHECK(count_occurrences(out, "\"text\":\"echo: ") == 2);
    CHECK(!contains(out, "resume one"));
    CHECK(!contains(out, "\"text\":\"resume two\""));
    CHECK(contains(out, "\"timedOut\":false"));
    dl_string_free(out);
    /* Nothing more. */
    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 200, \"intervalMs\": 100, \"userId\": \"user1\"}", &out) == DL_OK);
    CHECK(contains(out, "\"timedOut\":true"));
    CHECK(!contains(out, "echo: "));
    dl_string_free(out);
}

static void test_save_and_resume(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    char id[128], token[256], saved_token[256], saved_mark[32], info_mark[32], *out = NULL, *state = NULL;
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *first = start_conversation(client, id, token);
    send_ok(first, "resume one");
    CHECK(dl_conversation_wait(first, "{\"timeoutMs\": 5000}", &out) == DL_OK);
    CHECK(contains(out, "echo: resume one"));
    dl_string_free(out);

    /* The saved state holds the token and the watermark of what was read. */
    CHECK(dl_conversation_state(first, &state) == DL_OK);
    char saved_id[128];
    CHECK(json_string(state, "conversationId", saved_id, sizeof saved_id) && strcmp(saved_id, id) == 0);
    CHECK(json_string(state, "token", saved_token, sizeof saved_token) && strcmp(saved_token, token) == 0);
    CHECK(json_string(state, "watermark", saved_mark, sizeof saved_mark) && atoi(saved_mark) > 0);
    CHECK(!contains(state, "\"tokenExpiresAt\":null"));
    CHECK(!contains(state, "emulator-secret"));
    CHECK(dl_conversation_free(first) == DL_OK);

    /* Opening sends nothing; another handle sends two more messages. */
    int before = emu_request_count(base_url);
    dl_conversation *second = open_state(client, state);
    CHECK(emu_request_count(base_url) == before);
    send_ok(second, "resume two");
    send_ok(second, "resume three");
    CHECK(dl_conversation_free(second) == DL_OK);

    /* A third handle from the saved state reads exactly what came after it. */
    before = emu_request_count(base_url);
    dl_conversation *resumed = NULL;
    CHECK(dl_conversation_open(client, state, &resumed, &out) == DL_OK);
    CHECK(contains(out, id));
    CHECK(!contains(out, token));
    CHECK(json_string(out, "watermark", info_mark, sizeof info_mark) && strcmp(info_mark, saved_mark) == 0);
    CHECK(contains(out, "\"autoRefresh\":true"));
    CHECK(!contains(out, "\"tokenExpiresAt\":null"));
    dl_string_free(out);
    CHECK(emu_request_count(base_url) == before);
    expect_resumed_replies(resumed);
    CHECK(dl_conversation_free(resumed) == DL_OK);

    char *reconnect = state_with(state, "\"reconnect\": true");
    if (v3) {
        /* Reconnect: GET conversations/{id} with the saved watermark, then the same replies. */
        char path[256], query[64];
        snprintf(path, sizeof path, "/v3/directline/conversations/%s", id);
        CHECK(log_count("GET", path) == 0);
        resumed = NULL;
        out = NULL;
        int32_t status = dl_conversation_open(client, reconnect, &resumed, &out);
        if (!CHECK(status == DL_OK && resumed != NULL)) fprintf(stderr, "  reconnect: %s\n", out != NULL ? out : "");
        CHECK(!contains(out, token));
        CHECK(contains(out, "\"streamUrl\":\"ws:"));
        dl_string_free(out);
        CHECK(log_count("GET", path) == 1);
        snprintf(query, sizeof query, "\"query\":\"watermark=%s\"", saved_mark);
        char *log = emu_get(base_url, "/_emulator/requests");
        CHECK(contains(log, query));
        free(log);
        expect_resumed_replies(resumed);
        CHECK(dl_conversation_free(resumed) == DL_OK);
    } else {
        /* 1.1 has no reconnect: refused, nothing sent. */
        before = emu_request_count(base_url);
        resumed = (dl_conversation *)0x1;
        out = NULL;
        CHECK(dl_conversation_open(client, reconnect, &resumed, &out) == DL_ERR_INVALID_ARGUMENT);
        CHECK(resumed == NULL);
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_ARGUMENT\""));
        CHECK(!contains(out, token));
        dl_string_free(out);
        CHECK(emu_request_count(base_url) == before);
    }
    free(reconnect);

    /* A state saved before anything was read (null watermark) round-trips too. */
    dl_conversation *fresh = start_conversation(client, id, token);
    char *fresh_state = NULL;
    CHECK(dl_conversation_state(fresh, &fresh_state) == DL_OK);
    CHECK(contains(fresh_state, "\"watermark\":null"));
    dl_conversation *reopened = open_state(client, fresh_state);
    send_ok(fresh, "from the start");
    out = NULL;
    CHECK(dl_conversation_wait(reopened, "{\"timeoutMs\": 5000, \"userId\": \"user1\"}", &out) == DL_OK);
    CHECK(count_occurrences(out, "\"text\":\"echo: from the start\"") == 1);
    dl_string_free(out);
    dl_string_free(fresh_state);
    CHECK(dl_conversation_free(reopened) == DL_OK);
    CHECK(dl_conversation_free(fresh) == DL_OK);

    /* Bad states: refused, nothing sent. */
    const char *bad_states[] = {
        "{}", "{\"conversationId\": 5}", "{\"conversationId\": \"\"}", "{\"conversationId\": \"c\", \"token\": \"\"}",
        "{\"conversationId\": \"c\", \"tokenExpiresAt\": \"tomorrow\"}",
        "{\"conversationId\": \"c\", \"tokenExpiresAt\": \"2026-02-31T00:00:00Z\"}",
        "{\"conversationId\": \"c\", \"expires_in\": -1}",
        "{\"conversationId\": \"c\", \"expires_in\": 60, \"tokenExpiresAt\": \"2030-01-01T00:00:00Z\"}",
        "{\"conversationId\": \"c\", \"reconnect\": \"yes\"}", "{\"conversationId\": \"c\", \"watermark\": 3}",
        "not json", "[]",
    };
    before = emu_request_count(base_url);
    for (size_t i = 0; i < sizeof bad_states / sizeof *bad_states; i++) {
        dl_conversation *refused = (dl_conversation *)0x1;
        int32_t status = dl_conversation_open(client, bad_states[i], &refused, NULL);
        if (!CHECK(status == DL_ERR_INVALID_ARGUMENT && refused == NULL)) {
            fprintf(stderr, "  %s state %s: %s\n", protocol, bad_states[i], dl_status_name(status));
        }
    }
    CHECK(emu_request_count(base_url) == before);

    dl_string_free(state);
    CHECK(dl_client_free(client) == DL_OK);
}

/* A 2-second token outlives a 5-second conversation: the handle refreshes
 * it in the background at half-life. */
static void test_token_refreshed_in_time(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    char id[128], token[256], current[256], path[256], *out = NULL;
    reset_emulator();
    set_token_lifetime(2);
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);
    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"autoRefresh\":true"));
    CHECK(!contains(out, "\"tokenExpiresAt\":null"));
    dl_string_free(out);

    double started = now_seconds();
    int ok = 0;
    for (int i = 0; i < 5; i++) {
        char text[32], expected[64];
        snprintf(text, sizeof text, "tick %d", i);
        snprintf(expected, sizeof expected, "\"text\":\"echo: %s\"", text);
        if (send_ok(conversation, text)) {
            out = NULL;
            int32_t status = dl_conversation_wait(conversation, "{\"timeoutMs\": 3000, \"intervalMs\": 100}", &out);
            if (CHECK(status == DL_OK && contains(out, expected))) {
                ok++;
            } else {
                fprintf(stderr, "  %s tick %d: %s %s\n", protocol, i, dl_status_name(status), out != NULL ? out : "");
            }
            dl_string_free(out);
        }
        double next = started + (i + 1) * 1.0;
        double left = next - now_seconds();
        if (left > 0) usleep((useconds_t)(left * 1e6));
    }
    CHECK(ok == 5);
    CHECK(now_seconds() - started >= 4.5);

    if (v3) {
        snprintf(path, sizeof path, "/v3/directline/tokens/refresh");
        CHECK(log_count("POST", path) >= 2);
    } else {
        snprintf(path, sizeof path, "/api/tokens/%s/renew", id);
        CHECK(log_count(NULL, path) >= 2);
    }
    char *log = emu_get(base_url, "/_emulator/requests");
    CHECK(!contains(log, "\"status\":403"));
    free(log);

    CHECK(dl_conversation_state(conversation, &out) == DL_OK);
    CHECK(json_string(out, "token", current, sizeof current) && strcmp(current, token) != 0);
    dl_string_free(out);
    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"tokenRefreshError\":null"));
    dl_string_free(out);
    /* Still refreshing on its own. */
    int scheduled = 0;
    for (int attempt = 0; attempt < 20 && !scheduled; attempt++) {
        out = NULL;
        CHECK(dl_conversation_info(conversation, &out) == DL_OK);
        scheduled = contains(out, "\"autoRefresh\":true");
        dl_string_free(out);
        if (!scheduled) usleep(50 * 1000);
    }
    CHECK(scheduled);

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
    reset_emulator_config();
}

/* A token nobody refreshes expires: DL_ERR_TOKEN_EXPIRED, without the token. */
static void test_token_expired(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    char id[128], token[256], state[512], *out = NULL;
    reset_emulator();
    set_token_lifetime(1);
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *started = start_conversation(client, id, token);
    CHECK(dl_conversation_free(started) == DL_OK);

    /* No expiry given: the handle cannot know when to refresh. */
    snprintf(state, sizeof state, "{\"conversationId\": \"%s\", \"token\": \"%s\"}", id, token);
    dl_conversation *conversation = open_state(client, state);
    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"autoRefresh\":false"));
    CHECK(contains(out, "\"tokenExpiresAt\":null"));
    dl_string_free(out);
    usleep(1200 * 1000);

    out = NULL;
    CHECK(dl_send_text(conversation, "user1", "too late", &out) == DL_ERR_TOKEN_EXPIRED);
    CHECK(contains(out, "\"name\":\"DL_ERR_TOKEN_EXPIRED\""));
    CHECK(contains(out, "\"status\":11"));
    CHECK(contains(out, "\"serviceCode\":\"TokenExpired\""));
    CHECK(contains(out, "\"delivery\":\"not_sent\""));
    CHECK(!contains(out, token));
    dl_string_free(out);

    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 1000}", &out) == DL_ERR_TOKEN_EXPIRED);
    CHECK(contains(out, "\"name\":\"DL_ERR_TOKEN_EXPIRED\""));
    CHECK(!contains(out, token));
    dl_string_free(out);

    out = NULL;
    CHECK(dl_conversation_refresh(conversation, &out) == DL_ERR_TOKEN_EXPIRED);
    CHECK(contains(out, "\"name\":\"DL_ERR_TOKEN_EXPIRED\""));
    CHECK(!contains(out, token));
    dl_string_free(out);

    out = NULL;
    CHECK(dl_token_refresh(client, token, &out) == DL_ERR_TOKEN_EXPIRED);
    CHECK(!contains(out, token));
    dl_string_free(out);

    if (v3) {
        /* Reconnecting with the expired token fails the same way. */
        snprintf(state, sizeof state, "{\"conversationId\": \"%s\", \"token\": \"%s\", \"reconnect\": true}", id, token);
        dl_conversation *reconnected = (dl_conversation *)0x1;
        out = NULL;
        CHECK(dl_conversation_open(client, state, &reconnected, &out) == DL_ERR_TOKEN_EXPIRED);
        CHECK(reconnected == NULL);
        CHECK(!contains(out, token));
        dl_string_free(out);
    }

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
    reset_emulator_config();
}

static void test_token_calls(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    char id[128], token[256], generated[256], generated_id[128] = "", refreshed[256], *out = NULL;
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);

    /* Bad requests: refused, nothing sent. */
    const char *bad_requests[] = {
        "not json", "[]", "{\"bogus\": 1}", "{\"user\": 5}", "{\"user\": {\"id\": \"a\\nb\"}}",
        "{\"user\": {\"id\": \"dl_u\", \"extra\": 1}}", "{\"trustedOrigins\": [1]}", "{\"trustedOrigins\": \"x\"}",
        v3 ? "\"x\"" : "{\"user\": {\"id\": \"dl_u\"}}", v3 ? "{\"user\": []}" : "{\"trustedOrigins\": []}",
    };
    for (size_t i = 0; i < sizeof bad_requests / sizeof *bad_requests; i++) {
        out = NULL;
        int32_t status = dl_token_generate(client, bad_requests[i], &out);
        if (!CHECK(status == DL_ERR_INVALID_ARGUMENT)) {
            fprintf(stderr, "  %s generate %s: %s\n", protocol, bad_requests[i], dl_status_name(status));
        }
        CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_ARGUMENT\""));
        dl_string_free(out);
    }
    CHECK(emu_request_count(base_url) == 0);

    out = NULL;
    if (v3) {
        CHECK(dl_token_generate(client, "{\"user\": {\"id\": \"dl_user1\", \"name\": \"Ann\"}, "
                                        "\"trustedOrigins\": [\"https://example.com\"]}", &out) == DL_OK);
        CHECK(json_string(out, "conversationId", generated_id, sizeof generated_id));
        CHECK(contains(out, "\"expires_in\":"));
        CHECK(log_count("POST", "/v3/directline/tokens/generate") == 1);
        char *log = emu_get(base_url, "/_emulator/requests");
        CHECK(contains(log, "dl_user1") && contains(log, "example.com"));
        free(log);
    } else {
        CHECK(dl_token_generate(client, NULL, &out) == DL_OK);
        CHECK(out != NULL && strncmp(out, "{\"token\":\"", 10) == 0);
        CHECK(log_count("POST", "/api/tokens/conversation") == 1);
    }
    CHECK(json_string(out, "token", generated, sizeof generated) && strlen(generated) > 0);
    dl_string_free(out);
    CHECK(dl_token_generate(client, "{}", NULL) == DL_OK);

    /* A client holding the generated token starts the conversation and talks. */
    dl_client *token_client = new_token_client(protocol, generated);
    dl_conversation *conversation = start_conversation(token_client, id, token);
    CHECK(strcmp(token, generated) == 0);
    if (v3) CHECK(strcmp(id, generated_id) == 0);
    const char *user = v3 ? "dl_user1" : "user1";
    out = NULL;
    CHECK(dl_send_text(conversation, user, "with a token", &out) == DL_OK);
    dl_string_free(out);
    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 5000}", &out) == DL_OK);
    CHECK(contains(out, "\"text\":\"echo: with a token\""));
    CHECK(contains(out, "\"timedOut\":false"));
    dl_string_free(out);

    /* Only the secret issues tokens. */
    out = NULL;
    CHECK(dl_token_generate(token_client, NULL, &out) == DL_ERR_FORBIDDEN);
    CHECK(!contains(out, generated));
    dl_string_free(out);

    if (v3) {
        /* tokens/refresh: a new token, which works; the old one still does. */
        out = NULL;
        CHECK(dl_token_refresh(client, generated, &out) == DL_OK);
        CHECK(json_string(out, "token", refreshed, sizeof refreshed) && strcmp(refreshed, generated) != 0);
        CHECK(contains(out, "\"expires_in\":"));
        dl_string_free(out);
        CHECK(log_count("POST", "/v3/directline/tokens/refresh") == 1);
        char state[512];
        snprintf(state, sizeof state, "{\"conversationId\": \"%s\", \"token\": \"%s\"}", id, refreshed);
        dl_conversation *with_new = open_state(client, state);
        send_ok(with_new, "refreshed token");
        CHECK(dl_conversation_free(with_new) == DL_OK);
        send_ok(conversation, "old token");
        /* The secret is not a token. */
        out = NULL;
        CHECK(dl_token_refresh(client, "emulator-secret", &out) == DL_ERR_FORBIDDEN);
        CHECK(!contains(out, "emulator-secret"));
        dl_string_free(out);
    } else {
        /* 1.1 renews through a conversation of this client only. */
        int before = emu_request_count(base_url);
        out = NULL;
        CHECK(dl_token_refresh(client, "not-a-known-token", &out) == DL_ERR_INVALID_ARGUMENT);
        CHECK(!contains(out, "not-a-known-token"));
        dl_string_free(out);
        CHECK(dl_token_refresh(client, generated, NULL) == DL_ERR_INVALID_ARGUMENT);
        CHECK(emu_request_count(base_url) == before);

        char path[256], saved[256];
        snprintf(path, sizeof path, "/api/tokens/%s/renew", id);
        out = NULL;
        CHECK(dl_token_refresh(token_client, generated, &out) == DL_OK);
        CHECK(out != NULL && strncmp(out, "{\"token\":\"", 10) == 0);
        CHECK(json_string(out, "token", refreshed, sizeof refreshed) && strcmp(refreshed, generated) != 0);
        dl_string_free(out);
        CHECK(log_count(NULL, path) == 1);
        /* The handle keeps the new token. */
        CHECK(dl_conversation_state(conversation, &out) == DL_OK);
        CHECK(json_string(out, "token", saved, sizeof saved) && strcmp(saved, refreshed) == 0);
        dl_string_free(out);
        send_ok(conversation, "renewed");
    }

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(token_client) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}

static void test_conversation_refresh(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    char id[128], token[256], current[256], path[256], *out = NULL;
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);

    /* A handle on the client's secret has nothing to refresh. */
    dl_conversation *secret_backed = open_state(client, "{\"conversationId\": \"on-the-secret\"}");
    out = NULL;
    CHECK(dl_conversation_refresh(secret_backed, &out) == DL_ERR_INVALID_ARGUMENT);
    CHECK(contains(out, "\"name\":\"DL_ERR_INVALID_ARGUMENT\""));
    CHECK(!contains(out, "emulator-secret"));
    dl_string_free(out);
    CHECK(dl_conversation_state(secret_backed, &out) == DL_OK);
    CHECK(contains(out, "\"token\":null"));
    CHECK(!contains(out, "emulator-secret"));
    dl_string_free(out);
    CHECK(dl_conversation_info(secret_backed, &out) == DL_OK);
    CHECK(contains(out, "\"autoRefresh\":false"));
    dl_string_free(out);
    CHECK(emu_request_count(base_url) == 0);
    CHECK(dl_conversation_free(secret_backed) == DL_OK);

    /* A started handle: a new token, kept in the handle and used. */
    dl_conversation *conversation = start_conversation(client, id, token);
    out = NULL;
    CHECK(dl_conversation_refresh(conversation, &out) == DL_OK);
    CHECK(contains(out, id));
    CHECK(contains(out, "\"autoRefresh\":true"));
    CHECK(!contains(out, "\"tokenExpiresAt\":null"));
    CHECK(!contains(out, "\"token\":"));
    dl_string_free(out);
    CHECK(dl_conversation_state(conversation, &out) == DL_OK);
    CHECK(json_string(out, "token", current, sizeof current) && strcmp(current, token) != 0);
    dl_string_free(out);
    if (v3) {
        CHECK(log_count("POST", "/v3/directline/tokens/refresh") == 1);
    } else {
        snprintf(path, sizeof path, "/api/tokens/%s/renew", id);
        CHECK(log_count(NULL, path) == 1);
    }
    send_ok(conversation, "after refresh");
    if (!v3) {
        /* A service that refuses GET on renew with 405 gets a POST. */
        CHECK(emu_post(base_url, "/_emulator/faults",
                       "{\"method\": \"GET\", \"path\": \"/renew$\", \"action\": \"status\", \"status\": 405}") == 200);
        out = NULL;
        CHECK(dl_conversation_refresh(conversation, &out) == DL_OK);
        dl_string_free(out);
        CHECK(log_count("GET", path) == 2);
        CHECK(log_count("POST", path) == 1);
        CHECK(dl_conversation_state(conversation, &out) == DL_OK);
        CHECK(json_string(out, "token", current, sizeof current) && strcmp(current, token) != 0);
        dl_string_free(out);
        send_ok(conversation, "after the POST renew");
    }
    char *log = emu_get(base_url, "/_emulator/requests");
    char header[300];
    snprintf(header, sizeof header, "\"authorization\":\"Bearer %s\"", current);
    CHECK(contains(log, header));
    free(log);
    CHECK(dl_conversation_free(conversation) == DL_OK);

    /* An automatic refresh the service refuses stops, and info says why. */
    set_token_lifetime(2);
    CHECK(emu_post(base_url, "/_emulator/faults",
                   v3 ? "{\"path\": \"/tokens/refresh$\", \"action\": \"status\", \"status\": 403, \"count\": -1}"
                      : "{\"path\": \"/renew$\", \"action\": \"status\", \"status\": 403, \"count\": -1}") == 200);
    conversation = start_conversation(client, id, token);
    int reported = 0;
    for (int attempt = 0; attempt < 40 && !reported; attempt++) {
        usleep(100 * 1000);
        out = NULL;
        CHECK(dl_conversation_info(conversation, &out) == DL_OK);
        reported = out != NULL && !contains(out, "\"tokenRefreshError\":null");
        if (reported) {
            CHECK(contains(out, "\"tokenRefreshError\":\""));
            CHECK(contains(out, "\"autoRefresh\":false"));
            CHECK(!contains(out, token));
        }
        dl_string_free(out);
    }
    CHECK(reported);
    CHECK(dl_conversation_free(conversation) == DL_OK);

    CHECK(dl_client_free(client) == DL_OK);
    reset_emulator_config();
}

static void test_end(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    char id[128], token[256], path[256], *out = NULL;
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);
    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"ended\":false"));
    CHECK(contains(out, "\"autoRefresh\":true"));
    dl_string_free(out);

    int before = emu_request_count(base_url);
    out = NULL;
    CHECK(dl_conversation_end(conversation, "user1", &out) == DL_OK);
    if (v3) {
        CHECK(contains(out, "\"id\":\""));
        CHECK(contains(out, "\"clientActivityID\":\"dlc-"));
        CHECK(emu_request_count(base_url) == before + 1);
        snprintf(path, sizeof path, "/_emulator/conversations/%s", id);
        char *stored = emu_get(base_url, path);
        CHECK(contains(stored, "\"type\":\"endOfConversation\""));
        CHECK(contains(stored, "\"ended\":true"));
        free(stored);
    } else {
        CHECK(out != NULL && strcmp(out, "{}") == 0);
        CHECK(emu_request_count(base_url) == before);
    }
    dl_string_free(out);

    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"ended\":true"));
    CHECK(contains(out, "\"autoRefresh\":false"));
    dl_string_free(out);

    /* An explicit refresh still works but does not restart the automatic one. */
    out = NULL;
    CHECK(dl_conversation_refresh(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"ended\":true"));
    CHECK(contains(out, "\"autoRefresh\":false"));
    dl_string_free(out);

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}

struct waiter {
    dl_conversation *conversation;
    int32_t status;
    char *out;
    double returned_at;
    int waiting;
    pthread_mutex_t mutex;
    pthread_cond_t condition;
};

static void *wait_long(void *argument) {
    struct waiter *waiter = argument;
    pthread_mutex_lock(&waiter->mutex);
    waiter->waiting = 1;
    pthread_cond_signal(&waiter->condition);
    pthread_mutex_unlock(&waiter->mutex);
    waiter->status = dl_conversation_wait(waiter->conversation, "{\"timeoutMs\": 30000}", &waiter->out);
    waiter->returned_at = now_seconds();
    return NULL;
}

static void test_wait_cancelled_by_free(const char *protocol) {
    char id[128], token[256];
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);
    struct waiter waiter;
    memset(&waiter, 0, sizeof waiter);
    waiter.conversation = conversation;
    waiter.status = -1;
    pthread_mutex_init(&waiter.mutex, NULL);
    pthread_cond_init(&waiter.condition, NULL);
    pthread_t thread;
    double started = now_seconds();
    CHECK(pthread_create(&thread, NULL, wait_long, &waiter) == 0);
    pthread_mutex_lock(&waiter.mutex);
    while (!waiter.waiting) pthread_cond_wait(&waiter.condition, &waiter.mutex);
    pthread_mutex_unlock(&waiter.mutex);
    /* Let it get well into the wait, then free the handle under it. */
    usleep(400 * 1000);
    double freed_at = now_seconds();
    CHECK(dl_conversation_free(conversation) == DL_OK);
    pthread_join(thread, NULL);
    if (!CHECK(waiter.status == DL_ERR_CANCELLED)) {
        fprintf(stderr, "  %s wait after free: %s\n", protocol, dl_status_name(waiter.status));
    }
    CHECK(contains(waiter.out, "\"name\":\"DL_ERR_CANCELLED\""));
    CHECK(waiter.returned_at >= freed_at && waiter.returned_at - freed_at < 10.0);
    CHECK(waiter.returned_at - started < 15.0);
    dl_string_free(waiter.out);
    pthread_mutex_destroy(&waiter.mutex);
    pthread_cond_destroy(&waiter.condition);
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 0}", NULL) == DL_ERR_INVALID_HANDLE);
    CHECK(dl_client_free(client) == DL_OK);
}


/* ---- Regressions: bugs these tests found ---- */

/* A handle resumed with dl_conversation_open from a saved state must keep
 * its short-lived token fresh too. 1.1 renew answers no expires_in: the
 * handle once assumed 1800 s instead of the token's real lifetime, and the
 * token lapsed; saved state now carries tokenLifetime. */
static void test_resumed_token_refreshed_in_time(const char *protocol) {
    char id[128], token[256], *state = NULL;
    reset_emulator();
    set_token_lifetime(2);
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *started = start_conversation(client, id, token);
    CHECK(dl_conversation_state(started, &state) == DL_OK);
    CHECK(dl_conversation_free(started) == DL_OK);
    dl_conversation *resumed = open_state(client, state);
    double began = now_seconds();
    int ok = 0;
    for (int i = 0; i < 5; i++) {
        double left = began + (i + 1) * 1.0 - now_seconds();
        if (left > 0) usleep((useconds_t)(left * 1e6));
        char *out = NULL;
        int32_t status = dl_send_text(resumed, "user1", "resumed tick", &out);
        if (CHECK(status == DL_OK)) {
            ok++;
        } else {
            fprintf(stderr, "  %s resumed send at %d s: %s\n", protocol, i + 1, dl_status_name(status));
        }
        dl_string_free(out);
    }
    CHECK(ok == 5);
    dl_string_free(state);
    CHECK(dl_conversation_free(resumed) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
    reset_emulator_config();
}

/* info's autoRefresh must stay true while an automatic refresh is in
 * flight (the library will go on refreshing afterwards). */
static void test_auto_refresh_in_flight(const char *protocol) {
    char id[128], token[256], *out = NULL;
    reset_emulator();
    set_token_lifetime(4);
    CHECK(emu_post(base_url, "/_emulator/faults",
                   "{\"path\": \"/(tokens/refresh|renew)$\", \"action\": \"delay\", \"seconds\": 1}") == 200);
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);
    usleep(2400 * 1000); /* the refresh went out at 2 s and is answered at 3 s */
    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    if (!CHECK(contains(out, "\"autoRefresh\":true"))) fprintf(stderr, "  %s info: %s\n", protocol, out);
    dl_string_free(out);
    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
    reset_emulator_config();
}

/* --- the log callback and per-thread timeouts ----------------------------- */

struct log_capture {
    pthread_mutex_t mutex;
    int lines, info_lines, reentrant;
    int saw_redacted_authorization, saw_secret, saw_token;
    char token[256];
};

static void capture_log(void *userdata, int32_t level, const char *message) {
    struct log_capture *capture = userdata;
    /* Calling back in is refused, never a deadlock. */
    int32_t again = dl_set_thread_timeouts(NULL, NULL);
    pthread_mutex_lock(&capture->mutex);
    capture->lines++;
    if (level == DL_LOG_INFO) capture->info_lines++;
    if (again == DL_ERR_REENTRANT) capture->reentrant++;
    if (strncmp(message, "> Authorization: [redacted]", 27) == 0) capture->saw_redacted_authorization = 1;
    if (strstr(message, "emulator-secret") != NULL) capture->saw_secret = 1;
    if (capture->token[0] != '\0' && strstr(message, capture->token) != NULL) capture->saw_token = 1;
    pthread_mutex_unlock(&capture->mutex);
}

static void test_log_callback(void) {
    reset_emulator();
    struct log_capture capture;
    memset(&capture, 0, sizeof capture);
    pthread_mutex_init(&capture.mutex, NULL);
    char *out = NULL, id[128] = "";
    CHECK(dl_set_log_callback(capture_log, &capture, 9, &out) == DL_ERR_INVALID_ARGUMENT);
    CHECK(contains(out, "level"));
    dl_string_free(out);

    /* DEBUG: libcurl's trace, with the credential redacted. */
    CHECK(dl_set_log_callback(capture_log, &capture, DL_LOG_DEBUG, NULL) == DL_OK);
    dl_client *client = new_client("3.0", NULL);
    dl_conversation *conversation = start_conversation(client, id, capture.token);
    CHECK(send_ok(conversation, "logged"));
    CHECK(capture.saw_redacted_authorization);
    CHECK(!capture.saw_secret && !capture.saw_token);
    CHECK(capture.reentrant == capture.lines && capture.lines > 3);

    /* INFO from eight threads at once: one line per request. */
    CHECK(dl_set_log_callback(capture_log, &capture, DL_LOG_INFO, NULL) == DL_OK);
    capture.info_lines = 0;
    struct worker total = run_workers(conversation, 0);
    CHECK(total.ok == THREADS * SENDS_PER_THREAD);
    CHECK(capture.info_lines == 2 * THREADS * SENDS_PER_THREAD); /* a send and a read each */
    CHECK(!capture.saw_secret && !capture.saw_token);

    /* Off: no more calls, and the userdata may go once this returns. */
    CHECK(dl_set_log_callback(NULL, NULL, DL_LOG_INFO, NULL) == DL_OK);
    int before = capture.lines;
    CHECK(send_ok(conversation, "unlogged"));
    CHECK(capture.lines == before);
    dl_conversation_free(conversation);
    dl_client_free(client);
    pthread_mutex_destroy(&capture.mutex);
}

static void test_thread_timeouts(void) {
    reset_emulator();
    char *out = NULL, id[128] = "", token[256] = "";
    dl_client *client = new_client("3.0", "\"timeoutMs\": 20000, \"retry\": {\"maxAttempts\": 1}");
    dl_conversation *conversation = start_conversation(client, id, token);
    CHECK(emu_post(base_url, "/_emulator/faults",
                   "{\"path\": \"/activities$\", \"action\": \"hang\", \"seconds\": 30, \"count\": -1}") == 200);
    CHECK(dl_set_thread_timeouts("{\"timeoutMs\": 300}", &out) == DL_OK);
    CHECK(contains(out, "\"timeoutMs\":300") && contains(out, "\"connectTimeoutMs\":null"));
    dl_string_free(out);
    double started = now_seconds();
    CHECK(dl_send_text(conversation, "user1", "bounded", &out) == DL_ERR_TIMEOUT);
    CHECK(now_seconds() - started < 5.0);
    CHECK(contains(out, "\"delivery\":\"unknown\""));
    dl_string_free(out);
    /* Refused options leave the override as it was. */
    CHECK(dl_set_thread_timeouts("{\"timeoutMs\": 0}", &out) == DL_ERR_INVALID_ARGUMENT);
    dl_string_free(out);
    CHECK(dl_set_thread_timeouts("{\"total\": 5}", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_set_thread_timeouts("[]", NULL) == DL_ERR_INVALID_ARGUMENT);
    started = now_seconds();
    CHECK(dl_send_text(conversation, "user1", "still bounded", NULL) == DL_ERR_TIMEOUT);
    CHECK(now_seconds() - started < 5.0);
    /* Cleared: the client's 20 s applies, so a 1 s delay succeeds. */
    CHECK(dl_set_thread_timeouts(NULL, &out) == DL_OK);
    CHECK(contains(out, "\"timeoutMs\":null"));
    dl_string_free(out);
    reset_emulator();
    dl_conversation_free(conversation);
    dl_client_free(client);
    client = new_client("3.0", "\"timeoutMs\": 20000");
    conversation = start_conversation(client, id, token);
    CHECK(emu_post(base_url, "/_emulator/faults",
                   "{\"path\": \"/activities$\", \"action\": \"delay\", \"seconds\": 1}") == 200);
    CHECK(send_ok(conversation, "unbounded"));
    dl_conversation_free(conversation);
    dl_client_free(client);
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
    test_lifecycle_handles();
    for (size_t i = 0; i < 2; i++) {
        test_wait(protocols[i]);
        test_wait_without_watermarks(protocols[i]);
        test_save_and_resume(protocols[i]);
        test_token_refreshed_in_time(protocols[i]);
        test_token_expired(protocols[i]);
        test_token_calls(protocols[i]);
        test_conversation_refresh(protocols[i]);
        test_end(protocols[i]);
        test_wait_cancelled_by_free(protocols[i]);
    }
    for (size_t i = 0; i < 2; i++) {
        test_resumed_token_refreshed_in_time(protocols[i]);
        test_auto_refresh_in_flight(protocols[i]);
    }
    test_retries();
    test_transport_failures();
    test_threads();
    test_log_callback();
    test_thread_timeouts();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
