/* The automatic token refresh at scale (issue 14, "refresh keeps up"),
 * through the C ABI; prints one JSON line.
 *
 *     bench_refresh open ENDPOINT N
 *         N dl_conversation_open with tokens that expire in an hour (each
 *         schedules a refresh; nothing is sent), then N frees: the total
 *         time and the slowest single call of each, and the library's
 *         threads while they are open and after the frees.
 *     bench_refresh keepup SERVICE N LIFETIME SECONDS
 *         N conversations with LIFETIME-second tokens, opened over the
 *         first LIFETIME/2 s (as if started over that time), against
 *         bench/token_service.py at SERVICE (which answers each refresh
 *         after its --delay); SECONDS later: the tokens that expired
 *         (the service's count: refreshes presenting an expired token,
 *         and conversations whose newest token lapsed), the refreshes
 *         done, the most in flight at once, the conversations whose
 *         refreshing stopped (info), the process's CPU time and threads.
 *
 * RLIMIT_NOFILE is raised to its hard limit first: a refresh in flight
 * holds a connection. Every call's status is checked: a failure ends the
 * program with status 1. */
#include "bench_common.h"

#include <directline.h>

#include <curl/curl.h>
#include <unistd.h>

static void fail(const char *what, int32_t status, char *out) {
    fprintf(stderr, "bench_refresh: %s failed: %s %s\n", what, dl_status_name(status), out ? out : "");
    exit(1);
}

static void raise_descriptor_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

static long descriptor_limit(void) {
    struct rlimit limit;
    return getrlimit(RLIMIT_NOFILE, &limit) == 0 ? (long)limit.rlim_cur : -1;
}

/* Threads: from /proc/self/status (the library's are counted with ours). */
static long thread_count(void) {
    FILE *status = fopen("/proc/self/status", "r");
    if (!status) return -1;
    char line[256];
    long threads = -1;
    while (fgets(line, sizeof line, status)) {
        if (strncmp(line, "Threads:", 8) == 0) {
            threads = strtol(line + 8, NULL, 10);
            break;
        }
    }
    fclose(status);
    return threads;
}

static int64_t epoch_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static dl_client *new_client(const char *endpoint) {
    char config[1024];
    /* A token client: every conversation below brings its own token. */
    snprintf(config, sizeof config,
             "{\"endpoint\": \"%s\", \"token\": \"bench.client.0.9999999999999\", \"allowInsecureHttp\": true}",
             endpoint);
    dl_client *client = NULL;
    char *out = NULL;
    int32_t status = dl_client_new(config, &client, &out);
    if (status != DL_OK) fail("dl_client_new", status, out);
    dl_string_free(out);
    return client;
}

static dl_conversation *open_one(dl_client *client, long index, const char *prefix, int lifetime) {
    char state[512];
    snprintf(state, sizeof state,
             "{\"conversationId\": \"%s%ld\", \"token\": \"bench.%s%ld.0.%lld\", \"expires_in\": %d}",
             prefix, index, prefix, index, (long long)(epoch_ms() + (int64_t)lifetime * 1000), lifetime);
    dl_conversation *conversation = NULL;
    char *out = NULL;
    int32_t status = dl_conversation_open(client, state, &conversation, &out);
    if (status != DL_OK) fail("dl_conversation_open", status, out);
    dl_string_free(out);
    return conversation;
}

static int run_open(const char *endpoint, long n) {
    dl_client *client = new_client(endpoint);
    dl_conversation **conversations = malloc(sizeof *conversations * (size_t)n);
    uint64_t *latencies = malloc(sizeof *latencies * (size_t)n);
    uint64_t slowest_free = 0;
    uint64_t start = bench_now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        conversations[i] = open_one(client, i, "o", 3600);
        latencies[i] = bench_now_ns() - t0;
    }
    uint64_t opened = bench_now_ns() - start;
    double p99_open = bench_quantile(latencies, (size_t)n, 0.99);
    double p999_open = bench_quantile(latencies, (size_t)n, 0.999);
    uint64_t slowest_open = latencies[n - 1];
    free(latencies);
    char *out = NULL;
    int32_t status = dl_conversation_info(conversations[n - 1], &out);
    if (status != DL_OK || !strstr(out, "\"autoRefresh\":true")) fail("dl_conversation_info (autoRefresh)", status, out);
    dl_string_free(out);
    long threads_open = thread_count();
    long rss_open = bench_rss_kib();
    start = bench_now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        status = dl_conversation_free(conversations[i]);
        uint64_t took = bench_now_ns() - t0;
        if (status != DL_OK) fail("dl_conversation_free", status, NULL);
        if (took > slowest_free) slowest_free = took;
    }
    uint64_t freed = bench_now_ns() - start;
    usleep(200 * 1000); /* the library's thread ends once nothing is left */
    long threads_after = thread_count();
    dl_client_free(client);
    free(conversations);
    printf("{\"mode\": \"open\", \"opens\": %ld, \"seconds\": %.6f, \"per_open_us\": %.2f, \"p99_open_us\": %.1f, "
           "\"p999_open_us\": %.1f, \"slowest_open_ms\": %.3f, "
           "\"free_seconds\": %.6f, \"slowest_free_ms\": %.3f, \"threads_open\": %ld, \"threads_after_free\": %ld, "
           "\"rss_open_kib\": %ld}\n",
           n, (double)opened / 1e9, (double)opened / 1e3 / (double)n, p99_open / 1e3, p999_open / 1e3,
           (double)slowest_open / 1e6,
           (double)freed / 1e9, (double)slowest_free / 1e6, threads_open, threads_after, rss_open);
    return 0;
}

