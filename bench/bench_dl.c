/* libdirectline side of bench/run.sh: sends and uploads through the C ABI
 * against the benchmark's local nginx, and prints one JSON line.
 *
 *     bench_dl capture ENDPOINT FILE          one send and one upload (for capture_server.py)
 *     bench_dl seq ENDPOINT N WARMUP          N sequential dl_send_activity calls
 *     bench_dl threads ENDPOINT T N WARMUP    N sends split over T threads sharing
 *                                             one client and one conversation
 *     bench_dl upload ENDPOINT FILE N         N dl_upload_file calls of FILE
 *     bench_dl rss ENDPOINT N1 N2             VmRSS after N1 and after N2 sends
 *
 * Every call's status is checked: a failed request ends the program with
 * status 1, so a broken setup cannot pass for a fast one. */
#include "bench_common.h"

#include <directline.h>

#include <pthread.h>
#include <sys/stat.h>

static const char *const ACTIVITY =
    "{\"type\": \"message\", \"from\": {\"id\": \"bench-user\"}, \"text\": \"hello from the benchmark\"}";

static dl_client *client;
static dl_conversation *conversation;

static void fail(const char *what, int32_t status, char *out) {
    fprintf(stderr, "bench_dl: %s failed: %s %s\n", what, dl_status_name(status), out ? out : "");
    exit(1);
}

static void setup(const char *endpoint) {
    char config[1024];
    snprintf(config, sizeof config,
             "{\"endpoint\": \"%s\", \"secret\": \"bench-secret\", \"maxUploadBytes\": 67108864}", endpoint);
    char *out = NULL;
    int32_t status = dl_client_new(config, &client, &out);
    if (status != DL_OK) fail("dl_client_new", status, out);
    dl_string_free(out);
    status = dl_conversation_start(client, NULL, &conversation, &out);
    if (status != DL_OK) fail("dl_conversation_start", status, out);
    dl_string_free(out);
}

static void teardown(void) {
    dl_conversation_free(conversation);
    dl_client_free(client);
}

static inline void send_one(void) {
    char *out = NULL;
    int32_t status = dl_send_activity(conversation, ACTIVITY, &out);
    if (status != DL_OK) fail("dl_send_activity", status, out);
    dl_string_free(out);
}

static void warm_up(long count) {
    for (long i = 0; i < count; i++) send_one();
}

static int run_seq(const char *endpoint, long n, long warmup) {
    setup(endpoint);
    warm_up(warmup);
    uint64_t *latencies = malloc(sizeof *latencies * (size_t)n);
    uint64_t cpu_start = bench_cpu_ns();
    uint64_t start = bench_now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        send_one();
        latencies[i] = bench_now_ns() - t0;
    }
    uint64_t elapsed = bench_now_ns() - start;
    uint64_t cpu = bench_cpu_ns() - cpu_start;
    bench_print_rate("libdirectline", latencies, (size_t)n, elapsed, cpu, 1);
    free(latencies);
    teardown();
    return 0;
}

struct worker {
    pthread_t thread;
    long count;
    uint64_t *latencies;
};

static pthread_barrier_t barrier;

static void *worker_main(void *argument) {
    struct worker *self = argument;
    pthread_barrier_wait(&barrier);
    for (long i = 0; i < self->count; i++) {
        uint64_t t0 = bench_now_ns();
        send_one();
        self->latencies[i] = bench_now_ns() - t0;
    }
    return NULL;
}

static int run_threads(const char *endpoint, int threads, long n, long warmup) {
    setup(endpoint);
    warm_up(warmup);
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    uint64_t *latencies = malloc(sizeof *latencies * (size_t)n);
    long offset = 0;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
        workers[t].count = n / threads + (t < n % threads);
        workers[t].latencies = latencies + offset;
        offset += workers[t].count;
        pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]);
    }
    pthread_barrier_wait(&barrier);
    uint64_t cpu_start = bench_cpu_ns();
    uint64_t start = bench_now_ns();
    for (int t = 0; t < threads; t++) pthread_join(workers[t].thread, NULL);
    uint64_t elapsed = bench_now_ns() - start;
    uint64_t cpu = bench_cpu_ns() - cpu_start;
    bench_print_rate("libdirectline", latencies, (size_t)n, elapsed, cpu, threads);
    free(latencies);
    free(workers);
    teardown();
    return 0;
}

