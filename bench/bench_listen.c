/* Receiving as it happens, measured through the C ABI against the emulator
 * (bench/listen.py runs it; docs/performance.md shows the figures). Each
 * run prints one JSON line; nothing here asserts on a timing.
 *
 *     bench_listen latency ENDPOINT MODE INTERVAL_MS ROUNDS LANES GAP_MS EMULATOR_PID
 *         LANES conversations listen with {"mode": MODE, "pollIntervalMs":
 *         INTERVAL_MS} (one thread each) and make ROUNDS round trips in
 *         all: wait a random time in [0, GAP_MS), dl_send_text, then
 *         poll() the conversation's descriptor and dl_conversation_next
 *         until the bot's echo of that text is handed out. The wait puts
 *         each send at a random point of the poll cycle, as a user would.
 *         Reports the latency from the send's start to the reply's
 *         hand-out (p50/p95/p99), how long the send itself took, and the
 *         requests the emulator logged over the rounds, by kind.
 *     bench_listen scale ENDPOINT MODE INTERVAL_MS N IDLE_S SENDERS EMULATOR_PID
 *         N conversations started, then all listening at once: the time
 *         until every one is online, the process's threads, RSS and
 *         descriptors before and after, its CPU time over IDLE_S seconds
 *         with nothing sent (only keep-alives or empty polls), the
 *         requests a second while idle; then one message on each (SENDERS
 *         threads sending) while this thread poll()s all N descriptors:
 *         the time until every reply was handed out, and each
 *         conversation's latency (p50/p99).
 *
 * EMULATOR_PID (0: none) is the emulator's process: its CPU time over each
 * phase is read from /proc/PID/stat, to tell whether it is what limits.
 * RLIMIT_NOFILE is raised to fit N conversations (root may raise the hard
 * limit too). Every call's status is checked: a failure ends the program
 * with status 1. */
#include "bench_common.h"

#include <directline.h>

#include <curl/curl.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#define USER_ID "bench-user"

static const char *endpoint;
static int emulator_pid;

static void fail(const char *what, int32_t status, const char *out) {
    fprintf(stderr, "bench_listen: %s failed: %s %s\n", what, dl_status_name(status), out ? out : "");
    exit(1);
}

/* ---- the process and the emulator's, from /proc ---- */

static long status_field(const char *path, const char *name) {
    FILE *file = fopen(path, "r");
    if (!file) return -1;
    char line[256];
    long value = -1;
    size_t length = strlen(name);
    while (fgets(line, sizeof line, file)) {
        if (strncmp(line, name, length) == 0) {
            value = strtol(line + length, NULL, 10);
            break;
        }
    }
    fclose(file);
    return value;
}

static long thread_count(void) { return status_field("/proc/self/status", "Threads:"); }

static long descriptor_count(void) {
    DIR *directory = opendir("/proc/self/fd");
    if (!directory) return -1;
    long count = 0;
    for (struct dirent *entry; (entry = readdir(directory)) != NULL;) count += entry->d_name[0] != '.';
    closedir(directory);
    return count - 1; /* the one opendir holds */
}

