/* What held under the hostile audit, kept true: the host survives
 *   sigpipe      a server that closes the connection (with a reset) while
 *                a large body is being written, with SIGPIPE at its default
 *                action (which kills); EMULATOR_URL is that server here;
 *   exit         exit() while another thread is inside a wait;
 *   two-copies   two copies of the library loaded side by side (plugins
 *                that each bring their own), each working on its own.
 *
 *   test_host EMULATOR_URL sigpipe|exit|two-copies [LIBRARY_COPY_A LIBRARY_COPY_B]
 */
#define _DEFAULT_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_support.h"

static char config[512];

static int sigpipe(void) {
    signal(SIGPIPE, SIG_DFL);
    dl_client *client = NULL;
    dl_conversation *conversation = NULL;
    char *out = NULL;
    CHECK(dl_client_new(config, &client, &out) == DL_OK);
    dl_string_free(out);
    CHECK(dl_conversation_open(client, "{\"conversationId\": \"c\"}", &conversation, &out) == DL_OK);
    dl_string_free(out);
    size_t length = 3 * 1024 * 1024;
    char *data = calloc(1, length);
    int32_t status = dl_upload_bytes(conversation, "user1", data, length, NULL, "big.bin", &out);
    CHECK(status == DL_ERR_NETWORK);
    dl_string_free(out);
    free(data);
    dl_conversation_free(conversation);
    dl_client_free(client);
    return report_checks();
}

static void *wait_long(void *argument) {
    char *out = NULL;
    dl_conversation_wait(argument, "{\"timeoutMs\": 60000}", &out);
    dl_string_free(out);
    return NULL;
}

static int exit_during_calls(void) {
    dl_client *client = NULL;
    dl_conversation *conversation = NULL;
    char *out = NULL;
    CHECK(dl_client_new(config, &client, &out) == DL_OK);
    dl_string_free(out);
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_OK);
    dl_string_free(out);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, wait_long, conversation) == 0);
    usleep(300 * 1000);
    /* exit() runs atexit handlers and static destructors while the wait runs. */
    fflush(stdout);
    exit(report_checks());
}

typedef int32_t (*client_new_fn)(const char *, dl_client **, char **);
typedef int32_t (*start_fn)(dl_client *, const char *, dl_conversation **, char **);
typedef int32_t (*send_text_fn)(dl_conversation *, const char *, const char *, char **);
typedef int32_t (*conversation_free_fn)(dl_conversation *);
typedef int32_t (*client_free_fn)(dl_client *);
typedef void (*string_free_fn)(char *);

struct copy {
    void *loaded;
    client_new_fn client_new;
    start_fn start;
    send_text_fn send_text;
    conversation_free_fn conversation_free;
    client_free_fn client_free;
    string_free_fn string_free;
};

static int load(struct copy *copy, const char *path) {
    copy->loaded = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (copy->loaded == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return 0;
    }
    copy->client_new = (client_new_fn)(uintptr_t)dlsym(copy->loaded, "dl_client_new");
    copy->start = (start_fn)(uintptr_t)dlsym(copy->loaded, "dl_conversation_start");
    copy->send_text = (send_text_fn)(uintptr_t)dlsym(copy->loaded, "dl_send_text");
    copy->conversation_free = (conversation_free_fn)(uintptr_t)dlsym(copy->loaded, "dl_conversation_free");
    copy->client_free = (client_free_fn)(uintptr_t)dlsym(copy->loaded, "dl_client_free");
    copy->string_free = (string_free_fn)(uintptr_t)dlsym(copy->loaded, "dl_string_free");
    return copy->client_new && copy->start && copy->send_text && copy->conversation_free && copy->client_free
           && copy->string_free;
}

static int two_copies(const char *path_a, const char *path_b) {
    struct copy a, b;
    if (!CHECK(load(&a, path_a) && load(&b, path_b))) return report_checks();
    CHECK(a.loaded != b.loaded && a.client_new != b.client_new);
    dl_client *client_a = NULL, *client_b = NULL;
    dl_conversation *conversation_a = NULL, *conversation_b = NULL;
    char *out = NULL;
    CHECK(a.client_new(config, &client_a, &out) == DL_OK);
    a.string_free(out);
    CHECK(b.client_new(config, &client_b, &out) == DL_OK);
    b.string_free(out);
    CHECK(a.start(client_a, NULL, &conversation_a, &out) == DL_OK);
    a.string_free(out);
    CHECK(b.start(client_b, NULL, &conversation_b, &out) == DL_OK);
    b.string_free(out);
    for (int i = 0; i < 5; i++) {
        CHECK(a.send_text(conversation_a, "user1", "from A", &out) == DL_OK);
        a.string_free(out);
        CHECK(b.send_text(conversation_b, "user1", "from B", &out) == DL_OK);
        b.string_free(out);
    }
    /* A handle of one copy means nothing to the other. */
    CHECK(b.conversation_free(conversation_a) == DL_ERR_INVALID_HANDLE);
    CHECK(a.conversation_free(conversation_a) == DL_OK && b.conversation_free(conversation_b) == DL_OK);
    CHECK(a.client_free(client_a) == DL_OK && b.client_free(client_b) == DL_OK);
    return report_checks();
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s EMULATOR_URL sigpipe|exit|two-copies [COPY_A COPY_B]\n", argv[0]);
        return 2;
    }
    snprintf(config, sizeof config,
             "{\"endpoint\": \"%s\", \"secret\": \"emulator-secret\", \"maxUploadBytes\": 8388608}", argv[1]);
    if (strcmp(argv[2], "sigpipe") == 0) return sigpipe();
    if (strcmp(argv[2], "exit") == 0) return exit_during_calls();
    if (strcmp(argv[2], "two-copies") == 0 && argc == 5) return two_copies(argv[3], argv[4]);
    fprintf(stderr, "unknown mode\n");
    return 2;
}
