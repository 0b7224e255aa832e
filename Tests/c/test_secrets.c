/* Secret hygiene: once every handle is freed, no copy of the client's
 * secret or of a conversation's token is left in the process's memory,
 * freed or not. The program uses the library (start, send, wait, read,
 * refresh), frees everything, then reads its own heap and anonymous
 * mappings and counts each credential's bytes.
 *
 * While the handles live, the credentials they keep must be in memory
 * marked to stay out of core dumps (VmFlags "dd" in /proc/self/smaps).
 *
 * The credentials themselves must not be in the scanned memory as the
 * test's own copies: the secret is kept XOR-masked and unmasked only into
 * the configuration buffer, which is wiped once the client is made; the
 * token is taken from the library's answers in the same way.
 *
 *   test_secrets EMULATOR_URL
 */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

#define MASK 0x5A

/* "emulator-secret", masked. */
static const unsigned char masked_secret[] = {
    'e' ^ MASK, 'm' ^ MASK, 'u' ^ MASK, 'l' ^ MASK, 'a' ^ MASK, 't' ^ MASK, 'o' ^ MASK, 'r' ^ MASK,
    '-' ^ MASK, 's' ^ MASK, 'e' ^ MASK, 'c' ^ MASK, 'r' ^ MASK, 'e' ^ MASK, 't' ^ MASK,
};

static unsigned char masked_token[512];
static size_t token_length;

/* Takes the "token" member of `json` masked, then wipes `json`. */
static void keep_token_masked(char *json) {
    const char *key = strstr(json, "\"token\":");
    CHECK(key != NULL);
    if (key == NULL) return;
    const char *start = strchr(key + 8, '"');
    const char *end = start ? strchr(start + 1, '"') : NULL;
    CHECK(end != NULL && (size_t)(end - start - 1) < sizeof masked_token);
    if (end == NULL) return;
    token_length = (size_t)(end - start - 1);
    for (size_t i = 0; i < token_length; i++) masked_token[i] = (unsigned char)start[1 + i] ^ MASK;
    memset(json, 0, strlen(json));
}

/* How many times the masked `needle` occurs in [start, end). */
static size_t count_in(const unsigned char *start, const unsigned char *end, const unsigned char *needle,
                       size_t length) {
    size_t found = 0;
    if (length == 0 || (size_t)(end - start) < length) return 0;
    for (const unsigned char *at = start; at + length <= end; at++) {
        if ((at[0] ^ MASK) != needle[0]) continue;
        size_t i = 1;
        while (i < length && (at[i] ^ MASK) == needle[i]) i++;
        if (i == length) found++;
    }
    return found;
}

/* Counts the masked needle in the heap and in anonymous writable
 * mappings (thread stacks, malloc arenas); the main stack holds argv and
 * the environment, not the library's copies. */
static size_t count_in_memory(const unsigned char *needle, size_t length, const char *name) {
    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps == NULL) return (size_t)-1;
    char line[512];
    size_t total = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long start, end;
        char permissions[8] = "", path[256] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &start, &end, permissions, path) < 3) continue;
        if (permissions[0] != 'r' || permissions[1] != 'w') continue;
        if (path[0] != '\0' && strcmp(path, "[heap]") != 0) continue;
        size_t found = count_in((const unsigned char *)start, (const unsigned char *)end, needle, length);
        if (found) fprintf(stderr, "%zu copies of the %s in %s", found, name, line);
        total += found;
    }
    fclose(maps);
    return total;
}

/* Counts the masked needle in mappings marked MADV_DONTDUMP. */
static size_t count_in_dontdump(const unsigned char *needle, size_t length) {
    FILE *smaps = fopen("/proc/self/smaps", "r");
    if (smaps == NULL) return 0;
    char line[512];
    unsigned long start = 0, end = 0;
    int readable = 0;
    size_t total = 0;
    while (fgets(line, sizeof line, smaps)) {
        unsigned long from, to;
        char permissions[8] = "", path[256] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &from, &to, permissions, path) >= 3 &&
            strchr(line, ':') > strchr(line, ' ')) {
            start = from;
            end = to;
            /* Anonymous writable memory only: special mappings such as
             * [vvar] are marked dd too, and fault when read. */
            readable = permissions[0] == 'r' && permissions[1] == 'w' && path[0] == '\0';
        } else if (strncmp(line, "VmFlags:", 8) == 0 && readable && strstr(line, " dd")) {
            total += count_in((const unsigned char *)start, (const unsigned char *)end, needle, length);
        }
    }
    fclose(smaps);
    return total;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s EMULATOR_URL\n", argv[0]);
        return 2;
    }
    size_t secret_length = sizeof masked_secret;
    char *config = calloc(1, 1024);
    int written = snprintf(config, 1024, "{\"endpoint\": \"%s\", \"secret\": \"", argv[1]);
    for (size_t i = 0; i < secret_length; i++) config[written + (int)i] = (char)(masked_secret[i] ^ MASK);
    strcpy(config + written + secret_length, "\"}");

    dl_client *client = NULL;
    dl_conversation *conversation = NULL;
    char *out = NULL;
    CHECK(dl_client_new(config, &client, &out) == DL_OK);
    memset(config, 0, 1024);
    free(config);
    dl_string_free(out);
    out = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_OK);
    if (out) keep_token_masked(out);
    dl_string_free(out);
    out = NULL;
    CHECK(dl_send_text(conversation, "user1", "hello", &out) == DL_OK);
    dl_string_free(out);
    out = NULL;
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 5000, \"afterSendMs\": 0}", &out) == DL_OK);
    dl_string_free(out);
    out = NULL;
    CHECK(dl_get_activities(conversation, &out) == DL_OK);
    dl_string_free(out);
    out = NULL;
    size_t kept_secrets = count_in_dontdump(masked_secret, secret_length);
    size_t kept_tokens = count_in_dontdump(masked_token, token_length);
    printf("while the handles live: %zu copies of the secret and %zu of the token out of core dumps\n",
           kept_secrets, kept_tokens);
    CHECK(kept_secrets >= 1);
    CHECK(kept_tokens >= 1);
    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);

    size_t secrets = count_in_memory(masked_secret, secret_length, "secret");
    size_t tokens = count_in_memory(masked_token, token_length, "token");
    printf("%zu copies of the secret and %zu of the token left after every handle was freed\n", secrets, tokens);
    CHECK(secrets == 0);
    CHECK(tokens == 0);
    return report_checks();
}
