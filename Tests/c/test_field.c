/* What field deployments rely on: a locale at the start, x-ms-bot-agent
 * and the caller's headers, a token endpoint (Copilot Studio, with its
 * regional settings), international file names. Each refusal is checked
 * in the emulator's log: nothing was sent. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Waits for the bot's activity holding `needle`; 1 when it came. */
static int wait_for(dl_conversation *conversation, const char *needle) {
    for (int i = 0; i < 10; i++) {
        char *out = NULL;
        int32_t status = dl_conversation_wait(conversation, "{\"timeoutMs\": 2000, \"intervalMs\": 50}", &out);
        int found = status == DL_OK && contains(out, needle);
        dl_string_free(out);
        if (found) return 1;
        if (status != DL_OK) return 0;
    }
    return 0;
}

/* Starts with `request`; the status, and the handle freed at once. */
static int32_t start_with(dl_client *client, const char *request, char **out) {
    dl_conversation *conversation = NULL;
    int32_t status = dl_conversation_start(client, request, &conversation, out);
    dl_conversation_free(conversation);
    return status;
}

void test_field_locale(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    const char *starts = v3 ? "/v3/directline/conversations" : "/api/conversations";
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    char *out = NULL;
    if (v3) {
        dl_conversation *conversation = NULL;
        CHECK(dl_conversation_start(client, "{\"locale\": \"fr-FR\", \"user\": {\"id\": \"dl_u\"}}", &conversation,
                                    &out) == DL_OK);
        dl_string_free(out);
        /* The bot's welcome already speaks the user's language. */
        CHECK(wait_for(conversation, "\"text\":\"welcome (fr-FR)\""));
        char *log = emu_get(base_url, "/_emulator/requests");
        CHECK(contains(log, "\\\"locale\\\":\\\"fr-FR\\\""));
        free(log);
        dl_conversation_free(conversation);
        CHECK(start_with(client, "{\"locale\": \"zh-Hant-TW\"}", NULL) == DL_OK);
        CHECK(log_count("POST", starts) == 2);
    }
    /* Refused with nothing sent: malformed tags, and any locale on 1.1. */
    const char *bad[] = {"{\"locale\": \"fr_FR\"}", "{\"locale\": \"\"}", "{\"locale\": \"en--US\"}",
                         "{\"locale\": 7}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        out = NULL;
        CHECK(start_with(client, bad[i], &out) == DL_ERR_INVALID_ARGUMENT);
        CHECK(contains(out, "locale"));
        dl_string_free(out);
    }
    if (!v3) {
        out = NULL;
        CHECK(start_with(client, "{\"locale\": \"fr-FR\"}", &out) == DL_ERR_INVALID_ARGUMENT);
        CHECK(contains(out, "1.1"));
        dl_string_free(out);
    }
    CHECK(log_count("POST", starts) == (v3 ? 2 : 0));
    /* A token carries no locale: generate refuses one. */
    if (v3) {
        CHECK(dl_token_generate(client, "{\"locale\": \"fr-FR\"}", NULL) == DL_ERR_INVALID_ARGUMENT);
        CHECK(log_count("POST", "/v3/directline/tokens/generate") == 0);
    }
    dl_client_free(client);
}

void test_field_headers(const char *protocol) {
    reset_emulator();
    dl_client *client = new_client(protocol, "\"botAgent\": \"CTest/1.0\", "
                                             "\"headers\": {\"X-Request-Source\": \"kiosk-12\"}");
    char id[128], token[256], expected[256];
    dl_conversation *conversation = start_conversation(client, id, token);
    CHECK(send_ok(conversation, "hello"));
    dl_conversation_free(conversation);
    char *log = emu_get(base_url, "/_emulator/requests");
    snprintf(expected, sizeof expected, "\"x-ms-bot-agent\":\"DirectLine/%s (libdirectline %s; CTest/1.0)\"", protocol,
             dl_version());
    CHECK(count_occurrences(log, expected) == 2);
    CHECK(count_occurrences(log, "\"x-request-source\":\"kiosk-12\"") == 2);
    free(log);
    dl_client_free(client);

    /* Each refusal names what is wrong, and the client is not made. */
    const char *bad[][2] = {
        {"\"headers\": {\"Authorization\": \"Bearer x\"}", "Authorization"},
        {"\"headers\": {\"X-A\": \"a\\r\\nX-Injected: 1\"}", "X-A"},
        {"\"headers\": {\"Bad Name\": \"v\"}", "Bad Name"},
        {"\"headers\": {\"Sec-WebSocket-Protocol\": \"v\"}", "Sec-WebSocket-Protocol"},
        {"\"headers\": {\"X-A\": \"1\", \"x-a\": \"2\"}", "twice"},
        {"\"headers\": [\"X-A: 1\"]", "headers"},
        {"\"botAgent\": \"My(App)\"", "botAgent"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char config[512], *out = NULL;
        dl_client *refused = NULL;
        snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"protocol\": \"%s\", \"secret\": \"s\", %s}", base_url,
                 protocol, bad[i][0]);
        CHECK(dl_client_new(config, &refused, &out) == DL_ERR_INVALID_ARGUMENT && refused == NULL);
        if (!CHECK(contains(out, bad[i][1]))) fprintf(stderr, "  %s: %s\n", bad[i][0], out);
        dl_string_free(out);
    }
}

/* A Copilot Studio agent as a maker configures it: one URL, the token
 * endpoint; the Direct Line host comes from the regional settings. */
