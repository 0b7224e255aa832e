/* Conversations started and opened, activities sent and read back, and
 * bad input that is refused before anything is sent. */
#define _DEFAULT_SOURCE /* usleep */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

void test_conversation(const char *protocol) {
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

void test_open_existing(const char *protocol) {
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

void test_bad_input_sends_nothing(const char *protocol) {
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
