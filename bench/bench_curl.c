/* Raw libcurl baseline of bench/run.sh: the floor libdirectline is measured
 * against. It sends the bytes libdirectline sends (request line, headers
 * and body captured by capture_server.py) with one reused easy handle per
 * thread, configured once, and does nothing else per request but check the
 * status and the answer.
 *
 *     bench_curl seq URL HEADERS BODY N WARMUP         body from memory (CURLOPT_POSTFIELDS)
 *     bench_curl seq-readfn URL HEADERS BODY N WARMUP  body through CURLOPT_READFUNCTION, as
 *                                                      libdirectline sends it (libcurl then
 *                                                      writes headers and body in two send()s)
 *     bench_curl threads URL HEADERS BODY T N WARMUP   one easy handle per thread
 *     bench_curl upload URL HEADERS FILE N             FILE streamed with a read
 *                                                      callback (pread), 512 KiB
 *                                                      upload buffer, as the library
 *
 * HEADERS holds one "Name: value" line per header; BODY the exact body. */
#include "bench_common.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *url;
static struct curl_slist *headers;
static char *body;
static size_t body_length;
static const char *expected_answer = "x|0000001";
static int body_via_callback;

/* One handle's response, and its read position in `body` (seq-readfn). */
struct answer {
    char data[1024];
    size_t length;
    size_t body_offset;
};

static size_t collect(char *data, size_t size, size_t count, void *userdata) {
    struct answer *answer = userdata;
    size_t total = size * count;
    size_t room = sizeof answer->data - 1 - answer->length;
    size_t kept = total < room ? total : room;
    memcpy(answer->data + answer->length, data, kept);
    answer->length += kept;
    answer->data[answer->length] = '\0';
    return total;
}

static void load_headers(const char *path) {
    char *text = bench_read_file(path, NULL);
    if (!text) {
        perror(path);
        exit(2);
    }
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (*line) headers = curl_slist_append(headers, line);
    }
    /* As the library: no "Expect: 100-continue" round trip. */
    headers = curl_slist_append(headers, "Expect:");
    free(text);
}

static CURL *new_handle(struct answer *answer) {
    CURL *curl = curl_easy_init();
    if (!curl) exit(1);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, answer);
    return curl;
}

static size_t read_body(char *buffer, size_t size, size_t count, void *userdata) {
    struct answer *answer = userdata;
    size_t left = body_length - answer->body_offset;
    size_t wanted = size * count < left ? size * count : left;
    memcpy(buffer, body + answer->body_offset, wanted);
    answer->body_offset += wanted;
    return wanted;
}

static void perform(CURL *curl, struct answer *answer) {
    answer->length = 0;
    answer->body_offset = 0;
    answer->data[0] = '\0';
    CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK || status != 200 || !strstr(answer->data, expected_answer)) {
        fprintf(stderr, "bench_curl: request failed: %s, HTTP %ld, %s\n", curl_easy_strerror(code), status,
                answer->data);
        exit(1);
    }
}

static CURL *new_send_handle(struct answer *answer) {
    CURL *curl = new_handle(answer);
    if (body_via_callback) {
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_body);
        curl_easy_setopt(curl, CURLOPT_READDATA, answer);
    } else {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_length);
    return curl;
}

static int run_seq(long n, long warmup) {
    struct answer answer;
    CURL *curl = new_send_handle(&answer);
    for (long i = 0; i < warmup; i++) perform(curl, &answer);
    uint64_t *latencies = malloc(sizeof *latencies * (size_t)n);
    uint64_t cpu_start = bench_cpu_ns();
    uint64_t start = bench_now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        perform(curl, &answer);
        latencies[i] = bench_now_ns() - t0;
    }
    uint64_t elapsed = bench_now_ns() - start;
    uint64_t cpu = bench_cpu_ns() - cpu_start;
    bench_print_rate(body_via_callback ? "libcurl-readfn" : "libcurl", latencies, (size_t)n, elapsed, cpu, 1);
    curl_easy_cleanup(curl);
    free(latencies);
    return 0;
}

