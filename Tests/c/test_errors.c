/* What failures look like: service statuses mapped to DL_ERR_*, retries,
 * and transport failures, each with what it says about delivery. */
#include "test_support.h"

#include <stdio.h>
#include <string.h>

struct status_case {
    int http;
    const char *code;
    int32_t expected;
    const char *delivery;
};

void test_status_mapping(const char *protocol) {
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

void test_retries(void) {
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

void test_transport_failures(void) {
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
