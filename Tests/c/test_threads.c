/* Concurrency test for libdirectline, meant to run under ThreadSanitizer
 * (scripts/tsan.sh), also run under ASan and valgrind (scripts/memcheck.sh)
 * and, with short phases, in the plain suite (Tests/artifacts):
 *     test_threads EMULATOR_URL [SECONDS]
 *
 * For each protocol (3.0, 1.1), with the emulator issuing 2-second tokens so
 * that the library's background token refresher runs all along:
 *
 *  1. Eight threads share one client and one conversation for SECONDS
 *     (default 4) and call, in rotation, every operation on them: sends,
 *     the three kinds of upload, get_activities, info, state, wait,
 *     confirm, explicit refresh, set_progress, token generate and refresh,
 *     start/open/free of other conversations on the same client (so the
 *     handle table is written while it is read), the process-wide log
 *     callback set and removed, per-thread timeouts, and listening on a
 *     second conversation (listen, next, fd, send, unlisten, while the
 *     transfer loop delivers its polls). Every call must succeed (a next
 *     that finds another thread unlistened counts as a success).
 *  2. The same eight threads again, while the main thread frees the
 *     conversation and then the client under them: every call must either
 *     succeed, or be refused with DL_ERR_INVALID_HANDLE (or end with
 *     DL_ERR_CANCELLED for the reads it interrupted: wait, confirm, get,
 *     next);
 *     nothing else, no crash.
 *
 * Prints one line per phase with the counts, and "N passed, N failed" last.
 * Shared test state is in C11 atomics, so the test itself is race-free:
 * any ThreadSanitizer report is about the library. */
#define _DEFAULT_SOURCE /* usleep, mkstemp */
#include "directline.h"
#include "emulator_control.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { THREADS = 8, TOKEN_LIFETIME_SECONDS = 2 };

static int passed, failed;
static const char *base_url;
static double run_seconds = 4.0;
static char upload_path[64];

#define CHECK(condition) check((condition), #condition, __FILE__, __LINE__)

static int check(int ok, const char *what, const char *file, int line) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
    }
    return ok;
}

/* ---- The operations the workers rotate through ---- */

enum op {
    OP_SEND_TEXT, OP_SEND_ACTIVITY, OP_UPLOAD_BYTES, OP_UPLOAD_FILE, OP_UPLOAD_MULTIPART,
    OP_GET_ACTIVITIES, OP_INFO, OP_STATE, OP_WAIT, OP_CONFIRM, OP_REFRESH, OP_SET_PROGRESS,
    OP_TOKEN_GENERATE, OP_TOKEN_REFRESH, OP_SIDE_CONVERSATION, OP_SET_LOG, OP_THREAD_TIMEOUTS, OP_LISTEN, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "send_text", "send_activity", "upload_bytes", "upload_file", "upload_multipart",
    "get_activities", "info", "state", "wait", "confirm", "refresh", "set_progress",
    "token_generate", "token_refresh", "side_conversation", "set_log", "thread_timeouts", "listen",
};

/* Calls per operation and outcome, summed over the threads of a phase. */
static atomic_int calls[OP_COUNT];
static atomic_int outcome_ok, outcome_invalid_handle, outcome_cancelled, outcome_other;
static atomic_int explicit_refreshes;
static atomic_int progress_calls;
static atomic_int log_calls;
static atomic_size_t log_bytes;

static int32_t on_progress(void *userdata, uint64_t done, uint64_t total) {
    (void)userdata;
    (void)done;
    (void)total;
    atomic_fetch_add(&progress_calls, 1);
    return 0;
}

/* The process-wide log callback: called on any thread, the refresher's too. */
static void on_log(void *userdata, int32_t level, const char *message) {
    (void)userdata;
    if (level >= DL_LOG_ERROR && level <= DL_LOG_DEBUG && message != NULL) {
        atomic_fetch_add(&log_calls, 1);
        atomic_fetch_add(&log_bytes, strlen(message));
    }
}

