/* Receiving as it happens: dl_conversation_listen, _next, _fd and
 * _unlisten with the polling source and (3.0) the WebSocket stream. A reply
 * reaches next without a wait; the descriptor is readable exactly while
 * next(…, 0, …) has something (checked with poll()); the refusals (not
 * listening, websocket on 1.1, get while listening, bad options); a blocked
 * next ended by unlisten and by free on another thread; a listener failed
 * by a 403; and on the stream, typing before each reply, a dropped stream
 * connected again with nothing lost or repeated, and a collision failing
 * with DL_ERR_CONFLICT. */
#define _DEFAULT_SOURCE /* usleep */
#include "test_support.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether `fd` is readable within `timeout_ms`. */
static int fd_readable(int32_t fd, int timeout_ms) {
    struct pollfd entry = {fd, POLLIN, 0};
    return poll(&entry, 1, timeout_ms) == 1 && (entry.revents & POLLIN) != 0;
}

/* next() until the handed-out activities hold `count` occurrences of
 * `needle` or `seconds` pass; the concatenated results go to `*all`
 * (caller frees). */
static int next_until_count(dl_conversation *conversation, const char *needle, int count, double seconds,
                            char **all) {
    size_t length = 0;
    *all = calloc(1, 1);
    double deadline = now_seconds() + seconds;
    while (count_occurrences(*all, needle) < count && now_seconds() < deadline) {
        char *out = NULL;
        int32_t status = dl_conversation_next(conversation, 500, &out);
        if (status != DL_OK) {
            fprintf(stderr, "  next: %s\n", out != NULL ? out : "");
            dl_string_free(out);
            return 0;
        }
        size_t more = strlen(out);
        char *longer = realloc(*all, length + more + 1);
        if (longer == NULL) {
            dl_string_free(out);
            return 0;
        }
        *all = longer;
        memcpy(*all + length, out, more + 1);
        length += more;
        dl_string_free(out);
    }
    return count_occurrences(*all, needle) >= count;
}

static int next_until(dl_conversation *conversation, const char *needle, double seconds, char **all) {
    return next_until_count(conversation, needle, 1, seconds, all);
}