static int run_upload(const char *endpoint, const char *path, long n) {
    struct stat info;
    if (stat(path, &info) != 0) {
        perror(path);
        return 1;
    }
    setup(endpoint);
    uint64_t *durations = malloc(sizeof *durations * (size_t)(n + 1));
    for (long i = 0; i <= n; i++) { /* the first upload is a warm-up */
        char *out = NULL;
        uint64_t t0 = bench_now_ns();
        int32_t status = dl_upload_file(conversation, "bench-user", path, "application/octet-stream", NULL, &out);
        uint64_t elapsed = bench_now_ns() - t0;
        if (status != DL_OK) fail("dl_upload_file", status, out);
        if (!strstr(out, "upload|0000001")) fail("dl_upload_file (unexpected answer)", status, out);
        dl_string_free(out);
        if (i > 0) durations[i - 1] = elapsed;
    }
    double mib = (double)info.st_size / (1024.0 * 1024.0);
    double median_s = bench_quantile(durations, (size_t)n, 0.5) / 1e9;
    printf("{\"impl\": \"libdirectline\", \"uploads\": %ld, \"bytes\": %lld, \"median_s\": %.6f, "
           "\"mib_s\": %.1f}\n", n, (long long)info.st_size, median_s, mib / median_s);
    free(durations);
    teardown();
    return 0;
}

static int run_capture(const char *endpoint, const char *path) {
    setup(endpoint);
    send_one();
    char *out = NULL;
    int32_t status = dl_upload_file(conversation, "bench-user", path, "application/octet-stream", NULL, &out);
    if (status != DL_OK) fail("dl_upload_file", status, out);
    dl_string_free(out);
    teardown();
    return 0;
}

static int run_rss(const char *endpoint, long first, long second) {
    setup(endpoint);
    long rss_start = bench_rss_kib();
    warm_up(first);
    long rss_first = bench_rss_kib();
    long rss_mid = rss_first;
    long mid = first + (second - first) / 10;
    uint64_t start = bench_now_ns();
    for (long i = first; i < second; i++) {
        send_one();
        if (i + 1 == mid) rss_mid = bench_rss_kib();
    }
    uint64_t elapsed = bench_now_ns() - start;
    long rss_second = bench_rss_kib();
    printf("{\"impl\": \"libdirectline\", \"sends_first\": %ld, \"sends_mid\": %ld, \"sends_second\": %ld, "
           "\"rss_start_kib\": %ld, \"rss_first_kib\": %ld, \"rss_mid_kib\": %ld, \"rss_second_kib\": %ld, "
           "\"growth_kib\": %ld, \"rps\": %.1f}\n",
           first, mid, second, rss_start, rss_first, rss_mid, rss_second, rss_second - rss_first,
           (double)(second - first) / ((double)elapsed / 1e9));
    teardown();
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "capture") == 0 && argc == 4) return run_capture(argv[2], argv[3]);
    if (strcmp(mode, "seq") == 0 && argc == 5) return run_seq(argv[2], atol(argv[3]), atol(argv[4]));
    if (strcmp(mode, "threads") == 0 && argc == 6)
        return run_threads(argv[2], atoi(argv[3]), atol(argv[4]), atol(argv[5]));
    if (strcmp(mode, "upload") == 0 && argc == 5) return run_upload(argv[2], argv[3], atol(argv[4]));
    if (strcmp(mode, "rss") == 0 && argc == 5) return run_rss(argv[2], atol(argv[3]), atol(argv[4]));
    fprintf(stderr,
            "usage: bench_dl capture ENDPOINT FILE | seq ENDPOINT N WARMUP | threads ENDPOINT T N WARMUP |\n"
            "       upload ENDPOINT FILE N | rss ENDPOINT N1 N2\n");
    return 2;
}
