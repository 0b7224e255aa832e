#!/usr/bin/env bash
# The fast tier, for every change (`make check`): the build, the header
# check, the linters, the Swift unit tests, and pytest over Tests without the
# suites marked `slow` (pytest.ini). A few minutes on two cores; the full run
# with those suites, the sanitizers, valgrind and fuzzing is scripts/test.sh
# (what CI runs). docs/testing.md says what each tier covers.
#
# A failed check does not stop the others, so one run shows everything to fix;
# only a failed build does, since every check needs the library.
set -euo pipefail
source "$(dirname "$0")/common.sh"

failed=()

# check NAME COMMAND...: runs one check from the top of the repository.
check() {
    local name="$1"
    shift
    log "$name"
    (cd "$ROOT" && "$@") || failed+=("$name")
}

ensure_dependencies
build_library

check "header up to date with the sources" python3 scripts/generate_header.py --check
check "lint" make --no-print-directory lint
check "Swift unit tests" swift test
# The artifact test that runs the header check again is left out: the check
# above did it (10 s).
check "emulator, C and Python suites without the slow ones" \
    python3 -m pytest Tests -q -p no:cacheprovider -m "not slow" \
    --deselect Tests/artifacts/test_artifacts.py::test_header_is_generated_from_the_sources

if [ "${#failed[@]}" -gt 0 ]; then
    log "failed after ${SECONDS} s:"
    printf '    %s\n' "${failed[@]}"
    exit 1
fi
log "all checks passed in ${SECONDS} s"