void test_listen(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    char id[128], token[256], *out = NULL, *all = NULL;
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);

    /* Not listening: next is refused, the descriptor is not readable. */
    CHECK(dl_conversation_next(conversation, 0, &out) == DL_ERR_INVALID_ARGUMENT);
    CHECK(contains(out, "not listening"));
    dl_string_free(out);
    int32_t fd = -2;
    CHECK(dl_conversation_fd(conversation, &fd, &out) == DL_OK);
    CHECK(fd >= 0 && contains(out, "\"fd\":"));
    dl_string_free(out);
    CHECK(!fd_readable(fd, 0));
    CHECK(dl_conversation_fd(conversation, NULL, &out) == DL_ERR_INVALID_ARGUMENT);
    dl_string_free(out);

    /* websocket on 1.1: DL_ERR_UNSUPPORTED, nothing started; bad options refused. */
    int before = emu_request_count(base_url);
    if (!v3) {
        CHECK(dl_conversation_listen(conversation, "{\"mode\": \"websocket\"}", &out) == DL_ERR_UNSUPPORTED);
        CHECK(contains(out, "\"name\":\"DL_ERR_UNSUPPORTED\"") && contains(out, "WebSocket"));
        dl_string_free(out);
    }
    const char *bad_options[] = {"{\"mode\": \"push\"}", "{\"pollIntervalMs\": 49}", "{\"maxQueued\": 0}",
                                 "{\"includeOwn\": 1}", "{\"interval\": 100}", "[]"};
    for (size_t i = 0; i < sizeof bad_options / sizeof *bad_options; i++) {
        CHECK(dl_conversation_listen(conversation, bad_options[i], NULL) == DL_ERR_INVALID_ARGUMENT);
    }
    usleep(200 * 1000);
    CHECK(emu_request_count(base_url) == before);
    CHECK(dl_conversation_next(conversation, 0, NULL) == DL_ERR_INVALID_ARGUMENT);

    /* Listening by polling. */
    CHECK(dl_conversation_listen(conversation, "{\"mode\": \"polling\", \"pollIntervalMs\": 100}", &out) == DL_OK);
    CHECK(contains(out, "\"mode\":\"polling\"") && contains(out, "\"state\":\"connecting\""));
    dl_string_free(out);
    CHECK(dl_conversation_listen(conversation, "{\"mode\": \"polling\", \"maxQueued\": 5}", &out) == DL_OK);
    CHECK(contains(out, "\"mode\":\"polling\""));
    dl_string_free(out);
    CHECK(dl_conversation_next(conversation, -2, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_get_activities(conversation, &out) == DL_ERR_INVALID_ARGUMENT);
    dl_string_free(out);

    /* The first poll's answer makes the state online: readable until taken. */
    CHECK(fd_readable(fd, 5000));
    CHECK(fd_readable(fd, 0));
    CHECK(dl_conversation_next(conversation, 0, &out) == DL_OK);
    CHECK(contains(out, "\"state\":\"online\"") && contains(out, "\"timedOut\":false"));
    dl_string_free(out);
    CHECK(!fd_readable(fd, 0));
    CHECK(dl_conversation_next(conversation, 0, &out) == DL_OK);
    CHECK(contains(out, "\"timedOut\":true") && contains(out, "\"activities\":[]"));
    dl_string_free(out);

    /* A reply reaches next without a wait, the caller's own message does not. */
    send_ok(conversation, "listen one");
    CHECK(fd_readable(fd, 5000));
    CHECK(next_until(conversation, "echo: listen one", 5, &all));
    CHECK(contains(all, "\"activities\":[") && !contains(all, "\"text\":\"listen one\""));
    CHECK(count_occurrences(all, "echo: listen one") == 1);
    free(all);
    CHECK(!fd_readable(fd, 0));

    /* A blocking next returns as soon as the reply is in. */
    send_ok(conversation, "listen two");
    double started = now_seconds();
    CHECK(next_until(conversation, "echo: listen two", 5, &all));
    CHECK(now_seconds() - started < 3.0);
    free(all);

    /* dl_conversation_state saves the watermark of what next handed out. */
    char saved_mark[32] = "", info_mark[32] = "";
    CHECK(dl_conversation_state(conversation, &out) == DL_OK);
    CHECK(json_string(out, "watermark", saved_mark, sizeof saved_mark) && atoi(saved_mark) == 4);
    dl_string_free(out);
    CHECK(dl_conversation_info(conversation, &out) == DL_OK);
    CHECK(json_string(out, "watermark", info_mark, sizeof info_mark) && strcmp(info_mark, saved_mark) == 0);
    dl_string_free(out);

    /* wait takes from the listener. */
    send_ok(conversation, "listen three");
    CHECK(dl_conversation_wait(conversation, "{\"timeoutMs\": 5000}", &out) == DL_OK);
    CHECK(contains(out, v3 ? "\"activities\":[" : "\"messages\":["));
    CHECK(contains(out, "echo: listen three") && contains(out, "\"timedOut\":false"));
    dl_string_free(out);

    /* Unlisten: what was queued is dropped, the watermark stays before it:
     * 6 (after "echo: listen three"), or 7 when a poll read the page with
     * the caller's own "listen four" alone before the reply came. */
    send_ok(conversation, "listen four");
    CHECK(fd_readable(fd, 5000));
    usleep(100 * 1000);
    char dropped_mark[32] = "";
    CHECK(dl_conversation_unlisten(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"dropped\":1"));
    CHECK(json_string(out, "watermark", dropped_mark, sizeof dropped_mark));
    CHECK(atoi(dropped_mark) == 6 || atoi(dropped_mark) == 7);
    dl_string_free(out);
    CHECK(!fd_readable(fd, 0));
    CHECK(dl_conversation_unlisten(conversation, &out) == DL_OK);
    CHECK(contains(out, "\"dropped\":0"));
    dl_string_free(out);
    CHECK(dl_conversation_next(conversation, 0, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_get_activities(conversation, &out) == DL_OK);
    CHECK(contains(out, "echo: listen four"));
    dl_string_free(out);
    int32_t again = -2;
    CHECK(dl_conversation_fd(conversation, &again, NULL) == DL_OK && again == fd);

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_conversation_fd(conversation, &again, NULL) == DL_ERR_INVALID_HANDLE && again == -1);
    CHECK(dl_client_free(client) == DL_OK);
}