/* Sockets among this process's descriptors (the rest: eventfds, files). */
static long socket_count(void) {
    DIR *directory = opendir("/proc/self/fd");
    if (!directory) return -1;
    long count = 0;
    char path[300], target[64];
    for (struct dirent *entry; (entry = readdir(directory)) != NULL;) {
        if (entry->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
        ssize_t length = readlink(path, target, sizeof target - 1);
        if (length > 0 && strncmp(target, "socket:", 7) == 0) count++;
    }
    closedir(directory);
    return count;
}

/* Context switches of all this process's threads: while nothing is
 * handed out, nearly all are the library's thread waking up. */
static long context_switches(void) {
    DIR *directory = opendir("/proc/self/task");
    if (!directory) return -1;
    long total = 0;
    char path[300];
    for (struct dirent *entry; (entry = readdir(directory)) != NULL;) {
        if (entry->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/status", entry->d_name);
        long voluntary = status_field(path, "voluntary_ctxt_switches:");
        long forced = status_field(path, "nonvoluntary_ctxt_switches:");
        if (voluntary > 0) total += voluntary;
        if (forced > 0) total += forced;
    }
    closedir(directory);
    return total;
}

/* TcpExt ListenOverflows from /proc/net/netstat (this network namespace,
 * every process in it): connections a full accept queue turned away, each
 * retried by the client's kernel after 1, 3, 7, 15 s... */
static long listen_overflows(void) {
    FILE *file = fopen("/proc/net/netstat", "r");
    if (!file) return -1;
    static char names[8192], values[8192];
    long result = -1;
    while (fgets(names, sizeof names, file) && fgets(values, sizeof values, file)) {
        if (strncmp(names, "TcpExt:", 7) != 0) continue;
        char *name_save = NULL, *value_save = NULL;
        char *name = strtok_r(names, " \n", &name_save), *value = strtok_r(values, " \n", &value_save);
        while (name && value) {
            if (strcmp(name, "ListenOverflows") == 0) result = atol(value);
            name = strtok_r(NULL, " \n", &name_save);
            value = strtok_r(NULL, " \n", &value_save);
        }
    }
    fclose(file);
    return result;
}

/* The emulator's user + system CPU time in seconds (-1 without one). */
static double emulator_cpu_s(void) {
    if (emulator_pid <= 0) return -1;
    char path[64], text[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", emulator_pid);
    FILE *file = fopen(path, "r");
    if (!file) return -1;
    size_t length = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[length] = '\0';
    /* Fields after the command name (which may hold spaces): state is 3,
     * utime 14, stime 15. */
    char *at = strrchr(text, ')');
    if (!at) return -1;
    unsigned long long utime = 0, stime = 0;
    if (sscanf(at + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static long emulator_status(const char *name) {
    if (emulator_pid <= 0) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", emulator_pid);
    return status_field(path, name);
}

static void raise_descriptor_limit(long wanted) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur != RLIM_INFINITY && (long)limit.rlim_cur >= wanted) return;
    if (limit.rlim_max != RLIM_INFINITY && (long)limit.rlim_max < wanted) {
        struct rlimit raised = {(rlim_t)wanted, (rlim_t)wanted};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return; /* root */
    }
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
}

static long descriptor_limit(void) {
    struct rlimit limit;
    return getrlimit(RLIMIT_NOFILE, &limit) == 0 ? (long)limit.rlim_cur : -1;
}

/* ---- the emulator's control API, over libcurl directly ---- */

struct buffer {
    char *data;
    size_t length;
};

static size_t collect(char *bytes, size_t size, size_t count, void *userdata) {
    struct buffer *buffer = userdata;
    size_t total = size * count;
    char *grown = realloc(buffer->data, buffer->length + total + 1);
    if (!grown) return 0;
    buffer->data = grown;
    memcpy(buffer->data + buffer->length, bytes, total);
    buffer->length += total;
    buffer->data[buffer->length] = '\0';
    return total;
}

/* METHOD ENDPOINT+path; the body (caller frees). Exits on failure. */
static char *control(const char *method, const char *path, const char *json) {
    char url[1024];
    snprintf(url, sizeof url, "%s%s", endpoint, path);
    CURL *curl = curl_easy_init();
    struct buffer buffer = {calloc(1, 1), 0};
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (json) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buffer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 60000L);
    CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    if (code != CURLE_OK || status != 200) {
        fprintf(stderr, "bench_listen: %s %s failed: %s, HTTP %ld\n", method, url, curl_easy_strerror(code), status);
        exit(1);
    }
    return buffer.data;
}

static long count_of(const char *text, const char *needle) {
    long count = 0;
    for (const char *at = strstr(text, needle); at; at = strstr(at + 1, needle)) count++;
    return count;
}

/* The request log since it was last cleared, by kind. The log keeps the
 * newest 5,000 entries: `capped` says it was full. */
struct requests {
    long total, sends, polls, reconnects, upgrades, other, capped;
};

static struct requests logged_requests(void) {
    char *log = control("GET", "/_emulator/requests", NULL);
    struct requests counted = {0};
    const char *key = "\"method\":\"";
    for (const char *at = strstr(log, key); at; at = strstr(at + 1, key)) {
        const char *method = at + strlen(key);
        const char *path = strstr(method, "\"path\":\"");
        if (!path) break;
        path += strlen("\"path\":\"");
        const char *end = strchr(path, '"');
        if (!end) break;
        size_t length = (size_t)(end - path);
        int get = strncmp(method, "GET\"", 4) == 0, post = strncmp(method, "POST\"", 5) == 0;
#define ENDS(suffix) (length >= strlen(suffix) && strncmp(end - strlen(suffix), suffix, strlen(suffix)) == 0)
        counted.total++;
        if (post && ENDS("/activities")) {
            counted.sends++;
        } else if (get && ENDS("/activities")) {
            counted.polls++;
        } else if (get && ENDS("/stream")) {
            counted.upgrades++;
        } else if (get && length > strlen("/v3/directline/conversations/") &&
                   !memchr(path + strlen("/v3/directline/conversations/"), '/',
                           length - strlen("/v3/directline/conversations/"))) {
            counted.reconnects++; /* GET conversations/{id}: a fresh stream URL */
        } else {
            counted.other++;
        }
#undef ENDS
    }
    counted.capped = counted.total >= 5000;
    free(log);
    return counted;
}

static void clear_requests(void) { free(control("DELETE", "/_emulator/requests", NULL)); }

static void print_requests(const char *name, struct requests r) {
    printf("\"%s\": {\"total\": %ld, \"sends\": %ld, \"polls\": %ld, \"streamUrl\": %ld, \"upgrades\": %ld, "
           "\"other\": %ld, \"capped\": %s}",
           name, r.total, r.sends, r.polls, r.reconnects, r.upgrades, r.other, r.capped ? "true" : "false");
}

/* ---- the library ---- */

static dl_client *new_client(void) {
    char config[1024];
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"secret\": \"emulator-secret\"}", endpoint);
    dl_client *client = NULL;
    char *out = NULL;
    int32_t status = dl_client_new(config, &client, &out);
    if (status != DL_OK) fail("dl_client_new", status, out);
    dl_string_free(out);
    return client;
}

static dl_conversation *start_one(dl_client *client) {
    dl_conversation *conversation = NULL;
    char *out = NULL;
    int32_t status = dl_conversation_start(client, NULL, &conversation, &out);
    if (status != DL_OK) fail("dl_conversation_start", status, out);
    dl_string_free(out);
    return conversation;
}

static char listen_options[256];

/* Listens; returns the descriptor. */
static int listen_one(dl_conversation *conversation, const char *mode) {
    char *out = NULL;
    int32_t status = dl_conversation_listen(conversation, listen_options, &out);
    if (status != DL_OK) fail("dl_conversation_listen", status, out);
    char expected[64];
    snprintf(expected, sizeof expected, "\"mode\":\"%s\"", mode);
    if (!strstr(out, expected)) fail("dl_conversation_listen (mode)", status, out);
    dl_string_free(out);
    int32_t fd = -1;
    status = dl_conversation_fd(conversation, &fd, &out);
    if (status != DL_OK) fail("dl_conversation_fd", status, out);
    dl_string_free(out);
    return fd;
}

/* next(…, 0, …); the result (caller frees with dl_string_free). A listener
 * that failed or stopped ends the program: the figures would be wrong. */
static char *take(dl_conversation *conversation) {
    char *out = NULL;
    int32_t status = dl_conversation_next(conversation, 0, &out);
    if (status != DL_OK) fail("dl_conversation_next", status, out);
    if (strstr(out, "\"state\":\"failed\"") || strstr(out, "\"state\":\"ended\"")) {
        fail("dl_conversation_next (state)", status, out);
    }
    return out;
}

static int wait_readable(int fd, int timeout_ms) {
    struct pollfd entry = {fd, POLLIN, 0};
    return poll(&entry, 1, timeout_ms) == 1;
}

/* Waits until the listener reports "online" (at most 30 s). */
static void wait_online(dl_conversation *conversation, int fd) {
    uint64_t deadline = bench_now_ns() + 30000000000u;
    while (bench_now_ns() < deadline) {
        if (!wait_readable(fd, 1000)) continue;
        char *out = take(conversation);
        int online = strstr(out, "\"state\":\"online\"") != NULL;
        dl_string_free(out);
        if (online) return;
    }
    fail("waiting to be online", DL_OK, "30 s passed");
}

static double ms(double ns) { return ns / 1e6; }

/* After the last free: waits (at most 3 s) for the library's transfer
 * thread to end, which it does once nothing is left; the threads left. */
static long wait_library_idle(void) {
    for (int i = 0; i < 300 && thread_count() > 1; i++) usleep(10 * 1000);
    return thread_count();
}

/* ---- latency: round trips ---- */

struct lane {
    int index, rounds, gap_ms;
    dl_conversation *conversation;
    int fd;
    uint64_t *latencies, *sends; /* ns, one per round */
    long handouts;               /* next() calls that returned something */
};

static void *run_lane(void *argument) {
    struct lane *lane = argument;
    unsigned seed = 0x9e3779b9u * (unsigned)(lane->index + 1);
    for (int round = 0; round < lane->rounds; round++) {
        if (lane->gap_ms > 0) usleep((useconds_t)(rand_r(&seed) % (unsigned)(lane->gap_ms * 1000)));
        char text[64], needle[96];
        snprintf(text, sizeof text, "ping %d-%d.", lane->index, round);
        snprintf(needle, sizeof needle, "\"echo: %s\"", text);
        char *out = NULL;
        uint64_t t0 = bench_now_ns();
        int32_t status = dl_send_text(lane->conversation, USER_ID, text, &out);
        uint64_t sent = bench_now_ns();
        if (status != DL_OK) fail("dl_send_text", status, out);
        dl_string_free(out);
        uint64_t deadline = t0 + 30000000000u;
        for (;;) {
            uint64_t now = bench_now_ns();
            if (now >= deadline) fail("waiting for the reply", DL_OK, needle);
            if (!wait_readable(lane->fd, (int)((deadline - now) / 1000000) + 1)) continue;
            out = take(lane->conversation);
            uint64_t handed = bench_now_ns();
            lane->handouts++;
            int found = strstr(out, needle) != NULL;
            dl_string_free(out);
            if (found) {
                lane->latencies[round] = handed - t0;
                lane->sends[round] = sent - t0;
                break;
            }
        }
    }
    return NULL;
}

static int run_latency(const char *mode, int interval_ms, int rounds, int lanes, int gap_ms) {
    dl_client *client = new_client();
    struct lane *lane = calloc((size_t)lanes, sizeof *lane);
    uint64_t *latencies = calloc((size_t)rounds, sizeof *latencies);
    uint64_t *sends = calloc((size_t)rounds, sizeof *sends);
    int per_lane = rounds / lanes;
    rounds = per_lane * lanes;
    for (int i = 0; i < lanes; i++) {
        lane[i].index = i;
        lane[i].rounds = per_lane;
        lane[i].gap_ms = gap_ms;
        lane[i].conversation = start_one(client);
        lane[i].fd = listen_one(lane[i].conversation, mode);
        lane[i].latencies = latencies + i * per_lane;
        lane[i].sends = sends + i * per_lane;
    }
    for (int i = 0; i < lanes; i++) wait_online(lane[i].conversation, lane[i].fd);
    clear_requests();
    double emulator_before = emulator_cpu_s();
    uint64_t cpu_before = bench_cpu_ns();
    uint64_t start = bench_now_ns();
    pthread_t *threads = calloc((size_t)lanes, sizeof *threads);
    for (int i = 0; i < lanes; i++) pthread_create(&threads[i], NULL, run_lane, &lane[i]);
    for (int i = 0; i < lanes; i++) pthread_join(threads[i], NULL);
    uint64_t elapsed = bench_now_ns() - start;
    uint64_t cpu = bench_cpu_ns() - cpu_before;
    double emulator_cpu = emulator_cpu_s() - emulator_before;
    struct requests requests = logged_requests();
    long handouts = 0;
    for (int i = 0; i < lanes; i++) handouts += lane[i].handouts;
    long threads_now = thread_count();
    for (int i = 0; i < lanes; i++) dl_conversation_free(lane[i].conversation);
    dl_client_free(client);
    wait_library_idle();

    double mean = 0, max = 0;
    for (int i = 0; i < rounds; i++) {
        mean += (double)latencies[i] / rounds;
        if ((double)latencies[i] > max) max = (double)latencies[i];
    }
    double p50 = bench_quantile(latencies, (size_t)rounds, 0.50);
    double p95 = bench_quantile(latencies, (size_t)rounds, 0.95);
    double p99 = bench_quantile(latencies, (size_t)rounds, 0.99);
    double min = (double)latencies[0];
    double send_p50 = bench_quantile(sends, (size_t)rounds, 0.50);
    double send_p99 = bench_quantile(sends, (size_t)rounds, 0.99);
    double seconds = (double)elapsed / 1e9;
    printf("{\"bench\": \"latency\", \"mode\": \"%s\", \"pollIntervalMs\": %d, \"rounds\": %d, \"lanes\": %d, "
           "\"gapMs\": %d, \"seconds\": %.3f, \"min_ms\": %.3f, \"p50_ms\": %.3f, \"p95_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"max_ms\": %.3f, \"mean_ms\": %.3f, \"send_p50_ms\": %.3f, \"send_p99_ms\": %.3f, "
           "\"handouts\": %ld, \"cpu_ms_per_reply\": %.3f, \"emulator_cpu_ms_per_reply\": %.3f, "
           "\"listen_requests_per_reply\": %.3f, \"listen_requests_per_conversation_minute\": %.2f, "
           "\"threads\": %ld, ",
           mode, interval_ms, rounds, lanes, gap_ms, seconds, ms(min), ms(p50), ms(p95), ms(p99), ms(max), ms(mean),
           ms(send_p50), ms(send_p99), handouts, (double)cpu / 1e6 / rounds,
           emulator_cpu >= 0 ? emulator_cpu * 1e3 / rounds : -1.0,
           (double)(requests.total - requests.sends) / rounds,
           (double)(requests.total - requests.sends) / (seconds * lanes) * 60.0, threads_now);
    print_requests("requests", requests);
    printf("}\n");
    free(threads);
    free(lane);
    free(latencies);
    free(sends);
    return 0;
}

/* ---- scale: many listeners in one process ---- */

static dl_conversation **conversations;
static struct pollfd *fds;
static long n_conversations;
static uint64_t *sent_at; /* ns, written by the senders */
static int senders;

/* poll()s every descriptor until `deadline` and takes what is ready; the
 * number of next() calls that returned something. `seen` (may be NULL)
 * gets each conversation's hand-out time the first time `match` holds. */
static long serve(uint64_t deadline, int (*match)(long index, const char *out), uint64_t *seen, long *remaining) {
    long handouts = 0;
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= deadline || (remaining && *remaining == 0)) return handouts;
        int ready = poll(fds, (nfds_t)n_conversations, (int)((deadline - now) / 1000000) + 1);
        if (ready <= 0) continue;
        for (long i = 0; i < n_conversations && ready > 0; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            ready--;
            char *out = take(conversations[i]);
            uint64_t handed = bench_now_ns();
            handouts++;
            if (match && seen[i] == 0 && match(i, out)) {
                seen[i] = handed;
                (*remaining)--;
            }
            dl_string_free(out);
        }
    }
}