struct worker {
    pthread_t thread;
    long count;
    long warmup;
    uint64_t *latencies;
};

static pthread_barrier_t barrier;

static void *worker_main(void *argument) {
    struct worker *self = argument;
    struct answer answer;
    CURL *curl = new_send_handle(&answer);
    for (long i = 0; i < self->warmup; i++) perform(curl, &answer);
    pthread_barrier_wait(&barrier);
    for (long i = 0; i < self->count; i++) {
        uint64_t t0 = bench_now_ns();
        perform(curl, &answer);
        self->latencies[i] = bench_now_ns() - t0;
    }
    curl_easy_cleanup(curl);
    return NULL;
}

static int run_threads(int threads, long n, long warmup) {
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    uint64_t *latencies = malloc(sizeof *latencies * (size_t)n);
    long offset = 0;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
        workers[t].count = n / threads + (t < n % threads);
        workers[t].warmup = warmup / threads + 1;
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
    bench_print_rate("libcurl", latencies, (size_t)n, elapsed, cpu, threads);
    free(latencies);
    free(workers);
    return 0;
}

struct file_source {
    int fd;
    off_t offset;
};

static size_t read_file(char *buffer, size_t size, size_t count, void *userdata) {
    struct file_source *source = userdata;
    ssize_t got = pread(source->fd, buffer, size * count, source->offset);
    if (got < 0) return CURL_READFUNC_ABORT;
    source->offset += got;
    return (size_t)got;
}

static int run_upload(const char *path, long n) {
    struct stat info;
    if (stat(path, &info) != 0) {
        perror(path);
        return 1;
    }
    expected_answer = "upload|0000001";
    struct answer answer;
    CURL *curl = new_handle(&answer);
    struct file_source source;
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)info.st_size);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_file);
    curl_easy_setopt(curl, CURLOPT_READDATA, &source);
    curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    uint64_t *durations = malloc(sizeof *durations * (size_t)(n + 1));
    for (long i = 0; i <= n; i++) { /* the first upload is a warm-up */
        uint64_t t0 = bench_now_ns();
        source.fd = open(path, O_RDONLY | O_CLOEXEC);
        source.offset = 0;
        if (source.fd < 0) {
            perror(path);
            return 1;
        }
        perform(curl, &answer);
        close(source.fd);
        uint64_t elapsed = bench_now_ns() - t0;
        if (i > 0) durations[i - 1] = elapsed;
    }
    double mib = (double)info.st_size / (1024.0 * 1024.0);
    double median_s = bench_quantile(durations, (size_t)n, 0.5) / 1e9;
    printf("{\"impl\": \"libcurl\", \"uploads\": %ld, \"bytes\": %lld, \"median_s\": %.6f, \"mib_s\": %.1f}\n", n,
           (long long)info.st_size, median_s, mib / median_s);
    curl_easy_cleanup(curl);
    free(durations);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (argc < 5) goto usage;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    url = argv[2];
    load_headers(argv[3]);
    if (strcmp(mode, "upload") == 0 && argc == 6) return run_upload(argv[4], atol(argv[5]));
    body = bench_read_file(argv[4], &body_length);
    if (!body) {
        perror(argv[4]);
        return 2;
    }
    body_via_callback = strcmp(mode, "seq-readfn") == 0;
    if ((strcmp(mode, "seq") == 0 || body_via_callback) && argc == 7) return run_seq(atol(argv[5]), atol(argv[6]));
    if (strcmp(mode, "threads") == 0 && argc == 8) return run_threads(atoi(argv[5]), atol(argv[6]), atol(argv[7]));
usage:
    fprintf(stderr, "usage: bench_curl seq|seq-readfn URL HEADERS BODY N WARMUP | threads URL HEADERS BODY T N WARMUP |\n"
                    "       upload URL HEADERS FILE N\n");
    return 2;
}