struct blocked_next {
    dl_conversation *conversation;
    int32_t status;
    char *out;
    double returned_at;
};

static void *next_without_limit(void *argument) {
    struct blocked_next *call = argument;
    call->status = dl_conversation_next(call->conversation, -1, &call->out);
    call->returned_at = now_seconds();
    return NULL;
}

/* A next blocked without a time limit ends with DL_ERR_CANCELLED at once
 * when another thread unlistens (`by_free` 0) or frees the handle (1). */
static void blocked_next_cancelled(const char *protocol, const char *options, int by_free) {
    char id[128], token[256], *out = NULL;
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);
    CHECK(dl_conversation_listen(conversation, options, NULL) == DL_OK);
    /* Take the state change, so that next has nothing to return. */
    CHECK(dl_conversation_next(conversation, 5000, &out) == DL_OK && contains(out, "\"state\":\"online\""));
    dl_string_free(out);

    struct blocked_next call = {conversation, -1, NULL, 0};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, next_without_limit, &call) == 0);
    usleep(400 * 1000);
    CHECK(call.status == -1); /* still blocked */
    double stopped_at = now_seconds();
    if (by_free) {
        CHECK(dl_conversation_free(conversation) == DL_OK);
    } else {
        CHECK(dl_conversation_unlisten(conversation, NULL) == DL_OK);
    }
    pthread_join(thread, NULL);
    if (!CHECK(call.status == DL_ERR_CANCELLED)) {
        fprintf(stderr, "  %s next after %s: %s\n", protocol, by_free ? "free" : "unlisten", call.out);
    }
    CHECK(contains(call.out, "\"name\":\"DL_ERR_CANCELLED\""));
    CHECK(call.returned_at - stopped_at < 0.25);
    dl_string_free(call.out);
    if (!by_free) {
        CHECK(dl_conversation_next(conversation, 0, NULL) == DL_ERR_INVALID_ARGUMENT);
        CHECK(dl_conversation_free(conversation) == DL_OK);
    }
    CHECK(dl_conversation_next(conversation, 0, NULL) == DL_ERR_INVALID_HANDLE);
    CHECK(dl_client_free(client) == DL_OK);
}

void test_listen_cancelled(const char *protocol) {
    const char *polling = "{\"mode\": \"polling\", \"pollIntervalMs\": 100}";
    blocked_next_cancelled(protocol, polling, 0);
    blocked_next_cancelled(protocol, polling, 1);
    if (strcmp(protocol, "3.0") == 0) {
        const char *stream = "{\"mode\": \"websocket\"}";
        blocked_next_cancelled(protocol, stream, 0);
        blocked_next_cancelled(protocol, stream, 1);
    }
}

/* A 403 on every poll: next hands out what was queued, then the 403 on
 * every call, and the descriptor stays readable. */
void test_listen_failed(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    char id[128], token[256], *out = NULL, rule[256];
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);
    send_ok(conversation, "before the failure");
    CHECK(dl_conversation_listen(conversation, "{\"mode\": \"polling\", \"pollIntervalMs\": 50}", NULL) == DL_OK);
    int32_t fd = -1;
    CHECK(dl_conversation_fd(conversation, &fd, NULL) == DL_OK);
    CHECK(fd_readable(fd, 5000)); /* the first page is queued */
    snprintf(rule, sizeof rule, "{\"method\": \"GET\", \"path\": \"%s\", \"count\": -1, \"action\": \"status\", "
             "\"status\": 403}", v3 ? "/activities$" : "/messages$");
    CHECK(emu_post(base_url, "/_emulator/faults", rule) == 200);
    /* Until a poll meets the 403. */
    double deadline = now_seconds() + 5;
    int failed = 0;
    while (!failed && now_seconds() < deadline) {
        char *log = emu_get(base_url, "/_emulator/requests");
        failed = contains(log, "\"status\":403");
        free(log);
        if (!failed) usleep(50 * 1000);
    }
    CHECK(failed);
    usleep(50 * 1000);
    CHECK(dl_conversation_next(conversation, 0, &out) == DL_OK);
    CHECK(contains(out, "echo: before the failure") && contains(out, "\"state\":\"failed\""));
    dl_string_free(out);
    for (int i = 0; i < 3; i++) {
        CHECK(fd_readable(fd, 0));
        out = NULL;
        CHECK(dl_conversation_next(conversation, i == 0 ? 0 : 1000, &out) == DL_ERR_FORBIDDEN);
        CHECK(contains(out, "\"httpStatus\":403"));
        dl_string_free(out);
    }
    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}

