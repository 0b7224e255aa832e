/* libdirectline: save a conversation and resume it later.
 *
 * A server holding the secret hands a token to a client; the client starts
 * the conversation with it, talks, saves the conversation's state (which
 * holds its token: store it like a password), and a later run resumes from
 * the saved watermark, so no reply is lost or read twice.
 *
 *   DIRECTLINE_ENDPOINT=http://127.0.0.1:3978 DIRECTLINE_SECRET=emulator-secret ./resume
 *
 * Build: cc resume.c $(pkg-config --cflags --libs directline) -o resume
 */
#include <directline.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failed(const char *what, int32_t status, char *out_json) {
    if (status == DL_OK) return 0;
    fprintf(stderr, "%s failed: %s %s\n", what, dl_status_name(status), out_json ? out_json : "");
    dl_string_free(out_json);
    return 1;
}

/* Copies the string member `key` of a flat JSON object into `value` (a real
 * program would use a JSON parser). */
static int member(const char *json, const char *key, char *value, size_t size) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *at = strstr(json, pattern);
    if (at == NULL) return 0;
    at += strlen(pattern);
    const char *end = strchr(at, '"');
    if (end == NULL || (size_t)(end - at) >= size) return 0;
    memcpy(value, at, (size_t)(end - at));
    value[end - at] = '\0';
    return 1;
}

/* Sends `text` and prints the replies that come back. */
static int say(dl_conversation *conversation, const char *text) {
    char *out = NULL;
    int32_t status = dl_send_text(conversation, "dl_resume-user", text, &out);
    if (failed("dl_send_text", status, out)) return 1;
    dl_string_free(out);
    status = dl_conversation_wait(conversation, "{\"timeoutMs\": 10000}", &out);
    if (failed("dl_conversation_wait", status, out)) return 1;
    char reply[512];
    if (!member(out, "text", reply, sizeof reply)) {
        fprintf(stderr, "no reply to %s: %s\n", text, out);
        dl_string_free(out);
        return 1;
    }
    printf("you: %s\nbot: %s\n", text, reply);
    dl_string_free(out);
    return 0;
}

int main(void) {
    const char *endpoint = getenv("DIRECTLINE_ENDPOINT");
    const char *secret = getenv("DIRECTLINE_SECRET");
    if (endpoint == NULL || secret == NULL) {
        fprintf(stderr, "set DIRECTLINE_ENDPOINT and DIRECTLINE_SECRET\n");
        return 2;
    }
    char config[4096];
    char *out = NULL;

    /* 1. The server side: exchange the secret for a token bound to a user. */
    dl_client *server = NULL;
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"secret\": \"%s\"}", endpoint, secret);
    if (failed("dl_client_new", dl_client_new(config, &server, &out), out)) return 1;
    dl_string_free(out);
    int32_t status = dl_token_generate(server, "{\"user\": {\"id\": \"dl_resume-user\"}}", &out);
    if (failed("dl_token_generate", status, out)) return 1;
    char token[1024];
    int have_token = member(out, "token", token, sizeof token);
    dl_string_free(out);
    dl_client_free(server);
    if (!have_token) return 1;

    /* 2. The client side: a client that holds only the token. */
    dl_client *client = NULL;
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"token\": \"%s\"}", endpoint, token);
    if (failed("dl_client_new", dl_client_new(config, &client, &out), out)) return 1;
    dl_string_free(out);

    dl_conversation *conversation = NULL;
    status = dl_conversation_start(client, NULL, &conversation, &out);
    if (failed("dl_conversation_start", status, out)) return 1;
    dl_string_free(out);
    if (say(conversation, "hello")) return 1;

    /* 3. Save the state and let the handle go. */
    char *state = NULL;
    status = dl_conversation_state(conversation, &state);
    if (failed("dl_conversation_state", status, state)) return 1;
    dl_conversation_free(conversation);
    printf("saved the conversation (%zu bytes of state)\n", strlen(state));

    /* 4. Later: resume from the saved state and carry on. */
    status = dl_conversation_open(client, state, &conversation, &out);
    dl_string_free(state);
    if (failed("dl_conversation_open", status, out)) return 1;
    printf("resumed: %s\n", out); /* the info: never the token */
    dl_string_free(out);
    if (say(conversation, "still there?")) return 1;

    status = dl_conversation_end(conversation, "dl_resume-user", &out);
    if (failed("dl_conversation_end", status, out)) return 1;
    dl_string_free(out);
    dl_conversation_free(conversation);
    dl_client_free(client);
    return 0;
}
