/* The C suite's shared helpers (test_support.h): the check counter, and
 * the clients, conversations and emulator calls most tests begin with. */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>

static int passed, failed;
const char *base_url;

int check(int ok, const char *what, const char *file, int line) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
    }
    return ok;
}

int report_checks(void) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

dl_client *new_client(const char *protocol, const char *extra) {
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

void reset_emulator(void) {
    CHECK(emu_post(base_url, "/_emulator/reset", NULL) == 200);
}

int log_count(const char *method, const char *path) {
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

void reset_emulator_config(void) {
    reset_emulator();
    char *config = emu_get(base_url, "/_emulator/config");
    CHECK(contains(config, "\"tokenLifetime\":1800"));
    CHECK(contains(config, "\"nullWatermark\":false"));
    free(config);
}

dl_conversation *start_conversation(dl_client *client, char *id, char *token) {
    dl_conversation *conversation = NULL;
    char *out = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_OK);
    CHECK(json_string(out, "conversationId", id, 128));
    CHECK(json_string(out, "token", token, 256));
    dl_string_free(out);
    return conversation;
}

dl_conversation *open_state(dl_client *client, const char *state) {
    dl_conversation *conversation = NULL;
    char *out = NULL;
    int32_t status = dl_conversation_open(client, state, &conversation, &out);
    if (!CHECK(status == DL_OK && conversation != NULL)) fprintf(stderr, "  open: %s\n", out != NULL ? out : "");
    dl_string_free(out);
    return conversation;
}

int send_ok(dl_conversation *conversation, const char *text) {
    char *out = NULL;
    int32_t status = dl_send_text(conversation, "user1", text, &out);
    if (!CHECK(status == DL_OK)) fprintf(stderr, "  send %s: %s\n", text, out != NULL ? out : "");
    dl_string_free(out);
    return status == DL_OK;
}