struct shared {
    const char *protocol;
    int v3;
    dl_client *client;
    dl_conversation *conversation;
    dl_conversation *listened; /* the one OP_LISTEN listens on */
    int freeing;         /* phase 2: handles are freed under the workers */
    double deadline;
    atomic_int conversation_freeing, client_freeing; /* set by the main thread before each free */
};

struct worker {
    struct shared *shared;
    int index;
    char last_client_activity_id[128];
    unsigned log_turns, timeout_turns, listen_turns;
};

/* OP_LISTEN: in turn listen, next, fd, send (something to deliver), next,
 * and on thread 0 unlisten, on the second conversation. A next that finds
 * it unlistened (DL_ERR_INVALID_ARGUMENT) or is unlistened while it waits
 * (DL_ERR_CANCELLED) is a success here, unless the handle is being freed. */
static int32_t listen_op(struct worker *worker, char **out) {
    struct shared *shared = worker->shared;
    dl_conversation *listened = shared->listened;
    int32_t fd = -1, status;
    switch ((worker->listen_turns++ + (unsigned)worker->index) % 6) {
    case 0:
        return dl_conversation_listen(listened, "{\"pollIntervalMs\": 50, \"maxQueued\": 4}", out);
    case 2:
        status = dl_conversation_fd(listened, &fd, out);
        return status == DL_OK && fd < 0 ? DL_ERR_INTERNAL : status;
    case 3:
        return dl_send_text(listened, "listener", "for the listener", out);
    case 5:
        if (worker->index == 0) return dl_conversation_unlisten(listened, out);
        /* fall through */
    default:
        status = dl_conversation_next(listened, 100, out);
        if (status == DL_ERR_INVALID_ARGUMENT) status = DL_OK;
        if (status == DL_ERR_CANCELLED && !atomic_load(&shared->conversation_freeing)) status = DL_OK;
        return status;
    }
}

/* Side conversation: start one on the shared client, send once, save its
 * state, reopen it from that state, free both. */
static int32_t side_conversation(struct shared *shared, char **out) {
    dl_conversation *started = NULL, *reopened = NULL;
    char *state = NULL;
    int32_t status = dl_conversation_start(shared->client, NULL, &started, out);
    if (status != DL_OK) return status;
    dl_string_free(*out);
    *out = NULL;
    /* The new handle is this thread's alone: it may not be refused, even
     * once the client is freed (it keeps the client's transport alive). */
    status = dl_send_text(started, "side", "side conversation", out);
    if (status == DL_OK) {
        dl_string_free(*out);
        *out = NULL;
        status = dl_conversation_state(started, &state);
    }
    if (status == DL_ERR_INVALID_HANDLE) status = DL_ERR_INTERNAL;
    if (status == DL_OK) status = dl_conversation_open(shared->client, state, &reopened, out);
    dl_string_free(state);
    if (reopened != NULL && dl_conversation_free(reopened) != DL_OK) status = DL_ERR_INTERNAL;
    if (dl_conversation_free(started) != DL_OK) status = DL_ERR_INTERNAL;
    return status;
}

