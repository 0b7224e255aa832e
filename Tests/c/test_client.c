/* The library and its handles: version and status names, client
 * configuration, and every call on a NULL, forged, freed or wrong-kind
 * handle or with a missing argument. */
#include "test_support.h"

#include <stdio.h>
#include <string.h>

void test_version(void) {
    CHECK(dl_version_number() == DL_VERSION_NUMBER);
    CHECK(strcmp(dl_version(), DL_VERSION_STRING) == 0);
    CHECK(strcmp(dl_status_name(DL_OK), "DL_OK") == 0);
    CHECK(strcmp(dl_status_name(DL_ERR_BOT), "DL_ERR_BOT") == 0);
    CHECK(strcmp(dl_status_name(DL_ERR_INTERNAL), "DL_ERR_INTERNAL") == 0);
    CHECK(DL_ERR_UNSUPPORTED == 22);
    CHECK(strcmp(dl_status_name(DL_ERR_UNSUPPORTED), "DL_ERR_UNSUPPORTED") == 0);
    CHECK(strcmp(dl_status_name(23), "DL_ERR_UNKNOWN") == 0);
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

void test_bad_configs(void) {
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

void test_handles(void) {
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

void test_lifecycle_handles(void) {
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
