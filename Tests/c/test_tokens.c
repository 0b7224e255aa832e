/* Tokens: the automatic refresh at half-life, expiry, dl_token_generate
 * and dl_token_refresh, dl_conversation_refresh, and the regressions
 * found in them. */
#define _DEFAULT_SOURCE /* usleep */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void set_token_lifetime(int seconds) {
    char config[64];
    snprintf(config, sizeof config, "{\"tokenLifetime\": %d}", seconds);
    CHECK(emu_post(base_url, "/_emulator/config", config) == 200);
}

static dl_client *new_token_client(const char *protocol, const char *token) {
    char config[1024];
    dl_client *client = NULL;
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"protocol\": \"%s\", \"token\": \"%s\"}",
             base_url, protocol, token);
    CHECK(dl_client_new(config, &client, NULL) == DL_OK && client != NULL);
    return client;
}

/* A 2-second token outlives a 5-second conversation: the handle refreshes
 * it in the background at half-life. */
void test_token_refreshed_in_time(const char *protocol) {
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
void test_token_expired(const char *protocol) {
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

void test_token_calls(const char *protocol) {
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

void test_conversation_refresh(const char *protocol) {
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

/* ---- Regressions: bugs these tests found ---- */

/* A handle resumed with dl_conversation_open from a saved state must keep
 * its short-lived token fresh too. 1.1 renew answers no expires_in: the
 * handle once assumed 1800 s instead of the token's real lifetime, and the
 * token lapsed; saved state now carries tokenLifetime. */
void test_resumed_token_refreshed_in_time(const char *protocol) {
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
void test_auto_refresh_in_flight(const char *protocol) {
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