static int32_t run_op(struct worker *worker, enum op op, char **out) {
    struct shared *shared = worker->shared;
    dl_conversation *conversation = shared->conversation;
    char user[32], text[64];
    snprintf(user, sizeof user, "user%d", worker->index);
    snprintf(text, sizeof text, "thread %d says hello", worker->index);
    switch (op) {
    case OP_SEND_TEXT:
        return dl_send_text(conversation, user, text, out);
    case OP_SEND_ACTIVITY: {
        char activity[256];
        int32_t status;
        if (shared->v3) {
            snprintf(activity, sizeof activity,
                     "{\"type\": \"message\", \"from\": {\"id\": \"%s\"}, \"text\": \"activity %d\"}", user,
                     worker->index);
        } else {
            snprintf(activity, sizeof activity, "{\"from\": \"%s\", \"text\": \"message %d\"}", user, worker->index);
        }
        status = dl_send_activity(conversation, activity, out);
        if (status == DL_OK && shared->v3) {
            json_string(*out, "clientActivityID", worker->last_client_activity_id,
                        sizeof worker->last_client_activity_id);
        }
        return status;
    }
    case OP_UPLOAD_BYTES: {
        static const char bytes[] = "some bytes uploaded from a thread";
        return dl_upload_bytes(conversation, user, bytes, sizeof bytes - 1, "text/plain", "bytes.txt", out);
    }
    case OP_UPLOAD_FILE:
        return dl_upload_file(conversation, user, upload_path, NULL, NULL, out);
    case OP_UPLOAD_MULTIPART: {
        char manifest[512];
        snprintf(manifest, sizeof manifest,
                 "{\"activity\": {\"text\": \"files from %d\"}, \"files\": ["
                 "{\"dataBase64\": \"aGVsbG8=\", \"contentType\": \"text/plain\", \"filename\": \"a.txt\"},"
                 "{\"path\": \"%s\", \"filename\": \"b.bin\"}]}",
                 worker->index, upload_path);
        return dl_upload_multipart(conversation, user, manifest, out);
    }
    case OP_GET_ACTIVITIES:
        return dl_get_activities(conversation, out);
    case OP_INFO:
        return dl_conversation_info(conversation, out);
    case OP_STATE:
        return dl_conversation_state(conversation, out);
    case OP_WAIT:
        return dl_conversation_wait(conversation, "{\"timeoutMs\": 300, \"intervalMs\": 50, \"afterSendMs\": 0}", out);
    case OP_CONFIRM:
        /* 3.0 only (1.1 has no correlation ids), and only after a send. */
        if (!shared->v3 || worker->last_client_activity_id[0] == '\0') return dl_conversation_info(conversation, out);
        return dl_conversation_confirm(conversation, worker->last_client_activity_id, "{\"timeoutMs\": 0}", out);
    case OP_REFRESH: {
        int32_t status = dl_conversation_refresh(conversation, out);
        if (status == DL_OK) atomic_fetch_add(&explicit_refreshes, 1);
        return status;
    }
    case OP_SET_PROGRESS:
        /* Odd threads set the callback, even ones remove it: it is replaced
         * while transfers on other threads use it. Its userdata is static. */
        return dl_conversation_set_progress(conversation, worker->index % 2 ? on_progress : NULL, NULL);
    case OP_TOKEN_GENERATE:
        return dl_token_generate(shared->client, NULL, out);
    case OP_TOKEN_REFRESH: {
        /* 3.0 refreshes any token; 1.1 only a handle's current one, which the
         * refresher may replace meanwhile: there, read the state instead. */
        char *state = NULL, token[512];
        int32_t status = dl_conversation_state(conversation, &state);
        if (status != DL_OK || !shared->v3) {
            *out = state;
            return status;
        }
        int found = json_string(state, "token", token, sizeof token);
        dl_string_free(state);
        if (!found) return DL_ERR_INTERNAL;
        status = dl_token_refresh(shared->client, token, out);
        if (status == DL_OK) atomic_fetch_add(&explicit_refreshes, 1);
        return status;
    }
    case OP_SIDE_CONVERSATION:
        return side_conversation(shared, out);
    case OP_SET_LOG: {
        /* The callback is replaced and removed while every thread (and the
         * refresher) may be logging through it: off, requests, libcurl's trace. */
        static const int32_t levels[] = {DL_LOG_OFF, DL_LOG_INFO, DL_LOG_DEBUG};
        int32_t level = levels[(worker->log_turns++ + (unsigned)worker->index) % 3];
        return dl_set_log_callback(level == DL_LOG_OFF ? NULL : on_log, NULL, level, out);
    }
    case OP_LISTEN:
        return listen_op(worker, out);
    case OP_THREAD_TIMEOUTS:
        /* This thread's own timeouts, set and removed in turn (generous:
         * nothing may time out because of them). */
        return dl_set_thread_timeouts(worker->timeout_turns++ % 2 ? NULL
                                      : "{\"timeoutMs\": 30000, \"connectTimeoutMs\": 10000}", out);
    default:
        return DL_ERR_INTERNAL;
    }
}

