/* Helpers shared by the benchmark programs of bench/run.sh: a monotonic
 * clock, percentiles, the process's resident set, and the one-line JSON
 * result each program prints on stdout. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static inline uint64_t bench_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* User + system CPU time of the whole process (all threads), in ns. */
static inline uint64_t bench_cpu_ns(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return ((uint64_t)usage.ru_utime.tv_sec + (uint64_t)usage.ru_stime.tv_sec) * 1000000000u +
           ((uint64_t)usage.ru_utime.tv_usec + (uint64_t)usage.ru_stime.tv_usec) * 1000u;
}

static int bench_compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n samples, nearest rank; sorts the samples. */
static inline double bench_quantile(uint64_t *samples, size_t n, double q) {
    if (n == 0) return 0;
    qsort(samples, n, sizeof *samples, bench_compare_u64);
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)samples[rank - 1];
}

/* VmRSS of this process in KiB, from /proc/self/status. */
static inline long bench_rss_kib(void) {
    FILE *status = fopen("/proc/self/status", "r");
    if (!status) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, status)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(status);
    return kib;
}

/* Prints {"requests", "seconds", "rps", "p50_us", "p99_us", "cpu_us"}
 * for n latencies (ns) over `elapsed_ns` of wall time and `cpu_ns` of the
 * process's CPU time (cpu_us: per request; steadier than throughput on a
 * busy machine, as it does not count waiting for a core). */
static inline void bench_print_rate(const char *impl, uint64_t *latencies, size_t n, uint64_t elapsed_ns,
                                    uint64_t cpu_ns, int threads) {
    double seconds = (double)elapsed_ns / 1e9;
    double p50 = bench_quantile(latencies, n, 0.50) / 1e3;
    double p99 = bench_quantile(latencies, n, 0.99) / 1e3;
    printf("{\"impl\": \"%s\", \"threads\": %d, \"requests\": %zu, \"seconds\": %.6f, \"rps\": %.1f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"cpu_us\": %.2f}\n",
           impl, threads, n, seconds, (double)n / seconds, p50, p99, (double)cpu_ns / 1e3 / (double)n);
}

/* Reads a whole file; NULL on failure. */
static inline char *bench_read_file(const char *path, size_t *length) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *data = malloc((size_t)size + 1);
    if (!data || fread(data, 1, (size_t)size, file) != (size_t)size) {
        fclose(file);
        free(data);
        return NULL;
    }
    data[size] = '\0';
    fclose(file);
    if (length) *length = (size_t)size;
    return data;
}

#endif