/* The emulator's open stream of conversation `id` has been registered. */
static int stream_listed(const char *id) {
    double deadline = now_seconds() + 5;
    while (now_seconds() < deadline) {
        char *streams = emu_get(base_url, "/_emulator/streams");
        char *open = streams != NULL ? strstr(streams, "\"closed\"") : NULL;
        if (open != NULL) *open = '\0'; /* only the open ones */
        int listed = streams != NULL && contains(streams, id);
        free(streams);
        if (listed) return 1;
        usleep(20 * 1000);
    }
    return 0;
}

/* The stream (3.0): "auto" streams; typing comes before each reply and no
 * polling goes on; a dropped stream is connected again and the replies sent
 * meanwhile come once, in order; a collision fails with DL_ERR_CONFLICT. */
void test_listen_stream(const char *protocol) {
    if (strcmp(protocol, "3.0") != 0) return;
    char id[128], token[256], *out = NULL, *all = NULL, path[256];
    reset_emulator();
    dl_client *client = new_client(protocol, NULL);
    dl_conversation *conversation = start_conversation(client, id, token);
    CHECK(dl_conversation_listen(conversation, NULL, &out) == DL_OK);
    CHECK(contains(out, "\"mode\":\"websocket\"") && contains(out, "\"state\":\"connecting\""));
    dl_string_free(out);
    CHECK(dl_conversation_next(conversation, 5000, &out) == DL_OK && contains(out, "\"state\":\"online\""));
    dl_string_free(out);
    CHECK(stream_listed(id));

    int requests_before = emu_request_count(base_url);
    send_ok(conversation, "streamed");
    CHECK(next_until(conversation, "echo: streamed", 5, &all));
    CHECK(contains(all, "\"type\":\"typing\""));
    CHECK(strstr(all, "\"type\":\"typing\"") < strstr(all, "echo: streamed"));
    CHECK(contains(all, "\"mode\":\"websocket\""));
    free(all);
    /* The send, and nothing else: no polling. */
    CHECK(emu_request_count(base_url) == requests_before + 1);

    /* Dropped: connected again; what the bot said meanwhile comes once. */
    snprintf(path, sizeof path, "/_emulator/streams/%s", id);
    CHECK(emu_post(base_url, path, "{\"action\": \"drop\"}") == 200);
    send_ok(conversation, "away 1");
    send_ok(conversation, "away 2");
    CHECK(next_until_count(conversation, "echo: away", 2, 10, &all));
    CHECK(count_occurrences(all, "echo: away 1") == 1 && count_occurrences(all, "echo: away 2") == 1);
    CHECK(strstr(all, "echo: away 1") < strstr(all, "echo: away 2"));
    free(all);

    /* Another client holds the stream now: DL_ERR_CONFLICT for good. */
    CHECK(stream_listed(id));
    CHECK(emu_post(base_url, path, "{\"action\": \"collision\"}") == 200);
    double deadline = now_seconds() + 5;
    int32_t status = DL_OK;
    while (status == DL_OK && now_seconds() < deadline) {
        out = NULL;
        status = dl_conversation_next(conversation, 500, &out);
        if (status != DL_OK) CHECK(contains(out, "collision"));
        dl_string_free(out);
    }
    CHECK(status == DL_ERR_CONFLICT);
    CHECK(dl_conversation_next(conversation, 0, NULL) == DL_ERR_CONFLICT);
    CHECK(dl_conversation_unlisten(conversation, &out) == DL_OK);
    dl_string_free(out);
    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}