/* Statuses allowed in phase 2: a refusal of a handle the main thread has
 * begun to free, and the cancellation of a read it interrupted. */
static int acceptable_after_free(struct shared *shared, enum op op, int32_t status) {
    if (!shared->freeing) return 0;
    int conversation_going = atomic_load(&shared->conversation_freeing);
    int client_going = atomic_load(&shared->client_freeing);
    if (status == DL_ERR_CANCELLED) {
        return (op == OP_WAIT || op == OP_CONFIRM || op == OP_GET_ACTIVITIES || op == OP_LISTEN) && conversation_going;
    }
    if (status != DL_ERR_INVALID_HANDLE) return 0;
    switch (op) {
    case OP_TOKEN_GENERATE:
    case OP_SIDE_CONVERSATION:
        return client_going;
    case OP_TOKEN_REFRESH: /* reads the conversation's state, then calls the client */
        return conversation_going || client_going;
    default:
        return conversation_going;
    }
}

static void *work(void *argument) {
    struct worker *worker = argument;
    struct shared *shared = worker->shared;
    int rounds_after_free = -1;
    double last_refresh = 0;
    for (unsigned iteration = 0; now_seconds() < shared->deadline; iteration++) {
        enum op op = (enum op)((iteration + (unsigned)worker->index * 2) % OP_COUNT);
        /* Explicit refreshes of the conversation are rare (thread 0, every
         * 1.5 s at most), so that the background refresher, due 1 s after
         * each refresh, also runs. */
        if (op == OP_REFRESH) {
            if (worker->index == 0 && now_seconds() - last_refresh >= 1.5) {
                last_refresh = now_seconds();
            } else {
                op = OP_INFO;
            }
        }
        char *out = NULL;
        int32_t status = run_op(worker, op, &out);
        atomic_fetch_add(&calls[op], 1);
        if (status == DL_OK) {
            atomic_fetch_add(&outcome_ok, 1);
        } else if (acceptable_after_free(shared, op, status)) {
            atomic_fetch_add(status == DL_ERR_CANCELLED ? &outcome_cancelled : &outcome_invalid_handle, 1);
        } else {
            atomic_fetch_add(&outcome_other, 1);
            fprintf(stderr, "  %s thread %d %s: %s %s\n", shared->protocol, worker->index, op_names[op],
                    dl_status_name(status), out != NULL ? out : "");
        }
        dl_string_free(out);
        /* Once both handles are being freed, two more rounds are enough. */
        if (rounds_after_free < 0 && shared->freeing && atomic_load(&shared->client_freeing)) rounds_after_free = 0;
        if (rounds_after_free >= 0 && ++rounds_after_free > 2 * OP_COUNT) break;
    }
    return NULL;
}

static void reset_counts(void) {
    for (int i = 0; i < OP_COUNT; i++) atomic_store(&calls[i], 0);
    atomic_store(&outcome_ok, 0);
    atomic_store(&outcome_invalid_handle, 0);
    atomic_store(&outcome_cancelled, 0);
    atomic_store(&outcome_other, 0);
    atomic_store(&explicit_refreshes, 0);
    atomic_store(&progress_calls, 0);
    atomic_store(&log_calls, 0);
}

static int total_calls(void) {
    int total = 0;
    for (int i = 0; i < OP_COUNT; i++) total += atomic_load(&calls[i]);
    return total;
}

