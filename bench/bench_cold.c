/* Cold start of bench/run.sh: one fresh process, timed from before dlopen
 * to after the first send returns. Links neither library: both are
 * dlopen'ed, so loading and relocating them is part of the figure.
 *
 *     bench_cold dl LIBRARY ENDPOINT                  dlopen libdirectline, dl_client_new,
 *                                                     dl_conversation_open (sends nothing),
 *                                                     first dl_send_activity
 *     bench_cold curl LIBCURL URL HEADERS BODY        dlopen libcurl, curl_global_init,
 *                                                     curl_easy_init + options, first POST
 *
 * Prints {"total_ms", "dlopen_ms", "setup_ms", "first_send_ms",
 * "second_send_ms", "cpu_ms"} (the second send is not in the total: it
 * shows the warm cost for comparison; cpu_ms is the process's CPU time over
 * the total, which waiting for a busy core does not inflate). */
#include "bench_common.h"

#include <dlfcn.h>

static void *symbol(void *library, const char *name) {
    void *address = dlsym(library, name);
    if (!address) {
        fprintf(stderr, "bench_cold: %s: %s\n", name, dlerror());
        exit(1);
    }
    return address;
}

static uint64_t cpu_start, cpu_total;

static void report(const char *impl, uint64_t t0, uint64_t t1, uint64_t t2, uint64_t t3, uint64_t t4) {
    printf("{\"impl\": \"%s\", \"total_ms\": %.3f, \"dlopen_ms\": %.3f, \"setup_ms\": %.3f, "
           "\"first_send_ms\": %.3f, \"second_send_ms\": %.3f, \"cpu_ms\": %.3f}\n",
           impl, (double)(t3 - t0) / 1e6, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6,
           (double)(t3 - t2) / 1e6, (double)(t4 - t3) / 1e6, (double)cpu_total / 1e6);
}

typedef int32_t (*client_new_fn)(const char *, void **, char **);
typedef int32_t (*conversation_open_fn)(void *, const char *, void **, char **);
typedef int32_t (*send_activity_fn)(void *, const char *, char **);
typedef void (*string_free_fn)(char *);

static int cold_dl(const char *path, const char *endpoint) {
    static const char *const activity =
        "{\"type\": \"message\", \"from\": {\"id\": \"bench-user\"}, \"text\": \"hello from the benchmark\"}";
    char config[1024];
    snprintf(config, sizeof config, "{\"endpoint\": \"%s\", \"secret\": \"bench-secret\"}", endpoint);

    cpu_start = bench_cpu_ns();
    uint64_t t0 = bench_now_ns();
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        fprintf(stderr, "bench_cold: %s\n", dlerror());
        return 1;
    }
    client_new_fn client_new = (client_new_fn)symbol(library, "dl_client_new");
    conversation_open_fn conversation_open = (conversation_open_fn)symbol(library, "dl_conversation_open");
    send_activity_fn send_activity = (send_activity_fn)symbol(library, "dl_send_activity");
    string_free_fn string_free = (string_free_fn)symbol(library, "dl_string_free");
    uint64_t t1 = bench_now_ns();

    void *client = NULL, *conversation = NULL;
    if (client_new(config, &client, NULL) != 0 ||
        conversation_open(client, "{\"conversationId\": \"bench\", \"token\": \"t\"}", &conversation, NULL) != 0) {
        fprintf(stderr, "bench_cold: setup failed\n");
        return 1;
    }
    uint64_t t2 = bench_now_ns();
    char *out = NULL;
    int32_t status = send_activity(conversation, activity, &out);
    uint64_t t3 = bench_now_ns();
    cpu_total = bench_cpu_ns() - cpu_start;
    if (status != 0) {
        fprintf(stderr, "bench_cold: first send failed: %s\n", out ? out : "");
        return 1;
    }
    string_free(out);
    status = send_activity(conversation, activity, &out);
    uint64_t t4 = bench_now_ns();
    if (status != 0) return 1;
    string_free(out);
    report("libdirectline", t0, t1, t2, t3, t4);
    return 0;
}

/* The few libcurl entry points used, declared here so that this program
 * does not need libcurl's headers or library at link time. */
typedef int (*global_init_fn)(long);
typedef void *(*easy_init_fn)(void);
typedef int (*easy_setopt_fn)(void *, int, ...);
typedef int (*easy_perform_fn)(void *);
typedef void *(*slist_append_fn)(void *, const char *);
enum { OPT_URL = 10002, OPT_POSTFIELDS = 10015, OPT_HTTPHEADER = 10023, OPT_WRITEFUNCTION = 20011,
       OPT_NOSIGNAL = 99, OPT_POSTFIELDSIZE = 60 };

static size_t discard(char *data, size_t size, size_t count, void *userdata) {
    (void)data;
    (void)userdata;
    return size * count;
}

static int cold_curl(const char *path, const char *url, const char *headers_path, const char *body_path) {
    size_t body_length = 0;
    char *headers_text = bench_read_file(headers_path, NULL);
    char *body = bench_read_file(body_path, &body_length);
    if (!headers_text || !body) {
        fprintf(stderr, "bench_cold: cannot read the captured request\n");
        return 1;
    }
    cpu_start = bench_cpu_ns();
    uint64_t t0 = bench_now_ns();
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        fprintf(stderr, "bench_cold: %s\n", dlerror());
        return 1;
    }
    global_init_fn global_init = (global_init_fn)symbol(library, "curl_global_init");
    easy_init_fn easy_init = (easy_init_fn)symbol(library, "curl_easy_init");
    easy_setopt_fn setopt = (easy_setopt_fn)symbol(library, "curl_easy_setopt");
    easy_perform_fn perform = (easy_perform_fn)symbol(library, "curl_easy_perform");
    slist_append_fn slist_append = (slist_append_fn)symbol(library, "curl_slist_append");
    uint64_t t1 = bench_now_ns();
    global_init(3); /* CURL_GLOBAL_DEFAULT */
    void *curl = easy_init();
    void *headers = NULL;
    for (char *line = strtok(headers_text, "\n"); line; line = strtok(NULL, "\n")) {
        if (*line) headers = slist_append(headers, line);
    }
    headers = slist_append(headers, "Expect:");
    setopt(curl, OPT_URL, url);
    setopt(curl, OPT_NOSIGNAL, 1L);
    setopt(curl, OPT_HTTPHEADER, headers);
    setopt(curl, OPT_WRITEFUNCTION, discard);
    setopt(curl, OPT_POSTFIELDS, body);
    setopt(curl, OPT_POSTFIELDSIZE, (long)body_length);
    uint64_t t2 = bench_now_ns();
    if (perform(curl) != 0) {
        fprintf(stderr, "bench_cold: first request failed\n");
        return 1;
    }
    uint64_t t3 = bench_now_ns();
    cpu_total = bench_cpu_ns() - cpu_start;
    if (perform(curl) != 0) return 1;
    uint64_t t4 = bench_now_ns();
    report("libcurl", t0, t1, t2, t3, t4);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "dl") == 0) return cold_dl(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "curl") == 0) return cold_curl(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr, "usage: bench_cold dl LIBRARY ENDPOINT | curl LIBCURL URL HEADERS BODY\n");
    return 2;
}
