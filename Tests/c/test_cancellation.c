/* Callbacks against frees and thread cancellation: after
 * dl_conversation_free returns, the progress callback is never called
 * again, by a transfer still running either; and a thread cancelled while
 * it is inside the library (here, inside its progress callback) leaves
 * nothing held, so replacing the callback still returns. */
#define _DEFAULT_SOURCE /* usleep */
#include "test_support.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { UPLOAD_BYTES = 4 * 1024 * 1024 };

struct progress_watch {
    atomic_int calls;
    atomic_int freed;
    atomic_int calls_after_free;
};

static int32_t slow_progress(void *userdata, uint64_t done, uint64_t total) {
    struct progress_watch *watch = userdata;
    (void)done, (void)total;
    atomic_fetch_add(&watch->calls, 1);
    if (atomic_load(&watch->freed)) atomic_fetch_add(&watch->calls_after_free, 1);
    usleep(5 * 1000);
    return 0;
}

struct upload_job {
    dl_conversation *conversation;
    char *data;
    int32_t status;
};

static void *upload(void *argument) {
    struct upload_job *job = argument;
    char *out = NULL;
    job->status = dl_upload_bytes(job->conversation, "user1", job->data, UPLOAD_BYTES, NULL, "big.bin", &out);
    dl_string_free(out);
    return NULL;
}

void test_free_revokes_progress(void) {
    reset_emulator();
    CHECK(emu_post(base_url, "/_emulator/config", "{\"maxUploadBytes\": 8388608}") == 200);
    dl_client *client = new_client("3.0", "\"maxUploadBytes\": 8388608");
    char id[128], token[256];
    dl_conversation *conversation = start_conversation(client, id, token);
    struct progress_watch watch;
    atomic_init(&watch.calls, 0);
    atomic_init(&watch.freed, 0);
    atomic_init(&watch.calls_after_free, 0);
    CHECK(dl_conversation_set_progress(conversation, slow_progress, &watch) == DL_OK);
    struct upload_job job = {conversation, calloc(1, UPLOAD_BYTES), -1};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, upload, &job) == 0);
    while (atomic_load(&watch.calls) < 3) usleep(1000);
    CHECK(dl_conversation_free(conversation) == DL_OK);
    atomic_store(&watch.freed, 1);
    pthread_join(thread, NULL);
    CHECK(job.status == DL_OK);
    CHECK(atomic_load(&watch.calls_after_free) == 0);
    free(job.data);
    CHECK(dl_client_free(client) == DL_OK);
    reset_emulator_config();
}

struct cancel_job {
    dl_conversation *conversation;
    atomic_int inside;
};

static int32_t blocking_progress(void *userdata, uint64_t done, uint64_t total) {
    struct cancel_job *job = userdata;
    (void)done, (void)total;
    atomic_store(&job->inside, 1);
    usleep(300 * 1000); /* a cancellation point */
    return 0;
}

static void *send_then_linger(void *argument) {
    struct cancel_job *job = argument;
    char *out = NULL;
    dl_send_text(job->conversation, "user1", "cancel me", &out);
    dl_string_free(out);
    for (;;) pthread_testcancel();
    return NULL;
}

void test_thread_cancel_is_deferred(void) {
    reset_emulator();
    dl_client *client = new_client("3.0", NULL);
    char id[128], token[256];
    dl_conversation *conversation = start_conversation(client, id, token);
    struct cancel_job job = {conversation, 0};
    CHECK(dl_conversation_set_progress(conversation, blocking_progress, &job) == DL_OK);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, send_then_linger, &job) == 0);
    while (!atomic_load(&job.inside)) usleep(1000);
    CHECK(pthread_cancel(thread) == 0);
    /* Cancelled inside its callback, the thread would never unpin it, and
     * this would wait for ever (the alarm ends the suite). */
    alarm(20);
    CHECK(dl_conversation_set_progress(conversation, NULL, NULL) == DL_OK);
    alarm(0);
    void *result = NULL;
    pthread_join(thread, &result);
    CHECK(result == PTHREAD_CANCELED);
    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}
