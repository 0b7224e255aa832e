/* Calls from several threads: eight threads sharing one conversation,
 * also while it is freed under them; the log callback those threads call
 * at once; and per-thread timeouts. */
#define _DEFAULT_SOURCE /* usleep */
#include "test_support.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
        } else if (status == DL_ERR_INVALID_HANDLE || read == DL_ERR_INVALID_HANDLE
                   || (status == DL_OK && read == DL_ERR_CANCELLED)) {
            /* Freed before the call, or (a read) aborted by the free. */
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

void test_threads(void) {
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

    /* Freeing the handle while eight threads use it: sends already running
     * finish, reads in flight end with DL_ERR_CANCELLED, later calls get
     * DL_ERR_INVALID_HANDLE, nothing crashes. */
    total = run_workers(conversation, 1);
    CHECK(total.other == 0);
    CHECK(total.ok + total.invalid_handle == THREADS * SENDS_PER_THREAD);
    CHECK(total.invalid_handle > 0);
    CHECK(dl_client_free(client) == DL_OK);
}

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

void test_log_callback(void) {
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

void test_thread_timeouts(void) {
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
