/* libdirectline and a Copilot Studio agent: the one URL the maker copies
 * from the agent's "Mobile app" channel page (the token endpoint) is the
 * whole configuration. The library fetches a token there, reads the
 * agent's regional Direct Line host from the regional settings next to it,
 * starts the conversation in the user's language and refreshes the token.
 *
 *   DIRECTLINE_TOKEN_ENDPOINT='https://<env>.environment.api.powerplatform.com/powervirtualagents/botsbyschema/<schema>/directline/token?api-version=2022-03-01-preview' \
 *   DIRECTLINE_LOCALE=fr-FR ./copilot_studio
 *
 * Against the local emulator (python3 -m emulator): the token endpoint is
 * http://127.0.0.1:3978/powervirtualagents/botsbyschema/any/directline/token?api-version=2022-03-01-preview
 *
 * Build: cc copilot_studio.c $(pkg-config --cflags --libs directline) -o copilot_studio
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

/* Prints the "text" members of a result and returns how many there were.
 * A real program would use a JSON parser. */
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
    const char *token_endpoint = getenv("DIRECTLINE_TOKEN_ENDPOINT");
    const char *locale = getenv("DIRECTLINE_LOCALE");
    if (token_endpoint == NULL) {
        fprintf(stderr, "set DIRECTLINE_TOKEN_ENDPOINT to the agent's token endpoint\n");
        return 2;
    }
    if (locale == NULL) locale = "en-US";

    /* No secret and no endpoint: the token endpoint is the credential, and
     * the Direct Line host comes from the agent's regional settings.
     * botAgent names this application in the x-ms-bot-agent header. A real
     * program would escape the values it puts in JSON. */
    char config[2048], request[128];
    snprintf(config, sizeof config, "{\"tokenEndpoint\": \"%s\", \"botAgent\": \"copilot-studio-example/1.0\"}",
             token_endpoint);
    snprintf(request, sizeof request, "{\"locale\": \"%s\"}", locale);

    dl_client *client = NULL;
    dl_conversation *conversation = NULL;
    char *out = NULL;
    int32_t status = dl_client_new(config, &client, &out);
    if (failed("dl_client_new", status, out)) return 1;
    dl_string_free(out);

    /* The locale goes with the start, so the agent's greeting is already in
     * the user's language. */
    status = dl_conversation_start(client, request, &conversation, &out);
    if (failed("dl_conversation_start", status, out)) return 1;
    dl_string_free(out); /* holds the token: keep it private */

    status = dl_conversation_listen(conversation, NULL, &out);
    if (failed("dl_conversation_listen", status, out)) return 1;
    dl_string_free(out);

    /* The greeting, if the agent has one. */
    status = dl_conversation_wait(conversation, "{\"timeoutMs\": 5000}", &out);
    if (status != DL_ERR_TIMEOUT && failed("dl_conversation_wait", status, out)) return 1;
    if (status == DL_OK) print_texts(out);
    dl_string_free(out);

    status = dl_send_text(conversation, "user1", "hello", &out);
    if (failed("dl_send_text", status, out)) return 1;
    dl_string_free(out);

    status = dl_conversation_wait(conversation, "{\"timeoutMs\": 20000}", &out);
    if (failed("dl_conversation_wait", status, out)) return 1;
    int replied = print_texts(out);
    dl_string_free(out);

    status = dl_conversation_end(conversation, "user1", &out);
    if (failed("dl_conversation_end", status, out)) return 1;
    dl_string_free(out);
    dl_conversation_free(conversation);
    dl_client_free(client);
    if (!replied) {
        fprintf(stderr, "no reply from the agent\n");
        return 1;
    }
    return 0;
}