static int is_online(long index, const char *out) {
    (void)index;
    return strstr(out, "\"state\":\"online\"") != NULL;
}

static int is_reply(long index, const char *out) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"echo: burst %ld.\"", index);
    return strstr(out, needle) != NULL;
}

struct sender {
    int index;
    uint64_t finished;
};

static void *run_sender(void *argument) {
    struct sender *sender = argument;
    for (long i = sender->index; i < n_conversations; i += senders) {
        char text[64], *out = NULL;
        snprintf(text, sizeof text, "burst %ld.", i);
        __atomic_store_n(&sent_at[i], bench_now_ns(), __ATOMIC_RELEASE);
        int32_t status = dl_send_text(conversations[i], USER_ID, text, &out);
        if (status != DL_OK) fail("dl_send_text", status, out);
        dl_string_free(out);
    }
    sender->finished = bench_now_ns();
    return NULL;
}

static long open_streams(void) {
    char *streams = control("GET", "/_emulator/streams", NULL);
    long open = count_of(streams, "\"state\":\"open\"");
    free(streams);
    return open;
}

static int run_scale(const char *mode, int interval_ms, long n, int idle_s, int sender_count) {
    n_conversations = n;
    senders = sender_count;
    raise_descriptor_limit(n * 4 + 1024);
    long rss_process = bench_rss_kib();
    /* "Before" is a client that has listened once (libcurl, OpenSSL and the
     * library's tables set up), with nothing open. */
    dl_client *client = new_client();
    dl_conversation *warm_up = start_one(client);
    wait_online(warm_up, listen_one(warm_up, mode));
    dl_conversation_free(warm_up);
    wait_library_idle();
    long threads_before = thread_count(), rss_before = bench_rss_kib(), fds_before = descriptor_count();

    conversations = calloc((size_t)n, sizeof *conversations);
    fds = calloc((size_t)n, sizeof *fds);
    uint64_t start = bench_now_ns();
    for (long i = 0; i < n; i++) conversations[i] = start_one(client);
    double start_seconds = (double)(bench_now_ns() - start) / 1e9;
    long threads_started = thread_count(), rss_started = bench_rss_kib(), fds_started = descriptor_count();

    /* All listen; this thread waits for every one to be online. */
    double emulator_before = emulator_cpu_s();
    uint64_t cpu_before = bench_cpu_ns();
    uint64_t *online_at = calloc((size_t)n, sizeof *online_at);
    long overflows_before = listen_overflows();
    start = bench_now_ns();
    for (long i = 0; i < n; i++) {
        fds[i].fd = listen_one(conversations[i], mode);
        fds[i].events = POLLIN;
    }
    double listen_calls_seconds = (double)(bench_now_ns() - start) / 1e9;
    long remaining = n;
    serve(start + 120000000000u, is_online, online_at, &remaining);
    if (remaining > 0) {
        fprintf(stderr, "bench_listen: %ld of %ld conversations not online after 120 s\n", remaining, n);
        return 1;
    }
    uint64_t *online = calloc((size_t)n, sizeof *online);
    uint64_t last_online = 0;
    for (long i = 0; i < n; i++) {
        online[i] = online_at[i] - start;
        if (online[i] > last_online) last_online = online[i];
    }
    double online_p50 = bench_quantile(online, (size_t)n, 0.50), online_p99 = bench_quantile(online, (size_t)n, 0.99);
    double online_cpu_s = (double)(bench_cpu_ns() - cpu_before) / 1e9;
    double online_emulator_s = emulator_before >= 0 ? emulator_cpu_s() - emulator_before : -1;
    long overflows = listen_overflows() - overflows_before;
    usleep(500 * 1000); /* let the last connections settle */
    long threads_online = thread_count(), rss_online = bench_rss_kib(), fds_online = descriptor_count();
    long sockets_online = socket_count();
    long streams = strcmp(mode, "websocket") == 0 ? open_streams() : 0;

    /* Idle: nothing sent. */
    emulator_before = emulator_cpu_s();
    cpu_before = bench_cpu_ns();
    long switches_before = context_switches();
    start = bench_now_ns();
    long idle_handouts = serve(start + (uint64_t)idle_s * 1000000000u, NULL, NULL, NULL);
    double idle_seconds = (double)(bench_now_ns() - start) / 1e9;
    double idle_cpu_s = (double)(bench_cpu_ns() - cpu_before) / 1e9;
    long idle_switches = context_switches() - switches_before;
    double idle_emulator_s = emulator_before >= 0 ? emulator_cpu_s() - emulator_before : -1;
    long threads_idle = thread_count(), rss_idle = bench_rss_kib();
    long emulator_threads = emulator_status("Threads:"), emulator_rss = emulator_status("VmRSS:");

    /* What idling costs the service: requests over 2 s. */
    clear_requests();
    start = bench_now_ns();
    serve(start + 2000000000u, NULL, NULL, NULL);
    double window_seconds = (double)(bench_now_ns() - start) / 1e9;
    struct requests idle_requests = logged_requests();

    /* One message on each, SENDERS threads sending, this one taking. */
    clear_requests();
    sent_at = calloc((size_t)n, sizeof *sent_at);
    uint64_t *replied_at = calloc((size_t)n, sizeof *replied_at);
    struct sender *sender = calloc((size_t)senders, sizeof *sender);
    pthread_t *threads = calloc((size_t)senders, sizeof *threads);
    emulator_before = emulator_cpu_s();
    cpu_before = bench_cpu_ns();
    start = bench_now_ns();
    for (int i = 0; i < senders; i++) {
        sender[i].index = i;
        pthread_create(&threads[i], NULL, run_sender, &sender[i]);
    }
    long threads_burst = thread_count();
    remaining = n;
    serve(start + 180000000000u, is_reply, replied_at, &remaining);
    uint64_t all_replied = bench_now_ns() - start;
    for (int i = 0; i < senders; i++) pthread_join(threads[i], NULL);
    if (remaining > 0) {
        fprintf(stderr, "bench_listen: %ld of %ld replies not handed out after 180 s\n", remaining, n);
        return 1;
    }
    double burst_cpu_s = (double)(bench_cpu_ns() - cpu_before) / 1e9;
    double burst_emulator_s = emulator_before >= 0 ? emulator_cpu_s() - emulator_before : -1;
    uint64_t all_sent = 0;
    for (int i = 0; i < senders; i++) {
        if (sender[i].finished - start > all_sent) all_sent = sender[i].finished - start;
    }
    uint64_t *reply = calloc((size_t)n, sizeof *reply);
    for (long i = 0; i < n; i++) reply[i] = replied_at[i] - __atomic_load_n(&sent_at[i], __ATOMIC_ACQUIRE);
    double reply_p50 = bench_quantile(reply, (size_t)n, 0.50), reply_p99 = bench_quantile(reply, (size_t)n, 0.99);
    double reply_max = (double)reply[n - 1];
    struct requests burst_requests = logged_requests();
    long rss_burst = bench_rss_kib();

    start = bench_now_ns();
    for (long i = 0; i < n; i++) dl_conversation_free(conversations[i]);
    double free_seconds = (double)(bench_now_ns() - start) / 1e9;
    dl_client_free(client);
    long threads_after = wait_library_idle();

    printf("{\"bench\": \"scale\", \"mode\": \"%s\", \"pollIntervalMs\": %d, \"conversations\": %ld, "
           "\"descriptor_limit\": %ld, \"rss_process_kib\": %ld, \"start_s\": %.3f, \"listen_calls_s\": %.3f, \"online_s\": %.3f, "
           "\"online_p50_ms\": %.1f, \"online_p99_ms\": %.1f, \"online_cpu_s\": %.3f, \"online_emulator_cpu_s\": %.3f, "
           "\"threads_before\": %ld, \"threads_started\": %ld, \"threads_online\": %ld, \"threads_idle\": %ld, "
           "\"threads_burst\": %ld, \"threads_after_free\": %ld, "
           "\"rss_before_kib\": %ld, \"rss_started_kib\": %ld, \"rss_online_kib\": %ld, \"rss_idle_kib\": %ld, "
           "\"rss_burst_kib\": %ld, \"rss_per_conversation_kib\": %.2f, \"rss_per_listener_kib\": %.2f, "
           "\"fds_before\": %ld, \"fds_started\": %ld, \"fds_online\": %ld, \"sockets_online\": %ld, "
           "\"open_streams\": %ld, \"listen_overflows\": %ld, \"idle_wakeups_per_s\": %.1f, "
           "\"idle_s\": %.3f, \"idle_cpu_s\": %.4f, \"idle_cpu_percent\": %.3f, \"idle_handouts\": %ld, "
           "\"idle_emulator_cpu_s\": %.3f, \"idle_emulator_cpu_percent\": %.2f, "
           "\"emulator_threads\": %ld, \"emulator_rss_kib\": %ld, "
           "\"idle_requests_per_s\": %.1f, ",
           mode, interval_ms, n, descriptor_limit(), rss_process, start_seconds, listen_calls_seconds, (double)last_online / 1e9,
           ms(online_p50), ms(online_p99), online_cpu_s, online_emulator_s, threads_before, threads_started,
           threads_online, threads_idle, threads_burst, threads_after, rss_before, rss_started, rss_online, rss_idle,
           rss_burst, (double)(rss_online - rss_before) / (double)n, (double)(rss_online - rss_started) / (double)n,
           fds_before, fds_started, fds_online, sockets_online, streams, overflows,
           (double)idle_switches / idle_seconds, idle_seconds, idle_cpu_s, idle_cpu_s / idle_seconds * 100.0,
           idle_handouts, idle_emulator_s, idle_emulator_s >= 0 ? idle_emulator_s / idle_seconds * 100.0 : -1.0,
           emulator_threads, emulator_rss, (double)idle_requests.total / window_seconds);
    print_requests("idle_requests", idle_requests);
    printf(", \"senders\": %d, \"burst_sent_s\": %.3f, \"burst_all_replied_s\": %.3f, \"reply_p50_ms\": %.1f, "
           "\"reply_p99_ms\": %.1f, \"reply_max_ms\": %.1f, \"burst_cpu_s\": %.3f, \"burst_emulator_cpu_s\": %.3f, ",
           senders, (double)all_sent / 1e9, (double)all_replied / 1e9, ms(reply_p50), ms(reply_p99), ms(reply_max),
           burst_cpu_s, burst_emulator_s);
    print_requests("burst_requests", burst_requests);
    printf(", \"free_s\": %.3f}\n", free_seconds);
    free(online_at);
    free(online);
    free(replied_at);
    free(reply);
    free(sender);
    free(threads);
    return 0;
}