struct buffer {
    char data[4096];
    size_t length;
};

static size_t collect(char *bytes, size_t size, size_t count, void *userdata) {
    struct buffer *buffer = userdata;
    size_t total = size * count;
    size_t room = sizeof buffer->data - 1 - buffer->length;
    size_t taken = total < room ? total : room;
    memcpy(buffer->data + buffer->length, bytes, taken);
    buffer->length += taken;
    buffer->data[buffer->length] = '\0';
    return total;
}

/* The token service's counters (GET /_stats). */
static void service_stats(const char *service, struct buffer *buffer) {
    char url[1024];
    snprintf(url, sizeof url, "%s/_stats", service);
    CURL *curl = curl_easy_init();
    buffer->length = 0;
    buffer->data[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, buffer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode code = curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    if (code != CURLE_OK) {
        fprintf(stderr, "bench_refresh: GET %s failed: %s\n", url, curl_easy_strerror(code));
        exit(1);
    }
}

static long stat_field(const struct buffer *buffer, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\": ", name);
    const char *at = strstr(buffer->data, key);
    return at ? strtol(at + strlen(key), NULL, 10) : -1;
}

static int run_keepup(const char *service, long n, int lifetime, int seconds) {
    dl_client *client = new_client(service);
    dl_conversation **conversations = malloc(sizeof *conversations * (size_t)n);
    uint64_t cpu_start = bench_cpu_ns();
    /* Opened over the first half-life, in 100 batches. */
    uint64_t start = bench_now_ns();
    uint64_t spread_ns = (uint64_t)lifetime * 1000000000u / 2;
    for (long i = 0; i < n; i++) {
        uint64_t at = start + spread_ns * (uint64_t)(i * 100 / n) / 100;
        uint64_t now = bench_now_ns();
        if (at > now) usleep((useconds_t)((at - now) / 1000));
        conversations[i] = open_one(client, i, "k", lifetime);
    }
    long threads = thread_count();
    sleep((unsigned)seconds);
    uint64_t elapsed = bench_now_ns() - start;
    uint64_t cpu = bench_cpu_ns() - cpu_start;
    struct buffer stats;
    service_stats(service, &stats);

    long stopped = 0;
    for (long i = 0; i < n; i++) {
        char *out = NULL;
        int32_t status = dl_conversation_info(conversations[i], &out);
        if (status != DL_OK) fail("dl_conversation_info", status, out);
        if (!strstr(out, "\"autoRefresh\":true") || !strstr(out, "\"tokenRefreshError\":null")) {
            if (stopped++ == 0) fprintf(stderr, "bench_refresh: conversation %ld: %s\n", i, out);
        }
        dl_string_free(out);
    }
    for (long i = 0; i < n; i++) dl_conversation_free(conversations[i]);
    dl_client_free(client);
    free(conversations);
    long refreshes = stat_field(&stats, "refreshes");
    long expired_refused = stat_field(&stats, "expiredRefused");
    long lapsed = stat_field(&stats, "lapsed");
    printf("{\"mode\": \"keepup\", \"conversations\": %ld, \"lifetime_s\": %d, \"seconds\": %.1f, "
           "\"expired\": %ld, \"expired_refused\": %ld, \"lapsed\": %ld, \"stopped\": %ld, \"refreshes\": %ld, "
           "\"refreshes_per_s\": %.1f, \"max_in_flight\": %ld, \"cpu_s\": %.2f, \"cpu_us_per_refresh\": %.1f, "
           "\"threads\": %ld, \"descriptor_limit\": %ld}\n",
           n, lifetime, (double)elapsed / 1e9, expired_refused + lapsed, expired_refused, lapsed, stopped, refreshes,
           (double)refreshes / ((double)elapsed / 1e9), stat_field(&stats, "maxInFlight"), (double)cpu / 1e9,
           refreshes > 0 ? (double)cpu / 1e3 / (double)refreshes : 0.0, threads, descriptor_limit());
    return 0;
}

int main(int argc, char **argv) {
    raise_descriptor_limit();
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "open") == 0 && argc == 4) return run_open(argv[2], atol(argv[3]));
    if (strcmp(mode, "keepup") == 0 && argc == 6)
        return run_keepup(argv[2], atol(argv[3]), atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "usage: bench_refresh open ENDPOINT N | keepup SERVICE N LIFETIME SECONDS\n");
    return 2;
}
