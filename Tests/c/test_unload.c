/* Unloading the library must never crash its host.
 *
 * Plugins and language runtimes dlclose() the libraries they loaded. This
 * program loads libdirectline with dlopen() 50 times; each time it starts a
 * conversation whose token lives 2 s (so the library's refresh thread is
 * due within a second), sends, and then either frees every handle
 * ("freed") or leaves them alive ("alive") before dlclose(). It then waits
 * past the refresh time, when a refresh thread left running in unmapped
 * code would crash the process, loads the library once more and checks
 * that it still works.
 *
 *   test_unload EMULATOR_URL LIBRARY_PATH freed|alive
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "directline.h"
#include "emulator_control.h"

#define CYCLES 50

typedef int32_t (*client_new_fn)(const char *, dl_client **, char **);
typedef int32_t (*client_free_fn)(dl_client *);
typedef int32_t (*start_fn)(dl_client *, const char *, dl_conversation **, char **);
typedef int32_t (*conversation_free_fn)(dl_conversation *);
typedef int32_t (*send_text_fn)(dl_conversation *, const char *, const char *, char **);
typedef void (*string_free_fn)(char *);

static int passed, failed;

static void check(int ok, const char *what, int cycle) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAILED (cycle %d): %s\n", cycle, what);
    }
}

/* One load, use and unload. Returns 0 when the library could not be used. */
static int cycle(const char *library, const char *config, int keep_alive, int index) {
    void *loaded = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    check(loaded != NULL, "dlopen", index);
    if (loaded == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return 0;
    }
    client_new_fn client_new = (client_new_fn)(uintptr_t)dlsym(loaded, "dl_client_new");
    client_free_fn client_free = (client_free_fn)(uintptr_t)dlsym(loaded, "dl_client_free");
    start_fn start = (start_fn)(uintptr_t)dlsym(loaded, "dl_conversation_start");
    conversation_free_fn conversation_free = (conversation_free_fn)(uintptr_t)dlsym(loaded, "dl_conversation_free");
    send_text_fn send_text = (send_text_fn)(uintptr_t)dlsym(loaded, "dl_send_text");
    string_free_fn string_free = (string_free_fn)(uintptr_t)dlsym(loaded, "dl_string_free");
    int found = client_new && client_free && start && conversation_free && send_text && string_free;
    check(found, "dlsym of every function used", index);
    if (!found) return 0;

    dl_client *client = NULL;
    dl_conversation *conversation = NULL;
    char *out = NULL;
    check(client_new(config, &client, &out) == DL_OK, "dl_client_new", index);
    string_free(out);
    check(start(client, NULL, &conversation, &out) == DL_OK, "dl_conversation_start", index);
    string_free(out);
    check(send_text(conversation, "user1", "hello", &out) == DL_OK, "dl_send_text", index);
    string_free(out);
    if (!keep_alive) {
        check(conversation_free(conversation) == DL_OK, "dl_conversation_free", index);
        check(client_free(client) == DL_OK, "dl_client_free", index);
    }
    check(dlclose(loaded) == 0, "dlclose", index);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[3], "freed") != 0 && strcmp(argv[3], "alive") != 0)) {
        fprintf(stderr, "usage: %s EMULATOR_URL LIBRARY_PATH freed|alive\n", argv[0]);
        return 2;
    }
    const char *url = argv[1], *library = argv[2];
    int keep_alive = strcmp(argv[3], "alive") == 0;
    check(emu_post(url, "/_emulator/config", "{\"tokenLifetime\": 2}") == 200, "emulator config", 0);
    char config[512];
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"secret\": \"emulator-secret\"}", url);

    for (int index = 1; index <= CYCLES; index++) {
        if (!cycle(library, config, keep_alive, index)) break;
    }
    /* Past the refresh time of every token above. */
    struct timespec pause = {2, 500000000};
    nanosleep(&pause, NULL);
    cycle(library, config, 0, CYCLES + 1);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