int main(int argc, char **argv) {
    const char *bench = argc > 1 ? argv[1] : "";
    if ((strcmp(bench, "latency") == 0 && argc == 9) || (strcmp(bench, "scale") == 0 && argc == 9)) {
        endpoint = argv[2];
        const char *mode = argv[3];
        int interval_ms = atoi(argv[4]);
        emulator_pid = atoi(argv[8]);
        if (strcmp(mode, "polling") == 0) {
            snprintf(listen_options, sizeof listen_options, "{\"mode\": \"polling\", \"pollIntervalMs\": %d}",
                     interval_ms);
        } else {
            snprintf(listen_options, sizeof listen_options, "{\"mode\": \"%s\"}", mode);
        }
        /* No curl_global_init here: the library initializes libcurl with its
         * own allocators on dl_client_new, which comes before any control
         * request. */
        int status = bench[0] == 'l' ? run_latency(mode, interval_ms, atoi(argv[5]), atoi(argv[6]), atoi(argv[7]))
                                     : run_scale(mode, interval_ms, atol(argv[5]), atoi(argv[6]), atoi(argv[7]));
        /* _exit, not exit: a stream's close frame may still be going out on
         * the library's thread when the frees return, and OpenSSL's exit
         * handler then races it (a SIGSEGV in 1 exit of 10 or so; see the
         * bug noted in docs/performance.md). */
        fflush(stdout);
        _exit(status);
    }
    fprintf(stderr, "usage: bench_listen latency ENDPOINT MODE INTERVAL_MS ROUNDS LANES GAP_MS EMULATOR_PID\n"
                    "       bench_listen scale ENDPOINT MODE INTERVAL_MS N IDLE_S SENDERS EMULATOR_PID\n");
    return 2;
}
