/* libdirectline quickstart: start a conversation, say hello, wait for the
 * bot's reply, upload a file, wait again, and end the conversation.
 *
 *   DIRECTLINE_ENDPOINT=http://127.0.0.1:3978 DIRECTLINE_SECRET=emulator-secret ./quickstart
 *
 * Build: cc quickstart.c -Iinclude -L.build/release -ldirectline -o quickstart
 */
#include <directline.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints the error JSON and returns 1 when `status` is not DL_OK. */
static int failed(const char *what, int32_t status, char *out_json) {
    if (status == DL_OK) return 0;
    fprintf(stderr, "%s failed: %s %s\n", what, dl_status_name(status), out_json ? out_json : "");
    dl_string_free(out_json);
    return 1;
}

/* Prints the "text" members of a dl_conversation_wait result and returns
 * how many there were. A real program would use a JSON parser. */
static int print_texts(const char *json) {
    int count = 0;
    for (const char *at = strstr(json, "\"text\":\""); at != NULL; at = strstr(at, "\"text\":\"")) {
        at += strlen("\"text\":\"");
        const char *close = strchr(at, '"');
        if (close == NULL) break;
        printf("bot: %.*s\n", (int)(close - at), at);
        count++;
    }
    return count;
}

int main(void) {
    const char *endpoint = getenv("DIRECTLINE_ENDPOINT");
    const char *secret = getenv("DIRECTLINE_SECRET");
    if (endpoint == NULL || secret == NULL) {
        fprintf(stderr, "set DIRECTLINE_ENDPOINT and DIRECTLINE_SECRET\n");
        return 2;
    }

    /* Configuration is JSON; a real program would escape the values. */
    char config[2048];
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"secret\": \"%s\"}", endpoint, secret);

    dl_client *client = NULL;
    dl_conversation *conversation = NULL;
    char *out = NULL;
    int32_t status = dl_client_new(config, &client, &out);
    if (failed("dl_client_new", status, out)) return 1;
    dl_string_free(out);

    status = dl_conversation_start(client, NULL, &conversation, &out);
    if (failed("dl_conversation_start", status, out)) return 1;
    dl_string_free(out); /* the Conversation object: it holds a token, keep it private */

    /* Receive in the background: over the WebSocket stream on 3.0 (when
     * libcurl can), else by polling, on the library's one I/O thread. */
    status = dl_conversation_listen(conversation, NULL, &out);
    if (failed("dl_conversation_listen", status, out)) return 1;
    printf("listening: %s\n", out);
    dl_string_free(out);

    status = dl_send_text(conversation, "user1", "hello from C", &out);
    if (failed("dl_send_text", status, out)) return 1;
    printf("sent: %s\n", out);
    dl_string_free(out);

    /* Wait for the bot's answer: it returns as soon as the listener hands
     * over an activity from someone else (dl_conversation_next gives every
     * activity, typing included, as it comes). */
    status = dl_conversation_wait(conversation, "{\"timeoutMs\": 10000}", &out);
    if (failed("dl_conversation_wait", status, out)) return 1;
    int replied = print_texts(out);
    dl_string_free(out);

    /* Upload an attachment: from memory here; dl_upload_file streams one
     * from disk, dl_upload_multipart sends several with a message. */
    const char note[] = "a note for the bot";
    status = dl_upload_bytes(conversation, "user1", note, sizeof note - 1, "text/plain", "note.txt", &out);
    if (failed("dl_upload_bytes", status, out)) return 1;
    printf("uploaded: %s\n", out);
    dl_string_free(out);

    status = dl_conversation_wait(conversation, NULL, &out);
    if (failed("dl_conversation_wait", status, out)) return 1;
    int acknowledged = print_texts(out);
    dl_string_free(out);

    /* Tell the bot the conversation is over (3.0 sends endOfConversation). */
    status = dl_conversation_end(conversation, "user1", &out);
    if (failed("dl_conversation_end", status, out)) return 1;
    dl_string_free(out);

    dl_conversation_free(conversation);
    dl_client_free(client);
    if (!replied || !acknowledged) {
        fprintf(stderr, "no reply from the bot\n");
        return 1;
    }
    return 0;
}
