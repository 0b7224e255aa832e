/* Uploads from a file, from memory and as multipart, their size limit,
 * and the progress callback (cancelling, calling back in). */
#define _DEFAULT_SOURCE /* mkstemp */
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes `size` pseudo-random bytes to a new temporary file; returns its
 * path (static buffer) and the bytes in *out_bytes (caller frees). */
static const char *temp_file(size_t size, unsigned char **out_bytes) {
    static char path[64];
    unsigned char *bytes = malloc(size > 0 ? size : 1);
    unsigned state = (unsigned)size * 2654435761u + 1;
    for (size_t i = 0; i < size; i++) {
        state = state * 1103515245u + 12345u;
        bytes[i] = (unsigned char)(state >> 16);
    }
    snprintf(path, sizeof path, "/tmp/dl-upload-test-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, bytes, size) == (ssize_t)size);
    close(fd);
    *out_bytes = bytes;
    return path;
}

/* Fetches the bytes the emulator stored for the n-th attachment (0-based)
 * of a conversation and compares them with `expected`. */
static int stored_attachment_equals(const char *conversation_id, int n, const unsigned char *expected, size_t size) {
    char path[256];
    snprintf(path, sizeof path, "/_emulator/conversations/%s", conversation_id);
    char *stored = emu_get(base_url, path);
    const char *at = stored;
    for (int i = 0; at != NULL && i <= n; i++) {
        at = strstr(at, "/_emulator/attachments/");
        if (at != NULL && i < n) at++;
    }
    int equal = 0;
    if (at != NULL) {
        char attachment[256];
        size_t length = 0;
        sscanf(at, "%255[^\"]", attachment);
        char *bytes = emu_get_bytes(base_url, attachment, &length);
        equal = bytes != NULL && length == size && memcmp(bytes, expected, size) == 0;
        free(bytes);
    }
    free(stored);
    return equal;
}

struct progress_record {
    uint64_t last_done, last_total;
    int calls, decreased, cancel_after, reentrant_status;
    dl_conversation *conversation;
};

static int32_t record_progress(void *userdata, uint64_t done, uint64_t total) {
    struct progress_record *record = userdata;
    if (done < record->last_done) record->decreased = 1;
    record->last_done = done;
    record->last_total = total;
    record->calls++;
    if (record->conversation != NULL) {
        /* Calling back in, even to free our own handle, is refused. */
        record->reentrant_status = dl_conversation_free(record->conversation);
        record->conversation = NULL;
    }
    return record->cancel_after > 0 && record->calls >= record->cancel_after;
}

void test_uploads(const char *protocol) {
    int v3 = strcmp(protocol, "3.0") == 0;
    reset_emulator();
    dl_client *client = new_client(protocol, "\"maxUploadBytes\": 1048576");
    dl_conversation *conversation = NULL;
    char id[128] = "", *out = NULL;
    CHECK(dl_conversation_start(client, NULL, &conversation, &out) == DL_OK);
    CHECK(out != NULL && sscanf(strstr(out, "\"conversationId\":\"") + 18, "%127[^\"]", id) == 1);
    dl_string_free(out);

    /* Exactly the limit goes through byte for byte, with progress to the end. */
    unsigned char *bytes = NULL;
    const char *path = temp_file(1048576, &bytes);
    struct progress_record record = {0, 0, 0, 0, 0, 0, NULL};
    CHECK(dl_conversation_set_progress(conversation, record_progress, &record) == DL_OK);
    CHECK(dl_upload_file(conversation, "user1", path, "application/octet-stream", "exact.bin", &out) == DL_OK);
    CHECK(v3 ? contains(out, "\"id\":\"") : strcmp(out, "{}") == 0);
    dl_string_free(out);
    CHECK(record.calls > 0 && !record.decreased);
    CHECK(record.last_done == 1048576 && record.last_total == 1048576);
    CHECK(stored_attachment_equals(id, 0, bytes, 1048576));
    unlink(path);
    free(bytes);

    /* One byte over the limit, a missing file, a directory: nothing is sent. */
    int before = emu_request_count(base_url);
    path = temp_file(1048577, &bytes);
    CHECK(dl_upload_file(conversation, "user1", path, NULL, NULL, &out) == DL_ERR_TOO_LARGE);
    CHECK(contains(out, "1048577"));
    dl_string_free(out);
    CHECK(dl_upload_bytes(conversation, "user1", bytes, 1048577, NULL, NULL, NULL) == DL_ERR_TOO_LARGE);
    unlink(path);
    free(bytes);
    CHECK(dl_upload_file(conversation, "user1", "/nonexistent/file.bin", NULL, NULL, &out) == DL_ERR_IO);
    CHECK(contains(out, "\"delivery\":\"not_sent\""));
    dl_string_free(out);
    CHECK(dl_upload_file(conversation, "user1", "/tmp", NULL, NULL, NULL) == DL_ERR_IO);
    CHECK(dl_upload_bytes(conversation, "user1", "x", 1, "text/plain\r\nX-Injected: 1", NULL, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_bytes(conversation, "user1", NULL, 5, NULL, NULL, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_bytes(conversation, NULL, "x", 1, NULL, NULL, NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_multipart(conversation, "user1", "{\"files\": []}", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_multipart(conversation, "user1", "{\"files\": [{\"dataBase64\": \"not base64!\"}]}", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_multipart(conversation, "user1", "{\"files\": [{\"path\": \"/a\", \"dataBase64\": \"\"}]}", NULL) == DL_ERR_INVALID_ARGUMENT);
    CHECK(dl_upload_multipart(conversation, "user1", "{\"files\": [{\"path\": \"/nonexistent\"}]}", NULL) == DL_ERR_IO);
    CHECK(emu_request_count(base_url) == before);

    /* One byte, from memory, with a hostile file name. */
    CHECK(dl_upload_bytes(conversation, "user1", "Z", 1, NULL, "a\"b\r\nX-Injected: 1.txt", &out) == DL_OK);
    dl_string_free(out);
    char *log = emu_get(base_url, "/_emulator/requests");
    CHECK(contains(log, "filename=\\\"a%22b%0D%0AX-Injected: 1.txt\\\""));
    CHECK(!contains(log, "\"x-injected\""));
    free(log);
    CHECK(stored_attachment_equals(id, 1, (const unsigned char *)"Z", 1));

    /* Multipart: a message part and two files, in order. */
    path = temp_file(3000, &bytes);
    char manifest[512];
    snprintf(manifest, sizeof manifest,
             "{\"activity\": {\"text\": \"see attached\"}, \"files\": [{\"path\": \"%s\", \"filename\": \"one.bin\"}, "
             "{\"dataBase64\": \"aGVsbG8=\", \"contentType\": \"text/plain\", \"filename\": \"two.txt\"}]}", path);
    CHECK(dl_upload_multipart(conversation, "user1", manifest, &out) == DL_OK);
    if (v3) CHECK(contains(out, "\"clientActivityID\":\"dlc-"));
    dl_string_free(out);
    CHECK(stored_attachment_equals(id, 2, bytes, 3000));
    CHECK(stored_attachment_equals(id, 3, (const unsigned char *)"hello", 5));
    unlink(path);
    free(bytes);

    /* Cancel from the progress callback: nothing is stored. */
    path = temp_file(600000, &bytes);
    record = (struct progress_record){0, 0, 0, 0, 1, 0, NULL};
    CHECK(dl_upload_file(conversation, "user1", path, NULL, NULL, &out) == DL_ERR_CANCELLED);
    CHECK(contains(out, "\"delivery\":\"not_sent\""));
    dl_string_free(out);
    CHECK(record.calls == 1);

    /* Re-entry from the callback is refused; the upload still completes. */
    record = (struct progress_record){0, 0, 0, 0, 0, 0, conversation};
    CHECK(dl_upload_file(conversation, "user1", path, NULL, NULL, NULL) == DL_OK);
    CHECK(record.reentrant_status == DL_ERR_REENTRANT);
    /* The cancelled upload stored nothing: this one is attachment 4. */
    CHECK(stored_attachment_equals(id, 4, bytes, 600000));
    CHECK(!stored_attachment_equals(id, 5, bytes, 600000));
    CHECK(dl_conversation_set_progress(conversation, NULL, NULL) == DL_OK);
    CHECK(dl_conversation_set_progress(NULL, NULL, NULL) == DL_ERR_INVALID_HANDLE);
    unlink(path);
    free(bytes);

    CHECK(dl_conversation_free(conversation) == DL_OK);
    CHECK(dl_client_free(client) == DL_OK);
}
