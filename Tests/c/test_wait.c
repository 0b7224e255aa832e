/* dl_conversation_wait: replies after the watermark, its options, a
 * service without watermarks, and a wait cancelled by freeing the handle. */
#define _DEFAULT_SOURCE /* usleep */
#include "test_support.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void test_wait(const char *protocol) {
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
void test_wait_without_watermarks(const char *protocol) {
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

void test_wait_cancelled_by_free(const char *protocol) {
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