static void print_counts(const char *protocol, const char *phase) {
    printf("%s %s: %d calls (%d ok, %d invalid handle, %d cancelled, %d other; "
           "%d progress callbacks, %d log lines, %d explicit refreshes)\n",
           protocol, phase, total_calls(), atomic_load(&outcome_ok), atomic_load(&outcome_invalid_handle),
           atomic_load(&outcome_cancelled), atomic_load(&outcome_other), atomic_load(&progress_calls),
           atomic_load(&log_calls), atomic_load(&explicit_refreshes));
    printf("   ");
    for (int i = 0; i < OP_COUNT; i++) printf(" %s=%d", op_names[i], atomic_load(&calls[i]));
    printf("\n");
}

static dl_client *new_client(const char *protocol) {
    char config[512];
    dl_client *client = NULL;
    char *out = NULL;
    snprintf(config, sizeof config,
             "{\"endpoint\": \"%s\", \"protocol\": \"%s\", \"secret\": \"emulator-secret\", \"timeoutMs\": 20000}",
             base_url, protocol);
    if (!CHECK(dl_client_new(config, &client, &out) == DL_OK && client != NULL)) {
        fprintf(stderr, "  client: %s\n", out != NULL ? out : "");
    }
    dl_string_free(out);
    return client;
}

static dl_conversation *start(dl_client *client, char *token, size_t size) {
    dl_conversation *conversation = NULL;
    char *out = NULL;
    int32_t status = dl_conversation_start(client, NULL, &conversation, &out);
    if (!CHECK(status == DL_OK && conversation != NULL)) fprintf(stderr, "  start: %s\n", out != NULL ? out : "");
    CHECK(json_string(out, "token", token, size));
    dl_string_free(out);
    return conversation;
}

