/* A conversation beyond one handle: its saved state, resumed (and, on
 * 3.0, reconnected) from; and its end. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void test_save_and_resume(const char *protocol) {
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

void test_end(const char *protocol) {
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
