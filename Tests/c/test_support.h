/* Shared by the files of the C suite (test_main.c runs it): the CHECK
 * counter, the helpers most tests begin with, and every test, by the file
 * that defines it. */
#ifndef TEST_SUPPORT_H
#define TEST_SUPPORT_H

#include "directline.h"
#include "emulator_control.h"

/* The emulator's base URL, from the command line. */
extern const char *base_url;

/* Counts `condition` as passed or failed (a failure is printed with its
 * file and line) and is its value, so a caller can add detail on failure. */
#define CHECK(condition) check((condition), #condition, __FILE__, __LINE__)
int check(int ok, const char *what, const char *file, int line);
/* Prints "N passed, N failed"; returns the exit status that goes with it. */
int report_checks(void);

/* A client on the emulator's secret; `extra` (may be NULL) is more
 * members for its configuration object. */
dl_client *new_client(const char *protocol, const char *extra);
/* Resets the emulator: conversations, tokens, faults, request log, settings. */
void reset_emulator(void);
/* Restores the emulator's start-up settings and checks they are back. */
void reset_emulator_config(void);
/* Logged requests with exactly this path (and method, unless NULL). */
int log_count(const char *method, const char *path);
/* Starts a conversation; its id and token go to the buffers (128, 256). */
dl_conversation *start_conversation(dl_client *client, char *id, char *token);
/* Opens a handle on a saved state and checks it opened. */
dl_conversation *open_state(dl_client *client, const char *state);
/* Sends `text` as user1 and checks the send succeeded. */
int send_ok(dl_conversation *conversation, const char *text);

/* test_client.c */
void test_version(void);
void test_bad_configs(void);
void test_handles(void);
void test_lifecycle_handles(void);
/* test_send.c */
void test_conversation(const char *protocol);
void test_open_existing(const char *protocol);
void test_bad_input_sends_nothing(const char *protocol);
/* test_errors.c */
void test_status_mapping(const char *protocol);
void test_retries(void);
void test_transport_failures(void);
/* test_upload.c */
void test_uploads(const char *protocol);
/* test_wait.c */
void test_wait(const char *protocol);
void test_wait_without_watermarks(const char *protocol);
void test_wait_cancelled_by_free(const char *protocol);
/* test_listen.c */
void test_listen(const char *protocol);
void test_listen_cancelled(const char *protocol);
void test_listen_failed(const char *protocol);
void test_listen_stream(const char *protocol);
/* test_lifecycle.c */
void test_save_and_resume(const char *protocol);
void test_end(const char *protocol);
/* test_tokens.c */
void test_token_refreshed_in_time(const char *protocol);
void test_token_expired(const char *protocol);
void test_token_calls(const char *protocol);
void test_conversation_refresh(const char *protocol);
void test_resumed_token_refreshed_in_time(const char *protocol);
void test_auto_refresh_in_flight(const char *protocol);
/* test_concurrency.c */
void test_threads(void);
void test_log_callback(void);
void test_thread_timeouts(void);
/* test_cancellation.c */
void test_free_revokes_progress(void);
void test_thread_cancel_is_deferred(void);
/* test_field.c */
void test_field_locale(const char *protocol);
void test_field_headers(const char *protocol);
void test_field_token_endpoint(void);
void test_field_filenames(const char *protocol);

#endif