static void run_workers(struct shared *shared) {
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    memset(workers, 0, sizeof workers);
    for (int i = 0; i < THREADS; i++) {
        workers[i].shared = shared;
        workers[i].index = i;
        CHECK(pthread_create(&threads[i], NULL, work, &workers[i]) == 0);
    }
    if (shared->freeing) {
        usleep(500 * 1000);
        atomic_store(&shared->conversation_freeing, 1);
        CHECK(dl_conversation_free(shared->conversation) == DL_OK);
        CHECK(dl_conversation_free(shared->listened) == DL_OK);
        usleep(300 * 1000);
        atomic_store(&shared->client_freeing, 1);
        CHECK(dl_client_free(shared->client) == DL_OK);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    /* The log callback is process-wide: leave it off between phases. */
    CHECK(dl_set_log_callback(NULL, NULL, DL_LOG_OFF, NULL) == DL_OK);
}

/* Refresh requests the emulator logged, automatic and explicit; -1 when the
 * log (capped at 5000 entries) may have dropped some. */
static int refresh_requests(int v3) {
    char *log = emu_get(base_url, "/_emulator/requests");
    int entries = count_occurrences(log, "\"method\"");
    int count = v3 ? count_occurrences(log, "\"path\":\"/v3/directline/tokens/refresh\"")
                   : count_occurrences(log, "/renew\"");
    free(log);
    return entries >= 5000 ? -1 : count;
}

static void test_protocol(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    char config[64], token[512], current[512], *out = NULL;
    CHECK(emu_post(base_url, "/_emulator/reset", NULL) == 200);
    snprintf(config, sizeof config, "{\"tokenLifetime\": %d}", TOKEN_LIFETIME_SECONDS);
    CHECK(emu_post(base_url, "/_emulator/config", config) == 200);

    /* Phase 1: eight threads, one client, one conversation, all succeed. */
    struct shared shared;
    memset(&shared, 0, sizeof shared);
    shared.protocol = protocol;
    shared.v3 = v3;
    shared.client = new_client(protocol);
    shared.conversation = start(shared.client, token, sizeof token);
    char listened_token[512];
    shared.listened = start(shared.client, listened_token, sizeof listened_token);
    CHECK(dl_conversation_info(shared.conversation, &out) == DL_OK);
    CHECK(contains(out, "\"autoRefresh\":true"));
    dl_string_free(out);

    reset_counts();
    double began = now_seconds();
    shared.deadline = began + run_seconds;
    run_workers(&shared);
    double elapsed = now_seconds() - began;
    print_counts(protocol, "shared handles");
    CHECK(atomic_load(&outcome_other) == 0);
    CHECK(atomic_load(&outcome_invalid_handle) == 0 && atomic_load(&outcome_cancelled) == 0);
    for (int i = 0; i < OP_COUNT; i++) {
        /* Every operation ran (confirm stands in for info on 1.1). */
        if (!CHECK(atomic_load(&calls[i]) > 0)) fprintf(stderr, "  %s: %s never ran\n", protocol, op_names[i]);
    }
    /* The callbacks were called while being replaced. */
    CHECK(atomic_load(&progress_calls) > 0);
    CHECK(atomic_load(&log_calls) > 0);
    /* The run outlived the token: the handle must have refreshed it. */
    CHECK(elapsed > TOKEN_LIFETIME_SECONDS);
    CHECK(dl_conversation_state(shared.conversation, &out) == DL_OK);
    CHECK(json_string(out, "token", current, sizeof current) && strcmp(current, token) != 0);
    dl_string_free(out);
    CHECK(dl_conversation_info(shared.conversation, &out) == DL_OK);
    if (!CHECK(contains(out, "\"tokenRefreshError\":null") && contains(out, "\"autoRefresh\":true"))) {
        fprintf(stderr, "  %s info: %s\n", protocol, out != NULL ? out : "");
    }
    dl_string_free(out);
    int refreshes = refresh_requests(v3);
    if (refreshes >= 0) {
        /* Some refreshes were the background thread's, not the workers'. */
        int explicit_count = atomic_load(&explicit_refreshes);
        if (!CHECK(refreshes > explicit_count)) {
            fprintf(stderr, "  %s: %d refresh requests, %d explicit\n", protocol, refreshes, explicit_count);
        }
    }

    /* Phase 2: the same, while the conversation and then the client are
     * freed under the workers. */
    reset_counts();
    shared.freeing = 1;
    shared.deadline = now_seconds() + run_seconds;
    run_workers(&shared);
    print_counts(protocol, "handles freed under the threads");
    CHECK(atomic_load(&outcome_other) == 0);
    CHECK(atomic_load(&outcome_invalid_handle) > 0);
    CHECK(dl_conversation_info(shared.conversation, NULL) == DL_ERR_INVALID_HANDLE);
    CHECK(dl_conversation_next(shared.listened, 0, NULL) == DL_ERR_INVALID_HANDLE);
    CHECK(dl_client_free(shared.client) == DL_ERR_INVALID_HANDLE);
}

/* A 16 KiB file every upload_file and multipart call streams. */
static void make_upload_file(void) {
    snprintf(upload_path, sizeof upload_path, "/tmp/dl_threads_XXXXXX");
    int fd = mkstemp(upload_path);
    CHECK(fd >= 0);
    unsigned char block[16384];
    for (size_t i = 0; i < sizeof block; i++) block[i] = (unsigned char)(i * 31 + 7);
    CHECK(write(fd, block, sizeof block) == (ssize_t)sizeof block);
    close(fd);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s EMULATOR_URL [SECONDS]\n", argv[0]);
        return 2;
    }
    base_url = argv[1];
    if (argc == 3) run_seconds = atof(argv[2]);
    if (run_seconds <= TOKEN_LIFETIME_SECONDS) run_seconds = TOKEN_LIFETIME_SECONDS + 1;
    make_upload_file();
    test_protocol("3.0");
    test_protocol("1.1");
    CHECK(emu_post(base_url, "/_emulator/reset", NULL) == 200);
    unlink(upload_path);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