void test_field_token_endpoint(void) {
    reset_emulator();
    char config[1024], *out = NULL;
    snprintf(config, sizeof config,
             "{\"tokenEndpoint\": \"%s/powervirtualagents/botsbyschema/cr1_c/directline/token"
             "?api-version=2022-03-01-preview\"}",
             base_url);
    dl_client *client = NULL;
    CHECK(dl_client_new(config, &client, NULL) == DL_OK);
    dl_conversation *conversation = NULL;
    CHECK(dl_conversation_start(client, "{\"locale\": \"de-DE\"}", &conversation, &out) == DL_OK);
    char bound[128] = "";
    CHECK(json_string(out, "conversationId", bound, sizeof bound));
    dl_string_free(out);
    CHECK(wait_for(conversation, "welcome (de-DE)"));
    CHECK(send_ok(conversation, "hi"));
    CHECK(wait_for(conversation, "echo: hi"));
    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"autoRefresh\":true"));
    dl_string_free(out);
    /* Tokens on their own, and no conversation opened without one. */
    CHECK(dl_token_generate(client, NULL, &out) == DL_OK);
    CHECK(contains(out, "\"token\":\"") && contains(out, "\"expires_in\":"));
    dl_string_free(out);
    CHECK(dl_token_generate(client, "{\"user\": {\"id\": \"dl_u\"}}", NULL) == DL_ERR_INVALID_ARGUMENT);
    dl_conversation *opened = NULL;
    char state[256];
    snprintf(state, sizeof state, "{\"conversationId\": \"%s\"}", bound);
    CHECK(dl_conversation_open(client, state, &opened, NULL) == DL_ERR_INVALID_ARGUMENT && opened == NULL);

    char path[256];
    snprintf(path, sizeof path, "/region/europe/v3/directline/conversations/%s/activities", bound);
    CHECK(log_count("POST", path) == 1);
    CHECK(log_count("GET", "/powervirtualagents/regionalchannelsettings") == 1);
    CHECK(log_count("GET", "/powervirtualagents/botsbyschema/cr1_c/directline/token") == 2);
    CHECK(log_count("POST", "/v3/directline/conversations") == 0);

    /* Resumed by a new client: opening sends nothing; the first thing the
     * library's own thread sends (the stream's reconnect GET) reads the
     * regional settings first, without blocking that thread. */
    char *saved = NULL;
    CHECK(dl_conversation_state(conversation, &saved) == DL_OK);
    dl_conversation_free(conversation);
    dl_client_free(client);
    CHECK(dl_client_new(config, &client, NULL) == DL_OK);
    int before = emu_request_count(base_url);
    CHECK(dl_conversation_open(client, saved, &opened, NULL) == DL_OK);
    dl_string_free(saved);
    CHECK(emu_request_count(base_url) == before);
    CHECK(dl_conversation_listen(opened, NULL, NULL) == DL_OK);
    int online = 0;
    for (int i = 0; i < 40 && !online; i++) {
        out = NULL;
        if (dl_conversation_next(opened, 250, &out) == DL_OK) online = contains(out, "\"state\":\"online\"");
        dl_string_free(out);
    }
    CHECK(online);
    CHECK(log_count("GET", "/powervirtualagents/regionalchannelsettings") == 2);
    snprintf(path, sizeof path, "/region/europe/v3/directline/conversations/%s", bound);
    CHECK(log_count("GET", path) == 1);
    dl_conversation_free(opened);
    dl_client_free(client);

    /* The token endpoint's failure is the mapped status, naming it. */
    CHECK(emu_post(base_url, "/_emulator/faults",
                   "{\"method\": \"GET\", \"path\": \"/powervirtualagents/botsbyschema/cr1_c/directline/token\", "
                   "\"action\": \"status\", \"status\": 403, \"count\": 1}") == 200);
    CHECK(dl_client_new(config, &client, NULL) == DL_OK);
    out = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_ERR_FORBIDDEN && conversation == NULL);
    CHECK(contains(out, "tokenEndpoint"));
    dl_string_free(out);
    dl_client_free(client);
}

void test_field_filenames(const char *protocol) {
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    char id[128], token[256], *out = NULL;
    dl_conversation *conversation = start_conversation(client, id, token);
    /* Raw: filename* (the emulator refuses raw UTF-8 in the header). */
    CHECK(dl_upload_bytes(conversation, "user1", "abc", 3, "text/plain", "r\xc3\xa9sum\xc3\xa9 \xe6\x8a\xa5.txt",
                          &out) == DL_OK);
    dl_string_free(out);
    /* Multipart: the UTF-8 name in the quoted filename (RFC 7578). */
    CHECK(dl_upload_multipart(conversation, "user1",
                              "{\"files\": [{\"dataBase64\": \"YQ==\", \"filename\": \"\xc3\xbc" "ber.txt\"}]}",
                              &out) == DL_OK);
    dl_string_free(out);
    char *log = emu_get(base_url, "/_emulator/requests");
    CHECK(contains(log, "\"filenames\":[\"r\\u00e9sum\\u00e9 \\u62a5.txt\"]")
          || contains(log, "\"filenames\":[\"r\xc3\xa9sum\xc3\xa9 \xe6\x8a\xa5.txt\"]"));
    CHECK(contains(log, "\"filenames\":[\"\\u00fcber.txt\"]") || contains(log, "\"filenames\":[\"\xc3\xbc" "ber.txt\"]"));
    CHECK(contains(log, "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%8A%A5.txt"));
    free(log);
    dl_conversation_free(conversation);
    dl_client_free(client);
}
