/* Upload benchmark: streams a large file through dl_upload_file and reports
 * throughput and how much the process's peak RSS grew over an idle client.
 *
 *     upload_rss ENDPOINT FILE
 *
 * Run by bench/upload.sh, which creates the file and starts the sink. */
#define _DEFAULT_SOURCE
#include <directline.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

static long peak_rss_kib(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ENDPOINT FILE\n", argv[0]);
        return 2;
    }
    struct stat info;
    if (stat(argv[2], &info) != 0) {
        perror(argv[2]);
        return 2;
    }
    char config[512];
    snprintf(config, sizeof config,
             "{\"endpoint\": \"%s\", \"secret\": \"bench\", \"maxUploadBytes\": %lld}",
             argv[1], (long long)info.st_size);
    dl_client *client = NULL;
    dl_conversation *conversation = NULL;
    char *out = NULL;
    if (dl_client_new(config, &client, NULL) != DL_OK ||
        dl_conversation_open(client, "{\"conversationId\": \"bench\", \"token\": \"bench\"}", &conversation, NULL) != DL_OK) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    /* Warm up: one small upload so libcurl, TLS tables and buffers exist. */
    if (dl_upload_bytes(conversation, "bench", "x", 1, NULL, NULL, NULL) != DL_OK) {
        fprintf(stderr, "warm-up upload failed\n");
        return 1;
    }
    long idle = peak_rss_kib();
    double start = now_seconds();
    int32_t status = dl_upload_file(conversation, "bench", argv[2], "application/octet-stream", NULL, &out);
    double elapsed = now_seconds() - start;
    long peak = peak_rss_kib();
    if (status != DL_OK) {
        fprintf(stderr, "upload failed: %s\n", out);
        return 1;
    }
    /* The sink answers with the byte count it read: all of it must arrive. */
    char expected[64];
    snprintf(expected, sizeof expected, "\"bench|%lld\"", (long long)info.st_size);
    if (strstr(out, expected) == NULL) {
        fprintf(stderr, "the sink did not receive every byte: %s\n", out);
        return 1;
    }
    dl_string_free(out);
    double mib = (double)info.st_size / (1024.0 * 1024.0);
    printf("upload size        %10.1f MiB\n", mib);
    printf("time               %10.3f s\n", elapsed);
    printf("throughput         %10.1f MiB/s\n", mib / elapsed);
    printf("peak RSS, idle     %10.1f MiB\n", idle / 1024.0);
    printf("peak RSS, upload   %10.1f MiB\n", peak / 1024.0);
    printf("peak RSS growth    %10.1f MiB (budget 32 MiB: %s)\n", (peak - idle) / 1024.0,
           (peak - idle) < 32 * 1024 ? "within" : "OVER");
    dl_conversation_free(conversation);
    dl_client_free(client);
    return 0;
}
