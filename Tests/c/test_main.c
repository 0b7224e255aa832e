/* C test suite for libdirectline, run against the local emulator:
 *     test_directline http://127.0.0.1:PORT
 * It is compiled from the files Tests/c/suite_sources.txt lists, against
 * include/directline.h with -Werror, and linked to the built
 * libdirectline.so. Prints "N passed, N failed" last. */
#include "test_support.h"

#include <stdio.h>

static const char *const protocols[] = {"3.0", "1.1"};

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s EMULATOR_URL\n", argv[0]);
        return 2;
    }
    base_url = argv[1];
    test_version();
    test_bad_configs();
    test_handles();
    for (size_t i = 0; i < 2; i++) {
        test_conversation(protocols[i]);
        test_open_existing(protocols[i]);
        test_bad_input_sends_nothing(protocols[i]);
        test_status_mapping(protocols[i]);
        test_uploads(protocols[i]);
        test_field_locale(protocols[i]);
        test_field_headers(protocols[i]);
        test_field_filenames(protocols[i]);
    }
    test_field_token_endpoint();
    test_lifecycle_handles();
    for (size_t i = 0; i < 2; i++) {
        test_wait(protocols[i]);
        test_wait_without_watermarks(protocols[i]);
        test_save_and_resume(protocols[i]);
        test_token_refreshed_in_time(protocols[i]);
        test_token_expired(protocols[i]);
        test_token_calls(protocols[i]);
        test_conversation_refresh(protocols[i]);
        test_end(protocols[i]);
        test_wait_cancelled_by_free(protocols[i]);
        test_listen(protocols[i]);
        test_listen_cancelled(protocols[i]);
        test_listen_failed(protocols[i]);
        test_listen_stream(protocols[i]);
    }
    for (size_t i = 0; i < 2; i++) {
        test_resumed_token_refreshed_in_time(protocols[i]);
        test_auto_refresh_in_flight(protocols[i]);
    }
    test_retries();
    test_transport_failures();
    test_threads();
    test_log_callback();
    test_thread_timeouts();
    test_free_revokes_progress();
    test_thread_cancel_is_deferred();
    return report_checks();
}
