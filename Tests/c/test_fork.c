/* fork() at any moment leaves a child whose library works.
 *
 * The parent keeps four threads sending, reading and swapping the log
 * callback on one conversation (so the library's locks are busy), and forks
 * CHILDREN times meanwhile. Each child, under a 15 s alarm (a lock
 * inherited held would hang it):
 *   - starts a conversation of its own (which schedules a refresh),
 *   - sends on the parent's conversation and on its own,
 *   - checks that its token is refreshed on schedule (tokens live 2 s),
 *   - checks that its correlation ids are not the parent's.
 *
 *   test_fork EMULATOR_URL
 */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "directline.h"
#include "emulator_control.h"

enum { CHILDREN = 20, BUSY_THREADS = 4 };

static const char *url;
static dl_client *client;
static dl_conversation *shared;
static atomic_int stop;

static void quiet_log(void *userdata, int32_t level, const char *message) {
    (void)userdata, (void)level, (void)message;
}

static void *keep_busy(void *argument) {
    (void)argument;
    while (!atomic_load(&stop)) {
        char *out = NULL;
        dl_send_text(shared, "parent", "busy", &out);
        dl_string_free(out);
        dl_get_activities(shared, &out);
        dl_string_free(out);
        dl_set_log_callback(quiet_log, NULL, DL_LOG_INFO, NULL);
        dl_set_log_callback(NULL, NULL, DL_LOG_OFF, NULL);
    }
    return NULL;
}

static int expected(int ok, const char *what) {
    if (!ok) fprintf(stderr, "child %d: FAILED %s\n", (int)getpid(), what);
    return ok;
}

static int json_field(const char *json, const char *key, char *buffer, size_t size) {
    return json != NULL && json_string(json, key, buffer, size);
}

/* The child's part; returns its exit status. */
static int child(const char *parent_id) {
    alarm(15);
    int ok = 1;
    char *out = NULL;
    dl_conversation *own = NULL;
    ok &= expected(dl_conversation_start(client, NULL, &own, &out) == DL_OK, "dl_conversation_start");
    dl_string_free(out);
    if (own == NULL) return 1;

    char before[64] = "", after[64] = "", id[128] = "";
    ok &= expected(dl_conversation_info(own, &out) == DL_OK, "info");
    ok &= expected(json_field(out, "tokenExpiresAt", before, sizeof before), "tokenExpiresAt");
    ok &= expected(contains(out, "\"autoRefresh\":true"), "autoRefresh");
    dl_string_free(out);

    for (int i = 0; i < 5; i++) {
        ok &= expected(dl_send_text(shared, "child", "from a child", &out) == DL_OK, "send on the parent's conversation");
        ok &= expected(json_field(out, "clientActivityID", id, sizeof id), "clientActivityID");
        ok &= expected(strcmp(id, parent_id) != 0, "an id of its own");
        dl_string_free(out);
        ok &= expected(dl_send_text(own, "child", "on its own", &out) == DL_OK, "send on its own conversation");
        dl_string_free(out);
    }

    /* Tokens live 2 s and are refreshed at half their life. */
    usleep(1800 * 1000);
    ok &= expected(dl_conversation_info(own, &out) == DL_OK, "info after the refresh time");
    ok &= expected(json_field(out, "tokenExpiresAt", after, sizeof after), "tokenExpiresAt after");
    ok &= expected(strcmp(before, after) != 0, "the token was refreshed in the child");
    dl_string_free(out);
    dl_conversation_free(own);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s EMULATOR_URL\n", argv[0]);
        return 2;
    }
    url = argv[1];
    int passed = 0, failed = 0;
    if (emu_post(url, "/_emulator/config", "{\"tokenLifetime\": 2}") != 200) return 2;
    char config[512];
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"secret\": \"emulator-secret\"}", url);
    char *out = NULL;
    if (dl_client_new(config, &client, &out) != DL_OK) return 2;
    dl_string_free(out);
    if (dl_conversation_start(client, NULL, &shared, &out) != DL_OK) return 2;
    dl_string_free(out);

    pthread_t busy[BUSY_THREADS];
    for (int i = 0; i < BUSY_THREADS; i++) pthread_create(&busy[i], NULL, keep_busy, NULL);

    pid_t children[CHILDREN];
    for (int i = 0; i < CHILDREN; i++) {
        /* The id the parent sends next, so the child can tell its own apart. */
        char parent_id[128] = "";
        dl_send_text(shared, "parent", "before a fork", &out);
        json_field(out, "clientActivityID", parent_id, sizeof parent_id);
        dl_string_free(out);
        usleep(20 * 1000);
        children[i] = fork();
        if (children[i] == 0) _exit(child(parent_id));
    }
    for (int i = 0; i < CHILDREN; i++) {
        int status = 0;
        waitpid(children[i], &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAILED child %d: %s %d\n", i, WIFSIGNALED(status) ? "killed by signal" : "exit",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < BUSY_THREADS; i++) pthread_join(busy[i], NULL);
    dl_conversation_free(shared);
    dl_client_free(client);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
