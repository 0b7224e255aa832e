/* Exit while the library's thread still has work: eight conversations
 * listening over the WebSocket are freed, then the client, and main
 * returns at once. The close frames the frees scheduled must not go out
 * while the exit handlers tear down OpenSSL (a SIGSEGV in 1 of 7 exits
 * before the library parked its thread at exit). Run many times by
 * Tests/artifacts/test_artifacts.py; the exit status is the verdict:
 * 0, or the step that failed. */
#include "directline.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_exit EMULATOR_URL\n");
        return 2;
    }
    char config[256], *out = NULL;
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"secret\": \"emulator-secret\"}", argv[1]);
    dl_client *client = NULL;
    dl_conversation *conversations[8];
    if (dl_client_new(config, &client, NULL) != DL_OK) return 3;
    for (int i = 0; i < 8; i++) {
        int32_t fd = -1;
        if (dl_conversation_start(client, NULL, &conversations[i], NULL) != DL_OK) return 4;
        if (dl_conversation_listen(conversations[i], "{\"mode\": \"websocket\"}", NULL) != DL_OK) return 5;
        if (dl_conversation_fd(conversations[i], &fd, NULL) != DL_OK) return 6;
        for (int online = 0; !online;) {
            struct pollfd ready = {fd, POLLIN, 0};
            if (poll(&ready, 1, 5000) != 1) return 7;
            if (dl_conversation_next(conversations[i], 0, &out) != DL_OK) return 8;
            online = strstr(out, "\"state\":\"online\"") != NULL;
            dl_string_free(out);
        }
    }
    for (int i = 0; i < 8; i++) dl_conversation_free(conversations[i]);
    dl_client_free(client);
    return 0;
}
